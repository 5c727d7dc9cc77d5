"""``autoencoder`` stage: the quantized ECON-T encoder, trained per loss and compared.

For every loss in ``autoencoder.losses`` it trains encoder (QKeras, the
ASIC's exact number formats, :mod:`flow.encoder`) + float decoder on the
data stage's training wafers, then evaluates every model with exact EMD
(POT) on the test wafers: median EMD and 16-84 % band vs occupancy and vs
|eta| (the paper's Fig. 6).  The encoder trained with ``export_loss`` is
exported for the hardware stages.

Inputs: ``data/{train,val,test}.npz``, ``emd/emd_cnn.keras`` (the frozen
EMD CNN, used as the loss).  Training target: each wafer's AEin values
normalised to unit sum (the decoder ends in a sigmoid); the encoder sees
AEin exactly as the ASIC computes it.

Outputs (``build/<run>/autoencoder/``):

* ``encoder.h5`` (QKeras), ``decoder.h5`` (Keras): the exported pair;
  ``models/<loss>/{encoder,decoder}.h5`` for every loss.
* ``weights.bin`` (12864-bit register image, see :class:`flow.encoder.EncoderWeights`),
  ``weights.mem`` ($readmemh), ``weights.npz`` (codes per layer).
* ``golden_check.json``: golden integer model vs QKeras on every test wafer,
  per loss (``n_total``, ``n_mismatch``, first mismatches); any mismatch fails the stage.
* ``eval.json``, ``comparison.csv``, ``plots/*.png``, ``history/<loss>.csv``.

Resuming: each loss trains with Keras ``BackupAndRestore`` in the run's
checkpoint directory (keyed by config and input hashes), so an interrupted
stage restarts from the last finished epoch, and losses already finished
are not retrained.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from . import encoder as E
from .errors import MismatchError, StageInputError
from .geometry import REMAP_8X8, to_8x8
from .manifest import atomic_write_bytes, atomic_write_json

# ------------------------------------------------------------------ models


def build_decoder(latent: int = E.N_LATENT, name: str = "decoder"):
    """Float decoder (training only): Dense 128 -> 4x4x8 -> ConvT 8 3x3/2 -> ConvT 1 3x3 -> sigmoid."""
    from tensorflow import keras

    inp = keras.Input((latent,), name="latent_in")
    x = keras.layers.Dense(128, activation="relu", name="dec_dense")(inp)
    x = keras.layers.Reshape((4, 4, 8), name="dec_reshape")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu",
                                     name="dec_convt1")(x)
    x = keras.layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid", name="dec_convt2")(x)
    return keras.Model(inp, x, name=name)


def gather_tc(img):
    """TF: ``(N, 8, 8, 1)`` encoding-A image -> ``(N, 48)`` TC order (dead positions dropped)."""
    import tensorflow as tf

    return tf.gather(tf.reshape(img, (-1, 64)), tf.constant(REMAP_8X8, tf.int32), axis=1)


def build_autoencoder(latent_bits: int):
    """(training model ``8x8x1 -> 48``, encoder, decoder)."""
    from tensorflow import keras

    enc = E.build_qkeras_encoder(latent_bits)
    dec = build_decoder()
    inp = keras.Input((8, 8, 1), name="aein")
    out = keras.layers.Lambda(gather_tc, name="to_tc")(dec(enc(inp)))
    return keras.Model(inp, out, name="autoencoder"), enc, dec


# -------------------------------------------------------------------- data


def load_split(path: Path, limit: int = 0) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        d = {k: z[k] for k in ("aein", "calq", "eta", "occupancy") if k in z.files}
    missing = {"aein", "calq", "eta", "occupancy"} - set(d)
    if missing:
        raise StageInputError(f"{path} lacks arrays {sorted(missing)}; rerun stage 'data'")
    keep = d["aein"].sum(-1) > 0          # the data stage drops empty wafers; be safe
    d = {k: v[keep] for k, v in d.items()}
    if limit:
        d = {k: v[:limit] for k, v in d.items()}
    return d


def model_inputs(aein_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(8x8x1 AEin values for the encoder, unit-sum 48-cell targets)."""
    v = aein_codes.astype(np.float32) * np.float32(E.INPUT_FMT.lsb)
    x = to_8x8(v)[..., None]
    t = v / v.sum(-1, keepdims=True)
    return x, t.astype(np.float32)


# ---------------------------------------------------------------- training


def _ckpt_key(ctx) -> str:
    blob = json.dumps({"cfg": ctx.cfg.section_hash("autoencoder"),
                       "up": {k: v.manifest_sha256 for k, v in sorted(ctx.upstream.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_one(loss_name: str, ctx, train, val, emd_path: Path, log) -> tuple:
    """Train one autoencoder; returns (encoder, decoder, history rows)."""
    import tensorflow as tf

    from .losses import get_loss

    s = ctx.settings
    seed = (ctx.seed + sum(map(ord, loss_name))) % 2 ** 31
    tf.keras.utils.set_random_seed(seed)
    model, enc, dec = build_autoencoder(s.latent_bits)
    loss = get_loss(loss_name, emd_cnn_path=emd_path, sinkhorn_eps=s.sinkhorn_eps,
                    sinkhorn_iters=s.sinkhorn_iters)
    model.compile(optimizer=tf.keras.optimizers.Adam(s.learning_rate), loss=loss)
    ck = ctx.checkpoint_dir / _ckpt_key(ctx) / loss_name
    ck.mkdir(parents=True, exist_ok=True)
    final = ck / "final.weights.h5"
    hist_csv = ck / "history.csv"
    if final.exists() and hist_csv.exists():
        log(f"[autoencoder] {loss_name}: finished earlier, loading {final}")
        model.load_weights(final)
    else:
        cbs = [
            tf.keras.callbacks.BackupAndRestore(str(ck / "backup")),
            tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=s.lr_patience, min_lr=1e-5),
            tf.keras.callbacks.EarlyStopping(patience=s.early_stopping_patience,
                                             restore_best_weights=True),
            tf.keras.callbacks.CSVLogger(str(hist_csv), append=True),
        ]
        log(f"[autoencoder] training with loss {loss_name}: {len(train[0])} wafers, "
            f"<= {s.epochs} epochs")
        model.fit(train[0], train[1], validation_data=val, epochs=s.epochs,
                  batch_size=s.batch_size, callbacks=cbs, verbose=2, shuffle=True)
        model.save_weights(final)
    with open(hist_csv) as f:
        rows = list(csv.DictReader(f))
    return enc, dec, rows


# -------------------------------------------------------------- evaluation


def golden_check(enc, aein: np.ndarray, latent_bits: int) -> tuple[dict, np.ndarray]:
    """Golden integer model vs QKeras on integer latent codes; report + golden codes."""
    w = E.EncoderWeights.from_keras(enc)
    gold = E.golden_encode(aein, w, latent_bits)
    keras_codes = E.keras_latent_codes(enc, aein)
    bad = np.argwhere(gold != keras_codes)
    report = {"n_total": int(gold.shape[0]), "n_values": int(gold.size),
              "n_mismatch": int(len(np.unique(bad[:, 0]))) if len(bad) else 0,
              "first_mismatches": [{"wafer": int(i), "latent": int(j), "golden": int(gold[i, j]),
                                    "qkeras": int(keras_codes[i, j])} for i, j in bad[:10]]}
    return report, gold


def binned_medians(values: np.ndarray, x: np.ndarray, edges: list[float]) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (x >= lo) & (x < hi) & np.isfinite(values)
        v = values[sel]
        rows.append({"lo": lo, "hi": hi, "n": int(sel.sum()),
                     "median": float(np.median(v)) if len(v) else None,
                     "q16": float(np.percentile(v, 16)) if len(v) else None,
                     "q84": float(np.percentile(v, 84)) if len(v) else None})
    return rows


def evaluate(enc, dec, test: dict, latent_bits: int, use_ray: bool,
             loss: str = "?") -> tuple[dict, np.ndarray, dict]:
    from .emd_exact import emd_pairs, label_pairs

    report, gold = golden_check(enc, test["aein"], latent_bits)
    lat = gold.astype(np.float32) * np.float32(E.latent_format(latent_bits).lsb)
    recon = dec.predict(lat, batch_size=8192, verbose=0)
    recon48 = recon.reshape(len(recon), 64)[:, REMAP_8X8].astype(np.float64)
    if not np.all(np.isfinite(recon48)):
        from .errors import FlowError

        raise FlowError(f"training with loss {loss!r} diverged: the decoder gives non-finite "
                        f"reconstructions for {int((~np.isfinite(recon48)).any(-1).sum())} of "
                        f"{len(recon48)} test wafers; lower autoencoder.learning_rate")
    calq = test["calq"].astype(np.float64)
    if use_ray:
        emd = label_pairs(calq, recon48, empty="nan")
    else:
        emd = emd_pairs(calq, recon48, empty="nan")
    return report, emd, {"recon48": recon48}


# ------------------------------------------------------------------ plots


def _plots(out: Path, results: dict, edges_occ, edges_eta) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for key, xlabel, fname in (("vs_occupancy", "occupancy (TCs > 1 MIP$_T$)", "emd_vs_occupancy.png"),
                               ("vs_eta", "wafer |$\\eta$|", "emd_vs_eta.png")):
        fig, ax = plt.subplots(figsize=(9, 7))
        for i, (loss, r) in enumerate(results.items()):
            rows = [b for b in r[key] if b["median"] is not None]
            if not rows:
                continue
            xc = np.array([(b["lo"] + b["hi"]) / 2 for b in rows]) + (i - len(results) / 2) * 0.04 * (
                rows[0]["hi"] - rows[0]["lo"])
            med = np.array([b["median"] for b in rows])
            err = np.array([[b["median"] - b["q16"] for b in rows], [b["q84"] - b["median"] for b in rows]])
            ax.errorbar(xc, med, yerr=err, marker="o", capsize=3, label=loss)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("EMD (median, 16-84 %)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=80)
        plt.close(fig)
        files.append(fname)
    fig, ax = plt.subplots(figsize=(9, 7))
    for loss, r in results.items():
        e = r["emd"][np.isfinite(r["emd"])]
        ax.hist(e, bins=60, range=(0, max(3.0, float(np.percentile(e, 99)) if len(e) else 3.0)),
                histtype="step", label=f"{loss} (median {np.median(e):.3f})")
    ax.set_xlabel("EMD (input, reconstruction)")
    ax.set_ylabel("wafers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "emd_distribution.png", dpi=80)
    plt.close(fig)
    files.append("emd_distribution.png")
    return files


# -------------------------------------------------------------------- stage


def run(ctx) -> None:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")   # Keras' save/retrace chatter; progress is printed per epoch
    s = ctx.settings
    if s.export_loss not in s.losses:
        from .errors import ConfigError

        raise ConfigError(f"autoencoder.export_loss: expected one of the trained losses {s.losses}, "
                          f"got {s.export_loss!r}")
    if s.threads:
        tf.config.threading.set_intra_op_parallelism_threads(s.threads)
    tf.config.experimental.enable_op_determinism()
    data = ctx.upstream["data"]
    emd_path = ctx.upstream["emd"].path("emd_cnn.keras")
    unknown = set(s.max_train_wafers_by_loss) - set(s.losses)
    if unknown:
        from .errors import ConfigError

        raise ConfigError(f"autoencoder.max_train_wafers_by_loss: expected keys among the trained "
                          f"losses {s.losses}, got {sorted(unknown)}")
    train = load_split(data.path("train.npz"), s.max_train_wafers)
    val = load_split(data.path("val.npz"))
    test = load_split(data.path("test.npz"), s.eval_wafers)
    tr, va = model_inputs(train["aein"]), model_inputs(val["aein"])
    # validation for early stopping: a fixed subset is plenty and keeps epochs cheap
    va = tuple(v[:50000] for v in va)
    out = ctx.out
    results, reports, exported = {}, {}, None
    for loss in s.losses:
        cap = s.max_train_wafers_by_loss.get(loss, 0)
        tr_l = tuple(v[:cap] for v in tr) if cap else tr
        enc, dec, hist = train_one(loss, ctx, tr_l, va, emd_path, print)
        report, emd, _ = evaluate(enc, dec, test, s.latent_bits, use_ray=len(test["aein"]) > 20000,
                                  loss=loss)
        reports[loss] = report
        results[loss] = {
            "emd": emd,
            "median": float(np.nanmedian(emd)),
            "q16": float(np.nanpercentile(emd, 16)), "q84": float(np.nanpercentile(emd, 84)),
            "vs_occupancy": binned_medians(emd, test["occupancy"], s.occupancy_bins),
            "vs_eta": binned_medians(emd, np.abs(test["eta"]), s.eta_bins),
            "epochs": len(hist), "final_val_loss": float(hist[-1]["val_loss"]) if hist else None,
        }
        mdir = out / "models" / loss
        mdir.mkdir(parents=True, exist_ok=True)
        enc.save(mdir / "encoder.h5")
        dec.save(mdir / "decoder.h5")
        (out / "history").mkdir(exist_ok=True)
        with open(out / "history" / f"{loss}.csv", "w", newline="") as f:
            if hist:
                wr = csv.DictWriter(f, fieldnames=list(hist[0]))
                wr.writeheader()
                wr.writerows(hist)
        if loss == s.export_loss:
            exported = (enc, dec)
    atomic_write_json(out / "golden_check.json", reports)
    bad = {k: r["n_mismatch"] for k, r in reports.items() if r["n_mismatch"]}
    if bad:
        raise MismatchError(f"golden model != QKeras on integer latent codes: {bad} mismatching "
                            f"wafers (see {out / 'golden_check.json'})")

    enc, dec = exported
    enc.save(out / "encoder.h5")
    dec.save(out / "decoder.h5")
    w = E.EncoderWeights.from_keras(enc)
    atomic_write_bytes(out / "weights.bin", w.to_image())
    atomic_write_bytes(out / "weights.mem", w.to_mem().encode())
    np.savez(out / "weights.npz", conv_w=w.conv_w, conv_b=w.conv_b, dense_w=w.dense_w, dense_b=w.dense_b)

    # KR-dual (NEEMo-style) cross-check of exact EMD on the exported model's reconstructions
    kr = None
    if s.kr_check_pairs:
        from .losses import kr_dual_emd

        n = min(s.kr_check_pairs, len(test["aein"]))
        _, emd_x, extra = evaluate(enc, dec, {k: v[:n] for k, v in test.items()}, s.latent_bits, False)
        est = kr_dual_emd(test["calq"][:n], extra["recon48"], steps=s.kr_steps, seed=ctx.seed)
        ok = np.isfinite(est) & np.isfinite(emd_x) & (emd_x > 0)
        ratio = est[ok] / emd_x[ok]
        kr = {"n": int(ok.sum()), "median_ratio_kr_over_exact": float(np.median(ratio)),
              "q16_ratio": float(np.percentile(ratio, 16)), "q84_ratio": float(np.percentile(ratio, 84)),
              "max_ratio": float(ratio.max()),
              "pearson_r": float(np.corrcoef(est[ok], emd_x[ok])[0, 1])}

    summary = {loss: {k: v for k, v in r.items() if k != "emd"} for loss, r in results.items()}
    ref = results.get("telescope_mse")
    metrics = {"median_emd": {k: r["median"] for k, r in results.items()},
               "golden_mismatches": {k: r["n_mismatch"] for k, r in reports.items()},
               "golden_n_total": reports[s.export_loss]["n_total"],
               "n_train": int(len(train["aein"])), "n_test": int(len(test["aein"])),
               "export_loss": s.export_loss, "kr_dual_check": kr}
    if ref is not None and "emd_cnn" in results:
        metrics["emd_cnn_over_telescope_median"] = results["emd_cnn"]["median"] / ref["median"]
        per_bin = [(a["median"] / b["median"]) if a["median"] and b["median"] else None
                   for a, b in zip(results["emd_cnn"]["vs_occupancy"], ref["vs_occupancy"], strict=True)]
        metrics["emd_cnn_over_telescope_by_occupancy"] = per_bin
    atomic_write_json(out / "eval.json", {"losses": summary, "kr_dual_check": kr})
    with open(out / "comparison.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["loss", "median_emd", "q16", "q84", "epochs"])
        for loss, r in results.items():
            wr.writerow([loss, f"{r['median']:.5f}", f"{r['q16']:.5f}", f"{r['q84']:.5f}", r["epochs"]])
    _plots(out / "plots", results, s.occupancy_bins, s.eta_bins)
    ctx.metrics.update(metrics)
    for loss, r in results.items():
        ctx.add_summary(f"median EMD [{loss}]", f"{r['median']:.4f} ({r['q16']:.3f}-{r['q84']:.3f})")
    if "emd_cnn_over_telescope_median" in metrics:
        ctx.add_summary("EMD-CNN / telescope median", f"{metrics['emd_cnn_over_telescope_median']:.3f}")
    ctx.add_summary("golden vs QKeras", f"0 mismatches on {reports[s.export_loss]['n_total']} wafers")
    if kr:
        ctx.add_summary("KR-dual / exact EMD (median)", f"{kr['median_ratio_kr_over_exact']:.3f}")
