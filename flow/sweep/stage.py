"""``sweep`` stage: the co-design map of encoder designs (issue 18, ``docs/sweep.md``).

Every point of ``sweep.grid`` (:func:`flow.sweep.grid.expand`: conv filters, weight bits,
conv-activation bits, latent bits) is one encoder design, and goes through the whole chain:

1. **train** with ``sweep.loss`` under the fair-comparison rule of the ``autoencoder`` section
   (until early stopping under the cap ``sweep.epochs``; the same learning rate, batch and
   seed for every point, on the same ``sweep.max_train_wafers`` training wafers); a point
   that reaches the cap is *not converged* (reported);
2. **golden == QKeras** on the sampled test wafers (integer codes);
3. **physics** (``sweep.physics``): electron resolution and median exact EMD of the decoded
   test wafers, on the same events for every point (:func:`flow.sweep.point.physics`);
4. **hardware**: the RTL of ``sweep.flavours``, cosimulated by the shipped testbench on
   ``sweep.vectors`` sampled test wafers plus the corner set, the latency and II it
   measures, Yosys gate count and sky130 area (:func:`flow.sweep.point.hardware`);
5. **csim** (``sweep.csim``): the point's hls4ml project on the same vectors
   (:func:`flow.sweep.point.csim`).

Points run as 1-CPU Ray tasks (``sweep.ray``: local, or a cluster address).  Each point keeps
its files in the stage's checkpoint directory (``.checkpoints/sweep/<key>/<point id>/``, the
key hashing the config sections the points use and the upstream artifacts, like the
``autoencoder`` stage's checkpoints: a change of the flow code alone reuses finished points;
delete the directory to recompute them); a finished point
(``point.json``) is never recomputed, a training interrupted mid-way resumes at its last
epoch, and a point that failed (``error.json``: the exception and its traceback) does not
stop the others and is retried by the next run.  A point whose hardware or csim disagrees with
the golden model is a fault of the flow: every point still runs and every output is written,
then the stage fails with the mismatches named (the runner keeps ``sweep.failed/``), and
the next run recomputes that point.

Outputs (``build/<run>/sweep/``): ``points.csv`` (one row per point, every figure),
``points.json`` (the full records), ``pareto.json`` (the fronts), ``plots/*.png`` (captions
in ``plots/captions.json``).  Manifest metrics: ``n_points``, ``n_failed``, ``n_mismatch``
(summed over points: golden vs QKeras, csim and cosim), ``pareto`` (ids on the front of
median EMD, resolution and area), ``econt_point``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import traceback
from pathlib import Path

import numpy as np

from flow.runner.atomic import atomic_write_bytes, atomic_write_json
from flow.runner.errors import ConfigError, FlowError
from flow.sweep.grid import ECONT_POINT, Point, expand, pareto_front

POINT_JSON, ERROR_JSON = "point.json", "error.json"
#: objectives of the Pareto front (all minimised); the area is the first flavour's
OBJECTIVES = ("median_emd", "resolution", "area_um2_sky130")
#: columns of points.csv, in order
COLUMNS = ("id", "econt", "filters", "weight_bits", "act_bits", "latent_bits", "status", "error",
           "converged", "epochs_run", "best_val_loss", "median_emd", "resolution", "resolution_err",
           "efficiency", "area_um2_sky130", "sequential_area_um2_sky130", "generic_gates", "generic_ff",
           "logic_depth_gates", "latency_cycles", "ii_cycles", "n_params", "image_bits",
           "n_mismatch_qkeras", "n_mismatch_csim", "n_mismatch_cosim", "n_vectors", "on_front",
           "train_s", "wall_s")


# ------------------------------------------------------------------ one point
def run_point(job: dict) -> dict:
    """Everything of one point (the body of its Ray task, or of the serial loop); writes
    ``point.json`` into its directory and returns the record.  ``job``: the point, the
    config (:class:`~flow.runner.config.FlowConfig`), the input paths and the seed."""
    import tensorflow as tf

    from flow.core import encoder as E
    from flow.core.ae_model import model_inputs
    from flow.core.dataset import read_split
    from flow.core.losses import get_loss
    from flow.core.reco import events_subset
    from flow.core.training import model_seed, train_model
    from flow.sweep import point as P

    t0 = time.perf_counter()
    cfg, pt = job["cfg"], Point(E.EncoderArch(**job["arch"]), int(job["latent_bits"]))
    s, ae = cfg.sweep, cfg.autoencoder
    d = Path(job["dir"])
    d.mkdir(parents=True, exist_ok=True)
    tf.config.experimental.enable_op_determinism()
    if job.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    raw = {p: read_split(job[p]) for p in ("train", "val", "test")}
    # the physics chain takes the splits as the physics stage does (whole events, empty wafers
    # included); training and the vectors take the non-empty wafers
    phys = {p: events_subset(raw[p], lim) for p, lim in (("train", cfg.physics.max_train_events),
                                                           ("test", cfg.physics.max_test_events))}
    train, val = ({k: v[sp["aein"].sum(-1) > 0] for k, v in sp.items()} for sp in (raw["train"], raw["val"]))
    tr = model_inputs({k: v[:s.max_train_wafers] for k, v in train.items()})
    va_x, va_t = model_inputs(val)
    va = (va_x[:50000], va_t[:50000])
    rule = ae.model_copy(update={"latent_bits": pt.latent_bits, "epochs": s.epochs})
    kw = {"emd_cnn_path": job["emd_cnn"], "sinkhorn_eps": ae.sinkhorn_eps,
          "sinkhorn_iters": ae.sinkhorn_iters}
    t = train_model(rule, s.loss, "plain", lambda: get_loss(s.loss, **kw), tr, va,
                    seed=model_seed(job["seed"], s.loss, 0), lr=ae.learning_rate, ck=d / "train",
                    log=print, arch=pt.arch)
    train_s = time.perf_counter() - t0
    t.enc.save(d / "encoder.h5")
    t.dec.save(d / "decoder.h5")
    w = E.EncoderWeights.from_keras(t.enc)
    sel = np.asarray(job["vector_index"], dtype=np.int64)          # indices into the test split file
    vt = {k: raw["test"][k][sel] for k in ("aein", "words")}
    gold = E.golden_encode(vt["aein"], w, pt.latent_bits)
    bad = np.argwhere(gold != E.keras_latent_codes(t.enc, vt["aein"]))
    rec = {**pt.to_dict(), "status": "ok", "n_params": pt.arch.n_params, "image_bits": pt.arch.image_bits,
           "converged": t.info["converged"], "epochs_run": t.info["epochs_run"],
           "epoch_cap": t.info["epoch_cap"], "best_val_loss": t.info["best_val_loss"],
           "n_train": t.info["n_train"], "train_s": round(train_s, 1),
           "qkeras": {"n_total": int(gold.shape[0]), "n_mismatch": int(len(np.unique(bad[:, 0]))),
                      "first_mismatches": bad[:5].tolist()}}
    if s.physics:
        from flow.core.generator import detector_from

        rec["physics"] = P.physics(w, pt.latent_bits, t.dec, phys["train"], phys["test"],
                                   detector_from(cfg.data), cfg.physics, seed=job["seed"])
    words, kind = vt["words"], job["vector_kind"]
    cosim = cfg.cosim.model_copy(update={"min_wafers": 0, "bubbles": min(cfg.cosim.bubbles, 500),
                                         "reload": min(cfg.cosim.reload, 500), "yosys": list(s.yosys),
                                         "build_jobs": 1, "yosys_jobs": 1, "seu_upsets": 0})
    rtl = cfg.rtl.model_copy(update={"yosys_check": False})      # the area runs synthesize anyway
    rec["hardware"] = P.hardware(d / "hw", w, pt.latent_bits, words, kind, calvalues=job["calvalues"],
                                 drop=job["drop"], rtl_settings=rtl, cosim_settings=cosim,
                                 flavours=tuple(s.flavours), seed=job["seed"])
    if s.csim:
        rec["csim"] = P.csim(d / "csim", d / "encoder.h5", w, pt.latent_bits, d / "hw" / "vectors.npz",
                             convert_settings=cfg.convert, csim_settings=cfg.csim.model_copy(
                                 update={"jobs": 1}), backend=s.csim_backend)
    rec["n_mismatch"] = (rec["qkeras"]["n_mismatch"] + rec["hardware"]["n_mismatch"]
                         + (rec["csim"]["n_mismatch"] if s.csim else 0))
    if rec["n_mismatch"]:
        rec["status"] = "mismatch"
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(d / POINT_JSON, rec)
    return rec


def safe_point(job: dict) -> dict:
    """:func:`run_point`, an exception turned into a failed record (``error.json`` written)."""
    try:
        return run_point(job)
    except Exception as err:  # noqa: BLE001 - recorded: a failed point does not stop the sweep
        rec = {"id": job["id"], "status": "failed", "error": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc(limit=20)}
        d = Path(job["dir"])
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d / ERROR_JSON, rec)
        return rec


# ------------------------------------------------------------------ the table
def row(rec: dict, first_flavour: str) -> dict:
    """The points.csv row of a record (failed points: id, axes, status, error)."""
    r = {k: rec.get(k) for k in ("id", "econt", "filters", "weight_bits", "act_bits", "latent_bits",
                                 "status", "error", "converged", "epochs_run", "best_val_loss", "n_params",
                                 "image_bits", "train_s", "wall_s")}
    ph = rec.get("physics") or {}
    r.update({k: ph.get(k) for k in ("median_emd", "resolution", "resolution_err", "efficiency")})
    hw = (rec.get("hardware") or {}).get("flavours", {}).get(first_flavour, {})
    r.update({k: hw.get(k) for k in ("area_um2_sky130", "sequential_area_um2_sky130", "generic_gates",
                                     "generic_ff", "logic_depth_gates", "latency_cycles", "ii_cycles")})
    for name, key in (("qkeras", "qkeras"), ("csim", "csim"), ("cosim", "hardware")):
        r[f"n_mismatch_{name}"] = (rec.get(key) or {}).get("n_mismatch")
        r[f"n_total_{name}"] = (rec.get(key) or {}).get("n_total")     # metrics only (the report's checks)
    r["n_vectors"] = r["n_total_cosim"]
    return r


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    wr.writeheader()
    for r in rows:
        wr.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def fronts(rows: list[dict], objectives=OBJECTIVES) -> dict[str, list[str]]:
    """The Pareto fronts of the finished points without mismatches: every objective pair
    with the area, and all of them together (``all``: the ``pareto`` metric)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = {f"{a}+{objectives[-1]}": pareto_front(ok, (a, objectives[-1])) for a in objectives[:-1]}
    out["all"] = pareto_front(ok, objectives)
    return out


# ------------------------------------------------------------------ the stage
#: config sections a point's results depend on (its checkpoint key)
KEY_SECTIONS = ("sweep", "autoencoder", "physics", "rtl", "cosim", "convert", "csim", "data")


def _key(ctx) -> str:
    blob = json.dumps({"cfg": {sec: ctx.cfg.section_hash(sec) for sec in KEY_SECTIONS},
                       "up": {k: v.manifest_sha256 for k, v in sorted(ctx.upstream.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jobs(ctx, points: list[Point], root: Path) -> list[dict]:
    """One job per point with everything it needs (the shared inputs prepared once)."""
    from flow.core.dataset import read_split, split_file
    from flow.core.vectors import select_spread

    cfg, s = ctx.cfg, ctx.settings
    data = ctx.upstream["data"]
    paths = {p: str(data.path(split_file(p))) for p in ("train", "val", "test")}
    test = read_split(paths["test"], keys=("aein", "occupancy"))
    keep = np.flatnonzero(test["aein"].sum(-1) > 0)
    # the sampled test wafers: spread over occupancy (deterministic), the same for every point
    occ_bin = np.digitize(test["occupancy"][keep], [2, 4, 6, 10, 15, 20, 30])
    sel = keep[select_spread(occ_bin, s.vectors)]
    if s.physics and cfg.data.source != "synthetic":
        raise ConfigError("sweep.physics: TC positions come from the synthetic generator's geometry; "
                          f"data.source is {cfg.data.source!r}; set sweep.physics: false")
    calvalues = [int(cfg.data.calvalue)] * 48      # the cosim adds its own corner set (cosim.corners)
    return [{"id": p.id, "arch": p.arch.to_dict(), "latent_bits": p.latent_bits, "cfg": cfg,
             "dir": str(root / p.id), "seed": ctx.seed, "threads": 1, **paths,
             "emd_cnn": str(ctx.upstream["emd"].path("emd_cnn.keras")),
             "vector_index": sel.tolist(), "vector_kind": np.zeros(len(sel), np.uint8),
             "calvalues": calvalues, "drop": int(cfg.data.drop)} for p in points]


def _load_done(job: dict) -> dict | None:
    """A finished point's record; None for a point to (re)run: not run, failed, or with
    mismatches (a fault of the flow, recomputed once the code is fixed)."""
    f = Path(job["dir"]) / POINT_JSON
    rec = json.loads(f.read_text()) if f.is_file() else None
    return rec if rec and rec.get("status") == "ok" else None


def run(ctx) -> None:
    t0 = time.perf_counter()
    s = ctx.settings
    points = expand(dict(s.grid))
    if not points:
        raise ConfigError("sweep.grid: expected at least one point")
    root = ctx.checkpoint_dir / _key(ctx)
    jobs = _jobs(ctx, points, root)
    records: dict[str, dict] = {}
    todo = []
    for job in jobs:
        done = _load_done(job)
        if done is not None:
            records[job["id"]] = done
        else:
            todo.append(job)
    print(f"[sweep] {len(points)} points: {len(records)} finished earlier, {len(todo)} to run "
          f"(checkpoints {root})")
    for rec in _execute(todo, s):
        records[rec["id"]] = rec
        print(f"[sweep] {rec['id']}: {rec['status']}"
              + (f" ({rec['error']})" if rec.get("error") else
                 f", median EMD {(rec.get('physics') or {}).get('median_emd')}, "
                 f"{rec['n_mismatch']} mismatching, {rec['wall_s']:.0f} s"))
    _finish(ctx, points, records, time.perf_counter() - t0)


def _execute(todo: list[dict], s):
    """Yield each job's record as it finishes: Ray tasks (``sweep.ray.enabled``) or in turn."""
    if not todo:
        return
    if not s.ray.enabled:
        for job in todo:
            yield safe_point(job)
        return
    import ray

    from flow.core.emd_exact import ray_session

    with ray_session(s.ray.address, s.ray.num_cpus):
        task = ray.remote(num_cpus=1, max_retries=0)(safe_point)
        refs = {task.remote(job): job for job in todo}
        print(f"[sweep] {len(refs)} points submitted as Ray tasks "
              f"({int(ray.cluster_resources().get('CPU', 1))} CPUs)")
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=120.0)
            if not ready:
                print(f"[sweep] running: {len(pending)} points left", flush=True)
                continue
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayError as err:     # the worker died (memory, signal)
                job = refs[ready[0]]
                rec = {"id": job["id"], "status": "failed", "error": f"Ray task died: {err}"}
                atomic_write_json(Path(job["dir"]) / ERROR_JSON, rec)
                yield rec


def _finish(ctx, points: list[Point], records: dict[str, dict], wall: float) -> None:
    s, out = ctx.settings, ctx.out
    first = s.flavours[0]
    ordered = []
    for p in points:
        rec = records[p.id]
        if rec.get("status") == "failed":
            rec = {**p.to_dict(), **rec}
        ordered.append(rec)
    rows = [row(r, first) for r in ordered]
    fr = fronts(rows)
    for r in rows:
        r["on_front"] = r["id"] in fr["all"]
    atomic_write_bytes(out / "points.csv", csv_text(rows).encode())
    atomic_write_json(out / "points.json", {"points": ordered, "objectives": list(OBJECTIVES),
                                            "area_flavour": first})
    atomic_write_json(out / "pareto.json", fr)
    plots = _plots(out / "plots", rows, fr["all"])
    n_failed = sum(r["status"] != "ok" for r in rows)
    n_mismatch = sum(int(r.get("n_mismatch") or 0) for r in ordered)
    not_conv = [r["id"] for r in rows if r["status"] == "ok" and not r["converged"]]
    ctx.metrics.update({"n_points": len(points), "n_failed": n_failed, "n_mismatch": n_mismatch,
                        "pareto": fr["all"], "fronts": fr, "not_converged": not_conv,
                        "econt_point": ECONT_POINT.id, "grid": {k: list(v) for k, v in s.grid.items()},
                        "points": rows, "plots": plots, "wall_s": round(wall, 1)})
    ctx.add_summary("points", f"{len(points)} ({n_failed} failed)")
    ctx.add_summary("mismatches (golden/QKeras, csim, cosim)", str(n_mismatch))
    ctx.add_summary("Pareto front (EMD, resolution, area)", ", ".join(fr["all"]) or "-")
    if not_conv:
        ctx.add_summary("NOT converged", ", ".join(not_conv))
    if n_mismatch:
        # a mismatch is a fault of the flow (generator, converter, testbench), not a property of
        # a design: every point has run and every output is written, and the stage fails loudly
        # (the runner keeps its directory as sweep.failed/)
        parts = []
        for r in ordered:
            if int(r.get("n_mismatch") or 0):
                where = {k: (r.get(k) or {}).get("n_mismatch") for k in ("qkeras", "csim", "hardware")}
                hw = (r.get("hardware") or {}).get("flavours", {}).get(first, {})
                examples = (hw.get("first_mismatches") or (r.get("csim") or {}).get("first_mismatches")
                            or (r.get("qkeras") or {}).get("first_mismatches"))
                parts.append(f"{r['id']}: {r['n_mismatch']} mismatching (golden vs QKeras "
                             f"{where['qkeras']}, csim {where['csim']}, cosim {where['hardware']}); "
                             f"first: {str(examples)[:300]}")
        raise FlowError(f"sweep: {n_mismatch} mismatches against the golden model in "
                        f"{len(parts)} points:\n  " + "\n  ".join(parts)
                        + f"\npoint files: {ctx.checkpoint_dir}; outputs: {out}")


def _plots(d: Path, rows: list[dict], front: list[str]) -> list[str]:
    """Scatter of each quality figure against the sky130 area (one panel per metric), the
    front of that pair joined, the ECON-T point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flow.core.captions import write_captions

    d.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r["status"] == "ok" and r.get("area_um2_sky130")]
    panels = [(k, lab) for k, lab in (("median_emd", "median exact EMD (decoded wafers)"),
                                      ("resolution", "electron pT resolution, effective (%)"),
                                      ("generic_gates", "Yosys generic gates"))
              if any(r.get(k) is not None for r in ok)]
    if not ok or not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.5), squeeze=False)
    for ax, (k, lab) in zip(axes[0], panels, strict=True):
        pts = [r for r in ok if r.get(k) is not None]
        x = np.array([r["area_um2_sky130"] for r in pts]) / 1e6
        y = np.array([r[k] for r in pts], dtype=float)
        lb = np.array([r["latent_bits"] for r in pts])
        if k == "resolution":                                # percent, with its bootstrap error
            y = 100 * y
            err = np.array([np.nan if r.get("resolution_err") is None else 100 * r["resolution_err"]
                            for r in pts], dtype=float)
            if np.isfinite(err).any():
                ax.errorbar(x, y, yerr=err, fmt="none", ecolor="0.6", capsize=3, zorder=2)
        sc = ax.scatter(x, y, c=lb, cmap="viridis", s=60, zorder=3)
        f2 = pareto_front(pts, (k, "area_um2_sky130")) if k != "generic_gates" else []
        fp = sorted((xi, yi) for r, xi, yi in zip(pts, x, y, strict=True) if r["id"] in f2)
        if fp:
            ax.step([a for a, _ in fp], [b for _, b in fp], where="post", color="C3", label="Pareto front")
        for r, xi, yi in zip(pts, x, y, strict=True):
            ax.annotate(f"{r['filters']}f", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=9)
            if r["econt"]:
                ax.scatter([xi], [yi], s=260, facecolors="none", edgecolors="C3", linewidths=2,
                           label="ECON-T point", zorder=4)
        ax.set_xlabel("sky130 area of the encoder block (mm$^2$, area only)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=10)
    fig.colorbar(sc, ax=axes[0].tolist(), label="latent bits", fraction=0.02, pad=0.02)
    fig.savefig(d / "pareto.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    write_captions(d, {"pareto.png": "Co-design map: each point's quality against its sky130 area "
                                     "(area only), colour = latent bits, label = conv filters; the "
                                     "Pareto front of each pair in red (central values only), the "
                                     "ECON-T design circled; resolution error bars: bootstrap std. "
                                     "One training seed per point: differences smaller than the "
                                     "seed spread (docs/sweep.md) do not rank designs"})
    return ["pareto.png"]
