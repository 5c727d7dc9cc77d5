"""convert stage: golden vectors (contract, corner set), hls4ml projects, failure handling.

The upstream stages (data, emd, autoencoder) are fabricated: fake stage
modules run through the real runner write a small test split and a
random-weight QKeras encoder, so the manifests are genuine.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_stage

from flow.convert.stage import BOUNDARY_SUMS, boundary_words, corner_words
from flow.core import encoder as E
from flow.core.dataset import NPZ_DTYPES
from flow.core.encoder_file import write_encoder
from flow.core.fixedpoint import FixedFormat
from flow.core.frontend import FrontEnd, encode_sum
from flow.core.hls import accum_format, convert_backend, layer_formats, run_logged
from flow.core.vectors import KIND, KIND_NAMES, VECTOR_DTYPES, check_vectors, golden_vectors
from flow.core.vectors import read_vectors as load_vectors
from flow.runner import config as C
from flow.runner.errors import ConfigError, DataFormatError, FlowError
from flow.runner.manifest import sha256_file
from flow.runner.stages import run_stage

N_TEST = 1500
WEIGHT_SEED = 11
SETTINGS = {
    "convert": {"n_random": 800, "n_sparse": 800, "onehot_words": [1, 7, 8, 9, 63, 64, 100, 127],
                "alt_max_vectors": 1500, "tb_vectors": 10},
}


# ------------------------------------------------------- fabricated upstream


def _fake_data(ctx):
    s = ctx.settings
    rng = np.random.default_rng(5)
    occ = rng.random((N_TEST, 1)) * 0.5
    words = (rng.integers(0, 128, (N_TEST, 48)) * (rng.random((N_TEST, 48)) < occ)).astype(np.uint8)
    words[0] = 0
    words[1, :5] = 255                         # a wafer without words: must be skipped
    fe = FrontEnd(s.drop, (s.calvalue,) * 48)
    ok = np.all(words <= 127, axis=1)
    aein = np.zeros((N_TEST, 48), dtype=np.uint8)
    sums = np.zeros(N_TEST, dtype=np.uint16)
    aein[ok], sums[ok] = fe(words[ok])
    arrays = {k: np.zeros(N_TEST, dtype=dt) for k, dt in NPZ_DTYPES.items()}
    arrays.update(words=words, aein=aein, sum_code=sums, calq=np.zeros((N_TEST, 48), np.int32))
    np.savez(ctx.out / "test.npz", **arrays)


def _fake_emd(ctx):
    (ctx.out / "emd.txt").write_text("fake\n")


def _fake_autoencoder(ctx):
    model = E.build_qkeras_encoder(ctx.settings.latent_bits)
    w = E.EncoderWeights.random(WEIGHT_SEED)
    w.set_keras(model)
    model.save(ctx.out / "encoder.h5")
    write_encoder(ctx.out, w, ctx.settings.latent_bits)        # weights.bin + encoder.json
    (ctx.out / "weights.mem").write_text(w.to_mem())
    np.savez(ctx.out / "weights.npz", conv_w=w.conv_w, conv_b=w.conv_b, dense_w=w.dense_w,
             dense_b=w.dense_b)


def make_cfg(workdir, **sections):
    data = {"name": "t", "workdir": str(workdir), "seed": 3, **SETTINGS}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return C.parse_config(data)


def fabricate_upstream(cfg):
    """Run fake data/emd/autoencoder stages through the real runner."""
    with pytest.MonkeyPatch.context() as mp:
        for name, body in (("data", _fake_data), ("emd", _fake_emd), ("autoencoder", _fake_autoencoder)):
            fake_stage(mp, name, body)
            run_stage(cfg, name, echo=lambda *a: None)


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """A run with fabricated upstream stages and the real convert stage (both backends)."""
    cfg = make_cfg(tmp_path_factory.mktemp("conv"))
    fabricate_upstream(cfg)
    man = run_stage(cfg, "convert", echo=lambda *a: None)
    return cfg, man


# ------------------------------------------------------------- corner set
def test_corner_set_content():
    rng = np.random.default_rng(0)
    words, kind = corner_words(rng, n_random=300, n_sparse=200, onehot_words=[1, 127])
    assert words.dtype == np.uint8 and kind.dtype == np.uint8 and words.shape == (len(kind), 48)
    counts = {n: int((kind == i).sum()) for i, n in enumerate(KIND_NAMES)}
    assert counts == {"test_wafer": 0, "all_zero": 1, "one_hot": 96, "all_max": 1, "random_full": 300,
                      "random_sparse": 200, "uniform": 126, "sum_boundary": 0}
    assert not words[kind == KIND["all_zero"]].any()
    assert (words[kind == KIND["all_max"]] == 127).all()
    oh = words[kind == KIND["one_hot"]].astype(int)
    assert ((oh > 0).sum(1) == 1).all()
    assert sorted(zip(oh.argmax(1).tolist(), oh.max(1).tolist(), strict=True)) == sorted(
        (p, w) for w in (1, 127) for p in range(48))
    uni = words[kind == KIND["uniform"]]
    assert (uni == uni[:, :1]).all() and sorted(uni[:, 0].tolist()) == list(range(1, 127))
    full = words[kind == KIND["random_full"]]
    assert full.max() == 127 and full.min() == 0 and (full > 0).mean() > 0.9
    sparse = words[kind == KIND["random_sparse"]]
    assert (sparse > 0).mean() < 0.2 and sparse.max() <= 127
    # default: every word value at every position
    w_all, k_all = corner_words(rng, n_random=0, n_sparse=0)
    assert (k_all == KIND["one_hot"]).sum() == 48 * 127


# ---------------------------------------------- sums around the shift saturation
def _ref_calq_sums(words, drop, cal):
    """CALQ sums from docs/reference.md section 4 in plain Python ints (no flow code)."""
    out = []
    for row in np.asarray(words).tolist():
        total = 0
        for w, c in zip(row, cal, strict=True):
            e, m = w >> 3, w & 7
            d = (m if e == 0 else (8 + m) << (e - 1)) << drop
            sh = drop + max(e - 1, 0)
            d += (1 << (sh - 1)) if sh > 0 else 0
            total += d * int(c) >> 11
        out.append(total)
    return out


def test_boundary_words_hit_2_22_exactly_where_reachable():
    # drop 1, random calibration: every target sum is reachable
    cal = np.random.default_rng(1).integers(1, 4096, 48)
    bw = boundary_words(FrontEnd(1, tuple(cal.tolist())))
    assert bw.dtype == np.uint8 and bw.shape[1] == 48 and bw.max() <= 127
    assert sorted(set(_ref_calq_sums(bw, 1, cal.tolist()))) == [2 ** 22 - 1, 2 ** 22, 2 ** 22 + 1]
    assert BOUNDARY_SUMS == (2 ** 22 - 1, 2 ** 22, 2 ** 22 + 1)


def test_boundary_words_default_registers_bracket_the_boundary():
    # drop 3, unity calibration: every CALQ is a multiple of 4, so the nearest sums are
    # 2^22 - 4 and 2^22 + 4 around the exact 2^22
    bw = boundary_words(FrontEnd(3))
    assert sorted(set(_ref_calq_sums(bw, 3, [2048] * 48))) == [2 ** 22 - 4, 2 ** 22, 2 ** 22 + 4]


def test_golden_vectors_follow_the_python_chain():
    rng = np.random.default_rng(1)
    words, kind = corner_words(rng, n_random=200, n_sparse=200, onehot_words=[5, 127])
    w = E.EncoderWeights.random(2)
    cal = rng.integers(0, 4096, 48)
    v = golden_vectors(words, kind, w, drop=1, calvalues=cal, latent_bits=9)
    assert check_vectors(v) == len(words)
    aein, s = FrontEnd(1, tuple(cal.tolist()))(words)
    np.testing.assert_array_equal(v["aein"], aein)
    np.testing.assert_array_equal(v["sum_code"], s)
    np.testing.assert_array_equal(v["latent"], E.golden_encode(aein, w))
    assert v["drop"].shape == () and int(v["drop"]) == 1
    assert list(v["kind_names"]) == list(KIND_NAMES)
    # one-hot wafers: the module sum of their CALQ (a zero word still decodes to the half LSB)
    for i in np.flatnonzero(kind == KIND["one_hot"]):
        calq = FrontEnd(1, tuple(cal.tolist())).calq(words[i])
        assert v["sum_code"][i] == encode_sum(calq.sum())
        assert v["aein"][i].argmax() == calq.argmax()


def test_check_vectors_rejects_contract_violations():
    w = E.EncoderWeights.random(0)
    v = golden_vectors(np.zeros((3, 48), np.uint8), np.ones(3, np.uint8), w, drop=3,
                       calvalues=np.full(48, 2048), latent_bits=9)
    bad = dict(v, latent=v["latent"].astype(np.int32))
    with pytest.raises(DataFormatError, match="latent expected uint16"):
        check_vectors(bad)
    with pytest.raises(DataFormatError, match="missing arrays"):
        check_vectors({k: a for k, a in v.items() if k != "kind"})


# -------------------------------------------------------------- precisions
def test_accumulator_formats_are_exact_bounds():
    f = layer_formats(9)
    assert f["conv"]["accum"] == FixedFormat(18, 6, True)
    assert f["dense"]["accum"] == FixedFormat(21, 9, True)
    assert f["input_q"]["result"] == E.INPUT_FMT and f["latent"]["result"] == E.latent_format(9)
    # brute force on a tiny case: 2 terms of ufixed<3,1> x fixed<3,1> + fixed<3,1>
    x, wf = FixedFormat(3, 1, False), FixedFormat(3, 1, True)
    acc = accum_format(2, x, wf, wf)
    sums = [(a * p + b * q) + (c << 2) for a in range(8) for b in range(8) for p in range(-4, 4)
            for q in range(-4, 4) for c in range(-4, 4)]
    assert acc.frac_bits == 4 and acc.min_code <= min(sums) and max(sums) <= acc.max_code
    assert FixedFormat(acc.width - 1, acc.int_bits - 1, True).min_code > min(sums)


# ----------------------------------------------------------- failure modes
def test_child_abort_is_a_clear_flow_error(tmp_path):
    log = tmp_path / "abort.log"
    with pytest.raises(FlowError) as err:
        run_logged([sys.executable, "-c", "print('working on it', flush=True); import os; os.abort()"],
                   log, "a conversion that aborts")
    msg = str(err.value)
    assert "a conversion that aborts failed" in msg and "SIGABRT" in msg and "assert" in msg
    assert str(log) in msg and "working on it" in msg and log.is_file()
    with pytest.raises(FlowError, match=r"timed out after 1 s"):
        run_logged([sys.executable, "-c", "import time; time.sleep(30)"], log, "a slow child", timeout=1)
    with pytest.raises(FlowError, match="exited with status 3"):
        run_logged([sys.executable, "-c", "import sys; print('bad'); sys.exit(3)"], log, "x")


def test_broken_model_gives_flow_error(tmp_path):
    bad = tmp_path / "encoder.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    settings = C.parse_config({}).convert
    with pytest.raises(FlowError) as err:
        convert_backend("Vitis", model=bad, weights_image=None, projects_dir=tmp_path / "prj",
                        settings=settings, latent_bits=9, log=tmp_path / "convert.log")
    msg = str(err.value)
    assert "hls4ml conversion for the Vitis backend failed" in msg and str(tmp_path / "convert.log") in msg
    assert "last lines" in msg and (tmp_path / "convert.log").is_file()


def test_invalid_conversion_settings_are_config_errors():
    for bad in ({"reuse_factor": 0}, {"backends": ["Quartus"]}, {"backends": []},
                {"onehot_words": [128]}, {"io_type": "io_stream"}):
        with pytest.raises(ConfigError, match="convert"):
            C.parse_config({"convert": bad})


# ------------------------------------------------------------- the stage
def test_stage_writes_vectors_contract(converted):
    cfg, man = converted
    out = cfg.stage_dir("convert")
    v = load_vectors(out / "vectors.npz")
    for k, dt in VECTOR_DTYPES.items():
        assert v[k].dtype == dt
    n = len(v["words"])
    assert v["words"].shape == (n, 48) and v["latent"].shape == (n, 16) and v["drop"].shape == ()
    assert int(v["drop"]) == cfg.data.drop and (v["calvalues"] == cfg.data.calvalue).all()
    meta = json.loads((out / "vectors_meta.json").read_text())
    counts = meta["files"]["vectors.npz"]["counts"]
    # every usable test wafer is there (wafer 1 has no words), after the corner set
    assert counts["test_wafer"] == N_TEST - 1 and meta["test_set"]["skipped_no_words"] == 1
    assert counts["one_hot"] == 48 * 8 and counts["random_full"] == 800 and counts["all_max"] == 1
    # sums at 2^22 - 4, 2^22 (twice) and 2^22 + 4 under the run's registers (drop 3, unity)
    assert counts["sum_boundary"] >= 3
    fe = FrontEnd(cfg.data.drop, (cfg.data.calvalue,) * 48)
    bsums = fe.calq(v["words"][v["kind"] == KIND["sum_boundary"]])
    assert {int(x) - 2 ** 22 for x in bsums.sum(-1)} == {-4, 0, 4}
    kinds = v["kind"]
    assert (kinds[: n - counts["test_wafer"]] != KIND["test_wafer"]).all()
    test = np.load(cfg.stage_dir("data") / "test.npz")
    np.testing.assert_array_equal(v["words"][kinds == 0], np.delete(test["words"], 1, axis=0))
    # expected values recomputed independently of the stage
    w = E.EncoderWeights.random(WEIGHT_SEED)
    aein, s = FrontEnd(cfg.data.drop, (cfg.data.calvalue,) * 48)(v["words"])
    np.testing.assert_array_equal(v["aein"], aein)
    np.testing.assert_array_equal(v["sum_code"], s)
    np.testing.assert_array_equal(v["latent"], E.golden_encode(aein, w))
    assert meta["weights_sha256"] == sha256_file(cfg.stage_dir("autoencoder") / "weights.bin")
    assert meta["formats"]["latent"] == "ap_ufixed<9,1,AP_RND_CONV,AP_SAT>"
    # the extra register set: other drop, random registers with the extremes
    alt = load_vectors(out / "vectors_regs1.npz")
    assert int(alt["drop"]) == 1 and alt["calvalues"][0] == 0 and alt["calvalues"][1] == 4095
    # its boundary wafers are searched for its own registers
    afe = FrontEnd(1, tuple(int(c) for c in alt["calvalues"]))
    abs_ = afe.calq(alt["words"][alt["kind"] == KIND["sum_boundary"]])
    assert {int(x) - 2 ** 22 for x in abs_.sum(-1)} == {-1, 0, 1}
    assert len(alt["words"]) == 1500
    assert set(man["metrics"]["n_vectors"]) == {"vectors.npz", "vectors_regs1.npz"}


def test_stage_writes_both_projects(converted):
    cfg, man = converted
    prj = cfg.stage_dir("convert") / "hls_projects"
    for b in ("Vitis", "Catapult"):
        p = prj / b
        for f in ("README.md", "build_prj.tcl", "firmware/myproject.cpp", "firmware/econt_top.cpp",
                  "firmware/econt_frontend.h", "firmware/econt_params.h", "econt_csim_tb.cpp",
                  "build_econt_csim.sh", "econt_project.json", "tb_data/tb_input_features.dat"):
            assert (p / f).is_file(), f"{b}: {f}"
        text = (p / "firmware" / "defines.h").read_text()
        readme = (p / "README.md").read_text()
        assert "fixed<18,6" in readme and "fixed<21,9" in readme
        assert ("vitis-run" if b == "Vitis" else "catapult -product ultra") in readme
        if b == "Vitis":
            assert "typedef ap_ufixed<8,1> input_t;" in text
            assert "ap_fixed<21,9> dense_accum_t" in text
            assert "load_weights" not in (p / "firmware" / "myproject.cpp").read_text()
        else:
            assert "ac_fixed<8,1,false> input_t" in text
            assert not list((p / "firmware" / "weights").glob("*.txt"))
            assert "extern" not in (p / "firmware" / "weights" / "w3.h").read_text()
            assert "load_weights" not in (p / "firmware" / "myproject.cpp").read_text()
        assert not (prj / f"{b}.tar.gz").exists()
        assert "linear" not in (p / "firmware" / "myproject.cpp").read_text().split("// input_q", 1)[1]
    assert (cfg.stage_dir("convert") / "logs" / "convert_Vitis.log").is_file()
    assert set(man["metrics"]["convert_s"]) == {"Vitis", "Catapult"}
    projects = json.loads((cfg.stage_dir("convert") / "projects.json").read_text())["projects"]
    assert all("link" not in p for p in projects.values())     # the stage writes only its directory


def test_conversion_rejects_weights_that_disagree_with_the_model(converted, tmp_path):
    """The encoder.h5 weights must be the register image's (checked in the child process)."""
    cfg, _ = converted
    ae = cfg.stage_dir("autoencoder")
    other = E.EncoderWeights.random(WEIGHT_SEED + 1)
    settings = cfg.convert
    (tmp_path / "w.bin").write_bytes(other.to_image())
    with pytest.raises(FlowError, match=r"differ from the register image .*w\.bin"):
        convert_backend("Vitis", model=ae / "encoder.h5", weights_image=tmp_path / "w.bin",
                        projects_dir=tmp_path / "prj", settings=settings, latent_bits=9,
                        log=tmp_path / "c.log")
    assert "ERROR: the encoder model's quantized weights differ" in Path(tmp_path / "c.log").read_text()
