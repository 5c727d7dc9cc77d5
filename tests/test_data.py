"""``data`` stage end to end (flow.data.stage): outputs, contract, splits, drops, reruns."""
from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from flow.core import dataset as dataset
from flow.core import frontend as frontend
from flow.core.captions import read_captions
from flow.core.geometry import N_TC
from flow.core.npzfile import write_npz
from flow.data import stage as data
from flow.runner.config import parse_config
from flow.runner.errors import ConfigError, DataFormatError
from flow.runner.stages import run_stage


def tiny(tmp_path, **data_over):
    d = {"n_events": 24, "n_files": 2, "chunk_size": 7, "split": [0.5, 0.25, 0.25]}
    d.update(data_over)
    return parse_config({"name": "tiny", "workdir": str(tmp_path), "seed": 3, "data": d})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = tiny(tmp)
    man = run_stage(cfg, "data", echo=lambda *a: None)
    return cfg, man


def test_outputs_and_manifest(built):
    cfg, man = built
    out = cfg.stage_dir("data")
    assert (out / "manifest.json").is_file()
    outputs = set(man["outputs"])
    expect = {"train.npz", "val.npz", "test.npz", "stats.json", "root/synthetic_000.root",
              "root/synthetic_001.root"}
    expect |= {f"plots/{p}" for p in ("occupancy.png", "calq_sum.png", "hottest_fraction.png",
                                      "eta.png", "layer.png", "occupancy_map.png",
                                      "occupancy_vs_eta.png")}
    assert expect <= outputs
    # each plot's caption is written beside it, for the report
    caps = read_captions(out / "plots" / "captions.json")
    assert {f"plots/{n}" for n in caps} == {o for o in outputs if o.endswith(".png")}
    assert caps["eta.png"] == "Wafer |eta| per split"
    stats = json.loads((out / "stats.json").read_text())
    m = man["metrics"]
    assert stats["wafers_kept"] == m["wafers_kept"] == sum(m["wafers"].values())
    assert stats["wafers_read"] == stats["wafers_kept"] + sum(stats["drops"].values())
    assert set(stats["drops"]) == set(data.DROP_REASONS)
    assert stats["reader"]["files"][0]["path"] == "root/synthetic_000.root"
    assert stats["generator"]["events"] == 24 and stats["events_read"] == 24


def test_npz_contract(built):
    cfg, _ = built
    out = cfg.stage_dir("data")
    seen = []
    for name in dataset.SPLITS:
        a = dataset.read_split(out / f"{name}.npz")
        n = len(a["event"])
        assert n > 0
        for k, dt in dataset.NPZ_DTYPES.items():
            assert a[k].dtype == dt
            assert a[k].shape == ((n, N_TC) if k in ("words", "calq", "aein") else (n,))
        assert a["words"].max() <= 127
        fe = frontend.FrontEnd(drop=cfg.data.drop)
        np.testing.assert_array_equal(fe.calq(a["words"]), a["calq"])
        aein, s = fe(a["words"])
        np.testing.assert_array_equal(aein, a["aein"])
        np.testing.assert_array_equal(s, a["sum_code"])
        np.testing.assert_array_equal(frontend.occupancy(a["calq"], a["eta"]), a["occupancy"])
        assert (a["occupancy"] >= cfg.data.min_occupancy).all()
        assert set(np.unique(a["layer"])) <= set(cfg.data.layers)
        assert np.isfinite(a["gen_pt"]).all() and (a["gen_pt"] <= 35.0).all()
        assert np.isfinite(a["gen_phi"]).all() and (np.abs(a["gen_phi"]) <= np.pi).all()
        # the electron's endcap is the sign of gen_eta; its shower wafers are on that side
        ev_side = np.sign(a["gen_eta"]) == a["zside"]
        assert ev_side.any()
        seen.append(set(np.unique(a["event"]).tolist()))
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert set().union(*seen) <= set(range(24))


def test_split_without_gen_phi_still_loads(built, tmp_path):
    """Files written before gen_phi joined the contract keep loading (backward compatible)."""
    cfg, _ = built
    a = dataset.read_split(cfg.stage_dir("data") / "test.npz")
    old = {k: v for k, v in a.items() if k != "gen_phi"}
    dataset.write_split(tmp_path / "old.npz", old, compress=False)
    b = dataset.read_split(tmp_path / "old.npz")
    assert "gen_phi" not in b and set(b) == set(old)
    bad = dict(old, gen_phi=a["gen_phi"].astype(np.float64))
    write_npz(tmp_path / "bad.npz", bad)
    with pytest.raises(DataFormatError, match="gen_phi"):
        dataset.read_split(tmp_path / "bad.npz")


def test_rerun_is_byte_identical(built):
    cfg, man = built
    again = run_stage(cfg, "data", echo=lambda *a: None)
    assert {k: v["sha256"] for k, v in again["outputs"].items()} == \
           {k: v["sha256"] for k, v in man["outputs"].items()}


def test_root_source_reproduces_the_synthetic_dataset(built, tmp_path):
    cfg, man = built
    src = cfg.stage_dir("data") / "root"
    cfg2 = parse_config({"name": "fromroot", "workdir": str(tmp_path), "seed": 3,
                         "data": {**cfg.data.model_dump(mode="json"), "source": "root",
                                  "root_files": [str(src / "*.root")]}})
    man2 = run_stage(cfg2, "data", echo=lambda *a: None)
    assert len(man2["inputs"]) == 2 and all("sha256" in v for v in man2["inputs"].values())
    for name in ("train.npz", "val.npz", "test.npz"):
        assert man2["outputs"][name]["sha256"] == man["outputs"][name]["sha256"]
    assert not any(k.startswith("root/") for k in man2["outputs"])


def test_split_of_is_stateless_and_balanced():
    ev = np.arange(20000)
    s = data.split_of(ev, 11, [0.7, 0.15, 0.15])
    np.testing.assert_array_equal(s[5000:6000], data.split_of(ev[5000:6000], 11, [0.7, 0.15, 0.15]))
    frac = np.bincount(s, minlength=3) / ev.size
    np.testing.assert_allclose(frac, [0.7, 0.15, 0.15], atol=0.015)
    assert not np.array_equal(s, data.split_of(ev, 12, [0.7, 0.15, 0.15]))


def _per_wafer_file(path, calq, eta):
    n = len(calq)
    b = {"wafer_layer": np.ones(n, np.int32), "wafer_eta": eta.astype(np.float32),
         "wafer_waferu": np.arange(n, dtype=np.int32), "wafer_waferv": np.zeros(n, np.int32),
         "wafer_simenergy": np.ones(n, np.float32), "event": np.arange(n, dtype=np.int64)}
    for i in range(N_TC):
        b[f"wafer_CALQ{i}"] = calq[:, i].astype(np.int32)
    with uproot.recreate(path) as f:
        f.mktree("t", b)


def test_empty_and_low_wafers_are_dropped_and_counted(tmp_path):
    calq = np.zeros((6, N_TC), dtype=np.int64)
    calq[1, 3] = 35 * 10          # 10 MIP at |eta| 2 -> 2.7 MIP_T: occupancy 1
    calq[2, :5] = 35 * 5          # occupancy 5
    calq[3, 7] = 2                # non-empty, occupancy 0
    calq[5, :] = 35 * 4           # occupancy 48
    eta = np.full(6, 2.0)
    _per_wafer_file(tmp_path / "w.root", calq, eta)
    cfg = parse_config({"name": "w", "workdir": str(tmp_path), "data": {
        "source": "root", "root_files": [str(tmp_path / "w.root")], "tree": "t",
        "layers": [], "min_occupancy": 1, "min_sum_mipt": 10.0}})
    man = run_stage(cfg, "data", echo=lambda *a: None)
    drops = man["metrics"]["drops"]
    assert drops == {"not_in_layers": 0, "empty": 2, "below_min_occupancy": 1, "below_min_sum": 2}
    assert man["metrics"]["wafers_kept"] == 1
    stats = json.loads((cfg.stage_dir("data") / "stats.json").read_text())
    assert stats["drops"] == drops and stats["words_available"] is False
    kept = [dataset.read_split(cfg.stage_dir("data") / f"{s}.npz") for s in dataset.SPLITS]
    words = np.concatenate([k["words"] for k in kept])
    assert (words == 255).all()
    calq_kept = np.concatenate([k["calq"] for k in kept])
    np.testing.assert_array_equal(calq_kept, calq[[5]])


def test_no_surviving_wafer_is_an_error(tmp_path):
    calq = np.zeros((3, N_TC), dtype=np.int64)
    _per_wafer_file(tmp_path / "z.root", calq, np.full(3, 2.0))
    cfg = parse_config({"name": "z", "workdir": str(tmp_path), "data": {
        "source": "root", "root_files": [str(tmp_path / "z.root")], "tree": "t", "layers": []}})
    with pytest.raises(DataFormatError, match="no wafer survived.*empty.: 3"):
        run_stage(cfg, "data", echo=lambda *a: None)
    assert not cfg.stage_dir("data").exists()


def test_bad_input_fails_the_stage_cleanly(tmp_path):
    p = tmp_path / "bad.root"
    b = {k: ak.unflatten(np.array(v, dtype=np.float32 if k in ("tc_eta", "tc_data") else np.int32),
                         [2]) for k, v in
         {"tc_zside": [1, 1], "tc_layer": [1, 1], "tc_waferu": [0, 0], "tc_waferv": [0, 0],
          "tc_cellu": [4, 5], "tc_cellv": [4, 4], "tc_data": [10, np.nan],
          "tc_eta": [2.0, 2.0]}.items()}
    with uproot.recreate(p) as f:
        f.mktree("t", b, counter_name=lambda n: "tc_n")
    cfg = parse_config({"name": "b", "workdir": str(tmp_path), "data": {
        "source": "root", "root_files": [str(p)], "tree": "t"}})
    with pytest.raises(DataFormatError, match=r"bad\.root:t: branch tc_data: expected finite"):
        run_stage(cfg, "data", echo=lambda *a: None)
    assert not cfg.stage_dir("data").exists()


def test_config_validation():
    with pytest.raises(ConfigError, match="data.split"):
        parse_config({"data": {"split": [0.5, 0.2, 0.2]}})
    with pytest.raises(ConfigError, match="data.root_files"):
        parse_config({"data": {"source": "root"}})
    with pytest.raises(ConfigError, match="data.synth.eta_range"):
        parse_config({"data": {"synth": {"eta_range": [1.2, 2.0]}}})
    with pytest.raises(ConfigError, match="data.layers"):
        parse_config({"data": {"layers": [29]}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"data": {"synth": {"pileup": {"rate": 1}}}})


def test_bench_hook(tmp_path):
    cfg = parse_config({"data": {"n_events": 20, "chunk_size": 10}})
    r = data.bench(cfg, tmp_path, min_seconds=0.2)
    for k in ("data_generate_wafers_per_s", "data_generate_and_write_wafers_per_s",
              "data_read_wafers_per_s"):
        assert isinstance(r[k], float) and r[k] > 0
