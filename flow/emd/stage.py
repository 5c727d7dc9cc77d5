"""Stage ``emd``: exact EMD labels (POT, on Ray) and the EMD CNN (issue #5).

Steps (each documented in ``docs/emd.md``):

1. **pairs**: non-empty wafers (``emd.wafers`` array) of the data stage's
   ``train`` split are split 70/30 *by wafer*; random pairs are formed
   within each part (``pairs_train.npz``, ``pairs_val.npz``), and held-out
   pairs from the ``test`` split (``pairs_test.npz``).  Labels are the exact
   EMD (:mod:`flow.core.emd_exact`), computed on Ray in chunks and cached in the
   checkpoint directory keyed by the data artifact and the sampling settings.
2. **grid search** over the configured hyper-parameters, one Ray task per
   trial (single-threaded TensorFlow), each trial checkpointed and
   resumable; the best on the validation pairs is kept (``grid.json``).
3. **final training** of the best architecture on all training pairs,
   warm-started from its trial, resumable (``history.json``).
4. **evaluation** on the held-out pairs (``eval.json``, ``plots/*.png``) and
   the frozen model ``emd_cnn.keras`` + ``emd_cnn.json``.

Other code imports the frozen model's API from :mod:`flow.core.emd_cnn`
(:func:`~flow.core.emd_cnn.load_emd_cnn`, :func:`~flow.core.emd_cnn.emd_loss`), the pair
sets from :mod:`flow.core.emd_pairs` and the exact EMD from :mod:`flow.core.emd_exact`;
this module holds the stage and :func:`bench` for ``make bench``.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flow.core.emd_cnn import (
    Arch,
    TrainParams,
    build_emd_cnn,
    enable_determinism,
    load_emd_cnn,
    predict,
    save_emd_cnn,
    set_tf_threads,
    to_inputs,
    train_model,
)
from flow.core.emd_exact import label_pairs, normalise, ray_session, throughput
from flow.core.emd_pairs import (
    load_pairs,
    load_wafers,
    make_pair_set,
    save_pairs,
    split_wafers,
)
from flow.emd.evaluate import evaluate, plot, rel_metrics
from flow.runner.atomic import atomic_dir, atomic_write_json
from flow.runner.errors import GeneratorError

#: bump when the pair sampling or labelling changes (invalidates the label cache)
LABELS_VERSION = 1
SPLITS = ("train", "val", "test")


def _log(msg: str) -> None:
    print(f"[emd] {msg}", file=sys.stderr, flush=True)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grid_archs(grid) -> list[Arch]:
    """The cartesian product of the grid's lists, in a fixed order."""
    return [Arch(f, k, n, d) for f, k, n, d in itertools.product(
        grid.filters, grid.kernel, grid.n_conv, grid.dense)]


def _train_params(s, epochs: int) -> TrainParams:
    return TrainParams(epochs=epochs, batch_size=s.batch_size, learning_rate=s.learning_rate,
                       loss=s.loss, rel_eps=s.rel_eps, patience=s.patience,
                       lr_schedule=s.lr_schedule, lr_patience=s.lr_patience, min_lr=s.min_lr)


# ---------------------------------------------------------------- step 1: labelled pairs


def _make_pairs(ctx, s, use_ray: bool) -> tuple[dict[str, dict], dict[str, Any]]:
    data = ctx.upstream["data"]
    lkey = _key({"v": LABELS_VERSION, "data": data.manifest_sha256, "wafers": s.wafers,
                 "n_pairs": s.n_pairs, "val_fraction": s.val_fraction,
                 "n_test_pairs": s.n_test_pairs, "seed": ctx.seed})
    cache = ctx.checkpoint_dir / "labels" / lkey
    info: dict[str, Any] = {"labels_key": lkey}
    if s.cache_labels and all((cache / f"pairs_{sp}.npz").is_file() for sp in SPLITS):
        _log(f"labelled pairs from cache {cache}")
        info.update(json.loads((cache / "info.json").read_text()), cached=True)
        return {sp: load_pairs(cache / f"pairs_{sp}.npz") for sp in SPLITS}, info

    rng = np.random.default_rng([ctx.seed, 1])
    w_tr = load_wafers(data.path("train.npz"), s.wafers)
    w_te = load_wafers(data.path("test.npz"), s.wafers)
    idx_tr, idx_va = split_wafers(len(w_tr["wafers"]), s.val_fraction, rng)
    n_val = int(round(s.n_pairs * s.val_fraction))
    plan = [("train", w_tr, idx_tr, s.n_pairs - n_val), ("val", w_tr, idx_va, n_val),
            ("test", w_te, np.arange(len(w_te["wafers"])), s.n_test_pairs)]
    pairs = {}
    t0 = time.perf_counter()
    for sp, w, pool, n in plan:
        pairs[sp] = make_pair_set(w, pool, n, rng, use_ray=use_ray, chunk_pairs=s.ray.chunk_pairs,
                                  desc=f"EMD labels ({sp})", progress=s.progress)
    dt = time.perf_counter() - t0
    n_all = sum(len(p["emd"]) for p in pairs.values())
    info.update({
        "cached": False, "label_s": round(dt, 3), "label_pairs_per_s": round(n_all / dt, 1),
        "wafers_train_pool": int(len(idx_tr)), "wafers_val_pool": int(len(idx_va)),
        "wafers_test_pool": int(len(w_te["wafers"])),
        "empty_wafers_skipped": int(w_tr["n_empty"] + w_te["n_empty"]),
    })
    if s.cache_labels:
        with atomic_dir(cache) as tmp:
            for sp in SPLITS:
                save_pairs(tmp / f"pairs_{sp}.npz", pairs[sp])
            atomic_write_json(tmp / "info.json", {k: v for k, v in info.items() if k != "cached"})
    return pairs, info


# ---------------------------------------------------------------- step 2: grid


def _run_trial(arch_d: dict, train: tuple, val: tuple, ckpt_dir: str, seed: int, params_d: dict,
               output_scale: float, min_emd: float, threads: int | None) -> dict:
    """One grid trial (a Ray task or a plain call); returns its metrics and best weights."""
    if threads:
        set_tf_threads(threads)
    enable_determinism()
    arch = Arch(**arch_d)
    t0 = time.perf_counter()
    model, state = train_model(arch, train, val, ckpt_dir, seed=seed, params=TrainParams(**params_d),
                               output_scale=output_scale)
    vxa, vxb, vy = val
    pred = model.predict([vxa, vxb], batch_size=4096, verbose=0).reshape(-1)
    rel = rel_metrics(pred, vy, min_emd)
    fit = [h["fit_s"] for h in state["history"]]
    return {"arch": arch_d, "tag": arch.tag, "params": int(model.count_params()),
            "val_loss": state["best"], "best_epoch": state["best_epoch"], "epochs": state["epoch"],
            "s_per_epoch": float(np.median(fit)) if fit else None,
            "rel_mean": rel.get("mean"), "rel_std": rel.get("std"), "rel_rms": rel.get("rms"),
            "wall_s": round(time.perf_counter() - t0, 2), "weights": model.get_weights()}


def _encode(p: dict, n: int | None = None) -> tuple:
    sl = slice(None) if n is None else slice(0, n)
    xa, xb = to_inputs(p["a"][sl], p["b"][sl])
    return xa, xb, p["emd"][sl].astype(np.float32)


def _grid(ctx, s, pairs, output_scale: float, use_ray: bool, lkey: str) -> list[dict]:
    from tqdm.auto import tqdm

    archs = grid_archs(s.grid)
    n_tr = s.grid.train_pairs
    train = _encode(pairs["train"], n_tr)
    val = _encode(pairs["val"])
    params = asdict(_train_params(s, s.grid.epochs))
    jobs = []
    for arch in archs:
        tkey = _key({"labels": lkey, "arch": asdict(arch), "n": n_tr, "seed": ctx.seed,
                     "params": {k: v for k, v in params.items() if k != "epochs"},
                     "scale": output_scale})
        jobs.append((arch, str(ctx.checkpoint_dir / "trials" / f"{arch.tag}-{tkey}")))
    seed = ctx.seed % (2 ** 31)
    results = []
    bar = tqdm(total=len(jobs), desc="EMD-CNN grid", unit="trial", disable=not s.progress, leave=False)
    try:
        if use_ray:
            import ray

            task = ray.remote(num_cpus=1, max_retries=1)(_run_trial)
            rt, rv = ray.put(train), ray.put(val)
            pending = [task.remote(asdict(a), rt, rv, d, seed, params, output_scale, s.eval_min_emd, 1)
                       for a, d in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                r = ray.get(done[0])
                _log(f"trial {r['tag']}: val rel mean {r['rel_mean']:+.4f} std {r['rel_std']:.4f} "
                     f"({r['epochs']} epochs, {r['wall_s']:.0f} s)")
                results.append(r)
                bar.update(1)
        else:
            for a, d in jobs:
                r = _run_trial(asdict(a), train, val, d, seed, params, output_scale, s.eval_min_emd,
                               s.tf_threads or os.cpu_count())
                _log(f"trial {r['tag']}: val rel mean {r['rel_mean']:+.4f} std {r['rel_std']:.4f} "
                     f"({r['epochs']} epochs, {r['wall_s']:.0f} s)")
                results.append(r)
                bar.update(1)
    finally:
        bar.close()
    order = {a.tag: i for i, a in enumerate(archs)}
    results.sort(key=lambda r: order[r["tag"]])
    return results


# ---------------------------------------------------------------- the stage


def run(ctx) -> None:
    s = ctx.settings
    out = ctx.out
    t_stage = time.perf_counter()
    use_ray = s.ray.enabled
    ray_cm = ray_session(s.ray.address, s.ray.num_cpus) if use_ray else contextlib.nullcontext(None)
    with ray_cm:
        # 1. labelled pairs
        pairs, linfo = _make_pairs(ctx, s, use_ray)
        for sp in SPLITS:
            cached = ctx.checkpoint_dir / "labels" / linfo["labels_key"] / f"pairs_{sp}.npz"
            if s.cache_labels:  # byte-identical copy (np.savez stamps the time into the zip)
                shutil.copyfile(cached, out / f"pairs_{sp}.npz")
            else:
                save_pairs(out / f"pairs_{sp}.npz", pairs[sp])
        output_scale = float(np.mean(pairs["train"]["emd"]))
        # 2. grid
        t0 = time.perf_counter()
        trials = _grid(ctx, s, pairs, output_scale, use_ray, linfo["labels_key"])
        grid_s = time.perf_counter() - t0
    key = "rel_rms" if s.select_on == "rel_rms" else "val_loss"
    best = min(trials, key=lambda r: (np.inf if r[key] is None else r[key]))
    arch = Arch(**best["arch"])
    atomic_write_json(out / "grid.json", {
        "select_on": s.select_on, "best": best["tag"], "output_scale": output_scale,
        "train_pairs_per_trial": s.grid.train_pairs or len(pairs["train"]["emd"]),
        "trials": [{k: v for k, v in r.items() if k != "weights"} for r in trials]})
    _log(f"best architecture {best['tag']} ({s.select_on} {best[key]:.4g})")

    # 3. final training (in this process, all allowed threads)
    n_threads = s.tf_threads or s.ray.num_cpus or os.cpu_count()
    threads_set = set_tf_threads(n_threads)
    enable_determinism()
    t0 = time.perf_counter()
    train, val = _encode(pairs["train"]), _encode(pairs["val"])
    history: list[dict] = []
    if s.epochs > 0:
        params = _train_params(s, s.epochs)
        fkey = _key({"labels": linfo["labels_key"], "arch": asdict(arch), "seed": ctx.seed,
                     "params": {k: v for k, v in asdict(params).items() if k != "epochs"},
                     "init": best["val_loss"], "grid_n": s.grid.train_pairs, "scale": output_scale})
        model, state = train_model(arch, train, val, ctx.checkpoint_dir / "final" / f"{arch.tag}-{fkey}",
                                   seed=ctx.seed % (2 ** 31) + 1, params=params,
                                   output_scale=output_scale, init_weights=best["weights"], log=_log)
        history = state["history"]
    else:
        from tensorflow import keras

        keras.backend.clear_session()
        model = build_emd_cnn(arch, output_scale=output_scale)
        model.set_weights(best["weights"])
    final_s = time.perf_counter() - t0

    # 4. evaluation + frozen model
    t0 = time.perf_counter()
    res = {}
    for sp in ("val", "test"):
        p = pairs[sp]
        pred = predict(model, p["a"], p["b"])
        res[sp] = evaluate(pred, p["emd"], p["occ_a"], p["occ_b"], min_emd=s.eval_min_emd)
        if sp == "test":
            plot(pred, p["emd"], p["occ_a"], p["occ_b"], out / "plots", min_emd=s.eval_min_emd,
                 title=f"EMD CNN {arch.tag}, held-out pairs")
    eval_s = time.perf_counter() - t0
    save_emd_cnn(model, out / "emd_cnn.keras", info={
        "arch": asdict(arch), "output_scale": output_scale, "wafers": s.wafers,
        "trained_on": f"{len(train[2])} pairs ({s.wafers} wafers of the data stage's train split)",
        "test_relative": res["test"]["relative"]})
    check = load_emd_cnn(out / "emd_cnn.keras")
    xa, xb = to_inputs(pairs["test"]["a"][:512], pairs["test"]["b"][:512])
    if not np.array_equal(model.predict([xa, xb], verbose=0), check.predict([xa, xb], verbose=0)):
        raise GeneratorError("emd_cnn.keras: expected the saved model to reproduce the trained model's "
                             "outputs on 512 test pairs bit for bit, got different outputs")
    fit = [h["fit_s"] for h in history]
    atomic_write_json(out / "history.json", {"arch": asdict(arch), "history": history})
    atomic_write_json(out / "eval.json", {"model": arch.tag, "test": res["test"], "val": res["val"]})

    rt = res["test"]["relative"]
    ctx.metrics.update({
        "pairs": {sp: int(len(pairs[sp]["emd"])) for sp in SPLITS},
        "labels": linfo,
        "grid": {"trials": len(trials), "wall_s": round(grid_s, 2), "best": best["tag"],
                 "best_val_rel_std": best["rel_std"]},
        "final": {"epochs": len(history), "wall_s": round(final_s, 2),
                  "s_per_epoch": float(np.median(fit)) if fit else None},
        "eval_s": round(eval_s, 2),
        # the trained weights depend on the thread count (measured): recorded with the host block
        "final_tf_threads": n_threads if threads_set else None,
        "test_rel_mean": rt.get("mean"), "test_rel_std": rt.get("std"), "test_rel_rms": rt.get("rms"),
        "val_rel_std": res["val"]["relative"].get("std"),
        "wall_s": round(time.perf_counter() - t_stage, 2),
    })
    ctx.add_summary("pairs train/val/test", "/".join(str(len(pairs[sp]["emd"])) for sp in SPLITS))
    ctx.add_summary("labelling", "cached" if linfo.get("cached") else
                    f"{linfo['label_pairs_per_s']:.0f} pairs/s")
    ctx.add_summary("grid", f"{len(trials)} trials in {grid_s:.0f} s; best {best['tag']}")
    ctx.add_summary("final training", f"{len(history)} epochs in {final_s:.0f} s")
    ctx.add_summary("test (pred-true)/true", f"mean {rt.get('mean', float('nan')) * 100:+.2f} %, "
                    f"std {rt.get('std', float('nan')) * 100:.2f} %")


# ---------------------------------------------------------------- benchmark


def _bench_wafers(cfg, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    test = cfg.stage_dir("data") / "test.npz"
    if test.is_file():
        w = load_wafers(test, cfg.emd.wafers)["wafers"]
        if len(w) >= 2:
            return w, str(test)
    x = np.zeros((n, 48))
    for row in x:
        k = rng.integers(1, 20)
        row[rng.choice(48, k, replace=False)] = rng.exponential(1.0, k)
    return normalise(x), "synthetic random wafers (no data artifact)"


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def cnn_flops_per_pair(model) -> float:
    """Multiply-add FLOPs (2 per MAC) of one symmetrised EMD-CNN evaluation: the
    body ``g`` (its Conv2D and Dense layers) runs twice per pair."""
    g = model.get_layer("g")
    total = 0.0
    for layer in g.layers:
        w = layer.get_weights()
        if not w:
            continue
        if layer.__class__.__name__ == "Conv2D":
            h, wd = layer.output.shape[1:3]
            total += 2.0 * h * wd * np.prod(w[0].shape)
        elif layer.__class__.__name__ == "Dense":
            total += 2.0 * np.prod(w[0].shape)
    return 2 * total


def bench(cfg, workdir: Path) -> dict[str, float]:
    """Throughput of exact EMD (POT, 1 core and Ray) and of the EMD CNN.

    Keys (pairs/s unless said): ``pot_emd2_1core`` (the public ``ot.emd2``
    per pair), ``pot_core_1core`` (the labelling path, same solver; like the Ray
    figure the best of two timed runs),
    ``pot_core_ray`` (Ray, all cores) and ``ray_speedup``; ``cnn`` (EMD-CNN
    inference, the better of batch 4096 and 16384, all cores), ``cnn_over_pot_emd2``,
    ``cnn_over_pot_core``, ``cnn_over_pot_ray``; the CNN's ``cnn_mflop_per_pair``
    and achieved ``cnn_gflop_per_s`` against the machine's ``matmul_gflop_per_s``
    and the ``cnn_needed_for_100x_*`` the issue's target would require; ``cnn_rel_mean_pct``,
    ``cnn_rel_std_pct`` from the run's ``eval.json`` when the stage has run.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    s = cfg.emd
    rng = np.random.default_rng(0)
    w, source = _bench_wafers(cfg, 4000, rng)
    n_ray = 200_000
    i = rng.integers(0, len(w), n_ray)
    j = rng.integers(0, len(w), n_ray)
    a, b = w[i], w[j]
    out: dict[str, float] = {}
    n1 = 2000
    label_pairs(a[:n1], b[:n1], use_ray=False, progress=False, solver="emd2")  # warm-up imports
    t0 = time.perf_counter()
    label_pairs(a[:n1], b[:n1], use_ray=False, progress=False, solver="emd2")
    out["pot_emd2_1core"] = n1 / (time.perf_counter() - t0)
    # single core and Ray alike: the best of two timed runs (this machine's timings of the
    # same work vary by +-20 % from run to run)
    n2 = 100_000
    ref = label_pairs(a[:n2], b[:n2], use_ray=False, progress=False)  # also the warm-up
    out["pot_core_1core"] = max(throughput(a[:n2], b[:n2], use_ray=False) for _ in range(2))

    # the CNN before Ray: Ray's workers linger for a moment after shutdown
    model_path = cfg.stage_dir("emd") / "emd_cnn.keras"
    if model_path.is_file():
        model = load_emd_cnn(model_path)
        out["cnn_trained_model"] = 1.0
    else:
        model = build_emd_cnn(grid_archs(s.grid)[-1])
        out["cnn_trained_model"] = 0.0
    out["cnn_params"] = float(model.count_params())
    out["cnn_mflop_per_pair"] = cnn_flops_per_pair(model) / 1e6
    n3 = 131_072
    xa, xb = to_inputs(a[:n3], b[:n3])
    for batch in (4096, 16384):
        model.predict([xa[:2 * batch], xb[:2 * batch]], batch_size=batch, verbose=0)
        best = min(_timed(lambda bs=batch: model.predict([xa, xb], batch_size=bs, verbose=0))
                   for _ in range(2))
        out[f"cnn_b{batch}"] = n3 / best
    out["cnn"] = max(out["cnn_b4096"], out["cnn_b16384"])
    out["cnn_gflop_per_s"] = out["cnn"] * out["cnn_mflop_per_pair"] / 1e3
    out["cnn_over_pot_emd2"] = out["cnn"] / out["pot_emd2_1core"]
    out["cnn_over_pot_core"] = out["cnn"] / out["pot_core_1core"]
    # what the ">= 100x ot.emd2" would need from this network on this machine
    out["cnn_needed_for_100x_pairs_per_s"] = 100 * out["pot_emd2_1core"]
    out["cnn_needed_for_100x_gflop_per_s"] = (out["cnn_needed_for_100x_pairs_per_s"]
                                              * out["cnn_mflop_per_pair"] / 1e3)
    import tensorflow as tf
    m = tf.random.normal((2048, 2048))
    mm = tf.function(lambda: tf.linalg.matmul(m, m))
    mm().numpy()
    out["matmul_gflop_per_s"] = 2 * 2048 ** 3 / min(_timed(lambda: mm().numpy()) for _ in range(5)) / 1e9

    with ray_session(s.ray.address, s.ray.num_cpus) as n_cpus:
        label_pairs(a[:20_000], b[:20_000], use_ray=True, chunk_pairs=2000, progress=False)  # warm workers
        lab = label_pairs(a, b, use_ray=True, chunk_pairs=s.ray.chunk_pairs, progress=False)
        out["pot_core_ray"] = max(throughput(a, b, use_ray=True, chunk_pairs=s.ray.chunk_pairs)
                                  for _ in range(2))
    out["ray_cpus"] = float(n_cpus)
    out["ray_speedup"] = out["pot_core_ray"] / out["pot_core_1core"]
    out["ray_equals_serial"] = float(np.array_equal(lab[:n2], ref))
    out["cnn_over_pot_ray"] = out["cnn"] / out["pot_core_ray"]
    ev = cfg.stage_dir("emd") / "eval.json"
    if ev.is_file():
        rel = json.loads(ev.read_text())["test"]["relative"]
        out["cnn_rel_mean_pct"] = rel["mean"] * 100
        out["cnn_rel_std_pct"] = rel["std"] * 100
    atomic_write_json(workdir / "emd_bench.json", {"wafers": source, **out})
    return out
