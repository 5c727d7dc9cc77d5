"""The sweep stage's driver (issue 18): outputs, a failing point recorded without stopping the
sweep, resumption (a killed sweep reruns only its unfinished points), the Pareto front; with
a fabricated point body.  The real point chain: tests/test_sweep_point.py and the slow
end-to-end test at the end."""
import csv
import json
import math

import pytest
from fakes import fake_stage

from flow.runner.config import load_config
from flow.runner.stages import run_stage
from flow.sweep import stage as SW

QUIET = {"echo": lambda *a, **k: None}


def _cfg(tmp, *extra):
    return load_config("configs/smoke.yaml", [
        f"workdir={tmp}", "data.n_events=60", "data.n_files=1", "data.chunk_size=60",
        "sweep.ray.enabled=false", "sweep.vectors=50", *extra])


def _upstream(cfg, monkeypatch):
    fake_stage(monkeypatch, "emd", lambda ctx: (ctx.out / "emd_cnn.keras").write_text("cnn"))
    run_stage(cfg, "data", **QUIET)
    run_stage(cfg, "emd", **QUIET)


def _fake_point(calls: list, fail: set = frozenset(), kill: set = frozenset()):
    def body(job):
        calls.append(job["id"])
        if job["id"] in kill:
            raise KeyboardInterrupt            # the sweep is killed while this point runs
        if job["id"] in fail:
            raise RuntimeError(f"synthesis of {job['id']} exploded")
        a, lb = job["arch"], job["latent_bits"]
        assert len(job["vector_index"]) == 50 and job["emd_cnn"].endswith("emd_cnn.keras")
        rec = {"id": job["id"], **a, "latent_bits": lb, "econt": False, "status": "ok", "converged": True,
               "epochs_run": 7, "best_val_loss": 0.5, "n_mismatch": 0, "wall_s": 1.0,
               "qkeras": {"n_mismatch": 0}, "csim": {"n_mismatch": 0},
               "physics": {"median_emd": 1.0 / a["filters"] + 1.0 / lb, "resolution": 0.2 + 0.1 / lb,
                           "resolution_err": 0.01},
               "hardware": {"n_mismatch": 0, "n_total": 60, "flavours": {"prog": {
                   "area_um2_sky130": 1e5 * a["filters"] * lb, "generic_gates": 900 * a["filters"],
                   "latency_cycles": 2, "ii_cycles": 1}}}}
        (SW.Path(job["dir"])).mkdir(parents=True, exist_ok=True)
        SW.atomic_write_json(SW.Path(job["dir"]) / SW.POINT_JSON, rec)
        return rec
    return body


def test_sweep_outputs_a_failed_point_and_the_front(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "sweep.grid={filters: [2, 4, 8], latent_bits: [3, 9]}")
    _upstream(cfg, monkeypatch)
    calls = []
    monkeypatch.setattr(SW, "run_point", _fake_point(calls, fail={"f4_w6_a8_l9"}))
    man = run_stage(cfg, "sweep", **QUIET)
    m = man["metrics"]
    assert m["n_points"] == 6 and m["n_failed"] == 1 and m["n_mismatch"] == 0
    assert m["econt_point"] == "f8_w6_a8_l9"
    out = cfg.stage_dir("sweep")
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert [r["id"] for r in rows] == ["f2_w6_a8_l3", "f2_w6_a8_l9", "f4_w6_a8_l3", "f4_w6_a8_l9",
                                       "f8_w6_a8_l3", "f8_w6_a8_l9"]
    bad = rows[3]
    assert bad["status"] == "failed" and "synthesis of f4_w6_a8_l9 exploded" in bad["error"]
    assert bad["filters"] == "4" and bad["median_emd"] == ""
    err = json.loads((cfg.run_dir / ".checkpoints/sweep").glob("*/f4_w6_a8_l9/error.json").__next__()
                     .read_text())
    assert "RuntimeError" in err["error"] and "Traceback" in err["traceback"]
    # the front by hand: EMD 1/f + 1/l, resolution 0.2 + 0.1/l, area f*l: the smallest design
    # (f2, l3) is cheapest; l9 designs buy EMD and resolution with area
    ok = {r["id"]: r for r in rows if r["status"] == "ok"}
    assert m["pareto"] == SW.pareto_front(
        [{"id": i, **{k: float(r[k]) for k in SW.OBJECTIVES}} for i, r in ok.items()], SW.OBJECTIVES)
    assert "f2_w6_a8_l3" in m["pareto"] and "f8_w6_a8_l9" in m["pareto"]
    assert {r["id"] for r in rows if r["on_front"] == "True"} == set(m["pareto"])
    assert (out / "plots/pareto.png").is_file() and json.loads((out / "pareto.json").read_text())["all"]


def test_a_killed_sweep_reruns_only_unfinished_points(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "sweep.grid={filters: [2, 4], latent_bits: [3, 5]}")
    _upstream(cfg, monkeypatch)
    calls = []
    monkeypatch.setattr(SW, "run_point", _fake_point(calls, fail={"f2_w6_a8_l5"}, kill={"f4_w6_a8_l3"}))
    with pytest.raises(KeyboardInterrupt):
        run_stage(cfg, "sweep", **QUIET)
    assert calls == ["f2_w6_a8_l3", "f2_w6_a8_l5", "f4_w6_a8_l3"]
    assert not (cfg.stage_dir("sweep") / "manifest.json").exists()
    calls.clear()
    monkeypatch.setattr(SW, "run_point", _fake_point(calls))
    man = run_stage(cfg, "sweep", **QUIET)
    # the finished point is read back; the failed one is retried, the killed and the unstarted run
    assert calls == ["f2_w6_a8_l5", "f4_w6_a8_l3", "f4_w6_a8_l5"]
    assert man["metrics"]["n_points"] == 4 and man["metrics"]["n_failed"] == 0
    calls.clear()
    run_stage(cfg, "sweep", **QUIET)
    assert calls == []                         # everything finished: nothing recomputed


def test_a_point_with_mismatches_fails_the_stage_after_every_point(tmp_path, monkeypatch):
    """A mismatch is a fault of the flow: every point runs, the outputs are written (kept as
    sweep.failed/), the stage fails naming the point, and the next run recomputes it."""
    from flow.runner.errors import FlowError

    cfg = _cfg(tmp_path, "sweep.grid={filters: [2, 4], latent_bits: [3]}")
    _upstream(cfg, monkeypatch)
    calls = []
    fake = _fake_point(calls)

    def mism(job):
        rec = fake(job)
        if job["id"] == "f2_w6_a8_l3":
            rec.update(status="mismatch", n_mismatch=3)
            rec["hardware"].update(n_mismatch=3)
            rec["hardware"]["flavours"]["prog"]["first_mismatches"] = [{"index": 7, "field": "latent"}]
            SW.atomic_write_json(SW.Path(job["dir"]) / SW.POINT_JSON, rec)
        return rec
    monkeypatch.setattr(SW, "run_point", mism)
    with pytest.raises(FlowError, match=r"sweep: 3 mismatches .* in 1 points:\n  f2_w6_a8_l3: 3 mismatching "
                                        r"\(golden vs QKeras 0, csim 0, cosim 3\); first: \[\{'index': 7"):
        run_stage(cfg, "sweep", **QUIET)
    assert calls == ["f2_w6_a8_l3", "f4_w6_a8_l3"]
    rows = list(csv.DictReader((cfg.run_dir / "sweep.failed" / "points.csv").open()))
    assert [r["status"] for r in rows] == ["mismatch", "ok"] and rows[0]["on_front"] == "False"
    calls.clear()
    monkeypatch.setattr(SW, "run_point", _fake_point(calls))
    m = run_stage(cfg, "sweep", **QUIET)["metrics"]
    assert calls == ["f2_w6_a8_l3"] and m["n_failed"] == 0 and m["n_mismatch"] == 0


def test_the_resolution_panel_shows_percent_with_bootstrap_errors(tmp_path, monkeypatch):
    """The map's resolution panel: values in percent with their bootstrap error bars (the
    default grid's points differ by less than their errors, docs/sweep.md); a row without an
    error gets none, and the front is drawn on the same (percent) scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    seen = {"errorbar": [], "step": []}
    orig_eb, orig_step = Axes.errorbar, Axes.step

    def errorbar(self, x, y, *a, yerr=None, **k):
        seen["errorbar"].append((list(y), list(yerr)))
        return orig_eb(self, x, y, *a, yerr=yerr, **k)

    def step(self, x, y, *a, **k):
        seen["step"].append(list(y))
        return orig_step(self, x, y, *a, **k)

    monkeypatch.setattr(Axes, "errorbar", errorbar)
    monkeypatch.setattr(Axes, "step", step)
    rows = [{"id": f"f{f}_w6_a8_l9", "status": "ok", "filters": f, "latent_bits": 9, "econt": f == 8,
             "area_um2_sky130": 1e6 * f, "median_emd": 1.0 / f, "generic_gates": 1000 * f,
             "resolution": 0.034 - 0.001 * f, "resolution_err": None if f == 4 else 0.0009}
            for f in (2, 4, 8)]
    assert SW._plots(tmp_path, rows, []) == ["pareto.png"]
    (y, err), = seen["errorbar"]
    assert y == pytest.approx([3.2, 3.0, 2.6])
    assert err[0] == pytest.approx(0.09) and err[2] == pytest.approx(0.09)
    assert math.isnan(err[1])                            # no bar for the row without an error
    assert pytest.approx([2.6]) in [ys[-1:] for ys in seen["step"]]   # the resolution front, in percent
    assert "bootstrap" in json.loads((tmp_path / "captions.json").read_text())["pareto.png"]
