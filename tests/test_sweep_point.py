"""The hardware side of a co-design sweep point (issue 18) on a small non-ECON-T encoder: RTL,
bit-exact cosimulation through the shipped testbench, latency and Yosys area."""
import numpy as np
import pytest

from flow.core import encoder as E
from flow.core.tb_sets import corner_words, random_words
from flow.runner import config as C

QUIET = {"echo": lambda *a, **k: None}


def _words(seed=4, n=600):
    rng = np.random.default_rng(seed)
    w = np.concatenate([corner_words(rng)[:200], random_words(rng, n)])
    return w, np.zeros(len(w), dtype=np.uint8)


def _settings(**kw):
    cs = C.CosimConfig(min_wafers=0, bubbles=200, reload=200, first_mismatches=5, verilator_opt="-O0", **kw)
    return C.RtlConfig(yosys_check=False), cs


@pytest.mark.slow
def test_hardware_of_a_point_is_bit_exact_and_has_an_area(tmp_path):
    from flow.sweep.point import hardware

    arch = E.EncoderArch(4, 5, 6)
    w = E.EncoderWeights.random(21, arch)
    words, kind = _words()
    rs, cs = _settings(yosys=["generic", "sky130"])
    rec = hardware(tmp_path, w, 3, words, kind, calvalues=[2048] * 48, drop=3, rtl_settings=rs,
                   cosim_settings=cs, seed=2, **QUIET)
    r = rec["flavours"]["prog"]
    assert rec["n_mismatch"] == 0 and rec["n_total"] >= len(words), r["first_mismatches"]
    assert r["tests_passed"] and r["latency_cycles"] == 2 and r["ii_cycles"] == 1
    assert rec["arch"] == arch.to_dict() and rec["latent_bits"] == 3
    assert r["generic_gates"] > 1000 and r["area_um2_sky130"] > 1000
    assert r["sequential_area_um2_sky130"] > 0 and rec["yosys_version"]


@pytest.mark.slow
def test_a_wrong_expectation_is_counted_not_hidden(tmp_path, monkeypatch):
    """The point's cosim compares with its golden vectors: a flipped expected bit is a mismatch."""
    from flow.sweep import point

    real = point.golden_vectors

    def wrong(*a, **k):
        v = real(*a, **k)
        v["latent"][5, 0] ^= 1
        return v

    monkeypatch.setattr(point, "golden_vectors", wrong)
    arch = E.EncoderArch(2, 4, 6)
    words, kind = _words(5, 200)
    rs, cs = _settings(yosys=[])
    rec = point.hardware(tmp_path, E.EncoderWeights.random(3, arch), 5, words, kind, calvalues=[2048] * 48,
                         drop=3, rtl_settings=rs, cosim_settings=cs, seed=1, **QUIET)
    r = rec["flavours"]["prog"]
    assert rec["n_mismatch"] >= 1 and not r["tests_passed"]
    assert r["first_mismatches"] and "area_um2_sky130" not in r


@pytest.mark.slow
def test_csim_of_a_point_is_bit_exact(tmp_path):
    """The point's hls4ml project (Vitis) simulated on its vectors: 0 mismatches; a vector file
    with a flipped expected bit is counted."""
    from flow.core.vectors import golden_vectors, write_vectors
    from flow.sweep.point import csim

    arch = E.EncoderArch(4, 5, 6)
    w = E.EncoderWeights.random(8, arch)
    model = E.build_qkeras_encoder(3, arch=arch)
    w.set_keras(model)
    model.save(tmp_path / "encoder.h5")
    words, kind = _words(6, 800)
    v = golden_vectors(words, kind, w, drop=3, calvalues=[2048] * 48, latent_bits=3)
    write_vectors(tmp_path / "v.npz", v)
    v["latent"][7, 3] ^= 1
    write_vectors(tmp_path / "bad.npz", v)
    cfg = C.load_config("configs/smoke.yaml")
    rec = csim(tmp_path / "p", tmp_path / "encoder.h5", w, 3, tmp_path / "v.npz",
               convert_settings=cfg.convert, csim_settings=cfg.csim)
    assert rec["n_total"] == len(words) and rec["n_mismatch"] == 0, rec["first_mismatches"]
    from flow.core.csim import check_project

    rep = check_project(tmp_path / "p/hls/Vitis", {"bad.npz": tmp_path / "bad.npz"}, tmp_path / "c2",
                        cfg.csim)
    assert rep["n_mismatch"] == 1 and rep["first_mismatches"][0]["index"] == 7


def test_physics_of_a_point_on_a_tiny_sample(tmp_path):
    """A 4-bit-latent encoder (no eLink budget has that width) of another architecture through
    the physics chain: finite figures, the same on a rerun; the decoded module sums carry the
    energy, so a decoder that only spreads it uniformly still finds electrons."""
    from flow.core.dataset import read_split, split_file
    from flow.core.generator import detector_from
    from flow.runner.config import load_config
    from flow.runner.stages import run_stage
    from flow.sweep.point import physics

    cfg = load_config("configs/smoke.yaml", [
        f"workdir={tmp_path}", "data.n_events=60", "data.n_files=1", "data.chunk_size=60",
        "physics.n_boot=20", "physics.min_per_eta_bin=5", "physics.emd_wafers=200"])
    run_stage(cfg, "data", echo=lambda *a: None)
    d = cfg.stage_dir("data")
    train, test = read_split(d / split_file("train")), read_split(d / split_file("test"))
    arch = E.EncoderArch(2, 4, 6)
    uniform = lambda lat: np.ones((len(lat), 48))  # noqa: E731
    kw = dict(train=train, test=test, detector=detector_from(cfg.data), settings=cfg.physics, seed=3)
    r = physics(E.EncoderWeights.random(1, arch), 4, uniform, **kw)
    assert r["n_emd_wafers"] == min(200, len(test["calq"])) and r["median_emd"] > 0
    assert 0 < r["efficiency"] <= 1 and r["resolution"] > 0 and r["resolution_err"] >= 0
    again = physics(E.EncoderWeights.random(1, arch), 4, uniform, **kw)
    assert {k: v for k, v in again.items() if k != "physics_s"} == \
        {k: v for k, v in r.items() if k != "physics_s"}
