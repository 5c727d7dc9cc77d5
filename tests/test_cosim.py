"""The cosim stage: cocotb/Verilator cosimulation of both flavours against the golden model."""
import json

import numpy as np
import pytest
from fakes import fake_stage, run_chain

from flow.core import tb_sets as S
from flow.core import tb_vectors as T
from flow.core.encoder import EncoderWeights, golden_encode
from flow.core.encoder_file import write_encoder
from flow.core.frontend import FrontEnd
from flow.runner import config as C
from flow.runner.errors import MismatchError, StageInputError
from flow.runner.stages import run_stage

QUIET = dict(echo=lambda *a: None)




def fake_vectors(n: int, seed: int):
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 128, (n, 48)) * (rng.random((n, 48)) < rng.random((n, 1)))
    cal = rng.integers(1024, 4096, 48)
    aein, sums = FrontEnd(drop=3, calvalues=tuple(int(c) for c in cal))(words)
    return words, cal, aein, sums


def fake_upstream(mp, weights: EncoderWeights, n: int = 1500, seed: int = 0):
    """data/emd/autoencoder/convert stand-ins: weight files and golden vectors."""
    fake_stage(mp, "data", lambda ctx: (ctx.out / "d.txt").write_text("d"))
    fake_stage(mp, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))

    def ae(ctx):
        write_encoder(ctx.out, weights, 9)                 # weights.bin + encoder.json

    def convert(ctx):
        words, cal, aein, sums = fake_vectors(n, seed)
        np.savez(ctx.out / "vectors.npz", words=words.astype(np.uint8), calvalues=cal.astype(np.uint16),
                 drop=np.int64(3), aein=aein.astype(np.uint8),
                 latent=golden_encode(aein, weights).astype(np.uint16), sum_code=sums.astype(np.uint16),
                 kind=(np.arange(n) % 2).astype(np.uint8), kind_names=np.array(["even", "odd"]))
        # other registers: extreme CALVALUEs and the other drop
        cal2 = np.random.default_rng(seed + 1).integers(0, 4096, 48)
        cal2[:3] = [0, 4095, 2048]
        aein2, sums2 = FrontEnd(drop=1, calvalues=tuple(int(c) for c in cal2))(words)
        np.savez(ctx.out / "vectors_regs1.npz", words=words.astype(np.uint8),
                 calvalues=cal2.astype(np.uint16), drop=np.int64(1), aein=aein2.astype(np.uint8),
                 latent=golden_encode(aein2, weights).astype(np.uint16),
                 sum_code=sums2.astype(np.uint16), kind=np.zeros(n, np.uint8), kind_names=np.array(["regs"]))
    fake_stage(mp, "autoencoder", ae)
    fake_stage(mp, "convert", convert)


#: every registered flavour, the opt-in prog_tmr included
ALL_FLAVOURS = ["const", "prog", "prog_tmr"]


def make_cfg(tmp, name="t", rtl_flavours=None, **cosim):
    base = {"min_wafers": 2500, "bubbles": 200, "reload": 300, "verilator_opt": "-O0", "yosys": [],
            "seu_sensitivity": {"enabled": False},   # the fake upstreams have no decoder.h5
            "seu_upsets": 25}                        # the RTL SEU campaign, small (flow/cosim/seu.py)
    base.update(cosim)
    rtl = {"yosys_check": False, **({"flavours": rtl_flavours} if rtl_flavours else {})}
    return C.parse_config({"name": name, "workdir": str(tmp), "seed": 4, "rtl": rtl, "cosim": base})


@pytest.fixture(scope="module")
def cosim_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        fake_upstream(mp, EncoderWeights.random(21))
        cfg = make_cfg(tmp_path_factory.mktemp("cosim"), rtl_flavours=ALL_FLAVOURS, flavours=ALL_FLAVOURS)
        man = run_chain(cfg, ("data", "emd", "autoencoder", "convert", "rtl", "cosim"), **QUIET)
        yield cfg, man, json.loads((cfg.stage_dir("cosim") / "report.json").read_text())


# ----------------------------------------------------------------- model
def test_set_packing_roundtrip():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 512, (50, 16))
    ints = T.pack_rows(v, 9)
    assert ints[3] == sum(int(x) << (9 * j) for j, x in enumerate(v[3]))
    assert np.array_equal(S.unpack_fields(ints, 9, 16), v)


def test_config_writes_cover_the_image():
    w = EncoderWeights.random(3)
    A = T.ADDRESS_MAP
    writes = T.config_writes(A, w, np.arange(48) * 80, 3)
    assert len(writes) == 402 + 18 + 1
    img = sum(d << (32 * (a - A["weight_base"])) for a, d in writes if a < A["cal_base"])
    assert img.to_bytes(1608, "little") == w.to_image()
    cal = sum(d << (32 * (a - A["cal_base"])) for a, d in writes if A["cal_base"] <= a < A["drop_addr"])
    assert [(cal >> (12 * t)) & 0xFFF for t in range(48)] == list(np.arange(48) * 80)
    assert writes[-1] == (A["drop_addr"], 3)


def test_address_map_is_the_documented_one():
    from flow.hdl.build import interface

    T.check_address_map(interface(9, True, 25.0)["cfg_port"])


# ----------------------------------------------------------------- stage
def test_cosim_every_flavour_bit_exact(cosim_run):
    cfg, man, rep = cosim_run
    assert list(rep["flavours"]) == ALL_FLAVOURS
    for fl in ALL_FLAVOURS:
        r = rep["flavours"][fl]
        assert all(t["passed"] for t in r["tests"].values()), r["tests"]
        assert r["n_mismatch"] == 0
        st = r["phases"]["stream"]
        # 1500 vectors + the corner set, topped up to 2500 wafers
        assert st["n_total"] >= 2500 and st["n_mismatch"] == 0
        assert set(st["by_kind"]) == {"even", "odd", S.KIND_CORNER, S.KIND_RANDOM}
        for ph in ("bubbles", "after_reset", "reconfigured", "reloaded", "vectors_regs1", "defaults"):
            assert r["phases"][ph]["n_mismatch"] == 0 and r["phases"][ph]["n_total"] > 0
        assert man["metrics"][fl]["n_mismatch"] == 0
        assert (cfg.stage_dir("cosim") / fl / f"{fl}_stream.npz").is_file()
    assert (cfg.stage_dir("cosim") / "report.md").read_text().count("| const |") == 1


def test_cosim_seu_campaign_end_to_end(cosim_run):
    """The stage's SEU campaign on the programmable flavours: prog corrupts wafers only while
    an upset is held and none after the rewrite; prog_tmr corrects and counts every upset."""
    cfg, man, _ = cosim_run
    seu = json.loads((cfg.stage_dir("cosim") / "seu.json").read_text())
    assert set(seu["flavours"]) == {"prog", "prog_tmr"}            # const has no configuration to upset
    t, p = seu["flavours"]["prog_tmr"], seu["flavours"]["prog"]
    assert t["method"] == "hook" and t["injected"] == t["corrected"] == 25 and t["corrupted_wafers"] == 0
    assert set(t["classes"]) == {"weights", "calvalue", "drop", "pipeline_valid", "pipeline_data"}
    assert t["tmr"] is True and p["tmr"] is False
    # prog: configuration upsets through the port, pipeline upsets through its test-build hook
    assert p["method"] == "hook+port" and p["injected"] == 25 and p["corrected"] == 0
    assert {c: v["method"] for c, v in p["classes"].items()} == {
        "weights": "port", "calvalue": "port", "drop": "port",
        "pipeline_valid": "hook", "pipeline_data": "hook"}
    assert sum(c["n_upsets"] for c in p["classes"].values()) == 25
    assert p["unattributed_corrupted_wafers"] == 0 and p["corrupted_wafers"] > 0
    assert all(c["corrupted_after_restore"] == 0 for c in p["classes"].values() if c["method"] == "port")
    # a pipeline upset costs at most the one wafer in flight
    assert all(p["classes"][c]["corrupted_per_upset"] <= 1 for c in ("pipeline_valid", "pipeline_data"))
    assert p["classes"]["pipeline_valid"]["upsets_corrupting"] == p["classes"]["pipeline_valid"]["n_upsets"]
    assert man["metrics"]["seu"] == {fl: {k: seu["flavours"][fl][k] for k in ("injected", "corrected",
                                                                              "corrupted_wafers")}
                                     for fl in ("prog", "prog_tmr")}
    assert (cfg.stage_dir("cosim") / "seu" / "campaign_prog_tmr.npz").is_file()


def test_cosim_programmable_reload_uses_random_weights(cosim_run):
    _, _, rep = cosim_run
    for fl in ("prog", "prog_tmr"):
        prog = rep["flavours"][fl]["phases"]
        assert prog["reconfigured"]["random_weights"] is True
        assert prog["reconfigured"]["config_writes"] == 402 + 18 + 1
        alt = prog["vectors_regs1"]
        assert alt["drop"] == 1 and alt["calvalue_min"] == 0 and alt["calvalue_max"] == 4095
    assert rep["flavours"]["const"]["phases"]["reconfigured"]["random_weights"] is False


def test_cosim_configuration_reads_back_and_no_upsets_are_counted(cosim_run):
    """Every address read back through cfg_re/cfg_rdata after a random configuration
    returns what was written (weights: programmable flavours only); seu_count stays 0."""
    _, _, rep = cosim_run
    for fl in ALL_FLAVOURS:
        chk = rep["flavours"][fl]["checks"]
        rb = chk["readback"]
        assert rb["ok"] and rb["n_mismatch"] == 0 and rb["held"], (fl, rb)
        assert rb["n_read"] == 402 + 18 + 1 + 5                 # + 5 unmapped addresses
        assert rb["seu_count"] == 0 and chk["seu_count_stream"] == {"ok": True, "seu_count": 0}


def test_cosim_reset_latency_and_ii(cosim_run):
    _, man, rep = cosim_run
    for fl in ALL_FLAVOURS:
        r = rep["flavours"][fl]
        assert r["checks"]["reset"]["ok"] and r["checks"]["reset_midstream"]["ok"]
        assert r["checks"]["latency"]["latency_cycles"] == 2
        trace = r["checks"]["latency"]["valid_out_trace"]
        assert trace[1] == 1 and sum(trace) == 1         # a one-clock pulse, in cycle 2
        assert r["checks"]["ii"]["ok"] and r["ii_cycles"] == 1
        st = r["phases"]["stream"]
        # back to back: n wafers leave in n consecutive clocks
        assert st["ii_contiguous"] and st["cycles"] >= st["n_total"]
        assert man["metrics"][fl]["latency_ns"] == 50.0


def test_cosim_catches_a_flipped_weight_bit(tmp_path, monkeypatch):
    """RTL generated from weights with one bit flipped: the cosim must fail loudly."""
    from flow.hdl import build as rtl

    w = EncoderWeights.random(22)
    fake_upstream(monkeypatch, w, n=800)
    # flip bit 3 of the dense bias of the latent output that varies most on the vectors
    _, _, aein, _ = fake_vectors(800, 0)
    j = int(np.argmax(golden_encode(aein, w).std(0)))
    vec = w.to_vector().copy()
    vec[2128 + j] ^= 0b001000                            # stays a 6-bit two's complement code
    bad = EncoderWeights.from_vector(vec)
    assert (golden_encode(aein, bad) != golden_encode(aein, w)).any()

    def faulty_rtl(ctx):
        rtl.build_rtl(ctx.out, bad, ctx.settings, latent_bits=9, calvalues=[2048] * 48, drop=3)
    fake_stage(monkeypatch, "rtl", faulty_rtl)
    cfg = C.parse_config({"name": "f", "workdir": str(tmp_path), "seed": 4,
                          "rtl": {"flavours": ["const"], "yosys_check": False},
                          "cosim": {"flavours": ["const"], "min_wafers": 1000, "bubbles": 0, "reload": 0,
                                    "verilator_opt": "-O0", "yosys": []}})
    for st in ("data", "emd", "autoencoder", "convert", "rtl"):
        run_stage(cfg, st, **QUIET)
    with pytest.raises(MismatchError, match=rf"const/stream: \d+ of \d+ wafers differ.*latent\[{j}\]") as err:
        run_stage(cfg, "cosim", **QUIET)
    assert "expected" in str(err.value) and "got" in str(err.value)
    assert not cfg.stage_dir("cosim").exists()              # no artifact from a failed run
    kept = cfg.run_dir / "cosim.failed" / "report.json"                 # kept by the runner
    assert str(kept) in str(err.value)
    rep = json.loads(kept.read_text())
    st = rep["flavours"]["const"]["phases"]["stream"]
    assert st["n_mismatch"] > 0 and st["first_mismatches"]
    m = st["first_mismatches"][0]
    assert set(m) >= {"index", "field", "expected", "got"} and m["field"] == f"latent[{j}]"


def test_cosim_rejects_a_flavour_rtl_did_not_generate(tmp_path, monkeypatch):
    w = EncoderWeights.random(23)
    fake_upstream(monkeypatch, w, n=10)
    fake_stage(monkeypatch, "rtl", lambda ctx: (ctx.out / "rtl.json").write_text(
        json.dumps({"flavours": {"const": {}}, "latent_bits": 9})))
    cfg = make_cfg(tmp_path, flavours=["prog"])
    for st in ("data", "emd", "autoencoder", "convert", "rtl"):
        run_stage(cfg, st, **QUIET)
    with pytest.raises(StageInputError, match="prog"):
        run_stage(cfg, "cosim", **QUIET)


@pytest.mark.slow
def test_latency_one_without_frontend_register(tmp_path, monkeypatch):
    """rtl.frontend_register: false -> one register stage, measured and documented."""
    w = EncoderWeights.random(24)
    fake_upstream(monkeypatch, w, n=300)
    cfg = C.parse_config({"name": "l1", "workdir": str(tmp_path), "seed": 4,
                          "rtl": {"flavours": ["const"], "yosys_check": False, "frontend_register": False},
                          "cosim": {"flavours": ["const"], "min_wafers": 500, "bubbles": 100, "reload": 100,
                                    "verilator_opt": "-O0", "yosys": [],
                                    "seu_sensitivity": {"enabled": False}}})
    for st in ("data", "emd", "autoencoder", "convert", "rtl"):
        run_stage(cfg, st, **QUIET)
    man = run_stage(cfg, "cosim", **QUIET)
    assert man["metrics"]["const"]["latency_cycles"] == 1 and man["metrics"]["const"]["n_mismatch"] == 0
    assert man["metrics"]["const"]["ii_cycles"] == 1


@pytest.mark.slow
def test_a_registered_flavour_is_cosimulated_with_no_other_edit(tmp_path, monkeypatch):
    """A throw-away registry entry (the prog generator under another name and top): rtl
    generates it, cosim builds its top and the testbench reprograms its weights because the
    entry says it is programmable."""
    from flow.hdl import flavours as RF

    entry = RF.RtlFlavour(name="prog_copy", top="econt_ae_prog_copy", programmable=True,
                          generator="flow.hdl.prog:generate", description="a copy of prog (test)",
                          encoder="as prog")
    monkeypatch.setitem(RF.FLAVOURS, entry.name, entry)
    w = EncoderWeights.random(25)
    fake_upstream(monkeypatch, w, n=300)
    cfg = C.parse_config({"name": "pc", "workdir": str(tmp_path), "seed": 4,
                          "rtl": {"flavours": ["prog_copy"], "yosys_check": False},
                          "cosim": {"flavours": ["prog_copy"], "min_wafers": 500, "bubbles": 50,
                                    "reload": 100, "alt_vectors": False, "verilator_opt": "-O0",
                                    "yosys": [], "seu_sensitivity": {"enabled": False}}})
    for st in ("data", "emd", "autoencoder", "convert", "rtl"):
        run_stage(cfg, st, **QUIET)
    man = run_stage(cfg, "cosim", **QUIET)
    rep = json.loads((cfg.stage_dir("cosim") / "report.json").read_text())
    r = rep["flavours"]["prog_copy"]
    assert r["top"] == "econt_ae_prog_copy" and r["n_total"] >= 500 and r["n_mismatch"] == 0
    assert all(t["passed"] for t in r["tests"].values())
    assert r["phases"]["reconfigured"]["random_weights"] is True
    assert r["phases"]["reconfigured"]["config_writes"] == 402 + 18 + 1
    assert man["metrics"]["prog_copy"]["n_mismatch"] == 0


def test_tmr_corrects_and_counts_injected_upsets(tmp_path):
    """A test build of prog_tmr (ECONT_SEU_INJECT) running the shipped testbench's seu_inject
    test: one upset each in a weight, a CALVALUE and an output register copy while wafers
    stream: every output right, seu_count == 3."""
    from flow.hdl import build as rtl
    from flow.hdl import flavours as RF
    from flow.hdl import verify

    w = EncoderWeights.random(31)
    spec = RF.get("prog_tmr")
    rtl.generate(tmp_path / "rtl", w, flavours=[spec.name], check_trace=0)
    settings = C.CosimConfig(min_wafers=400, corners=False, bubbles=0, reload=0, first_mismatches=5,
                             verilator_opt="-O0")
    cal = [2048] * 48
    res = verify.simulate(spec.name, tmp_path / "rtl", tmp_path / "out", tmp_path / "build",
                          tmp_path / "logs", weights=w, latent_bits=9, calvalues=cal, drop=3,
                          default_calvalues=cal, default_drop=3, vectors=None, settings=settings, seed=7,
                          defines=["ECONT_SEU_INJECT"], testcases=["seu_inject"], **QUIET)
    assert res["tests"]["seu_inject"]["passed"], res["tests"]
    chk = res["checks"]["seu_inject"]
    assert chk["ok"] and chk["seu_count"] == 3 and len(chk["upsets"]) == 3
    assert res["phases"]["seu_inject"]["n_total"] == 400 and res["phases"]["seu_inject"]["n_mismatch"] == 0
    assert (tmp_path / "out" / "prog_tmr_seu_inject.npz").is_file()
