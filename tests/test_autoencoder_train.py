"""The training rule of the autoencoder stage on tiny data: convergence flag, cap,
best-weight restore, resume, learning-rate scan, conditional decoder."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from flow.core import ae_model as M
from flow.core import encoder as E
from flow.core import training as T


def _settings(**kw):
    base = dict(latent_bits=9, epochs=40, batch_size=64, learning_rate=1e-3, lr_scan=[], lr_scan_wafers=200,
                lr_scan_epochs=1, lr_patience=3, early_stopping_patience=1, early_stopping_min_delta=0.5)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    n = 384
    aein = (rng.integers(0, 60, (n, 48)) * (rng.random((n, 48)) < 0.3)).astype(np.uint8)
    aein[:, 0] += 1                                   # no empty wafer
    return {"aein": aein, "sum_code": rng.integers(0, 511, n), "layer": rng.integers(1, 29, n),
            "eta": rng.uniform(1.6, 2.9, n).astype(np.float32)}


def _mse():
    import tensorflow as tf

    return tf.keras.losses.MeanSquaredError()


def _data(split, decoder="plain"):
    x, t = M.model_inputs(split, decoder)
    rest = x[256:] if decoder == "plain" else [a[256:] for a in x]
    return (T.subset(x, 256), t[:256]), (rest, t[256:])


def test_converges_by_the_relative_rule_and_restores_the_best_epoch(split, tmp_path):
    tr, va = _data(split)
    s = _settings()
    t = T.train_model(s, "weighted_mse", "plain", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / "m",
                      log=lambda *a: None)
    info = t.info
    assert info["stopped_early"] and info["converged"] and not info["diverged"]
    assert info["epochs_run"] < s.epochs and info["epochs_run"] == len(t.history)
    # patience 1: it stopped one epoch after its best epoch (1-based)
    assert info["epochs_run"] == info["best_epoch"] + 1
    vals = [float(r["val_loss"]) for r in t.history]
    assert info["best_val_loss"] == pytest.approx(vals[info["best_epoch"] - 1], rel=1e-6)
    # the restored weights are the best epoch's: evaluating them gives the best validation loss
    import tensorflow as tf

    model = tf.keras.Model(*_wire(t))
    model.compile(loss=_mse())
    got = model.evaluate(va[0], va[1], verbose=0, batch_size=s.batch_size)
    assert got == pytest.approx(info["best_val_loss"], rel=1e-4)
    # a second call finds the finished model and does not retrain
    logs = []
    t2 = T.train_model(s, "weighted_mse", "plain", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / "m",
                       log=logs.append)
    assert "finished earlier" in logs[0] and t2.info["epochs_run"] == info["epochs_run"]
    assert np.array_equal(E.EncoderWeights.from_keras(t2.enc).to_vector(),
                          E.EncoderWeights.from_keras(t.enc).to_vector())


def _wire(t):
    from tensorflow import keras

    from flow.core.ae_model import gather_tc

    inp = keras.Input((8, 8, 1))
    return inp, keras.layers.Lambda(gather_tc)(t.dec(t.enc(inp)))


def test_hitting_the_cap_is_not_converged(split, tmp_path):
    tr, va = _data(split)
    s = _settings(epochs=2, early_stopping_patience=5, early_stopping_min_delta=0.0)
    t = T.train_model(s, "weighted_mse", "plain", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / "cap",
                      log=lambda *a: None)
    assert t.info["epochs_run"] == 2 and t.info["epoch_cap"] == 2
    assert not t.info["stopped_early"] and not t.info["converged"]
    saved = json.loads((tmp_path / "cap" / "done.json").read_text())
    assert saved["stopped_early"] is False


def test_lr_scan_keeps_the_lowest_validation_loss_and_caches_it(split, tmp_path):
    tr, va = _data(split)
    s = _settings(lr_scan=[1e-6, 3e-3], lr_scan_epochs=2)
    r = T.scan_lr(s, "weighted_mse", "plain", _mse, tr, va, 5, tmp_path, lambda *a: None)
    assert [x["lr"] for x in r["trials"]] == [1e-6, 3e-3]
    best = min(r["trials"], key=lambda x: x["best_val_loss"])
    assert r["lr"] == best["lr"] == 3e-3             # 1e-6 barely moves in two epochs
    assert json.loads((tmp_path / "lr_scan.json").read_text())["result"] == r
    assert T.scan_lr(_settings(), "x", "plain", _mse, tr, va, 5, tmp_path / "n", None)["lr"] == 1e-3


def test_conditional_decoder_trains_and_its_encoder_stays_golden(split, tmp_path):
    cond = M.conditions(split)
    assert cond.shape == (len(split["aein"]), M.N_COND) and np.all(np.isfinite(cond))
    assert cond.min() >= -0.1 and cond.max() <= 1.1
    tr, va = _data(split, "conditional")
    s = _settings(epochs=2)
    t = T.train_model(s, "weighted_mse", "conditional", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / "c",
                      log=lambda *a: None)
    assert t.dec.input_shape == (None, E.N_LATENT + M.N_COND)
    w = E.EncoderWeights.from_keras(t.enc)
    np.testing.assert_array_equal(E.keras_latent_codes(t.enc, split["aein"]),
                                  E.golden_encode(split["aein"], w))


def test_model_seed_index_zero_keeps_the_single_seed_formula():
    assert T.model_seed(12345, "emd_cnn", 0) == (12345 + sum(map(ord, "emd_cnn"))) % 2 ** 31
    assert len({T.model_seed(1, "emd_cnn", i) for i in range(5)}) == 5


def test_learning_rate_halves_on_the_same_relative_criterion(split, tmp_path):
    """lr_patience 1, min_delta 50 %: no epoch after the first improves, so the rate halves
    after every epoch until the patience (3) stops training; the history logs each rate."""
    tr, va = _data(split)
    s = _settings(lr_patience=1, early_stopping_patience=3)
    t = T.train_model(s, "weighted_mse", "plain", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / "m",
                      log=lambda *a: None)
    assert t.info["stopped_early"] and t.info["epochs_run"] == 4
    assert [float(r["lr"]) for r in t.history] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4], rel=1e-6)


_SERIAL = r"""
import json, sys, hashlib, numpy as np
from flow.runner.host import pin_numerics
pin_numerics()                                                # what the runner does before TensorFlow
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)      # what the stage does for threads: 1
from flow.core import training as T
a = np.load(sys.argv[1])
tr, va = (a["x"][:256], a["t"][:256]), (a["x"][256:], a["t"][256:])
s = {s}
res = T.fit_task(s, "telescope_mse", "plain", {{}}, tr, va, seed=5, lr=1e-3, ck=sys.argv[2])
print("SHA", hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in res["weights"])).hexdigest())
"""


def test_a_ray_task_trains_the_same_model_as_the_serial_stage_with_one_thread(split, tmp_path):
    """``autoencoder.ray.enabled`` trains each model in a 1-CPU Ray task; with
    ``threads: 1`` the serial path gives bit-identical weights (so a cluster run and a
    laptop run of the same config agree)."""
    import hashlib
    import os
    import subprocess
    import sys

    import ray

    from flow.core.emd_exact import ray_session

    x, t = M.model_inputs(split)
    np.savez(tmp_path / "d.npz", x=x, t=t)
    s = _settings(epochs=2, early_stopping_patience=5)
    code = _SERIAL.format(s="__import__('types').SimpleNamespace(**" + json.dumps(vars(s)) + ")")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.npz"), str(tmp_path / "serial")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    serial = [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("SHA ")][0]
    tr, va = (x[:256], t[:256]), (x[256:], t[256:])
    with ray_session(num_cpus=1):
        res = ray.get(ray.remote(num_cpus=1)(T.fit_task).remote(
            s, "telescope_mse", "plain", {}, tr, va, seed=5, lr=1e-3, ck=str(tmp_path / "ray")))
    got = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in res["weights"])).hexdigest()
    assert got == serial
    assert res["info"]["epochs_run"] == 2
    rebuilt = T.from_result(9, "plain", res)
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt.model.get_weights(), res["weights"], strict=True))


def _weights_sha(t) -> str:
    import hashlib

    ws = t.model.get_weights()
    return hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in ws)).hexdigest()


def test_steps_per_execution_trains_the_bit_identical_model(split, tmp_path):
    """``autoencoder.steps_per_execution`` only changes how many batches run per call into
    TensorFlow (3 does not divide the 4 batches of an epoch: a partial last call)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    tr, va = _data(split)
    got = {}
    for spe in (1, 3):
        s = _settings(epochs=3, early_stopping_patience=5, steps_per_execution=spe)
        t = T.train_model(s, "telescope_mse", "plain", _mse, tr, va, seed=3, lr=1e-3,
                          ck=tmp_path / f"spe{spe}", log=lambda *a: None)
        got[spe] = (_weights_sha(t), [r["val_loss"] for r in t.history])
    assert got[1] == got[3]


def test_jit_compile_is_deterministic_and_keeps_the_encoder_golden(split, tmp_path):
    """``autoencoder.jit_compile`` (XLA): the same seed twice gives the same weights."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    tr, va = _data(split)
    shas = []
    for k in range(2):
        s = _settings(epochs=2, early_stopping_patience=5, jit_compile=True)
        t = T.train_model(s, "telescope_mse", "plain", _mse, tr, va, seed=3, lr=1e-3, ck=tmp_path / f"j{k}",
                          log=lambda *a: None)
        assert t.model.jit_compile
        shas.append(_weights_sha(t))
    assert shas[0] == shas[1]
    w = E.EncoderWeights.from_keras(t.enc)
    np.testing.assert_array_equal(E.keras_latent_codes(t.enc, split["aein"]),
                                  E.golden_encode(split["aein"], w))


def test_compile_options_defaults_and_config_validation():
    from types import SimpleNamespace

    from flow.runner.config import AutoencoderConfig

    assert T.compile_options(SimpleNamespace()) == {"steps_per_execution": 1, "jit_compile": False}
    assert T.compile_options(None) == {"steps_per_execution": 1, "jit_compile": False}
    c = AutoencoderConfig()
    assert c.steps_per_execution == 1 and c.jit_compile is False
    assert T.compile_options(AutoencoderConfig(steps_per_execution=16, jit_compile=True)) == {
        "steps_per_execution": 16, "jit_compile": True}
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="steps_per_execution"):
        AutoencoderConfig(steps_per_execution=0)


def test_elink_budgets_train_as_ray_tasks_in_job_order(split, tmp_path):
    """With ``autoencoder.ray.enabled`` the eLink budgets' fine-tunes are submitted together as
    1-CPU Ray tasks and come back in job order (each with its own settings); a failing
    task names its budget; without Ray nothing is submitted."""
    import ray

    from flow.autoencoder import stage as A
    from flow.core.emd_exact import ray_session
    from flow.runner.errors import FlowError

    tr, va = _data(split)
    model, _enc, _dec = M.build_autoencoder(9)
    init = model.get_weights()
    s = SimpleNamespace(ray=SimpleNamespace(enabled=True), sinkhorn_eps=0.05, sinkhorn_iters=5)
    p = SimpleNamespace(loss="telescope_mse", tr=tr, va=va)
    jobs = [(n, _settings(latent_bits=bits, epochs=ep, early_stopping_patience=5),
             {"seed": 7, "lr": 1e-3, "init_weights": init, "ck": str(tmp_path / f"e{n}")})
            for n, bits, ep in ((2, 3, 1), (3, 5, 2))]
    with ray_session(num_cpus=2):
        refs = A._submit_elinks(s, p, jobs, None)
        assert len(refs) == 2
        got = list(A._elink_results(s, p, jobs, refs, None))
        assert [t.info["epochs_run"] for t in got] == [1, 2]
        assert [len(t.history) for t in got] == [1, 2]
        bad = SimpleNamespace(loss="no_such_loss", tr=tr, va=va)
        with pytest.raises(FlowError, match="2-eLink model .no_such_loss, 3-bit latents. failed"):
            list(A._elink_results(s, bad, jobs[:1], A._submit_elinks(s, bad, jobs[:1], None), None))
    assert not ray.is_initialized()
    assert A._submit_elinks(SimpleNamespace(ray=SimpleNamespace(enabled=False)), p, jobs, None) is None
