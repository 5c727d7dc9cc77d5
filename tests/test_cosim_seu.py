"""The RTL SEU campaign (flow/cosim/seu.py + flow/resources/handoff/test_econt_seu.py):
single upsets on Verilator models of prog and prog_tmr, expected outputs from the golden
model with the bit flipped; the campaign's failure path."""
import json
from pathlib import Path

import numpy as np
import pytest

from flow.core.encoder import EncoderWeights, golden_encode
from flow.core.vectors import golden
from flow.cosim import seu as S
from flow.runner import config as C
from flow.runner.errors import ConfigError, MismatchError
from flow.runner.manifest import StageContext

LB = 9
N_VEC = 400


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """prog and prog_tmr, test builds (ECONT_SEU_INJECT) built once, a golden-vector file."""
    from flow.hdl import build as rtl
    from flow.hdl import flavours as RF

    tmp = tmp_path_factory.mktemp("seu")
    w = EncoderWeights.random(41)
    rtl.generate(tmp / "rtl", w, flavours=["prog", "prog_tmr"], check_trace=0)
    builds = {}
    for fl in ("prog", "prog_tmr"):
        spec = RF.get(fl)
        builds[fl] = tmp / f"build_{fl}"
        S.build(rtl.sources(tmp / "rtl" / fl), spec.top, builds[fl], log=tmp / f"build_{fl}.log",
                        defines=["ECONT_SEU_INJECT"])
    rng = np.random.default_rng(5)
    words = (rng.integers(0, 128, (N_VEC, 48)) * (rng.random((N_VEC, 48)) < rng.random((N_VEC, 1))))
    cal = rng.integers(1024, 4096, 48)
    aein, lat, sums = golden(words, drop=3, calvalues=cal, weights=w, latent_bits=LB)
    vp = tmp / "vectors.npz"
    np.savez(vp, words=words.astype(np.uint8), latent=lat, sum_code=sums, calvalues=cal.astype(np.uint16),
             drop=np.int64(3), aein=aein)
    return {"tmp": tmp, "w": w, "builds": builds, "vec": vp, "words": words, "cal": cal, "aein": aein,
            "latent": lat, "sums": sums}


def _run(m, fl, upsets, hook):
    from flow.hdl import flavours as RF

    img = int.from_bytes(m["w"].to_image(), "little")
    bdir = m["builds"][fl]
    plan = S.make_plan(fl, upsets, tmr=RF.get(fl).tmr, vectors=m["vec"], max_vectors=0, latent_bits=LB,
                       config=S.config_writes(img, m["cal"], 3), out=bdir / f"seu_{fl}")
    res = S.run_tb(RF.get(fl).top, bdir, plan, bdir / "plan.json", log=m["tmp"] / f"sim_{fl}.log")
    r, rows = S.analyse(plan, res, {"latent": m["latent"], "sum_code": m["sums"]},
                        bits={c: S.class_bits(x) for c, x in S.classes(hook, LB, True).items()})
    return plan, res, r, rows


def _sensitive_weight_bit(m) -> int:
    """An image bit (a dense bias bit) whose flip changes the latents of some vectors."""
    w = m["w"]
    j = int(np.argmax(golden_encode(m["aein"], w, LB).std(0)))
    return (2128 + j) * 6 + 3                           # bit 3 of that 6-bit bias code


def _flipped(w: EncoderWeights, bit: int) -> EncoderWeights:
    img = bytearray(w.to_image())
    img[bit // 8] ^= 1 << (bit % 8)
    return EncoderWeights.from_image(bytes(img))


def test_prog_upsets_corrupt_exactly_the_golden_model_wafers(models):
    """A weight bit and a CALVALUE bit upset in prog (through the port, each held HOLD
    clocks): the wafers processed meanwhile come out as the golden model with that bit
    flipped computes them (integer codes, exactly), all others as the reference."""
    m = models
    wbit = _sensitive_weight_bit(m)
    img = int.from_bytes(m["w"].to_image(), "little")
    cbit = 12 * 7 + 10                                  # CALVALUE 7, bit 10
    ups = []
    for b in (wbit, S.IMAGE_BITS + cbit):
        addr, good, bad = S._port_upset(b, img, m["cal"], 3)
        ups.append({"class": "weights" if b < S.IMAGE_BITS else "calvalue", "bit": b, "method": "port",
                    "addr": addr, "good": good, "bad": bad})
    plan, res, r, rows = _run(m, "prog", ups, hook=False)
    n = r["n_wafers"]
    assert r["n_valid_out"] == n
    idx = np.arange(n) % N_VEC
    want_lat, want_sum = m["latent"][idx].astype(np.int64), m["sums"][idx].astype(np.int64)
    # upset 0 (weights): the encoder reads the bad word for the wafers sampled at clocks [t, t + HOLD)
    t0 = plan["start"]
    k0 = np.arange(t0, t0 + S.HOLD)
    want_lat[k0] = golden_encode(m["aein"][idx[k0]], _flipped(m["w"], wbit), LB)
    # upset 1 (CALVALUE): the front end sees it for the wafers sampled at clocks [t + 1, t + HOLD + 1)
    t1 = plan["start"] + plan["period"]
    k1 = np.arange(t1 + 1, t1 + 1 + S.HOLD)
    cal2 = m["cal"].copy()
    cal2[7] ^= 1 << 10
    _, lat2, sum2 = golden(m["words"][idx[k1]], drop=3, calvalues=cal2, weights=m["w"], latent_bits=LB)
    want_lat[k1], want_sum[k1] = lat2, sum2
    assert np.array_equal(res["latent"].astype(np.int64), want_lat)
    assert np.array_equal(res["sum_code"].astype(np.int64), want_sum)
    # and the campaign's count is those wafers that differ from the reference
    ref_lat, ref_sum = m["latent"][idx].astype(np.int64), m["sums"][idx].astype(np.int64)
    differ = (want_lat != ref_lat).any(1) | (want_sum != ref_sum)
    assert differ[k0].sum() > 0 and differ[k1].sum() > 0
    assert [row["n_corrupted"] for row in rows] == [int(differ[k0].sum()), int(differ[k1].sum())]
    assert r["corrupted_wafers"] == int(differ.sum()) and r["unattributed_corrupted_wafers"] == 0
    assert all(row["after_restore"] == 0 for row in rows)   # correct again after the rewrite
    assert r["classes"]["weights"]["last_corrupted_offset_max"] <= S.HOLD - 1
    assert r["classes"]["calvalue"]["last_corrupted_offset_max"] <= S.HOLD
    assert r["corrected"] == 0 and r["injected"] == 2


def test_prog_pipeline_upsets_corrupt_one_wafer_each(models):
    """Pipeline-register upsets in prog through the test-build hook (no TMR): a stage-1
    AEin bit corrupts exactly the wafer it holds (the golden encoder on the flipped AEin),
    an output latent bit that wafer's code in exactly that bit, a cleared valid bit (stage 1
    or valid_out) loses exactly one wafer; every other wafer is right and in place (outputs
    matched to wafers by clock), seu_count stays 0."""
    m = models
    cls = S.classes(True, LB, True)
    s1v, s1d, ov, od = cls["pipeline_valid"][0], cls["pipeline_data"][0], cls["pipeline_valid"][1], \
        cls["pipeline_data"][1]
    aein_bit, lat_bit = 5 * 8 + 6, 3 * LB + 4                # AEin of TC 5 bit 6; latent 3 bit 4
    ups = [{"class": "pipeline_data", "bit": s1d[0] + aein_bit, "method": "hook"},
           {"class": "pipeline_data", "bit": od[0] + lat_bit, "method": "hook"},
           {"class": "pipeline_valid", "bit": s1v[0], "method": "hook"},
           {"class": "pipeline_valid", "bit": ov[0], "method": "hook"}]
    plan, res, r, rows = _run(m, "prog", ups, hook=True)
    n, start, period = r["n_wafers"], plan["start"], plan["period"]
    assert period == S.PERIOD_HOOK and r["tmr"] is False and r["method"] == "hook"
    idx = np.arange(n) % N_VEC
    want_lat, want_sum = m["latent"][idx].astype(np.int64), m["sums"][idx].astype(np.int64)
    # upset at clock t: stage 1 stores wafer t flipped, the output register wafer t - 1
    t0, t1, t2, t3 = (start + i * period for i in range(4))
    aein = m["aein"][idx[t0]].copy()
    aein[5] ^= 1 << 6
    want_lat[t0] = golden_encode(aein[None], m["w"], LB)[0]
    want_lat[t1 - 1, 3] ^= 1 << 4
    assert (want_lat[t0] != m["latent"][idx[t0]]).any()   # the chosen AEin bit matters for that wafer
    lost = {t2, t3 - 1}                                   # stage-1 valid: wafer t2; valid_out: wafer t3 - 1
    keep = np.array([k for k in range(n) if k not in lost])
    got_w = res["valid_clocks"] - res["valid_clocks"][0]
    assert list(got_w) == list(keep)
    assert np.array_equal(res["latent"].astype(np.int64), want_lat[keep])
    assert np.array_equal(res["sum_code"].astype(np.int64), want_sum[keep])
    assert [row["n_corrupted"] for row in rows] == [1, 1, 1, 1]
    assert [row["first"] for row in rows] == [0, -1, 0, -1]
    assert r["corrupted_wafers"] == 4 and r["missing_outputs"] == 2 and r["extra_outputs"] == 0
    assert r["unattributed_corrupted_wafers"] == 0 and r["corrected"] == 0
    assert S.check_campaign("prog", r) is None
    assert "no output (valid_out missing)" in " ".join(r["first_corrupted"])


def test_tmr_corrects_every_class_and_counts_each_upset(models):
    """The same weight bit, and one bit of every other class, flipped in one TMR copy each:
    no corrupted wafer, seu_count + 1 per upset."""
    m = models
    cls = S.classes(True, LB, True)
    ups = [{"class": "weights", "bit": _sensitive_weight_bit(m), "method": "hook", "copy": 1}]
    rng = np.random.default_rng(3)
    for k, (name, ranges) in enumerate(cls.items()):
        for lo, hi in ranges:
            ups.append({"class": name, "bit": int(rng.integers(lo, hi)), "method": "hook", "copy": k % 3})
    plan, res, r, rows = _run(m, "prog_tmr", ups, hook=True)
    assert r["corrupted_wafers"] == 0 and r["n_valid_out"] == r["n_wafers"]
    assert r["corrected"] == r["injected"] == len(ups)
    assert [row["seu_inc"] for row in rows] == [1] * len(ups)
    assert S.check_tmr("prog_tmr", r) is None


def test_plan_classes_and_shares():
    cls = S.classes(True, LB, True)
    assert S.class_bits(cls["weights"]) == 12864 and S.class_bits(cls["calvalue"]) == 576
    assert S.class_bits(cls["drop"]) == 2 and S.class_bits(cls["pipeline_valid"]) == 2
    assert S.class_bits(cls["pipeline_data"]) == 48 * 8 + 9 + 16 * LB + 9
    assert list(S.classes(False, LB, True)) == ["weights", "calvalue", "drop"]
    assert S.class_bits(S.classes(True, LB, False)["pipeline_valid"]) == 1
    ups = S.plan_upsets(103, np.random.default_rng(0), hook="all", tmr=True, latent_bits=LB, fe_reg=True,
                        weight_image=0, calvalues=[2048] * 48, drop=3)
    counts = {c: sum(u["class"] == c for u in ups) for c in cls}
    assert sorted(counts.values()) == [20, 20, 21, 21, 21]
    for u in ups:
        assert any(lo <= u["bit"] < hi for lo, hi in cls[u["class"]]) and u["copy"] in (0, 1, 2)
        assert u["method"] == "hook"
    # a hook on the pipeline only (prog): configuration classes through the port, no copies
    mixed = S.plan_upsets(50, np.random.default_rng(2), hook="pipeline", latent_bits=LB, fe_reg=True,
                          weight_image=0, calvalues=[2048] * 48, drop=3)
    assert {u["class"]: u["method"] for u in mixed} == {
        "weights": "port", "calvalue": "port", "drop": "port",
        "pipeline_valid": "hook", "pipeline_data": "hook"}
    assert not any("copy" in u for u in mixed)
    assert S.make_plan("prog", mixed, vectors=Path("v.npz"), max_vectors=0, latent_bits=LB, config=[],
                       out=Path("o"))["period"] == S.PERIOD_PORT
    with pytest.raises(ConfigError, match="seu_hook"):
        S.method_of("weights", "some")
    # port upsets: the bad word differs from the loaded one in exactly the chosen bit
    img = int.from_bytes(EncoderWeights.random(1).to_image(), "little")
    ups = S.plan_upsets(50, np.random.default_rng(1), hook="pipeline", latent_bits=LB, fe_reg=True,
                        weight_image=img, calvalues=list(range(48)), drop=2)
    port = [u for u in ups if u["method"] == "port"]
    assert len(port) == 30
    for u in port:
        assert bin(u["good"] ^ u["bad"]).count("1") == 1
        assert (u["addr"], u["good"]) in S.config_writes(img, list(range(48)), 2)


def test_config_validates_seu_upsets():
    assert C.parse_config({}).cosim.seu_upsets == 0
    default = C.load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    assert default.cosim.seu_upsets >= 10000 and "prog_tmr" in default.cosim.flavours
    for bad in (-1, 70000, "many"):
        with pytest.raises(ConfigError, match="seu_upsets"):
            C.parse_config({"cosim": {"seu_upsets": bad}})


def test_campaign_fails_when_tmr_corrupts_a_wafer(tmp_path, monkeypatch):
    """A (fake) TMR result with one corrupted wafer and a missed count fails the stage hook
    with an expected-vs-got message and still writes seu.json."""
    n_vec = 50
    rng = np.random.default_rng(0)
    lat = rng.integers(0, 512, (n_vec, 16)).astype(np.uint16)
    sums = rng.integers(0, 512, n_vec).astype(np.uint16)
    vp = tmp_path / "vectors.npz"
    np.savez(vp, words=np.zeros((n_vec, 48), np.uint8), calvalues=np.full(48, 2048, np.uint16),
             drop=np.int64(3), aein=np.zeros((n_vec, 48), np.uint8), latent=lat, sum_code=sums,
             kind=np.zeros(n_vec, np.uint8), kind_names=np.array(["k"]))
    wpath = tmp_path / "weights.bin"
    wpath.write_bytes(EncoderWeights.random(2).to_image())

    def fake_tb(top, build_dir, plan, plan_path, log=None):
        n = plan["start"] + len(plan["upsets"]) * plan["period"] + plan["tail"]
        idx = np.arange(n) % n_vec
        got_lat = lat[idx].copy()
        got_lat[plan["start"] + 2, 5] ^= 1                  # one wrong latent, upset #0's window
        n_up = len(plan["upsets"])
        return {"n_clocks": n, "n_wafers_in": n, "latent": got_lat, "sum_code": sums[idx],
                "seu_count": np.arange(1, n_up + 1), "seu_count_before": 0, "seu_count_final": n_up - 1,
                "sim_wall_s": 0.1, "run_wall_s": 0.1}
    monkeypatch.setattr(S, "run_tb", fake_tb)
    monkeypatch.setattr(S, "build", lambda *a, **k: 0.0)
    cfg = C.parse_config({"name": "f", "workdir": str(tmp_path), "seed": 1,
                          "cosim": {"flavours": ["prog_tmr"], "seu_upsets": 12}})
    out = tmp_path / "cosim_out"
    (out / "logs").mkdir(parents=True)
    (tmp_path / "rtl" / "prog_tmr").mkdir(parents=True)
    (tmp_path / "rtl" / "prog_tmr" / "filelist.f").write_text("x.v\n")
    ctx = StageContext(cfg=cfg, stage="cosim", out=out, upstream={}, checkpoint_dir=tmp_path)
    meta = {"interface": {"latency_cycles": 2}}
    with pytest.raises(MismatchError) as err:
        S.run_in_stage(ctx, rtl_dir=tmp_path / "rtl", meta=meta, vec_path=vp, weights_image=wpath,
                       latent_bits=LB, echo=lambda *a: None)
    msg = str(err.value)
    assert "prog_tmr (12 single upsets)" in msg
    assert "expected 0 corrupted wafers, got 1" in msg and "upset #0" in msg
    assert "latent[5] expected" in msg and "got" in msg
    assert "expected seu_count 12 (one per injected upset), got 11" in msg
    saved = json.loads((out / "seu.json").read_text())
    assert saved["flavours"]["prog_tmr"]["corrupted_wafers"] == 1
    assert ctx.metrics["seu"] == {"prog_tmr": {"injected": 12, "corrected": 11, "corrupted_wafers": 1}}
    assert Path(out / "seu" / "campaign_prog_tmr.npz").is_file()


def test_report_section_shows_the_campaign(tmp_path):
    """The report's SEU section: a row per flavour and class from cosim/seu.json (the
    sensitivity part absent here), rendered in HTML and Markdown."""
    from flow.report import sections as RS
    from flow.report.doc import NA, Table
    from flow.report.inputs import Figures
    from flow.report.render import render_html, render_md

    seu = {"flavours": {
        "prog": {"method": "port", "hold_clocks": 16, "injected": 30, "corrected": 0, "corrupted_wafers": 70,
                 "classes": {c: {"n_bits": b, "n_upsets": 10, "upsets_corrupting": 5, "corrupted_wafers": 20,
                                 "corrupted_per_upset": 2.0, "corrupted_fraction_while_held": 0.125,
                                 "corrupted_after_restore": 0, "seu_count_increments": 0}
                             for c, b in (("weights", 12864), ("calvalue", 576), ("drop", 2))}},
        "prog_tmr": {"method": "hook", "injected": 20, "corrected": 20, "corrupted_wafers": 0,
                     "classes": {c: {"n_bits": 2, "n_upsets": 4, "upsets_corrupting": 0,
                                     "corrupted_wafers": 0, "corrupted_per_upset": 0.0,
                                     "corrupted_after_restore": None, "seu_count_increments": 4}
                                 for c in ("weights", "calvalue", "drop", "pipeline_valid",
                                           "pipeline_data")}}}}
    (tmp_path / "seu.json").write_text(json.dumps(seu))

    class Up:
        def json(self, stage, rel):
            p = tmp_path / rel
            return json.loads(p.read_text()) if p.is_file() else NA(f"no {rel}")

        def config(self, stage):
            return {"seu_sensitivity": {"enabled": False}}

        def has(self, stage, rel):
            return (tmp_path / rel).is_file()

        def path(self, stage, rel):
            return tmp_path / rel

    sec = RS.seu(Up(), Figures(tmp_path / "report"))
    tables = {b.id: b for b in sec.blocks if isinstance(b, Table)}
    rows = tables["seu-campaign"].rows
    assert len(rows) == 3 + 5
    assert rows[0][:2] == ["prog", "weights"] and "persists until reload" in rows[0]
    assert rows[-1][:2] == ["prog_tmr", "pipeline_data"] and "0 (corrected)" in rows[-1]
    page = render_html("t", "PASS", "", "", "today", "seu", [sec])
    md = render_md("t", "PASS", "", "", [sec])
    assert 'id="tbl-seu-campaign"' in page and "RTL SEU campaign" in md
    assert "prog_tmr: 20 upsets" in md and "cosim.seu_sensitivity.enabled: false" in md


def test_cosim_stage_fails_when_tmr_corrupts_a_wafer(tmp_path, monkeypatch):
    """The whole cosim stage (simulations faked as passing, the campaign's testbench faked
    with one corrupted wafer): a MismatchError with expected vs got, no artifact, and the
    failed run's seu.json kept in cosim.failed/."""
    from fakes import fake_stage
    from test_cosim import QUIET, fake_upstream

    from flow.cosim import stage as cosim
    from flow.hdl.build import interface
    from flow.runner.stages import run_stage

    w = EncoderWeights.random(7)
    fake_upstream(monkeypatch, w, n=60)

    def fake_rtl(ctx):
        (ctx.out / "prog_tmr").mkdir()
        (ctx.out / "prog_tmr" / "filelist.f").write_text("econt_ae_prog_tmr.v\n")
        (ctx.out / "prog_tmr" / "econt_ae_prog_tmr.v").write_text("// fake\n")
        (ctx.out / "rtl.json").write_text(json.dumps({
            "flavours": {"prog_tmr": {}}, "latent_bits": LB,
            "defaults": {"calvalue_image_hex": "800" * 48, "drop": 3},
            "interface": interface(LB, True, 25.0)}))
    fake_stage(monkeypatch, "rtl", fake_rtl)

    def fake_simulate(fl, *a, **k):
        return {"phases": {"stream": {"n_total": 60, "n_mismatch": 0, "ii_cycles": 1, "wafers_per_s": 1.0}},
                "checks": {"latency": {"latency_cycles": 2}}, "tests": {}, "n_total": 60, "n_mismatch": 0,
                "build_s": 0.0, "run_wall_s": 0.0, "top": "econt_ae_prog_tmr"}
    monkeypatch.setattr(cosim, "simulate", fake_simulate)
    monkeypatch.setattr(S, "build", lambda *a, **k: 0.0)

    def fake_tb(top, build_dir, plan, plan_path, log=None):
        z = np.load(plan["vectors"])
        n = plan["start"] + len(plan["upsets"]) * plan["period"] + plan["tail"]
        idx = np.arange(n) % len(z["latent"])
        sums = z["sum_code"][idx].copy()
        sums[plan["start"] + plan["period"] + 1] ^= 4        # one wrong module sum, upset #1's window
        n_up = len(plan["upsets"])
        return {"n_clocks": n, "n_wafers_in": n, "latent": z["latent"][idx], "sum_code": sums,
                "seu_count": np.arange(1, n_up + 1), "seu_count_before": 0, "seu_count_final": n_up,
                "sim_wall_s": 0.1, "run_wall_s": 0.1}
    monkeypatch.setattr(S, "run_tb", fake_tb)
    cfg = C.parse_config({"name": "sf", "workdir": str(tmp_path), "seed": 4,
                          "rtl": {"flavours": ["prog_tmr"], "yosys_check": False},
                          "cosim": {"flavours": ["prog_tmr"], "yosys": [], "seu_upsets": 10,
                                    "seu_sensitivity": {"enabled": False}}})
    for st in ("data", "emd", "autoencoder", "convert", "rtl"):
        run_stage(cfg, st, **QUIET)
    with pytest.raises(MismatchError, match=r"SEU campaign on prog_tmr \(10 single upsets\): expected 0 "
                                            r"corrupted wafers, got 1 \(upset #1 .*module_sum expected \d+ "
                                            r"got \d+") as err:
        run_stage(cfg, "cosim", **QUIET)
    assert "seu_count" not in str(err.value)                # the count was right
    assert not cfg.stage_dir("cosim").exists()
    kept = cfg.run_dir / "cosim.failed"
    assert json.loads((kept / "seu.json").read_text())["flavours"]["prog_tmr"]["corrupted_wafers"] == 1
    assert (kept / "report.json").is_file()
