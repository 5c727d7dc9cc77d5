"""Training of one autoencoder model of the ``autoencoder`` stage: the models, the
convergence rule, the learning-rate rule and resumable fits.

One *model* is (loss, decoder variant, seed).  Every model follows the same rules,
whatever its loss (``docs/autoencoder.md``, "Training rule"):

* **convergence**: train until the validation loss has not improved by a relative
  ``early_stopping_min_delta`` for ``early_stopping_patience`` epochs, then restore
  the best epoch's weights; a model that reaches the ``epochs`` cap instead is
  recorded as not converged (``stopped_early: false``);
* **learning rate**: ``lr_scan`` candidates, each trained ``lr_scan_epochs`` epochs
  on the first ``lr_scan_wafers`` training wafers from the seed-0 initialisation;
  the lowest validation loss wins (or ``learning_rate`` when the scan is empty);
  halved after every ``lr_patience`` epochs without improvement (the same relative
  criterion as the stopping rule);
* **resume**: Keras ``BackupAndRestore`` plus this module's own convergence state
  (best value, epochs since, best weights) in the checkpoint directory, so an
  interrupted fit continues where it stopped with the same stopping decision.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.ae_model import build_autoencoder
from flow.runner.atomic import atomic_write_json


def subset(inputs, n: int):
    """The first ``n`` rows of model inputs (an array or a list of arrays)."""
    return [a[:n] for a in inputs] if isinstance(inputs, list) else inputs[:n]


def model_seed(base_seed: int, loss: str, seed_index: int) -> int:
    """Seed of model ``seed_index`` of ``loss`` (index 0 keeps the single-seed runs' seed)."""
    return (base_seed + sum(map(ord, loss)) + 1_000_003 * seed_index) % 2 ** 31


# ------------------------------------------------------------ convergence
#: the learning rate is never halved below this
MIN_LR = 1e-6


def _convergence_callback(patience: int, rel_delta: float, state_path: Path, best_path: Path,
                          lr_patience: int):
    """Keras callback: relative-improvement early stopping with best-weight restore and
    learning-rate halving, its state kept on disk so that a resumed fit takes the same
    decisions.  One criterion drives both: an epoch *improves* when the validation loss
    falls below the best so far by the relative ``rel_delta`` (the same for every loss,
    whatever its scale).  After every ``lr_patience`` epochs without improvement the
    learning rate is halved (not below :data:`MIN_LR`); after ``patience`` such epochs
    training stops.  (Keras' ReduceLROnPlateau compares with an *absolute* delta, which
    would halve a small-scale loss such as telescope MSE much earlier than EMD.)"""
    import tensorflow as tf

    class Convergence(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state = {"best": None, "best_epoch": None, "wait": 0, "stopped_early": False,
                          "diverged": False}
            if state_path.exists():
                self.state.update(json.loads(state_path.read_text()))

        def _save(self):
            atomic_write_json(state_path, self.state)

        def on_epoch_end(self, epoch, logs=None):
            v = float((logs or {}).get("val_loss", float("nan")))
            st = self.state
            lr_var = self.model.optimizer.learning_rate
            lr = float(tf.keras.backend.get_value(lr_var))
            if logs is not None:
                logs["lr"] = lr          # this epoch's rate, in the history
            if not math.isfinite(v):
                st["diverged"] = True
                self.model.stop_training = True
            elif st["best"] is None or v < st["best"] - rel_delta * abs(st["best"]):
                st.update(best=v, best_epoch=int(epoch), wait=0)
                self.model.save_weights(best_path)
            else:
                st["wait"] += 1
                if st["wait"] >= patience:
                    st["stopped_early"] = True
                    self.model.stop_training = True
                elif st["wait"] % lr_patience == 0 and lr > MIN_LR:
                    tf.keras.backend.set_value(lr_var, max(MIN_LR, 0.5 * lr))
            self._save()

        def on_train_end(self, logs=None):
            if best_path.exists():
                self.model.load_weights(best_path)

    return Convergence()


# ----------------------------------------------------------------- fitting
@dataclass
class Trained:
    """One trained model and how its training went."""

    enc: object
    dec: object
    history: list[dict]
    info: dict = field(default_factory=dict)
    model: object = None


def compile_options(s) -> dict:
    """Keras ``compile`` options of the settings ``s`` that change the cost of a training
    step, not its batches: ``steps_per_execution`` (bit-identical results) and
    ``jit_compile`` (XLA: deterministic, different last bits).  Settings without them
    (older checkpoints' namespaces, tests) get Keras' defaults."""
    return {"steps_per_execution": int(getattr(s, "steps_per_execution", 1) or 1),
            "jit_compile": bool(getattr(s, "jit_compile", False))}


def _compile(model, loss_fn, lr: float, s=None):
    import tensorflow as tf

    model.compile(optimizer=tf.keras.optimizers.Adam(lr), loss=loss_fn, **compile_options(s))


def scan_lr(s, loss_name: str, decoder: str, make_loss, train, val, seed: int, ck: Path, log,
            arch: E.EncoderArch = E.ECONT_ARCH) -> dict:
    """The learning-rate rule for one (loss, decoder): ``{"lr", "trials"}``, cached in ``ck``."""
    cache = ck / "lr_scan.json"
    key = {"lr_scan": list(s.lr_scan), "wafers": s.lr_scan_wafers, "epochs": s.lr_scan_epochs, "seed": seed}
    if not s.lr_scan:
        return {"lr": s.learning_rate, "trials": [], "rule": "fixed autoencoder.learning_rate"}
    if cache.exists():
        got = json.loads(cache.read_text())
        if got.get("key") == key:
            return got["result"]
    import tensorflow as tf

    n = min(s.lr_scan_wafers, len(train[1]))
    xs, ts = subset(train[0], n), train[1][:n]
    trials = []
    for lr in s.lr_scan:
        tf.keras.utils.set_random_seed(seed)
        model, _, _ = build_autoencoder(s.latent_bits, decoder, arch)
        _compile(model, make_loss(), lr, s)
        t0 = time.perf_counter()
        h = model.fit(xs, ts, validation_data=val, epochs=s.lr_scan_epochs, batch_size=s.batch_size,
                      verbose=0, shuffle=True)
        vals = [v for v in h.history.get("val_loss", []) if math.isfinite(v)]
        trials.append({"lr": lr, "best_val_loss": min(vals) if vals else None,
                       "wall_s": round(time.perf_counter() - t0, 2)})
        log(f"[autoencoder] {loss_name}/{decoder} lr scan: lr {lr:g} -> val loss "
            f"{trials[-1]['best_val_loss']}")
    ok = [t for t in trials if t["best_val_loss"] is not None]
    if not ok:
        from flow.runner.errors import FlowError

        raise FlowError(f"autoencoder lr scan for {loss_name}: every candidate in {s.lr_scan} diverged "
                        "(non-finite validation loss); give smaller autoencoder.lr_scan values")
    best = min(ok, key=lambda t: t["best_val_loss"])
    result = {"lr": best["lr"], "trials": trials,
              "rule": f"lowest validation loss after {s.lr_scan_epochs} epochs on {n} wafers"}
    atomic_write_json(cache, {"key": key, "result": result})
    return result


def train_model(s, loss_name: str, decoder: str, make_loss, train, val, *, seed: int, lr: float,
                ck: Path, log, init_weights: list | None = None,
                arch: E.EncoderArch = E.ECONT_ARCH) -> Trained:
    """Train (or reload, when finished earlier) one model to convergence; ``init_weights``
    continues from another model's weights (the closed loop's rounds); ``arch`` is the
    encoder's architecture (the co-design sweep's points)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model, enc, dec = build_autoencoder(s.latent_bits, decoder, arch)
    if init_weights is not None:
        model.set_weights(init_weights)
    _compile(model, make_loss(), lr, s)
    ck.mkdir(parents=True, exist_ok=True)
    final, hist_csv, state_path = ck / "final.weights.h5", ck / "history.csv", ck / "convergence.json"
    done = ck / "done.json"
    if final.exists() and hist_csv.exists() and done.exists():
        log(f"[autoencoder] {loss_name}/{decoder} seed {seed}: finished earlier, loading {final}")
        model.load_weights(final)
        info = json.loads(done.read_text())
    else:
        conv = _convergence_callback(s.early_stopping_patience, s.early_stopping_min_delta, state_path,
                                     ck / "best.weights.h5", s.lr_patience)
        cbs = [tf.keras.callbacks.BackupAndRestore(str(ck / "backup")),
               conv, tf.keras.callbacks.CSVLogger(str(hist_csv), append=True)]
        log(f"[autoencoder] training {loss_name}/{decoder} (seed {seed}, lr {lr:g}): {len(train[1])} "
            f"wafers, until converged (cap {s.epochs} epochs)")
        t0 = time.perf_counter()
        model.fit(train[0], train[1], validation_data=val, epochs=s.epochs, batch_size=s.batch_size,
                  callbacks=cbs, verbose=2, shuffle=True)
        wall = time.perf_counter() - t0
        model.save_weights(final)
        st = conv.state
        with open(hist_csv) as f:
            n_ep = sum(1 for _ in csv.DictReader(f))
        info = {"seed": seed, "lr": lr, "epochs_run": n_ep, "epoch_cap": s.epochs,
                "stopped_early": bool(st["stopped_early"]), "diverged": bool(st["diverged"]),
                "best_epoch": None if st["best_epoch"] is None else int(st["best_epoch"]) + 1,
                "best_val_loss": st["best"], "wall_s": round(wall, 2),
                "s_per_epoch": round(wall / max(n_ep, 1), 3), "n_train": int(len(train[1]))}
        atomic_write_json(done, info)
    with open(hist_csv) as f:
        rows = list(csv.DictReader(f))
    info["converged"] = bool(info["stopped_early"]) and not info.get("diverged", False)
    return Trained(enc, dec, rows, info, model)


def fit_task(s, loss_name: str, decoder: str, loss_kw: dict, train, val, *, seed: int, lr: float,
             ck: str, init_weights: list | None = None, arch: dict | None = None) -> dict:
    """Train one model where it runs: the body of the stage's Ray task (one model per
    1-CPU task, TensorFlow on one thread) and of its serial path.  Returns what the
    driver needs to rebuild the model exactly: ``{"weights", "info", "history"}``."""
    import tensorflow as tf

    from flow.core.losses import get_loss

    tf.config.experimental.enable_op_determinism()
    t = train_model(s, loss_name, decoder, lambda: get_loss(loss_name, **loss_kw), train, val, seed=seed,
                    lr=lr, ck=Path(ck), log=print, init_weights=init_weights,
                    arch=E.EncoderArch.from_dict(arch or {}))
    return {"weights": t.model.get_weights(), "info": t.info, "history": t.history}


def from_result(latent_bits: int, decoder: str, res: dict, arch: E.EncoderArch = E.ECONT_ARCH) -> Trained:
    """The :class:`Trained` model of a :func:`fit_task` result (weights set bit for bit)."""
    model, enc, dec = build_autoencoder(latent_bits, decoder, arch)
    model.set_weights(res["weights"])
    return Trained(enc, dec, res["history"], res["info"], model)


# ------------------------------------------------------------ closed loop
def reconstructions(t: Trained, inputs) -> np.ndarray:
    """The training model's output ``(N, 48)`` (what the loss sees) for model inputs."""
    return np.asarray(t.model.predict(inputs, batch_size=8192, verbose=0), dtype=np.float64)


def refine_cnn(s, t: Trained, train, random_pairs: tuple[dict, dict], cnn_path: Path, ck: Path, *,
               seed: int, log) -> tuple[Path, dict]:
    """One round of the closed loop, EMD-CNN side: exact EMD labels (POT, on Ray when it
    is up) for the model's (input, reconstruction) pairs of the first ``refine_pairs``
    training wafers, then the EMD CNN fine-tuned (warm start, ``refine_cnn_epochs``
    epochs at ``refine_cnn_lr``) on the emd stage's random pairs plus these, 80/20 split.
    Returns the new CNN (saved with its sidecar JSON) and a record of the round."""
    from flow.core.emd_cnn import Arch, TrainParams, load_emd_cnn, save_emd_cnn, to_inputs
    from flow.core.emd_cnn import train_model as train_cnn
    from flow.core.emd_exact import label_pairs, normalise

    meta = json.loads(cnn_path.with_suffix(".json").read_text())
    out = ck / "emd_cnn.keras"
    if out.exists() and (ck / "refine.json").exists():
        log(f"[autoencoder] refinement {ck.name}: EMD CNN finished earlier, loading {out}")
        return out, json.loads((ck / "refine.json").read_text())
    n = min(s.refine_pairs, len(train[1]))
    a = train[1][:n].astype(np.float64)
    b = reconstructions(t, subset(train[0], n))
    lab = label_pairs(a, b, empty="nan", progress=False)
    ok = np.isfinite(lab)
    a = normalise(a[ok], what="autoencoder input")
    b = normalise(b[ok], what="autoencoder output")
    lab = lab[ok].astype(np.float32)
    n_tr = int(0.8 * len(lab))
    rtr, rva = random_pairs

    def parts(lo, hi, rnd):
        xa, xb = to_inputs(np.concatenate([rnd["a"], a[lo:hi]]), np.concatenate([rnd["b"], b[lo:hi]]))
        return xa, xb, np.concatenate([rnd["emd"].astype(np.float32), lab[lo:hi]])

    params = TrainParams(epochs=s.refine_cnn_epochs, learning_rate=s.refine_cnn_lr, lr_schedule="constant",
                         patience=s.refine_cnn_epochs, batch_size=256)
    base = load_emd_cnn(cnn_path)
    cnn, state = train_cnn(Arch(**meta["arch"]), parts(0, n_tr, rtr), parts(n_tr, len(lab), rva), ck / "cnn",
                           seed=seed, params=params, output_scale=float(meta["output_scale"]),
                           init_weights=base.get_weights(), log=lambda m: log(f"[autoencoder] refine {m}"))
    rec = {"ae_pairs": int(len(lab)), "random_pairs": int(len(rtr["emd"])),
           "cnn_epochs": len(state["history"]), "cnn_best_val_loss": state["best"], "cnn_lr": s.refine_cnn_lr}
    save_emd_cnn(cnn, out, {"arch": meta["arch"], "output_scale": meta["output_scale"],
                            "refined_from": str(cnn_path), "refinement": rec})
    atomic_write_json(ck / "refine.json", rec)
    return out, rec
