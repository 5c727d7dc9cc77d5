"""The EMD CNN (``docs/reference.md`` section 6; Shenoy et al. 2023, section 3).

Inputs: two wafers in encoding B (4x4x3, channel = readout chip), each
normalised to unit sum.  Body ``g``::

    Concatenate(channels) -> N x [Conv2D(F, k x k, same) -> BatchNorm -> ReLU]
        -> Flatten -> Dense(D) -> BatchNorm -> ReLU -> Dense(1) -> x output_scale

Symmetrised model ``f(a, b) = (g(a, b) + g(b, a)) / 2``: one Keras model with
two inputs that calls the *same* ``g`` twice, so it is differentiable in both
inputs and can be used, frozen, as a loss (:func:`emd_loss`).

``output_scale`` is a fixed (non-trainable) ``Rescaling`` after the last
Dense: the network regresses EMD / scale (the mean training label), so its
raw output is O(1) while the model's output is the EMD itself.

Training (:func:`train_model`): Adam, MSE (or the relative error), early
stopping on the validation loss, a per-epoch learning-rate schedule (cosine
decay, reduce-on-plateau or constant),
seeded (weights and the per-epoch shuffle), checkpointed after every epoch
into a directory (``last.keras`` with the optimizer state, ``best.weights.h5``,
``state.json``) so that an interrupted training resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flow.core.geometry import N_TC, REMAP_8X8, to_4x4x3
from flow.runner.atomic import atomic_path, atomic_write_json
from flow.runner.errors import ArgumentError, TrainingInterrupted

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: sidecar JSON describing the frozen model's inputs and outputs.
MODEL_INFO_SCHEMA = 1
ENCODING_B = ("4x4x3 channels-last: channel = t // 16 (readout chip), row = (t % 16) // 4, "
              "column = t % 4, for TC (CALQ) index t")


@dataclass(frozen=True)
class Arch:
    """Hyper-parameters of the EMD CNN."""

    filters: int = 32
    kernel: int = 5
    n_conv: int = 3
    dense: int = 256

    @property
    def tag(self) -> str:
        return f"F{self.filters}_k{self.kernel}_N{self.n_conv}_D{self.dense}"


def set_tf_threads(n: int) -> bool:
    """Limit TensorFlow's thread pools (only possible before TF runs an op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
        return True
    except RuntimeError:  # TF already initialised in this process
        return False


def enable_determinism() -> None:
    """TensorFlow op determinism for this process (as the autoencoder stage does).

    Measured: it does not change the EMD CNN's training on this machine (the
    CPU kernels used are already run-to-run deterministic), but it makes
    TensorFlow raise instead of silently running an op without a
    deterministic kernel.  CPU dependence is handled by :mod:`flow.runner.host`.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def build_emd_cnn(arch: Arch = Arch(), *, output_scale: float = 1.0, name: str = "emd_cnn"):
    """The symmetrised EMD CNN: ``[wafer_a, wafer_b]`` (each (N, 4, 4, 3)) -> (N, 1) EMD."""
    from tensorflow import keras
    from tensorflow.keras import layers

    ga = keras.Input((4, 4, 3), name="g_a")
    gb = keras.Input((4, 4, 3), name="g_b")
    x = layers.Concatenate(axis=-1, name="concat")([ga, gb])
    for i in range(arch.n_conv):
        x = layers.Conv2D(arch.filters, arch.kernel, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(arch.dense, name="dense")(x)
    x = layers.BatchNormalization(name="dense_bn")(x)
    x = layers.ReLU(name="dense_relu")(x)
    x = layers.Dense(1, bias_initializer="ones", name="out")(x)  # starts at output_scale
    x = layers.Rescaling(float(output_scale), name="output_scale")(x)
    g = keras.Model([ga, gb], x, name="g")

    a = keras.Input((4, 4, 3), name="wafer_a")
    b = keras.Input((4, 4, 3), name="wafer_b")
    out = layers.Average(name="emd")([g([a, b]), g([b, a])])
    return keras.Model([a, b], out, name=name)


# ---------------------------------------------------------------- inputs


def to_inputs(a48: np.ndarray, b48: np.ndarray) -> list[np.ndarray]:
    """Unit-sum TC-order pairs ``(N, 48)`` -> the model's two float32 encoding-B inputs."""
    return [np.ascontiguousarray(to_4x4x3(np.asarray(a48, np.float32))),
            np.ascontiguousarray(to_4x4x3(np.asarray(b48, np.float32)))]


def predict(model, a48: np.ndarray, b48: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """EMD-CNN prediction ``(N,)`` float64 for unit-sum TC-order pairs."""
    if len(a48) == 0:
        return np.zeros(0)
    xa, xb = to_inputs(a48, b48)
    out = model.predict([xa, xb], batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(-1)


# ---------------------------------------------------------------- frozen model


def save_emd_cnn(model, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Save the model (``.keras``, no optimizer) and a sidecar ``.json`` describing it."""
    from tensorflow import keras

    path = Path(path)
    if model.optimizer is not None:  # save an uncompiled copy: no optimizer state in the file
        clean = keras.models.clone_model(model)
        clean.set_weights(model.get_weights())
        model = clean
    model.save(path)
    meta = {
        "schema": MODEL_INFO_SCHEMA,
        "file": path.name,
        "inputs": [{"name": t.name.split(":")[0], "shape": [None, 4, 4, 3], "dtype": "float32",
                    "encoding": ENCODING_B, "normalisation": "each wafer sums to 1"}
                   for t in model.inputs],
        "output": {"shape": [None, 1], "meaning": "EMD in ground-distance units "
                   "(neighbouring TCs of ROC 0/1 are 2.0 apart), symmetric in the two inputs"},
        "from_tc_order": "x.reshape(N, 3, 4, 4).transpose(0, 2, 3, 1) (flow.core.geometry.to_4x4x3)",
        "loader": "flow.core.emd_cnn.load_emd_cnn(path); as a loss: flow.core.emd_cnn.emd_loss(model)",
    }
    meta.update(info or {})
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def load_emd_cnn(path: str | Path):
    """Load a frozen EMD CNN saved by the ``emd`` stage (``emd_cnn.keras``)."""
    from tensorflow import keras

    from flow.runner.errors import StageInputError

    path = Path(path)
    if not path.is_file():
        raise StageInputError(f"EMD CNN {path} does not exist; run the 'emd' stage "
                              "(`make emd` or `python -m flow emd --config <config>`)")
    model = keras.models.load_model(path, compile=False)
    model.trainable = False
    return model


def tc_to_b_tf(x):
    """TF: ``(N, 48)`` TC order -> ``(N, 4, 4, 3)`` encoding B (same as ``to_4x4x3``)."""
    import tensorflow as tf

    x = tf.reshape(x, (-1, 3, 4, 4))
    return tf.transpose(x, (0, 2, 3, 1))


def emd_loss(model, *, layout: str = "tc48") -> Callable:
    """A Keras loss ``(y_true, y_pred) -> (N,)`` EMD predicted by the frozen ``model``.

    ``layout="tc48"``: tensors ``(N, 48)`` in TC order; ``"8x8"``: encoding-A
    images ``(N, 8, 8)`` or ``(N, 8, 8, 1)`` (the dead positions are ignored).
    Both wafers are normalised to unit sum in TF (an all-zero wafer becomes
    all-zero instead of NaN: its "EMD" is meaningless but finite), reordered
    into encoding B and fed to the CNN in inference mode.  The CNN's weights
    are frozen; gradients flow to ``y_pred``.
    """
    import tensorflow as tf

    if layout not in ("tc48", "8x8"):
        raise ArgumentError(f"emd_loss: layout: expected 'tc48' or '8x8', got {layout!r}")
    model.trainable = False
    remap = tf.constant(REMAP_8X8, dtype=tf.int32)

    def to_tc(x):
        x = tf.cast(x, tf.float32)
        if layout == "8x8":
            x = tf.gather(tf.reshape(x, (-1, 64)), remap, axis=1)
        return tf.reshape(x, (-1, N_TC))

    def norm(x):
        return tf.math.divide_no_nan(x, tf.reduce_sum(x, axis=1, keepdims=True))

    def emd_cnn_loss(y_true, y_pred):
        a = tc_to_b_tf(norm(to_tc(y_true)))
        b = tc_to_b_tf(norm(to_tc(y_pred)))
        return tf.reshape(model([a, b], training=False), (-1,))

    return emd_cnn_loss


# ---------------------------------------------------------------- training


def _relative_loss(eps: float):
    import tensorflow as tf

    def relative_mse(y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        return tf.reduce_mean(tf.square((y_pred - y_true) / (y_true + eps)), axis=-1)

    return relative_mse


@dataclass
class TrainParams:
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    loss: str = "mse"            # "mse" | "relative"
    rel_eps: float = 0.1
    patience: int = 5
    lr_schedule: str = "cosine"  # "cosine" | "plateau" | "constant"
    lr_patience: int = 2         # plateau: halve after this many epochs without improvement
    lr_factor: float = 0.5
    min_lr: float = 1e-5         # cosine: final learning rate; plateau: lower bound


def _cosine_lr(p: TrainParams, epoch: int) -> float:
    """Cosine decay from ``learning_rate`` (epoch 0) to ``min_lr`` (last epoch)."""
    frac = epoch / max(1, p.epochs - 1)
    return float(p.min_lr + (p.learning_rate - p.min_lr) * 0.5 * (1 + np.cos(np.pi * frac)))


def _compile(model, p: TrainParams, lr: float):
    from tensorflow import keras

    loss = "mse" if p.loss == "mse" else _relative_loss(p.rel_eps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss)


def train_model(arch: Arch, train: tuple, val: tuple, ckpt_dir: str | Path, *, seed: int,
                params: TrainParams, output_scale: float, init_weights: list | None = None,
                stop_after: int | None = None, log: Callable[[str], None] | None = None):
    """Train (or resume training) one EMD CNN; return ``(model with best weights, state)``.

    ``train``/``val``: ``(xa, xb, y)`` with encoding-B inputs (:func:`to_inputs`)
    and float32 labels.  Everything needed to resume lives in ``ckpt_dir``;
    a finished training is not redone.  ``stop_after``: raise
    :class:`TrainingInterrupted` after that many epochs (tests).
    """
    import tensorflow as tf
    from tensorflow import keras

    ckpt = Path(ckpt_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    state_path, last_path, best_path = ckpt / "state.json", ckpt / "last.keras", ckpt / "best.weights.h5"
    log = log or (lambda s: None)

    state = None
    if state_path.is_file() and last_path.is_file():
        state = json.loads(state_path.read_text())
        keras.backend.clear_session()
        model = keras.models.load_model(last_path, compile=False)
        _compile(model, params, state["lr"])
        # restore the optimizer's moments and step count (saved beside the model)
        opt_path = ckpt / "last_opt.npz"
        if opt_path.is_file():
            with np.load(opt_path) as z:
                saved = [z[f"v{i}"] for i in range(len(z.files))]
            model.optimizer.build(model.trainable_variables)
            for var, val_ in zip(model.optimizer.variables, saved, strict=True):
                var.assign(val_)
        log(f"{arch.tag}: resuming after epoch {state['epoch']}")
    else:
        keras.backend.clear_session()
        tf.keras.utils.set_random_seed(seed)
        model = build_emd_cnn(arch, output_scale=output_scale)
        if init_weights is not None:
            model.set_weights(init_weights)
        _compile(model, params, params.learning_rate)
        state = {"epoch": 0, "best": None, "best_epoch": -1, "wait": 0, "lr_wait": 0,
                 "lr": params.learning_rate, "history": [], "done": False, "arch": asdict(arch)}

    xa, xb, y = train
    vxa, vxb, vy = val
    n = len(y)
    while state["epoch"] < params.epochs and state["wait"] < params.patience:
        ep = state["epoch"]
        if params.lr_schedule == "cosine":  # a function of the epoch: resumes exactly
            state["lr"] = _cosine_lr(params, ep)
            model.optimizer.learning_rate.assign(state["lr"])
        perm = np.random.default_rng([seed, ep]).permutation(n)
        t0 = time.perf_counter()
        h = model.fit([xa[perm], xb[perm]], y[perm], batch_size=params.batch_size, epochs=1,
                      shuffle=False, verbose=0)
        t_fit = time.perf_counter() - t0
        vloss = float(model.evaluate([vxa, vxb], vy, batch_size=4096, verbose=0))
        loss = float(h.history["loss"][-1])
        improved = state["best"] is None or vloss < state["best"]
        if improved:
            state.update(best=vloss, best_epoch=ep, wait=0, lr_wait=0)
            model.save_weights(best_path)
        else:
            state["wait"] += 1
            state["lr_wait"] += 1
            if params.lr_schedule == "plateau" and state["lr_wait"] >= params.lr_patience:
                state["lr"] = max(params.min_lr, state["lr"] * params.lr_factor)
                model.optimizer.learning_rate.assign(state["lr"])
                state["lr_wait"] = 0
        state["history"].append({"epoch": ep, "loss": loss, "val_loss": vloss, "lr": state["lr"],
                                 "fit_s": round(t_fit, 3)})
        state["epoch"] = ep + 1
        log(f"{arch.tag}: epoch {ep + 1}/{params.epochs} loss {loss:.4g} val {vloss:.4g} "
            f"({t_fit:.1f} s){' *' if improved else ''}")
        with atomic_path(last_path) as tmp:
            model.save(tmp)
        opt = {f"v{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)}
        with atomic_path(ckpt / "last_opt.npz") as tmp:
            np.savez(tmp, **opt)
        atomic_write_json(state_path, state)
        if stop_after is not None and state["epoch"] >= stop_after and \
                state["epoch"] < params.epochs:
            raise TrainingInterrupted(f"stopped after epoch {state['epoch']} (stop_after)")
    state["done"] = True
    atomic_write_json(state_path, state)
    if best_path.is_file():
        model.load_weights(best_path)
    return model, state
