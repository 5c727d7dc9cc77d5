"""The figures of a run and the exact comparison of two runs (flow.runner.compare, CLI figures/compare)."""
from __future__ import annotations

import json
import math

import pytest

from flow.cli import main
from flow.runner.compare import SCHEMA, compare, is_timing, load_figures, run_figures, write_figures
from flow.runner.errors import FlowError

HOST = {"cpu_model": "AMD EPYC", "cpu_family_model": "26/2"}


def _manifest(stage: str, metrics: dict, outputs: dict | None = None) -> dict:
    return {"stage": stage, "metrics": metrics, "git": "abc1234", "host": HOST, "tools": {},
            "finished_utc": "2026-11-30T20:00:00Z",
            "outputs": {k: {"bytes": 1, "sha256": v} for k, v in (outputs or {}).items()}}


def _run(tmp_path, name: str, **changes) -> object:
    metrics = {
        "data": {"wafers": {"train": 100, "test": 20}, "occupancy_mean": 7.25, "wall_s": 3.0,
                 "timings_s": {"read_s": 1.0}, "read_wafers_per_s": 1e5},
        "autoencoder": {"median_emd": {"emd_cnn": {"median": 0.7621, "min": 0.74, "max": 0.78}},
                        "converged": {"emd_cnn": True}, "epochs_run": [53, 61, 54],
                        "s_per_epoch": 31.0, "nan_metric": float("nan")},
    }
    for path, value in changes.items():
        stage, *keys = path.split("__")
        node = metrics[stage]
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    outputs = {"data": {"test.npz": "aa"}, "autoencoder": {"weights.bin": "bb", "plots/x.png": "cc"}}
    root = tmp_path / name
    for stage, m in metrics.items():
        (root / stage).mkdir(parents=True)
        (root / stage / "manifest.json").write_text(json.dumps(_manifest(stage, m, outputs[stage])))
    return root


def test_timings_and_run_state_are_not_figures():
    for path in ("data.wall_s", "data.timings_s.read_s", "emd.labels.label_pairs_per_s",
                 "emd.final.s_per_epoch", "emd.labels.cached", "bench.telescope_cpu_s_per_step",
                 "sweep.points[0].train_s", "x.eval_ms", "cosim.prog.generic_peak_rss_mb"):
        assert is_timing(path), path
    for path in ("cosim.latency_cycles", "emd.pairs.test", "autoencoder.epochs_run[0]",
                 "autoencoder.ratios.x", "physics.resolution.ae.5.value", "data.wafers_kept",
                 "rtl.flavours", "cosim.seu_upsets", "cosim.prog.generic_FF", "x.n_resets"):
        assert not is_timing(path), path


def test_equal_runs_compare_equal_and_timings_do_not_count(tmp_path):
    a = run_figures(_run(tmp_path, "a"))
    b = run_figures(_run(tmp_path, "b", data__wall_s=99.0, autoencoder__s_per_epoch=77.0))
    assert "data.wall_s" not in a["figures"] and "data.wafers.train" in a["figures"]
    res = compare(a, b)
    assert res["equal"] and res["n_mismatch"] == 0 and res["n_total"] == len(a["figures"])
    assert res["outputs"] == {"n_total": 3, "n_mismatch": 0, "counted": False, "mismatches": [],
                              "only_a": [], "only_b": []}
    assert math.isnan(a["figures"]["autoencoder.nan_metric"])  # NaN equals NaN in the comparison


def test_a_changed_figure_is_reported_expected_vs_got(tmp_path, capsys):
    ra, rb = _run(tmp_path, "a"), _run(tmp_path, "b", autoencoder__median_emd__emd_cnn__median=0.7622,
                                        autoencoder__converged__emd_cnn=1)
    res = compare(load_figures(ra), load_figures(rb))
    assert not res["equal"] and res["n_mismatch"] == 2
    assert {"figure": "autoencoder.median_emd.emd_cnn.median", "a": 0.7621, "b": 0.7622} in res["mismatches"]
    # a bool is not an int: True vs 1 is a change
    assert any(m["figure"] == "autoencoder.converged.emd_cnn" for m in res["mismatches"])
    out = tmp_path / "cmp.json"
    assert main(["compare", str(ra), str(rb), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "autoencoder.median_emd.emd_cnn.median: expected 0.7621, got 0.7622" in text
    assert "DIFFERENT" in text
    written = json.loads(out.read_text())
    assert written["n_mismatch"] == 2 and written["n_total"] == res["n_total"]
    # --ignore and --stage take them out
    assert main(["compare", str(ra), str(rb), "--ignore", r"^autoencoder\.(median_emd|converged)"]) == 0
    assert main(["compare", str(ra), str(rb), "--stage", "data"]) == 0


def test_a_figure_on_one_side_only_is_a_difference(tmp_path):
    res = compare(run_figures(_run(tmp_path, "a")),
                  run_figures(_run(tmp_path, "b", autoencoder__epochs_run=[53, 61])))
    assert not res["equal"] and res["n_mismatch"] == 0
    assert res["only_a"] == ["autoencoder.epochs_run[2]"] and res["only_b"] == []


def test_figures_file_round_trip_and_output_hashes(tmp_path, capsys):
    ra = _run(tmp_path, "a")
    fig = tmp_path / "fig.json"
    write_figures(ra, fig)
    data = json.loads(fig.read_text())
    assert data["schema"] == SCHEMA and data["stages"]["data"]["host"] == HOST
    assert compare(load_figures(fig), load_figures(ra))["equal"]
    # an output that changed: listed, counted only with outputs=True
    rb = _run(tmp_path, "b")
    man = json.loads((rb / "autoencoder" / "manifest.json").read_text())
    man["outputs"]["weights.bin"]["sha256"] = "ff"
    (rb / "autoencoder" / "manifest.json").write_text(json.dumps(man))
    res = compare(load_figures(fig), load_figures(rb))
    assert res["equal"] and res["outputs"]["mismatches"] == ["autoencoder/weights.bin"]
    assert not compare(load_figures(fig), load_figures(rb), outputs=True)["equal"]
    assert main(["compare", str(fig), str(rb), "--outputs"]) == 1
    assert "2 of 3 byte-identical" in capsys.readouterr().out


def test_bad_inputs_say_what_was_expected(tmp_path, capsys):
    with pytest.raises(FlowError, match="does not exist"):
        load_figures(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlowError, match="without stage manifests"):
        load_figures(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(FlowError, match="with schema 'flow-figures/1', got 'something-else'"):
        load_figures(bad)
    bad.write_text("not json")
    with pytest.raises(FlowError, match="not JSON"):
        load_figures(bad)
    ra = _run(tmp_path, "a")
    with pytest.raises(FlowError, match="regular expression"):
        compare(load_figures(ra), load_figures(ra), ignore=["("])
    assert main(["compare", str(ra), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_figures_command_writes_the_runs_figures(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nworkdir: {tmp_path / 'build'}\n")
    run = _run(tmp_path / "build", "t")
    out = tmp_path / "f.json"
    assert main(["figures", "--config", str(cfg), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["figures"] == run_figures(run)["figures"]
    assert "output hashes of 2 stages" in capsys.readouterr().out
