"""The hardware chain for every eLink budget's encoder (issue #16): convert, csim, rtl, cosim and
handoff verify and ship the encoder the autoencoder exported for another budget
(``autoencoder/elinks/<n>/``) at its own latent width, with 0 mismatches, next to the main encoder.

The upstream stages are fabricated (real runner, fake stage bodies): a 9-bit main encoder and
a 3-bit encoder for 2 eLinks, both random weights.  The end-to-end run builds Verilator models,
so it is ``slow`` (``make test-slow``); CI's smoke ``make all`` runs the same chain on trained
models (configs/smoke.yaml: ``autoencoder.elinks: [2, 5]``).
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import fake_stage

from flow.core import encoder as E
from flow.core.dataset import NPZ_DTYPES
from flow.core.encoder_file import ELINK_LATENT_BITS, budget_encoders, write_encoder
from flow.core.frontend import FrontEnd
from flow.core.vectors import read_vectors, select_spread, subset
from flow.runner import config as C
from flow.runner.errors import StageInputError
from flow.runner.stages import run_stage

N_TEST = 600
QUIET = dict(echo=lambda *a: None)


def _fake_data(ctx):
    rng = np.random.default_rng(8)
    occ = rng.random((N_TEST, 1)) * 0.5
    words = (rng.integers(0, 128, (N_TEST, 48)) * (rng.random((N_TEST, 48)) < occ)).astype(np.uint8)
    aein, sums = FrontEnd(ctx.cfg.data.drop, (ctx.cfg.data.calvalue,) * 48)(words)
    arrays = {k: np.zeros(N_TEST, dtype=dt) for k, dt in NPZ_DTYPES.items()}
    arrays.update(words=words, aein=aein.astype(np.uint8), sum_code=sums.astype(np.uint16),
                  calq=np.zeros((N_TEST, 48), np.int32))
    np.savez(ctx.out / "test.npz", **arrays)


def _export(d, seed: int, bits: int):
    d.mkdir(parents=True, exist_ok=True)
    model = E.build_qkeras_encoder(bits)
    w = E.EncoderWeights.random(seed)
    w.set_keras(model)
    model.save(d / "encoder.h5")
    write_encoder(d, w, bits)


def _fake_autoencoder(ctx):
    _export(ctx.out, 31, 9)                                    # the main (5-eLink) encoder
    _export(ctx.out / "elinks" / "2", 32, ELINK_LATENT_BITS[2])
    (ctx.out / "elinks.json").write_text(json.dumps({"2": {"latent_bits": 3, "trained": True},
                                                     "5": {"latent_bits": 9, "trained": False}}))


def _cfg(tmp):
    return C.parse_config({
        "name": "el", "workdir": str(tmp), "seed": 5,
        "convert": {"backends": ["Vitis"], "n_random": 300, "n_sparse": 300, "onehot_words": [1, 64, 127],
                    "n_alt_registers": 0, "tb_vectors": 0},
        "rtl": {"flavours": ["const", "prog"], "yosys_check": False},
        "cosim": {"flavours": ["const", "prog"], "min_wafers": 0, "bubbles": 100, "reload": 200,
                  "verilator_opt": "-O0", "yosys": [], "seu_upsets": 0, "alt_vectors": False,
                  "elinks_vectors": 1500, "seu_sensitivity": {"enabled": False}},
    })


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("elinks"))
    with pytest.MonkeyPatch.context() as mp:
        for name, body in (("data", _fake_data), ("emd", lambda ctx: (ctx.out / "e.txt").write_text("e")),
                           ("autoencoder", _fake_autoencoder)):
            fake_stage(mp, name, body)
            run_stage(cfg, name, **QUIET)
    mans = {st: run_stage(cfg, st, **QUIET) for st in ("convert", "csim", "rtl", "cosim", "handoff")}
    return cfg, mans


@pytest.mark.slow
def test_every_budget_is_verified_at_its_latent_width(chain):
    cfg, mans = chain
    conv, csim, rtl, cosim = (cfg.stage_dir(s) for s in ("convert", "csim", "rtl", "cosim"))
    # convert: the 2-eLink vectors carry the words of the main file, expectations at 3 bits
    main, v2 = read_vectors(conv / "vectors.npz"), read_vectors(conv / "elinks/2/vectors.npz")
    assert np.array_equal(main["words"], v2["words"]) and np.array_equal(main["kind"], v2["kind"])
    assert v2["latent"].max() <= (1 << 3) - 1 < main["latent"].max()
    w2 = E.EncoderWeights.from_image((cfg.stage_dir("autoencoder") / "elinks/2/weights.bin").read_bytes())
    assert np.array_equal(v2["latent"], E.golden_encode(v2["aein"], w2, 3))
    assert mans["convert"]["metrics"]["elinks"]["2"]["latent_bits"] == 3
    prj = json.loads((conv / "elinks/2/hls_projects/Vitis/econt_project.json").read_text())
    assert prj["latent_bits"] == 3
    # csim: the 3-bit project on the 3-bit vectors, every vector, 0 mismatches
    p = mans["csim"]["metrics"]["projects"]
    assert set(p) == {"Vitis", "Vitis@2elinks"}
    assert p["Vitis@2elinks"]["latent_bits"] == 3 and p["Vitis@2elinks"]["n_mismatch"] == 0
    assert p["Vitis@2elinks"]["n_total"] == len(v2["words"])
    assert mans["csim"]["metrics"]["n_mismatch"] == 0
    # rtl: every flavour again at 3 bits, its own weight image
    rj = json.loads((rtl / "elinks/2/rtl.json").read_text())
    assert rj["latent_bits"] == 3 and set(rj["flavours"]) == {"const", "prog"}
    assert (rtl / "elinks/2/weights.bin").read_bytes() == w2.to_image()
    assert "output wire [47:0] latent" in (rtl / "elinks/2/prog/econt_ae_prog.v").read_text()
    # cosim: both flavours at 3 bits, 0 mismatches, every testbench test passed
    rep = json.loads((cosim / "report.json").read_text())
    per = rep["elinks"]["2"]
    assert per["latent_bits"] == 3 and set(per["flavours"]) == {"const", "prog"}
    for fl in ("const", "prog"):
        r = per["flavours"][fl]
        assert r["n_mismatch"] == 0 and r["n_total"] >= 1500
        assert all(t["passed"] for t in r["tests"].values()), r["tests"]
        assert r["latency_cycles"] == 2 and r["ii_cycles"] == 1
        m = mans["cosim"]["metrics"][f"{fl}@2elinks"]
        assert m["n_mismatch"] == 0 and m["latent_bits"] == 3
        assert (cosim / f"elinks/2/{fl}/{fl}_stream.npz").is_file()
    assert "| prog@2elinks |" in (cosim / "report.md").read_text()
    # handoff: elinks/2/ is a root of its own with the 3-bit RTL and image, run by the shipped
    # testbench in the self-check (unpacked, flow not importable)
    h = mans["handoff"]["metrics"]
    assert h["elinks"]["2"]["weights"] == "elinks/2/registers/weights.bin"
    assert h["elinks"]["2"]["weights_sha256"] == json.loads(
        (cfg.stage_dir("autoencoder") / "elinks/2/encoder.json").read_text())["weights_sha256"]
    sc = h["self_check"]["elinks"]["2"]
    assert sc["latent_bits"] == 3 and sc["n_mismatch"] == 0 and sc["n_total"] > 0
    import tarfile

    arc = next(cfg.stage_dir("handoff").glob("*.tar.gz"))
    with tarfile.open(arc) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        top = tar.getmembers()[0].name.split("/")[0]
        man = json.loads(tar.extractfile(f"{top}/elinks/2/manifest.json").read())
        img = tar.extractfile(f"{top}/elinks/2/registers/weights.bin").read()
    assert {"elinks/2/rtl/prog/econt_ae_prog.v", "elinks/2/rtl/const/filelist.f", "elinks/2/MANIFEST.sha256",
            "elinks/2/vectors/vectors.json", "elinks/2/README.md"} <= names
    assert man["model"]["latent_bits"] == 3 and man["elinks"] == 2 and img == w2.to_image()


@pytest.mark.slow
def test_cosim_fails_when_a_budget_rtl_is_for_other_weights(chain, tmp_path):
    """The reference of a budget's cosim is its encoder.json + weights.bin, not the RTL: const
    RTL generated from other weights must fail by simulation."""
    from flow.hdl.build import build_rtl

    cfg, _ = chain
    d = cfg.stage_dir("rtl") / "elinks/2"
    s = cfg.rtl.model_copy(update={"flavours": ["const"]})
    build_rtl(tmp_path / "other", E.EncoderWeights.random(99), s, latent_bits=3, calvalues=[2048] * 48,
              drop=3, echo=lambda *a: None)
    good = (d / "const/econt_encoder_const_da.v").read_text()
    assert good != (tmp_path / "other/const/econt_encoder_const_da.v").read_text()
    from flow.hdl.verify import simulate

    enc = json.loads((d / "rtl.json").read_text())
    v = read_vectors(cfg.stage_dir("convert") / "elinks/2/vectors.npz")
    settings = cfg.cosim.model_copy(update={"bubbles": 0, "reload": 0, "corners": False})
    vec = tmp_path / "v.npz"
    from flow.core.vectors import write_vectors

    write_vectors(vec, subset(v, np.arange(300)))
    w2 = E.EncoderWeights.from_image((d / "weights.bin").read_bytes())
    res = simulate("const", tmp_path / "other", tmp_path / "out", tmp_path / "build", tmp_path,
                   weights=w2, latent_bits=3, calvalues=v["calvalues"], drop=int(v["drop"]),
                   default_calvalues=[2048] * 48, default_drop=3, vectors=vec, settings=settings, seed=1,
                   latency_cycles=int(enc["interface"]["latency_cycles"]), echo=lambda *a: None)
    assert res["n_mismatch"] > 0


# ------------------------------------------------------------------ units (fast)
def _ae(tmp, table: dict, bits: dict[int, int]):
    """A stand-in for a verified autoencoder artifact with an elinks.json and encoders."""
    outputs = {"elinks.json": "x"}
    (tmp / "elinks.json").write_text(json.dumps(table))
    for n, b in bits.items():
        write_encoder(tmp / "elinks" / str(n), E.EncoderWeights.random(n), b)
        outputs.update({f"elinks/{n}/encoder.json": "x", f"elinks/{n}/weights.bin": "x"})

    def path(rel):
        if rel not in outputs:
            raise StageInputError(f"autoencoder artifact has no {rel}")
        return tmp / rel
    return SimpleNamespace(manifest={"outputs": outputs}, path=path)


def test_budget_encoders_lists_the_trained_budgets(tmp_path):
    table = {"5": {"trained": False}, "3": {"trained": True}, "2": {"trained": True}}
    ae = _ae(tmp_path, table, {2: 3, 3: 5})
    encs = budget_encoders(ae)
    assert list(encs) == [2, 3] and [e.latent_bits for e in encs.values()] == [3, 5]
    assert budget_encoders(SimpleNamespace(manifest={"outputs": {}}, path=None)) == {}


def test_budget_encoders_refuses_a_model_of_another_width(tmp_path):
    ae = _ae(tmp_path, {"2": {"trained": True}}, {2: 5})
    with pytest.raises(StageInputError, match="2-eLink budget needs 3-bit latents, the encoder has 5"):
        budget_encoders(ae)
    ae = _ae(tmp_path, {"6": {"trained": True}}, {})
    with pytest.raises(StageInputError, match="eLink budget '6': expected one of"):
        budget_encoders(ae)


def test_spread_subset_keeps_registers_and_every_kind():
    kind = np.repeat(np.arange(4), [1, 10, 100, 1000]).astype(np.uint8)
    v = {"words": np.zeros((len(kind), 48), np.uint8), "kind": kind, "calvalues": np.arange(48),
         "drop": np.int64(3), "aein": np.zeros((len(kind), 48)), "latent": np.zeros((len(kind), 16)),
         "sum_code": np.zeros(len(kind)), "kind_names": np.array(list("abcd"))}
    sub = subset(v, select_spread(kind, 100))
    assert len(sub["words"]) == 100 and set(sub["kind"].tolist()) == {0, 1, 2, 3}
    assert sub["calvalues"] is v["calvalues"] and sub["kind_names"] is v["kind_names"]
