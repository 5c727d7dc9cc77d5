"""Stage ``emd``: exact EMD (POT), Ray labelling, pair datasets, the EMD CNN."""
from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import shutil
import time

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from flow.core.emd_cnn import Arch, TrainingInterrupted, TrainParams, emd_loss, tc_to_b_tf  # noqa: E402
from flow.core.emd_exact import EmptyWaferError, emd, emd_pairs, label_pairs, normalise, ray_session  # noqa: E402
from flow.core.emd_pairs import make_ae_pairs, sample_pairs, split_wafers  # noqa: E402
from flow.core.geometry import TC_ROC, ground_distance, to_4x4x3, to_8x8  # noqa: E402
from flow.emd import stage as E  # noqa: E402
from flow.runner import config as C  # noqa: E402
from flow.runner.atomic import replace_dir  # noqa: E402
from flow.runner.manifest import StageContext, finish, verify  # noqa: E402
from flow.runner.stages import run_stage  # noqa: E402

M = ground_distance()
# keras' layer construction calls random.randint with a float (not this code's)
pytestmark = pytest.mark.filterwarnings("ignore:non-integer arguments to randrange:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _tf_one_thread():
    E.set_tf_threads(1)


def random_wafers(n: int, rng: np.random.Generator, max_hits: int = 15) -> np.ndarray:
    x = np.zeros((n, 48))
    for row in x:
        k = rng.integers(1, max_hits + 1)
        row[rng.choice(48, k, replace=False)] = rng.exponential(1.0, k)
    return x


def fake_shower_wafers(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shower-like wafers with the data stage's arrays (calq, aein, occupancy, ...)."""
    centre = rng.integers(0, 48, n)
    amp = rng.lognormal(6.0, 1.2, n)
    lam = rng.uniform(1.5, 4.0, n)
    q = amp[:, None] * np.exp(-M[centre] / lam[:, None]) + rng.exponential(8.0, (n, 48))
    q *= rng.random((n, 48)) < 0.6
    calq = np.floor(q * (q > 20)).astype(np.int32)
    s = calq.sum(1).astype(np.int64)
    k = np.floor(np.log2(np.maximum(s, 1))).astype(np.int64)
    aein = np.minimum(np.floor(128 * calq / (2.0 ** k)[:, None]), 255).astype(np.uint8)
    eta = rng.uniform(1.6, 3.0, n).astype(np.float32)
    occ = ((calq > 35).sum(1) / np.cosh(eta)).astype(np.int16)
    return {"calq": calq, "aein": aein, "eta": eta, "occupancy": occ,
            "event": np.arange(n, dtype=np.int64) // 20}


def make_data_artifact(cfg, n_wafers: int = 1500, seed: int = 0) -> None:
    """A valid ``data`` artifact for ``cfg``: the real data stage if it is built, else fabricated."""
    if importlib.util.find_spec("flow.data.stage") is not None:
        run_stage(cfg, "data", echo=lambda *a: None)
        return
    rng = np.random.default_rng(seed)
    final = cfg.stage_dir("data")
    tmp = final.with_name(".data.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for sp, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        w = fake_shower_wafers(int(n_wafers * frac), rng)
        w["calq"][:3] = 0  # a few empty wafers: must be skipped by the pair sampler
        w["aein"][:3] = 0
        np.savez(tmp / f"{sp}.npz", **w)
    ctx = StageContext(cfg=cfg, stage="data", out=tmp, upstream={},
                       checkpoint_dir=cfg.run_dir / ".checkpoints" / "data")
    finish(ctx, time.time(), _dt.datetime.now(_dt.UTC).isoformat())
    replace_dir(tmp, final)


@pytest.fixture(scope="module")
def ray_up():
    with ray_session(num_cpus=2) as n:
        yield n


# ---------------------------------------------------------------- exact EMD


def test_identical_wafers_have_zero_emd():
    rng = np.random.default_rng(1)
    for x in random_wafers(20, rng):
        assert emd(x, x) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("roc", [0, 1, 2])
def test_unit_charge_moved_costs_the_ground_distance(roc):
    cells = np.flatnonzero(TC_ROC == roc)
    sub = M[np.ix_(cells, cells)] + np.eye(len(cells)) * 1e9
    i, j = np.unravel_index(np.argmin(sub), sub.shape)
    a, b = np.zeros(48), np.zeros(48)
    a[cells[i]] = 1.0
    b[cells[j]] = 5.0  # scale does not matter
    d = emd(a, b)
    assert d == pytest.approx(M[cells[i], cells[j]], rel=1e-12)
    # geometry.json: neighbours inside every ROC are 2.0 apart (coordinates rounded to 1e-6)
    assert d == pytest.approx(2.0, abs=1e-4)
    # half the charge moved: half the distance
    c = np.zeros(48)
    c[cells[i]] = c[cells[j]] = 1.0
    assert emd(a, c) == pytest.approx(M[cells[i], cells[j]] / 2, rel=1e-12)


def test_closest_cells_across_rocs():
    # the 1.80 quoted in docs/reference.md section 1 is the distance across a ROC boundary (e.g. TC 0 and 31)
    a, b = np.zeros(48), np.zeros(48)
    a[0], b[31] = 1.0, 1.0
    assert emd(a, b) == pytest.approx(M[0, 31], rel=1e-12)
    assert emd(a, b) == pytest.approx(1.8028, abs=1e-4)
    off = M + np.eye(48) * 99
    assert off.min() == pytest.approx(M[0, 31], abs=1e-4)


def test_symmetry_scale_invariance_and_pot_agreement():
    import ot

    rng = np.random.default_rng(2)
    a, b = random_wafers(50, rng), random_wafers(50, rng)
    ab = emd_pairs(a, b)
    np.testing.assert_allclose(ab, emd_pairs(b, a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ab, emd_pairs(7.5 * a, 0.01 * b), rtol=0, atol=1e-12)
    ref = [ot.emd2(x / x.sum(), y / y.sum(), M) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ab, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ab, emd_pairs(a, b, solver="emd2"), rtol=0, atol=1e-12)
    assert np.all(ab > 0) and np.all(ab <= M.max() + 1e-12)
    # integer codes (aein) are accepted and normalised the same way
    q = np.floor(a * 40).astype(np.uint8)
    q[:, 0] += 1
    np.testing.assert_allclose(emd_pairs(q, b), emd_pairs(q.astype(float), b), atol=0)


def test_empty_wafer_raises_naming_it_or_gives_nan():
    rng = np.random.default_rng(3)
    x = random_wafers(1, rng)[0]
    with pytest.raises(EmptyWaferError, match="wafer a .*all-zero"):
        emd(np.zeros(48), x)
    with pytest.raises(EmptyWaferError, match="wafer b .*all-zero"):
        emd(x, np.zeros(48))
    a, b = random_wafers(6, rng), random_wafers(6, rng)
    b[3] = 0
    with pytest.raises(EmptyWaferError, match=r"wafer b at batch index \[3\]"):
        emd_pairs(a, b)
    with pytest.raises(EmptyWaferError):
        label_pairs(a, b, use_ray=False, progress=False)
    out = emd_pairs(a, b, empty="nan")
    assert np.isnan(out[3]) and np.all(np.isfinite(np.delete(out, 3)))
    assert not np.any(out < 0)  # no sentinels
    with pytest.raises(ValueError, match="negative"):
        emd(-x, x)


def test_ae_pairs_nan_policy():
    rng = np.random.default_rng(4)
    x, y = random_wafers(5, rng), random_wafers(5, rng)
    y[2] = 0
    p = make_ae_pairs(x, y)
    assert np.isnan(p["emd"][2]) and np.isfinite(np.delete(p["emd"], 2)).all()
    np.testing.assert_allclose(p["a"].sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(p["emd"], 2), emd_pairs(np.delete(x, 2, 0), np.delete(y, 2, 0)))
    with pytest.raises(EmptyWaferError, match="autoencoder output at batch index"):
        make_ae_pairs(x, y, empty="raise")


def test_ray_labelling_equals_serial(ray_up):
    rng = np.random.default_rng(5)
    a, b = random_wafers(3000, rng), random_wafers(3000, rng)
    serial = emd_pairs(a, b)
    par = label_pairs(a, b, use_ray=True, chunk_pairs=700, progress=False)
    assert np.array_equal(serial, par)
    b[1234] = 0
    par = label_pairs(a, b, use_ray=True, chunk_pairs=700, progress=False, empty="nan")
    assert np.isnan(par[1234]) and np.array_equal(np.delete(par, 1234), np.delete(serial, 1234))


def test_pair_split_shares_no_wafer():
    rng = np.random.default_rng(6)
    tr, va = split_wafers(1000, 0.3, rng)
    assert len(va) == 300 and len(tr) == 700 and not set(tr) & set(va)
    i, j = sample_pairs(tr, 5000, rng)
    k, m = sample_pairs(va, 2000, rng)
    assert set(i) | set(j) <= set(tr) and set(k) | set(m) <= set(va)
    assert np.all(i != j) and np.all(k != m)


# ---------------------------------------------------------------- EMD CNN


TINY = Arch(filters=4, kernel=3, n_conv=2, dense=16)


def test_cnn_is_symmetric_and_reloads_identically(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    a, b = normalise(random_wafers(64, rng)), normalise(random_wafers(64, rng))
    model = E.build_emd_cnn(Arch(filters=8, kernel=5, n_conv=3, dense=32), output_scale=3.0)
    model.compile("adam", "mse")
    xa, xb = E.to_inputs(a, b)
    model.fit([xa, xb], rng.random(64), epochs=1, verbose=0)  # non-trivial BN statistics
    pab, pba = E.predict(model, a, b), E.predict(model, b, a)
    np.testing.assert_allclose(pab, pba, rtol=1e-6, atol=1e-6)
    path = E.save_emd_cnn(model, tmp_path / "emd_cnn.keras")
    info = json.loads((tmp_path / "emd_cnn.json").read_text())
    assert [i["shape"] for i in info["inputs"]] == [[None, 4, 4, 3]] * 2
    loaded = E.load_emd_cnn(path)
    assert np.array_equal(model.predict([xa, xb], verbose=0), loaded.predict([xa, xb], verbose=0))
    # the loss: TC-order tensors of any scale, normalised and reordered in TF
    loss = emd_loss(loaded)
    got = loss(tf.constant(a * 9.0, tf.float32), tf.constant(b, tf.float32)).numpy()
    assert got.shape == (64,)
    np.testing.assert_allclose(got, pab, rtol=1e-5, atol=1e-5)
    img = loss_8x8 = emd_loss(loaded, layout="8x8")
    got8 = img(tf.constant(to_8x8(a)[..., None], tf.float32), tf.constant(to_8x8(b), tf.float32)).numpy()
    np.testing.assert_allclose(got8, pab, rtol=1e-5, atol=1e-5)
    yp = tf.Variable(b, dtype=tf.float32)
    with tf.GradientTape() as tape:
        val = tf.reduce_mean(loss_8x8(tf.constant(to_8x8(a), tf.float32), tf.reshape(
            tf.gather(tf.concat([yp, tf.zeros((64, 1))], 1), _inv_8x8(), axis=1), (64, 8, 8))))
    g = tape.gradient(val, yp)
    assert g is not None and np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0)
    assert not loaded.trainable_weights
    # the encoding-B reorder in TF is geometry.to_4x4x3
    np.testing.assert_array_equal(tc_to_b_tf(tf.constant(a)).numpy(), to_4x4x3(a))


def _inv_8x8():
    from flow.core.geometry import REMAP_8X8

    inv = np.full(64, 48)  # dead positions -> the appended zero column
    inv[REMAP_8X8] = np.arange(48)
    return inv


def test_training_resumes_from_checkpoint(tmp_path):
    rng = np.random.default_rng(8)
    a, b = normalise(random_wafers(600, rng)), normalise(random_wafers(600, rng))
    y = emd_pairs(a, b).astype(np.float32)
    tr = (*E.to_inputs(a[:500], b[:500]), y[:500])
    va = (*E.to_inputs(a[500:], b[500:]), y[500:])
    p = TrainParams(epochs=4, batch_size=64, patience=10)  # cosine schedule: a function of the epoch
    kw = dict(seed=3, params=p, output_scale=float(y.mean()))
    m1, s1 = E.train_model(TINY, tr, va, tmp_path / "a", **kw)
    with pytest.raises(TrainingInterrupted):
        E.train_model(TINY, tr, va, tmp_path / "b", stop_after=2, **kw)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 2
    logs = []
    m2, s2 = E.train_model(TINY, tr, va, tmp_path / "b", log=logs.append, **kw)
    assert any("resuming after epoch 2" in s for s in logs)
    assert [h["val_loss"] for h in s1["history"]] == [h["val_loss"] for h in s2["history"]]
    for w1, w2 in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    # a finished training is not redone
    logs.clear()
    E.train_model(TINY, tr, va, tmp_path / "b", log=logs.append, **kw)
    assert not any("loss" in s for s in logs)


# ---------------------------------------------------------------- the stage


def _tiny_cfg(tmp_path, ray: bool):
    return C.parse_config({
        "name": "emdtest", "workdir": str(tmp_path), "seed": 3,
        "data": {"n_events": 20, "n_files": 1, "chunk_size": 20},
        "emd": {"n_pairs": 1200, "n_test_pairs": 300, "epochs": 2, "batch_size": 128,
                "ray": {"enabled": ray, "num_cpus": 2, "chunk_pairs": 400}, "progress": False,
                "grid": {"filters": [4], "kernel": [3], "n_conv": [1, 2], "dense": [16],
                         "epochs": 2, "train_pairs": 500}},
    })


def test_stage_end_to_end(tmp_path, ray_up):
    cfg = _tiny_cfg(tmp_path, ray=True)
    make_data_artifact(cfg)
    man = run_stage(cfg, "emd", echo=lambda *a: None)
    out = cfg.stage_dir("emd")
    for f in ("pairs_train.npz", "pairs_val.npz", "pairs_test.npz", "emd_cnn.keras", "emd_cnn.json",
              "eval.json", "grid.json", "history.json", "plots/rel_diff.png", "plots/pred_vs_true.png",
              "plots/resolution_vs_emd.png", "plots/resolution_vs_occupancy.png", "plots/captions.json"):
        assert f in man["outputs"], f
    verify(cfg, "emd")
    tr, va = np.load(out / "pairs_train.npz"), np.load(out / "pairs_val.npz")
    assert len(tr["emd"]) == 840 and len(va["emd"]) == 360
    assert not (set(tr["ia"]) | set(tr["ib"])) & (set(va["ia"]) | set(va["ib"]))
    np.testing.assert_allclose(tr["a"].sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(va["emd"][:50], emd_pairs(va["a"][:50].astype(float),
                                                         va["b"][:50].astype(float)), rtol=1e-5)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["test"]["relative"]["n"] > 0 and np.isfinite(ev["test"]["relative"]["std"])
    assert len(json.loads((out / "grid.json").read_text())["trials"]) == 2
    assert man["metrics"]["labels"]["cached"] is False
    # issue 14 item 7: op determinism on, the thread count and the CPU recorded
    assert man["host"]["tensorflow"]["op_determinism"] is True and man["host"]["cpu_model"]
    assert man["metrics"]["final_tf_threads"] in (None, cfg.emd.tf_threads or cfg.emd.ray.num_cpus
                                                  or os.cpu_count())
    model = E.load_emd_cnn(out / "emd_cnn.keras")
    assert model.predict(E.to_inputs(va["a"][:4], va["b"][:4]), verbose=0).shape == (4, 1)
    # rerun: labels and trainings come from the checkpoint directory, outputs identical
    man2 = run_stage(cfg, "emd", echo=lambda *a: None)
    assert man2["metrics"]["labels"]["cached"] is True
    for f in ("pairs_train.npz", "pairs_test.npz", "eval.json"):
        assert man2["outputs"][f]["sha256"] == man["outputs"][f]["sha256"], f
