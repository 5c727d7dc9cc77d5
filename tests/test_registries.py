"""The flavour and loss registries drive config validation (no name lists elsewhere)."""
import pytest

from flow.core import losses as L
from flow.hdl import flavours as RF
from flow.runner import config as C
from flow.runner.errors import ConfigError


@pytest.mark.parametrize("data, key, allowed, got", [
    ({"rtl": {"flavours": ["asic"]}}, "rtl.flavours.0", "(const, prog, prog_tmr)", "'asic'"),
    ({"cosim": {"flavours": ["const", "fpga"]}}, "cosim.flavours.1", "(const, prog, prog_tmr)", "'fpga'"),
    ({"autoencoder": {"losses": ["mse"]}}, "autoencoder.losses.0",
     "(emd_cnn, telescope_mse, weighted_mse, sinkhorn)", "'mse'"),
    ({"autoencoder": {"conditional_losses": ["l1"]}}, "autoencoder.conditional_losses.0",
     "(emd_cnn, telescope_mse, weighted_mse, sinkhorn)", "'l1'"),
    ({"autoencoder": {"export_loss": "emd"}}, "autoencoder.export_loss",
     "(emd_cnn, telescope_mse, weighted_mse, sinkhorn)", "'emd'"),
])
def test_unknown_name_is_an_error_listing_the_registered_names(data, key, allowed, got):
    with pytest.raises(ConfigError) as err:
        C.parse_config(data, "test.yaml")
    line = next(x for x in str(err.value).splitlines() if x.startswith(f"  {key}:"))
    assert "expected" in line and allowed in line and line.endswith(f"got {got}")


def test_wrong_type_is_still_a_type_error():
    with pytest.raises(ConfigError, match=r"rtl.flavours: Input should be a valid list; got 'const'"):
        C.parse_config({"rtl": {"flavours": "const"}})
    with pytest.raises(ConfigError, match=r"autoencoder.export_loss: Input should be a valid string"):
        C.parse_config({"autoencoder": {"export_loss": 3}})


def test_defaults_and_docs_come_from_the_tables():
    cfg = C.parse_config({})
    # every registered flavour except the opt-in ones (prog_tmr)
    assert cfg.rtl.flavours == cfg.cosim.flavours == list(RF.default_names()) == ["const", "prog"]
    assert RF.names() == ("const", "prog", "prog_tmr")
    # the SEU facts: which registers the test-build hook reaches, and who corrects upsets
    assert all(f.seu_hook in RF.SEU_HOOKS for f in RF.FLAVOURS.values())
    assert [n for n, f in RF.FLAVOURS.items() if f.tmr] == ["prog_tmr"]
    assert RF.get("prog_tmr").seu_hook == "all" and RF.get("prog").seu_hook == "pipeline"
    with pytest.raises(ConfigError, match="seu_hook expected one of"):
        RF.RtlFlavour("x", "x", True, "m:f", "d", "e", seu_hook="weights")
    assert cfg.autoencoder.losses == list(L.loss_names())
    doc = {line.split(" ", 1)[0]: line for line in C.describe()}
    assert doc["rtl.flavours"].startswith("rtl.flavours (list[str]) = ['const', 'prog']")
    assert doc["rtl.flavours"].endswith(
        f"One of (flow/hdl/flavours.py): const: {RF.get('const').description}; "
        f"prog: {RF.get('prog').description}; prog_tmr: {RF.get('prog_tmr').description}.")
    assert "One of (flow/core/losses.py): emd_cnn: " in doc["autoencoder.export_loss"]
    assert all(f"; {n}: " in doc["autoencoder.losses"] for n in list(L.LOSSES)[1:])


def test_registering_entries_is_enough_for_the_config(monkeypatch):
    monkeypatch.setitem(RF.FLAVOURS, "tmr_test", RF.RtlFlavour(
        "tmr_test", "econt_ae_tmr_test", True, "flow.hdl.prog:generate", "test entry", "as prog"))
    monkeypatch.setitem(L.LOSSES, "l1_test", L.Loss("l1_test", lambda s: None, False, "test entry"))
    cfg = C.parse_config({"rtl": {"flavours": ["const", "tmr_test"]}, "cosim": {"flavours": ["tmr_test"]},
                          "autoencoder": {"losses": ["l1_test"], "export_loss": "l1_test"}})
    assert cfg.rtl.flavours == ["const", "tmr_test"] and cfg.autoencoder.export_loss == "l1_test"
    assert C.parse_config({}).rtl.flavours == ["const", "prog", "tmr_test"]
    with pytest.raises(ConfigError, match=r"\(const, prog, prog_tmr, tmr_test\), got 'tmr'"):
        C.parse_config({"rtl": {"flavours": ["tmr"]}})


def test_flavour_table():
    assert [f.name for f in RF.FLAVOURS.values()] == list(RF.FLAVOURS)
    assert RF.get("prog").programmable and not RF.get("const").programmable
    with pytest.raises(ConfigError, match=r"expected an RTL flavour .*\(const, prog, prog_tmr\), got 'x'"):
        RF.get("x")
    with pytest.raises(Exception, match="frozen|cannot assign"):
        RF.get("prog").top = "other"


def test_loss_table():
    assert list(L.LOSSES) == ["emd_cnn", "telescope_mse", "weighted_mse", "sinkhorn"]
    assert [n for n, e in L.LOSSES.items() if e.needs_emd_cnn] == ["emd_cnn"]
    assert all(e.name == n and e.description for n, e in L.LOSSES.items())
    assert L.get_loss("weighted_mse") is L.weighted_mse and L.get_loss("telescope_mse") is L.telescope_mse
    with pytest.raises(ConfigError, match=r"expected a loss registered in flow/core/losses.py .*got 'mse'"):
        L.get_loss("mse")
