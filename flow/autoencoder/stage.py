"""``autoencoder`` stage: the quantized ECON-T encoder, trained per loss and compared.

For every loss in ``autoencoder.losses`` (and, with the conditional decoder, every
loss in ``conditional_losses``) it trains ``autoencoder.seeds`` models of encoder
(QKeras, the ASIC's exact number formats, :mod:`flow.core.encoder`) + float decoder on
the data stage's training wafers, each **to convergence** under one rule for all
losses (:mod:`flow.core.training`), then evaluates every model with exact EMD
(POT) on the test wafers: median EMD with its bootstrap error, overall and vs
occupancy and |eta| (the paper's Fig. 6), aggregated over seeds as the median with
the min-max spread (:mod:`flow.autoencoder.stats`).  The EMD CNN is checked on
every model's own (input, reconstruction) test pairs.  One encoder of
``export_loss`` is exported for the hardware stages: the seed with the lowest
best validation loss.

Inputs: ``data/{train,val,test}.npz``, ``emd/emd_cnn.keras`` (the frozen EMD
CNN, used as the loss and checked).  Training target: each wafer's AEin values
normalised to unit sum (the decoder ends in a sigmoid); the encoder sees AEin
exactly as the ASIC computes it.

Outputs (``build/<run>/autoencoder/``):

* ``encoder.h5`` (QKeras), ``decoder.h5`` (Keras): the exported pair;
  ``models/<model>/seed<i>/{encoder,decoder}.h5`` for every model (``<model>`` is
  the loss, or ``<loss>+cond`` with the conditional decoder).
* ``weights.bin`` (12864-bit register image, see :class:`flow.core.encoder.EncoderWeights`),
  ``weights.mem`` ($readmemh), ``weights.npz`` (codes per layer);
* ``encoder.json`` (:mod:`flow.core.encoder_file`): latent width, number formats and the
  sha256 of ``weights.bin``, what every later stage reads about the encoder.
* ``elinks/<n>/{weights.bin,encoder.json,encoder.h5}``: the exported loss's encoder for every other
  eLink budget ``n`` of ``autoencoder.elinks`` (its latent width, trained under the same
  rule, from the exported model or from scratch), its models in
  ``models/<export_loss>_<n>elinks/seed<i>/``; ``elinks.json`` (= the ``elinks`` metric):
  latent bits, median exact EMD, epochs, convergence per budget.
* ``golden_check.json``: golden integer model vs QKeras on every test wafer, per
  model and seed and per eLink budget's encoder (``n_total``, ``n_mismatch``, first
  mismatches); any mismatch fails the stage.
* ``eval.json`` (everything below per model and seed, and aggregated),
  ``comparison.csv`` (one row per model), ``training.csv`` (one row per model and
  seed: epochs, convergence, learning rate, time), ``cnn_check.json``,
  ``plots/*.png`` (captions in ``plots/captions.json``), ``history/<model>_seed<i>.csv``.

Resuming: each model trains with Keras ``BackupAndRestore`` and its convergence
state in the run's checkpoint directory (keyed by config and input hashes), so an
interrupted stage restarts from the last finished epoch, and models already
finished are not retrained.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from flow.autoencoder import stats as S
from flow.core import encoder as E
from flow.core.ae_model import build_autoencoder, model_inputs
from flow.core.captions import write_captions
from flow.core.dataset import read_split, split_file
from flow.core.encoder_file import write_encoder
from flow.core.geometry import REMAP_8X8
from flow.core.training import (
    compile_options,
    fit_task,
    from_result,
    model_seed,
    refine_cnn,
    scan_lr,
    subset,
    train_model,
)
from flow.runner.atomic import atomic_write_bytes, atomic_write_json
from flow.runner.errors import ConfigError, FlowError, MismatchError, StageInputError

__all__ = ["build_autoencoder", "nonempty_wafers", "golden_check", "evaluate", "run"]

#: arrays of a split the stage reads
SPLIT_KEYS = ("aein", "calq", "eta", "occupancy", "sum_code", "layer")
#: pairs with a smaller true EMD are left out of the CNN check's relative difference
CNN_CHECK_MIN_EMD = 0.05


# -------------------------------------------------------------------- data
def nonempty_wafers(path: Path, limit: int = 0) -> dict[str, np.ndarray]:
    """The arrays :data:`SPLIT_KEYS` of a dataset split (:func:`flow.core.dataset.read_split`),
    empty wafers left out, at most ``limit`` wafers (0: all)."""
    d = read_split(path, keys=SPLIT_KEYS)
    keep = d["aein"].sum(-1) > 0          # the data stage drops empty wafers; be safe
    d = {k: v[keep] for k, v in d.items()}
    if limit:
        d = {k: v[:limit] for k, v in d.items()}
    return d


def _ckpt_key(ctx) -> str:
    blob = json.dumps({"cfg": ctx.cfg.section_hash("autoencoder"),
                       "up": {k: v.manifest_sha256 for k, v in sorted(ctx.upstream.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_specs(s) -> list[tuple[str, str, str]]:
    """``(model name, loss, decoder)`` of every compared model, in table order."""
    specs = [(loss, loss, "plain") for loss in s.losses]
    specs += [(f"{loss}+cond", loss, "conditional") for loss in s.conditional_losses]
    return specs


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


def reconstruct(dec, gold: np.ndarray, latent_bits: int, cond: np.ndarray | None = None) -> np.ndarray:
    """Decoder output ``(N, 48)`` float64 (TC order) from the golden latent codes."""
    lat = gold.astype(np.float32) * np.float32(E.latent_format(latent_bits).lsb)
    if cond is not None:
        lat = np.concatenate([lat, cond], axis=1)
    recon = dec.predict(lat, batch_size=8192, verbose=0)
    return recon.reshape(len(recon), 64)[:, REMAP_8X8].astype(np.float64)


def evaluate(enc, dec, test: dict, latent_bits: int, use_ray: bool, loss: str = "?",
             decoder: str = "plain") -> tuple[dict, np.ndarray, dict]:
    """Golden check, reconstruction and exact EMD(CALQ input, reconstruction) per test wafer."""
    from flow.core.ae_model import conditions
    from flow.core.emd_exact import emd_pairs, label_pairs

    report, gold = golden_check(enc, test["aein"], latent_bits)
    recon48 = reconstruct(dec, gold, latent_bits, conditions(test) if decoder == "conditional" else None)
    if not np.all(np.isfinite(recon48)):
        raise FlowError(f"training with loss {loss!r} diverged: the decoder gives non-finite "
                        f"reconstructions for {int((~np.isfinite(recon48)).any(-1).sum())} of "
                        f"{len(recon48)} test wafers; lower autoencoder.learning_rate")
    calq = test["calq"].astype(np.float64)
    if use_ray:
        emd = label_pairs(calq, recon48, empty="nan", progress=False)
    else:
        emd = emd_pairs(calq, recon48, empty="nan")
    return report, emd, {"recon48": recon48}


def summarise_model(emd: np.ndarray, test: dict, s, seed: int) -> dict:
    """Median exact EMD with bootstrap error, overall and per occupancy / |eta| bin."""
    return {**S.median_summary(emd, s.bootstrap, seed),
            "vs_occupancy": S.binned_summaries(emd, test["occupancy"], s.occupancy_bins, s.bootstrap, seed),
            "vs_eta": S.binned_summaries(emd, np.abs(test["eta"]), s.eta_bins, s.bootstrap, seed)}


def cnn_predictions(cnn, calq: np.ndarray, recon48: np.ndarray) -> np.ndarray:
    """EMD-CNN prediction on (input, reconstruction) pairs, both normalised to unit sum."""
    from flow.core.emd_cnn import predict
    from flow.core.emd_exact import normalise

    a = normalise(calq, what="autoencoder input", empty="nan")
    b = normalise(recon48, what="autoencoder output", empty="nan")
    ok = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
    out = np.full(len(a), np.nan)
    out[ok] = predict(cnn, a[ok], b[ok])
    return out


# ------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    return plt


def caption(name: str) -> str:
    """The caption of one of this stage's plots (written to ``plots/captions.json``)."""
    band = "median over seeds, bootstrap error bars, min-max band over seeds"
    fixed = {"emd_vs_occupancy.png": f"Median EMD(input, reconstruction) per model vs occupancy: {band}",
             "emd_vs_eta.png": f"Median EMD(input, reconstruction) per model vs |eta|: {band}",
             "emd_distribution.png": "EMD(input, reconstruction) distribution per model (seed 0)"}
    if name in fixed:
        return fixed[name]
    if name.startswith("cnn_on_reconstructions_"):
        model = name.removeprefix("cnn_on_reconstructions_").removesuffix(".png")
        return (f"EMD CNN vs exact EMD on the {model} autoencoder's own (input, reconstruction) test pairs "
                "(seed 0)")
    return Path(name).stem


def _plots(out: Path, agg: dict, per_model: dict) -> list[str]:
    """Median EMD vs occupancy and |eta|: median over seeds (points, bootstrap error
    bars) with the min-max band over seeds; the EMD distribution of each model's seed 0.
    Last, ``captions.json`` for every plot in ``out`` (the EMD-CNN checks' plots too)."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for key, xlabel, fname in (("vs_occupancy", "occupancy (TCs > 1 MIP$_T$)", "emd_vs_occupancy.png"),
                               ("vs_eta", "wafer |$\\eta$|", "emd_vs_eta.png")):
        fig, ax = plt.subplots(figsize=(9, 7))
        for i, (name, a) in enumerate(agg.items()):
            rows = [b for b in a[key] if b["median"] is not None]
            if not rows:
                continue
            w = rows[0]["hi"] - rows[0]["lo"]
            xc = np.array([(b["lo"] + b["hi"]) / 2 for b in rows]) + (i - len(agg) / 2) * 0.04 * w
            med = np.array([b["median"] for b in rows])
            err = np.array([b["boot_std"] or 0.0 for b in rows])
            line = ax.errorbar(xc, med, yerr=err, marker="o", capsize=3,
                               label=f"{name} ({a['n_seeds']} seed{'s' if a['n_seeds'] > 1 else ''})")
            ax.fill_between(xc, [b["min"] for b in rows], [b["max"] for b in rows], alpha=0.25,
                            color=line[0].get_color(), linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median EMD")
        ax.legend(fontsize=14, title="band: min-max over seeds", title_fontsize=14)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=80)
        plt.close(fig)
        files.append(fname)
    fig, ax = plt.subplots(figsize=(9, 7))
    hi = max([3.0] + [float(np.nanpercentile(m["emd"][0], 99)) for m in per_model.values()])
    for name, m in per_model.items():
        e = m["emd"][0][np.isfinite(m["emd"][0])]
        ax.hist(e, bins=60, range=(0, hi), histtype="step", label=f"{name} (median {np.median(e):.3f})")
    ax.set_xlabel("EMD (input, reconstruction), seed 0")
    ax.set_ylabel("wafers")
    ax.legend(fontsize=14)
    fig.tight_layout()
    fig.savefig(out / "emd_distribution.png", dpi=80)
    plt.close(fig)
    files.append("emd_distribution.png")
    write_captions(out, {p.name: caption(p.name) for p in sorted(out.glob("*.png"))})
    return files


def _cnn_plot(out: Path, name: str, pred: np.ndarray, true: np.ndarray) -> str:
    plt = _plt()
    ok = np.isfinite(pred) & np.isfinite(true)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.hist2d(true[ok], pred[ok], bins=80, cmin=1, cmap="viridis")
    top = float(np.percentile(true[ok], 99.5)) if ok.any() else 1.0
    ax.plot([0, top], [0, top], "r--", lw=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("exact EMD (input, reconstruction)")
    ax.set_ylabel("EMD-CNN prediction")
    ax.set_title(f"{name}, seed 0", fontsize=16)
    fig.tight_layout()
    fname = f"cnn_on_reconstructions_{name}.png"
    fig.savefig(out / fname, dpi=80)
    plt.close(fig)
    return fname


# -------------------------------------------------------------------- stage
def _loss_kw(s, emd_cnn_path) -> dict:
    """The keyword arguments of :func:`flow.core.losses.get_loss` every model of the stage uses."""
    return {"emd_cnn_path": emd_cnn_path, "sinkhorn_eps": s.sinkhorn_eps, "sinkhorn_iters": s.sinkhorn_iters}


def _check_config(s) -> None:
    if s.export_loss not in s.losses:
        raise ConfigError(f"autoencoder.export_loss: expected one of the trained losses {s.losses}, "
                          f"got {s.export_loss!r}")
    unknown = set(s.max_train_wafers_by_loss) - set(s.losses) - set(s.conditional_losses)
    if unknown:
        raise ConfigError(f"autoencoder.max_train_wafers_by_loss: expected keys among the trained "
                          f"losses {s.losses}, got {sorted(unknown)}")


def _save_model(out: Path, name: str, i: int, t) -> None:
    mdir = out / "models" / name / f"seed{i}"
    mdir.mkdir(parents=True, exist_ok=True)
    t.enc.save(mdir / "encoder.h5")
    t.dec.save(mdir / "decoder.h5")
    (out / "history").mkdir(exist_ok=True)
    with open(out / "history" / f"{name}_seed{i}.csv", "w", newline="") as f:
        if t.history:
            wr = csv.DictWriter(f, fieldnames=list(t.history[0]))
            wr.writeheader()
            wr.writerows(t.history)


def run(ctx) -> None:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")   # Keras' save/retrace chatter; progress is printed per epoch
    s = ctx.settings
    _check_config(s)
    if s.threads:
        tf.config.threading.set_intra_op_parallelism_threads(s.threads)
    tf.config.experimental.enable_op_determinism()
    data = ctx.upstream["data"]
    emd_path = ctx.upstream["emd"].path("emd_cnn.keras")
    train = nonempty_wafers(data.path(split_file("train")), s.max_train_wafers)
    val = nonempty_wafers(data.path(split_file("val")))
    test = nonempty_wafers(data.path(split_file("test")), s.eval_wafers)
    # exact EMD of the evaluation on Ray for big test sets, unless the models train on Ray:
    # then the training tasks hold its CPUs and the driver labels serially meanwhile
    use_ray = len(test["aein"]) > 20000 and not s.ray.enabled
    ck_root = ctx.checkpoint_dir / _ckpt_key(ctx)
    cnn = None
    if s.cnn_check:
        from flow.core.emd_cnn import load_emd_cnn

        cnn = load_emd_cnn(emd_path)

    import contextlib

    from flow.core.emd_exact import ray_session

    session = (ray_session(s.ray.address, s.ray.num_cpus) if s.ray.enabled else
               ray_session() if use_ray else contextlib.nullcontext())
    with session:
        per_model, training, lr_rule, cnn_checks, exported, elink_plan = _train_all(
            ctx, s, train, val, test, emd_path, ck_root, cnn, use_ray)
        elinks = _train_elinks(ctx, s, elink_plan, test, emd_path, use_ray)
    reports = {name: m["golden"] for name, m in per_model.items()}
    reports.update({f"{s.export_loss}_{n}elinks": [r["golden"]] for n, r in elinks.items() if r["trained"]})
    _finish(ctx, s, train, test, per_model, reports, training, lr_rule, cnn_checks, exported)
    _finish_elinks(ctx, s, elinks)


class _Plan(NamedTuple):
    """One compared model: its name, loss, decoder, inputs and learning-rate rule."""

    name: str
    loss: str
    decoder: str
    tr: tuple
    va: tuple
    rule: dict


def _plan(ctx, s, train, val, emd_path, ck_root) -> list[_Plan]:
    """Inputs and learning-rate rule of every compared model (the scan runs here)."""
    from flow.core.losses import get_loss

    plan = []
    for name, loss, decoder in model_specs(s):
        tr = model_inputs(train, decoder)
        cap = s.max_train_wafers_by_loss.get(loss, 0)
        if cap:
            tr = (subset(tr[0], cap), tr[1][:cap])
        va_x, va_t = model_inputs(val, decoder)
        # validation for early stopping: a fixed subset is plenty and keeps epochs cheap
        va = (subset(va_x, 50000), va_t[:50000])

        def make_loss(loss=loss):
            return get_loss(loss, **_loss_kw(s, emd_path))

        rule = scan_lr(s, loss, decoder, make_loss, tr, va, model_seed(ctx.seed, loss, 0),
                       ck_root / name, print)
        plan.append(_Plan(name, loss, decoder, tr, va, rule))
    return plan


def _fits(ctx, s, plan: list[_Plan], emd_path, ck_root):
    """Yield ``(plan entry, seed index, Trained)`` for every model and seed, in table
    order.  With ``ray.enabled`` all of them are submitted at once as 1-CPU Ray tasks
    (a cluster trains them in parallel) and collected in order; otherwise each trains
    in this process."""
    loss_kw = _loss_kw(s, emd_path)
    jobs = [(p, i, {"seed": model_seed(ctx.seed, p.loss, i), "lr": p.rule["lr"],
                    "ck": str(ck_root / p.name / f"seed{i}")}) for p in plan for i in range(s.seeds)]
    if not s.ray.enabled:
        for p, i, kw in jobs:
            yield p, i, from_result(s.latent_bits, p.decoder,
                                    fit_task(s, p.loss, p.decoder, loss_kw, p.tr, p.va, **kw))
        return
    import ray

    task = _remote_fit()
    data = {p.name: (ray.put(p.tr), ray.put(p.va)) for p in plan}
    refs = [task.remote(s, p.loss, p.decoder, loss_kw, *data[p.name], **kw) for p, i, kw in jobs]
    print(f"[autoencoder] {len(refs)} models submitted as Ray tasks "
          f"({int(ray.cluster_resources().get('CPU', 1))} CPUs)")
    for k, ((p, i, _kw), ref) in enumerate(zip(jobs, refs, strict=True)):
        while not ray.wait([ref], timeout=60.0)[0]:
            print("[autoencoder] epochs so far: " + ", ".join(
                f"{q.name}/seed{j} {_epochs_done(Path(kwj['ck']))}" for q, j, kwj in jobs[k:]), flush=True)
        res = _fit_result(ref, f"model {p.name} seed {i}")
        info = res["info"]
        state = "converged" if info["converged"] else "NOT converged"
        print(f"[autoencoder] {p.name}/seed{i}: {info['epochs_run']} epochs, {state}, "
              f"best val loss {info['best_val_loss']}")
        yield p, i, from_result(s.latent_bits, p.decoder, res)


def _epochs_done(ck: Path) -> int:
    """Epochs a (possibly running) model has logged in its checkpoint directory."""
    f = ck / "history.csv"
    return max(0, len(f.read_text().splitlines()) - 1) if f.exists() else 0


def _train_all(ctx, s, train, val, test, emd_path, ck_root, cnn, use_ray):
    """Train and evaluate every (model, seed); plan (and with Ray submit) the eLink budgets'
    fine-tunes as soon as the exported loss's seeds are all in."""
    from flow.core.losses import loss_spec

    out = ctx.out
    per_model, training, cnn_checks, exported, elinks = {}, {}, {}, None, None
    plan = _plan(ctx, s, train, val, emd_path, ck_root)
    lr_rule = {p.name: p.rule for p in plan}
    for p, i, t in _fits(ctx, s, plan, emd_path, ck_root):
        name, loss, decoder = p.name, p.loss, p.decoder
        models = per_model.setdefault(name, {"emd": [], "summary": [], "info": [], "golden": []})
        seed = model_seed(ctx.seed, loss, i)
        cnn_i = cnn
        if s.refine_rounds and loss_spec(loss).needs_emd_cnn and decoder == "plain":
            # the last round's evaluation is the refined model's evaluation
            t, cnn_path, rounds, (report, emd, extra) = _refine(
                ctx, s, loss, t, p.tr, p.va, test, emd_path, ck_root / name / f"seed{i}", seed,
                p.rule["lr"], use_ray)
            models.setdefault("refine", []).append(rounds)
            if cnn is not None:
                from flow.core.emd_cnn import load_emd_cnn

                cnn_i = load_emd_cnn(cnn_path)
        else:
            report, emd, extra = evaluate(t.enc, t.dec, test, s.latent_bits, use_ray, loss=loss,
                                          decoder=decoder)
        models["emd"].append(emd)
        models["summary"].append(summarise_model(emd, test, s, seed))
        models["info"].append({**t.info, "seed_index": i})
        models["golden"].append(report)
        if cnn_i is not None:
            pred = cnn_predictions(cnn_i, test["calq"].astype(np.float64), extra["recon48"])
            chk = S.cnn_check(pred, emd, test["occupancy"], min_emd=CNN_CHECK_MIN_EMD)
            cnn_checks.setdefault(name, []).append(chk)
            if i == 0:
                (out / "plots").mkdir(parents=True, exist_ok=True)
                _cnn_plot(out / "plots", name, pred, emd)
        _save_model(out, name, i, t)
        if name == s.export_loss and (exported is None or
                                      (t.info["best_val_loss"] or np.inf) < exported[2]):
            exported = (t.enc, t.dec, t.info["best_val_loss"] or np.inf, i, t.model)
        training[name] = models["info"]
        if name == s.export_loss and len(models["info"]) == s.seeds:
            elinks = _plan_elinks(ctx, s, plan, exported, per_model, ck_root, emd_path)
    return per_model, training, lr_rule, cnn_checks, exported, elinks


class _ElinkPlan(NamedTuple):
    """The eLink budgets of the exported loss: the compared model's own budget (``out``), the
    fine-tune jobs ``(n, settings, fit keywords)`` of every other budget, and their Ray task
    references once submitted (``None`` on the serial path)."""

    p: _Plan
    i: int
    out: dict
    jobs: list
    refs: list | None


def _plan_elinks(ctx, s, plan, exported, per_model, ck_root, emd_path) -> _ElinkPlan:
    """The exported loss's encoder for every other eLink budget of ``autoencoder.elinks``:
    the latent width of the budget, the same loss, wafers, learning rate and convergence
    rule as the compared models, started from the exported model (``elinks_init:
    finetune``) or from scratch.  The budget of ``latent_bits`` is the exported model
    itself.  Called as soon as every seed of the exported loss is trained: with
    ``ray.enabled`` the fine-tunes are submitted here, so they queue behind the compared
    models still waiting and fill the CPUs those leave idle at the end."""
    from flow.core.encoder_file import ELINK_LATENT_BITS

    p = next(q for q in plan if q.name == s.export_loss)
    _enc, _dec, _best, i, model = exported
    main = per_model[s.export_loss]
    out, jobs = {}, []
    for n in sorted(set(s.elinks)):
        bits = ELINK_LATENT_BITS[n]
        if bits == s.latent_bits:
            info = main["info"][i]
            out[n] = {"latent_bits": bits, "trained": False, "init": "the compared model",
                      "seed_index": i, "median_emd": main["summary"][i]["median"],
                      "boot_std": main["summary"][i].get("boot_std"),
                      "epochs_run": info["epochs_run"], "converged": info["converged"],
                      "best_val_loss": info["best_val_loss"]}
            continue
        init = model.get_weights() if s.elinks_init == "finetune" else None
        print(f"[autoencoder] {n} eLinks: {p.loss} encoder with {bits}-bit latents "
              f"({'fine-tuned from the exported model' if init is not None else 'from scratch'})")
        jobs.append((n, s.model_copy(update={"latent_bits": bits}),
                     {"seed": model_seed(ctx.seed, p.loss, i), "lr": p.rule["lr"], "init_weights": init,
                      "ck": str(ck_root / f"{p.name}_{n}elinks" / f"seed{i}")}))
    return _ElinkPlan(p, i, out, jobs, _submit_elinks(s, p, jobs, emd_path))


def _train_elinks(ctx, s, ep: _ElinkPlan, test, emd_path, use_ray) -> dict:
    """Collect (or, serially, train) the budgets of :func:`_plan_elinks`; golden-check and
    evaluate them like the compared models.  ``{n: record}``, records with the trained
    :class:`Trained` under ``"t"`` (not serialised)."""
    p, i, out = ep.p, ep.i, dict(ep.out)
    for (n, sb, kw), t in zip(ep.jobs, _elink_results(s, p, ep.jobs, ep.refs, emd_path), strict=True):
        bits = sb.latent_bits
        report, emd, _extra = evaluate(t.enc, t.dec, test, bits, use_ray, loss=p.loss)
        summ = summarise_model(emd, test, s, kw["seed"])
        _save_model(ctx.out, f"{p.name}_{n}elinks", i, t)
        out[n] = {"latent_bits": bits, "trained": True, "init": s.elinks_init, "seed_index": i,
                  "median_emd": summ["median"], "boot_std": summ.get("boot_std"),
                  "epochs_run": t.info["epochs_run"], "converged": t.info["converged"],
                  "best_val_loss": t.info["best_val_loss"], "golden": report, "t": t}
        print(f"[autoencoder] {n} eLinks ({bits}-bit latents): median exact EMD {summ['median']:.4f}, "
              f"{t.info['epochs_run']} epochs, {'converged' if t.info['converged'] else 'NOT converged'}")
    return dict(sorted(out.items()))


def _submit_elinks(s, p: _Plan, jobs: list, emd_path) -> list | None:
    """With ``ray.enabled``: submit every eLink-budget job ``(n, settings, fit keywords)``
    as a 1-CPU Ray task (the budgets are independent) and return the references;
    otherwise ``None`` (they train in this process when collected)."""
    if not s.ray.enabled or not jobs:
        return None
    import ray

    task = _remote_fit()
    tr, va = ray.put(p.tr), ray.put(p.va)
    loss_kw = _loss_kw(s, emd_path)
    return [task.remote(sb, p.loss, "plain", loss_kw, tr, va, **kw) for _n, sb, kw in jobs]


def _elink_results(s, p: _Plan, jobs: list, refs: list | None, emd_path):
    """Yield the :class:`Trained` model of every job in order: the Ray task's result
    (``refs`` from :func:`_submit_elinks`) or, without Ray, trained here."""
    if refs is None:
        for _n, sb, kw in jobs:
            res = fit_task(sb, p.loss, "plain", _loss_kw(s, emd_path), p.tr, p.va, **kw)
            yield from_result(sb.latent_bits, "plain", res)
        return
    for (n, sb, _kw), ref in zip(jobs, refs, strict=True):
        res = _fit_result(ref, f"{n}-eLink model ({p.loss}, {sb.latent_bits}-bit latents)")
        yield from_result(sb.latent_bits, "plain", res)


def _remote_fit():
    """:func:`fit_task` as a 1-CPU Ray task without retries: one model per task."""
    import ray

    return ray.remote(num_cpus=1, max_retries=0)(fit_task)


def _fit_result(ref, what: str) -> dict:
    """The result of a :func:`_remote_fit` task; a failure raises FlowError naming ``what``."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        raise FlowError(f"autoencoder {what} failed in its Ray task: "
                        f"{e.cause if hasattr(e, 'cause') else e}") from e


def _finish_elinks(ctx, s, elinks: dict) -> None:
    """Export every other budget's encoder (``elinks/<n>/weights.bin``, ``encoder.json``,
    ``encoder.h5``),
    ``elinks.json`` and the ``elinks`` metric (budget -> latent bits, median EMD, epochs,
    converged); a budget that hit the epoch cap is flagged like a compared model."""
    from flow.core.encoder_file import ELINK_DIR

    table = {}
    for n, r in elinks.items():
        if r["trained"]:
            d = ctx.out / ELINK_DIR.format(n=n)
            d.mkdir(parents=True, exist_ok=True)
            w = E.EncoderWeights.from_keras(r["t"].enc)
            write_encoder(d, w, r["latent_bits"])
            r["t"].enc.save(d / "encoder.h5")     # the QKeras model convert turns into hls4ml projects
        table[str(n)] = {k: (v if k != "golden" else {"n_total": v["n_total"], "n_mismatch": v["n_mismatch"]})
                         for k, v in r.items() if k != "t"}
    atomic_write_json(ctx.out / "elinks.json", table)
    ctx.metrics["elinks"] = table
    for n, r in table.items():
        state = "converged" if r["converged"] else "NOT converged (hit the epoch cap)"
        med = "n/a" if r["median_emd"] is None else f"{r['median_emd']:.3f}"
        ctx.add_summary(f"{n} eLinks ({r['latent_bits']}-bit latents)",
                        f"median EMD {med}, {r['epochs_run']} epochs, {state}, from {r['init']}")


def _refine(ctx, s, loss: str, t, tr, va, test, emd_path, ck, seed: int, lr: float, use_ray: bool):
    """The closed loop for one model whose ``loss`` is built from the EMD CNN
    (``needs_emd_cnn`` in the loss table): ``refine_rounds`` rounds of (exact labels
    of its reconstructions -> EMD CNN fine-tuned -> autoencoder trained on to convergence
    with the new CNN); the median exact EMD on the test wafers after every round.  Returns the
    refined model, its CNN, the rounds and the last round's :func:`evaluate` result."""
    from flow.core.emd_pairs import load_pairs
    from flow.core.losses import get_loss

    emd_up = ctx.upstream["emd"]
    rnd = (load_pairs(emd_up.path("pairs_train.npz")), load_pairs(emd_up.path("pairs_val.npz")))
    ev = evaluate(t.enc, t.dec, test, s.latent_bits, use_ray, loss=loss)
    rounds = [{"round": 0, "median_emd": float(np.nanmedian(ev[1])), "epochs_run": t.info["epochs_run"],
               "converged": t.info["converged"]}]
    cnn_path, first = emd_path, t.info
    for r in range(1, s.refine_rounds + 1):
        rck = ck / f"refine{r}"
        cnn_path, rec = refine_cnn(s, t, tr, rnd, cnn_path, rck / "emd_cnn", seed=seed, log=print)
        t = train_model(s, loss, "plain",
                        lambda p=cnn_path: get_loss(loss, **_loss_kw(s, p)),
                        tr, va, seed=seed, lr=lr, ck=rck / "autoencoder", log=print,
                        init_weights=t.model.get_weights())
        ev = evaluate(t.enc, t.dec, test, s.latent_bits, use_ray, loss=loss)
        rounds.append({"round": r, "median_emd": float(np.nanmedian(ev[1])),
                       "epochs_run": t.info["epochs_run"], "converged": t.info["converged"], **rec})
        print(f"[autoencoder] refinement round {r}: median exact EMD {rounds[-1]['median_emd']:.4f} "
              f"(round 0: {rounds[0]['median_emd']:.4f})")
    t.info = {**first, "epochs_run": sum(x["epochs_run"] for x in rounds),
              "converged": all(x["converged"] for x in rounds), "refine": rounds}
    return t, cnn_path, rounds, ev


def _finish(ctx, s, train, test, per_model, reports, training, lr_rule, cnn_checks, exported) -> None:
    """Golden verdict, export, aggregation, tables, plots, metrics."""
    out = ctx.out
    atomic_write_json(out / "golden_check.json", reports)
    bad = {k: sum(r["n_mismatch"] for r in rs) for k, rs in reports.items()
           if any(r["n_mismatch"] for r in rs)}
    if bad:
        raise MismatchError(f"golden model != QKeras on integer latent codes: {bad} mismatching "
                            f"wafers (see {out / 'golden_check.json'})")

    enc, dec, _, export_seed, _model = exported
    enc.save(out / "encoder.h5")
    dec.save(out / "decoder.h5")
    w = E.EncoderWeights.from_keras(enc)
    write_encoder(out, w, s.latent_bits)        # weights.bin + encoder.json, read by every later stage
    atomic_write_bytes(out / "weights.mem", w.to_mem().encode())
    np.savez(out / "weights.npz", conv_w=w.conv_w, conv_b=w.conv_b, dense_w=w.dense_w, dense_b=w.dense_b)
    kr = _kr_check(s, enc, dec, test, ctx.seed)

    agg = {name: S.aggregate_seeds(m["summary"]) for name, m in per_model.items()}
    converged = {name: all(x["converged"] for x in infos) for name, infos in training.items()}
    ratios = {}
    for other in ("telescope_mse", "weighted_mse"):
        if "emd_cnn" in agg and other in agg:
            ratios[other] = {"overall": S.ratio_with_spread(agg["emd_cnn"], agg[other]),
                             "vs_occupancy": S.binned_ratio(agg["emd_cnn"]["vs_occupancy"],
                                                            agg[other]["vs_occupancy"]),
                             "vs_eta": S.binned_ratio(agg["emd_cnn"]["vs_eta"], agg[other]["vs_eta"])}
    cnn_std = {name: max(c["rel_std"] for c in chks if c["rel_std"] is not None)
               for name, chks in cnn_checks.items() if any(c["rel_std"] is not None for c in chks)}

    _write_tables(out, s, agg, training, lr_rule, per_model, ratios, kr, cnn_checks, export_seed)
    _plots(out / "plots", agg, per_model)

    metrics = {"n_seeds": s.seeds, "models": [n for n, _, _ in model_specs(s)],
               "converged": converged,
               "median_emd": {k: {"median": a["median"], "min": a["min"], "max": a["max"],
                                  "boot_std": a["boot_std"]} for k, a in agg.items()},
               "epochs_run": {k: [x["epochs_run"] for x in v] for k, v in training.items()},
               "epoch_cap": s.epochs,
               "learning_rate": {k: r["lr"] for k, r in lr_rule.items()},
               "s_per_epoch": {k: [x.get("s_per_epoch") for x in v] for k, v in training.items()},
               "golden_mismatches": {k: sum(r["n_mismatch"] for r in rs) for k, rs in reports.items()},
               "golden_n_total": sum(r["n_total"] for rs in reports.values() for r in rs),
               "n_train": int(len(train["aein"])), "n_test": int(len(test["aein"])),
               "export_loss": s.export_loss, "export_seed": export_seed, "kr_dual_check": kr,
               "refine_rounds": s.refine_rounds}
    refine = {name: m["refine"] for name, m in per_model.items() if m.get("refine")}
    if refine:
        metrics["refine_median_emd"] = {name: [[x["median_emd"] for x in seed] for seed in rs]
                                        for name, rs in refine.items()}
    if cnn_std:
        metrics["cnn_on_ae_pairs_rel_std"] = cnn_std
    for other, key in (("telescope_mse", "emd_cnn_over_telescope"),
                       ("weighted_mse", "emd_cnn_over_weighted_mse")):
        if other in ratios:
            r = ratios[other]["overall"]
            metrics.update({f"{key}_median": r["ratio"], f"{key}_min": r["min"], f"{key}_max": r["max"]})
    if "telescope_mse" in ratios:
        metrics["emd_cnn_over_telescope_by_occupancy"] = [b["ratio"] for b in
                                                          ratios["telescope_mse"]["vs_occupancy"]]
    ctx.metrics.update(metrics)
    _summaries(ctx, agg, training, converged, metrics, reports)


def _kr_check(s, enc, dec, test, seed) -> dict | None:
    """KR-dual (NEEMo-style) cross-check of exact EMD on the exported model's reconstructions."""
    if not s.kr_check_pairs:
        return None
    from flow.core.losses import kr_dual_emd

    n = min(s.kr_check_pairs, len(test["aein"]))
    _, emd_x, extra = evaluate(enc, dec, {k: v[:n] for k, v in test.items()}, s.latent_bits, False)
    est = kr_dual_emd(test["calq"][:n], extra["recon48"], steps=s.kr_steps, seed=seed)
    ok = np.isfinite(est) & np.isfinite(emd_x) & (emd_x > 0)
    ratio = est[ok] / emd_x[ok]
    return {"n": int(ok.sum()), "median_ratio_kr_over_exact": float(np.median(ratio)),
            "q16_ratio": float(np.percentile(ratio, 16)), "q84_ratio": float(np.percentile(ratio, 84)),
            "max_ratio": float(ratio.max()), "pearson_r": float(np.corrcoef(est[ok], emd_x[ok])[0, 1])}


def _write_tables(out, s, agg, training, lr_rule, per_model, ratios, kr, cnn_checks, export_seed) -> None:
    evals = {"models": {name: {"aggregate": a, "seeds": per_model[name]["summary"],
                               "training": training[name], "lr_rule": lr_rule[name],
                               **({"refine": per_model[name]["refine"]}
                                  if per_model[name].get("refine") else {})}
                        for name, a in agg.items()},
             "ratios_emd_cnn_over": ratios, "kr_dual_check": kr, "export": {"loss": s.export_loss,
                                                                            "seed_index": export_seed},
             "statistics": "per model: median over the test wafers with the bootstrap std of the median "
                           f"({s.bootstrap} resamples); per loss: median over {s.seeds} seeds with min-max; "
                           "ratios: ratio of the medians over seeds, spread min(A)/max(B)..max(A)/min(B)"}
    atomic_write_json(out / "eval.json", evals)
    if cnn_checks:
        atomic_write_json(out / "cnn_check.json", {"min_emd": CNN_CHECK_MIN_EMD, "models": cnn_checks})
    with open(out / "comparison.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["model", "median_emd", "min", "max", "boot_std", "n_seeds", "converged",
                     "epochs_run", "learning_rate"])
        for name, a in agg.items():
            wr.writerow([name, f"{a['median']:.5f}", f"{a['min']:.5f}", f"{a['max']:.5f}",
                         "" if a["boot_std"] is None else f"{a['boot_std']:.5f}", a["n_seeds"],
                         all(x["converged"] for x in training[name]),
                         " ".join(str(x["epochs_run"]) for x in training[name]),
                         f"{lr_rule[name]['lr']:g}"])
    with open(out / "training.csv", "w", newline="") as f:
        cols = ["model", "seed_index", "seed", "lr", "epochs_run", "epoch_cap", "best_epoch",
                "stopped_early", "converged", "best_val_loss", "wall_s", "s_per_epoch", "n_train"]
        wr = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        for name, infos in training.items():
            for x in infos:
                wr.writerow({"model": name, **x})


def _summaries(ctx, agg, training, converged, metrics, reports) -> None:
    for name, a in agg.items():
        eps = "/".join(str(x["epochs_run"]) for x in training[name])
        ctx.add_summary(f"median EMD [{name}]",
                        f"{a['median']:.4f} (seeds {a['min']:.4f}-{a['max']:.4f}), epochs {eps}"
                        + ("" if converged[name] else "  NOT CONVERGED"))
    for key, label in (("emd_cnn_over_telescope", "EMD-CNN / telescope median"),
                       ("emd_cnn_over_weighted_mse", "EMD-CNN / weighted-MSE median")):
        if metrics.get(f"{key}_median") is not None:
            ctx.add_summary(label, f"{metrics[f'{key}_median']:.3f} "
                                   f"({metrics[f'{key}_min']:.3f}-{metrics[f'{key}_max']:.3f})")
    for name, v in (metrics.get("cnn_on_ae_pairs_rel_std") or {}).items():
        ctx.add_summary(f"EMD CNN on reconstructions [{name}]", f"rel. std {100 * v:.2f} %")
    n = sum(r["n_total"] for rs in reports.values() for r in rs)
    ctx.add_summary("golden vs QKeras", f"0 mismatches on {n} wafer encodings")
    kr = metrics.get("kr_dual_check")
    if kr:
        ctx.add_summary("KR-dual / exact EMD (median)", f"{kr['median_ratio_kr_over_exact']:.3f}")


# ------------------------------------------------------------------- bench
def bench(cfg, workdir: Path, steps: int = 60) -> dict[str, float]:
    """Training cost per loss at the stage's batch size and thread count (``make bench``).

    For each loss of the config (plain decoder, the run's EMD CNN for ``emd_cnn``): one
    warm-up epoch of ``steps`` batches, then ``steps`` timed batches; keys
    ``<loss>_s_per_step`` and ``<loss>_s_per_epoch`` (the step time times the batches of
    one epoch over the stage's training wafers, validation not included),
    ``<loss>_cpu_s_per_step`` (process CPU time: the cost on a shared machine), plus
    ``tf_intra_threads`` in effect, ``steps_per_execution``, ``jit_compile`` and ``n_train``.
    The stage's own measured ``s_per_epoch`` (with validation, every model) is in its
    manifest's metrics."""
    import math
    import time

    import tensorflow as tf

    from flow.core.losses import get_loss

    s = cfg.autoencoder
    data = cfg.stage_dir("data")
    emd_path = cfg.stage_dir("emd") / "emd_cnn.keras"
    train_path = data / split_file("train")
    n_tr = len(nonempty_wafers(train_path)["aein"])
    if s.max_train_wafers:
        n_tr = min(n_tr, s.max_train_wafers)
    n = steps * s.batch_size
    split = nonempty_wafers(train_path, n)
    x, t = model_inputs(split)
    if len(t) < n:
        raise StageInputError(f"bench needs {n} training wafers, got {len(t)} in {train_path}")
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    out: dict[str, float] = {"n_train": float(n_tr), "batch_size": float(s.batch_size),
                             "tf_intra_threads": float(threads),
                             "steps_per_execution": float(compile_options(s)["steps_per_execution"]),
                             "jit_compile": float(compile_options(s)["jit_compile"])}
    for loss in s.losses:
        if loss == "emd_cnn" and not emd_path.exists():
            continue
        tf.keras.utils.set_random_seed(0)
        model, _, _ = build_autoencoder(s.latent_bits)
        model.compile(optimizer=tf.keras.optimizers.Adam(s.learning_rate),
                      loss=get_loss(loss, **_loss_kw(s, emd_path)), **compile_options(s))
        model.fit(x, t, epochs=1, batch_size=s.batch_size, verbose=0, shuffle=False)     # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(x, t, epochs=1, batch_size=s.batch_size, verbose=0, shuffle=False)
        per_step = (time.perf_counter() - t0) / steps
        out[f"{loss}_s_per_step"] = per_step
        # process CPU time: on a shared machine the wall time measures the load as well
        out[f"{loss}_cpu_s_per_step"] = (time.process_time() - c0) / steps
        out[f"{loss}_s_per_epoch"] = per_step * math.ceil(max(n_tr, 1) / s.batch_size)
    return out
