"""``data`` stage: HGCAL trigger ntuples -> wafer dataset splits (issue #4).

``run(ctx)`` writes into ``build/<run>/data/`` (contract, see ``docs/data.md``):

* ``root/synthetic_NNN.root`` (``source: synthetic`` only): the generated
  ntuples in the per-TC layout (:mod:`flow.core.generator`);
* ``train.npz``, ``val.npz``, ``test.npz``: one row per wafer, arrays
  ``words`` uint8 (N, 48) 7-bit TC words (255 where the input has none),
  ``calq`` int32 (N, 48), ``aein`` uint8 (N, 48) ufixed<8,1> codes,
  ``sum_code`` uint16 9-bit module sum, ``eta`` float32 |eta|, ``layer``,
  ``waferu``, ``waferv``, ``occupancy`` int16, ``zside`` int8, ``simenergy``
  float32 (GeV), ``event`` int64 (global event id), ``gen_pt``, ``gen_eta``
  (signed), ``gen_phi`` float32 (the event's leading generated particle, NaN
  when the input has none; files written before ``gen_phi`` existed lack it and
  still load); split by event (an event's wafers are all in one split);
* ``plots/*.png`` and their ``plots/captions.json``; ``stats.json`` (counts per split, drops by reason, reader
  and generator counters; no timings, so reruns are byte-identical).

Wafer selection, in this order, each drop counted by reason: layer not in
``data.layers`` (``not_in_layers``), no signal (``empty``: all 48 words zero,
or all CALQ zero when the input has no words; no EMD is defined for them),
fewer than ``data.min_occupancy`` TCs above 1 MIP_T (``below_min_occupancy``),
CALQ sum below ``data.min_sum_mipt`` MIP_T (``below_min_sum``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flow.core import frontend as frontend
from flow.core import generator as data_generator
from flow.core.captions import write_captions
from flow.core.dataset import NPZ_DTYPES, SPLITS, split_file, write_split
from flow.core.geometry import N_TC, to_8x8
from flow.data import ntuple as ntuple
from flow.runner.atomic import atomic_write_bytes
from flow.runner.errors import DataFormatError

DROP_REASONS = ("not_in_layers", "empty", "below_min_occupancy", "below_min_sum")


# ---------------------------------------------------------------- splitting
def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_of(event: np.ndarray, seed: int, fractions) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of each event id: a seeded hash of the
    id, so the assignment is stateless (chunk-independent) and never splits an event."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(event, dtype=np.int64).view(np.uint64)
                        ^ _splitmix64(np.asarray([seed], dtype=np.uint64))[0])
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    edges = np.cumsum(np.asarray(fractions, dtype=np.float64))[:-1]
    return np.searchsorted(edges, u, side="right")


# -------------------------------------------------------------- selection
def select(chunk: ntuple.WaferChunk, settings) -> tuple[np.ndarray, dict[str, int]]:
    """Keep mask and drop counts (first failing reason) for one chunk."""
    has_words = chunk.words.size == 0 or bool((chunk.words != ntuple.NO_WORD).any())
    if has_words:
        empty = ~(chunk.words != 0).any(axis=1)
    else:
        empty = ~(chunk.calq != 0).any(axis=1)
    low_occ = chunk.occupancy < settings.min_occupancy
    sum_mipt = chunk.calq.sum(axis=1) / frontend.MIPT_CALQ / np.cosh(chunk.eta)
    low_sum = sum_mipt < settings.min_sum_mipt
    drops = {"empty": int(empty.sum()),
             "below_min_occupancy": int((~empty & low_occ).sum()),
             "below_min_sum": int((~empty & ~low_occ & low_sum).sum())}
    return ~(empty | low_occ | low_sum), drops


def to_arrays(chunk: ntuple.WaferChunk) -> dict[str, np.ndarray]:
    """The split-file arrays of some wafers (front-end outputs computed here)."""
    aein, _ = frontend.normalise(chunk.calq)
    out = {
        "words": chunk.words, "calq": chunk.calq, "aein": aein,
        "sum_code": frontend.encode_sum(chunk.calq.sum(axis=1)),
        "eta": chunk.eta, "layer": chunk.layer, "waferu": chunk.waferu, "waferv": chunk.waferv,
        "occupancy": chunk.occupancy, "zside": chunk.zside, "simenergy": chunk.simenergy,
        "event": chunk.event, "gen_pt": chunk.gen_pt, "gen_eta": chunk.gen_eta,
        "gen_phi": chunk.gen_phi,
    }
    return {k: np.ascontiguousarray(v, dtype=NPZ_DTYPES[k]) for k, v in out.items()}


def build_dataset(paths: list[Path], settings, seed: int, *, layout: str | None = None,
                  progress: bool = False) -> tuple[dict[str, dict[str, np.ndarray]], dict, dict]:
    """Read, select and split: ``(splits, drops, reader stats)``; streams chunk by chunk."""
    rstats = ntuple.ReadStats()
    parts: dict[str, list[dict]] = {s: [] for s in SPLITS}
    drops = dict.fromkeys(DROP_REASONS, 0)
    for chunk in ntuple.iter_wafers(paths, tree=settings.tree, layout=layout or settings.layout,
                                    chunk_size=settings.chunk_size, layers=settings.layers,
                                    drop=settings.drop, calvalue=settings.calvalue,
                                    progress=progress, stats=rstats):
        keep, d = select(chunk, settings)
        for k, v in d.items():
            drops[k] += v
        kept = chunk.select(keep)
        which = split_of(kept.event, seed, settings.split)
        for i, name in enumerate(SPLITS):
            m = which == i
            if m.any():
                parts[name].append(to_arrays(kept.select(m)))
    drops["not_in_layers"] = rstats.wafers_not_in_layers
    empty = to_arrays(ntuple.WaferChunk.empty())
    splits = {name: {k: np.concatenate([p[k] for p in parts[name]]) if parts[name] else empty[k]
                     for k in NPZ_DTYPES} for name in SPLITS}
    return splits, drops, rstats.as_dict()


# ------------------------------------------------------------------ plots
_SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6.5))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.16, right=0.96, bottom=0.14, top=0.92)
    return fig, fig.add_subplot(111)


def _label(ax, source: str, n: int) -> None:
    """Experiment-style header: bold flow name left, sample and size right."""
    ax.text(0.0, 1.01, "ECON-T flow", transform=ax.transAxes, ha="left", va="bottom",
            fontweight="bold", fontsize="large")
    ax.text(1.0, 1.01, f"{'synthetic' if source == 'synthetic' else 'ntuples'}, {n:,} wafers",
            transform=ax.transAxes, ha="right", va="bottom", fontstyle="italic",
            fontsize="small")


def _hist(ax, values: dict[str, np.ndarray], bins, *, density=True, logy=False) -> None:
    for name, v in values.items():
        if len(v) == 0:
            continue
        h, edges = np.histogram(v, bins=bins)
        if density and h.sum() > 0:
            h = h / h.sum()
        ax.stairs(h, edges, label=f"{name} ({len(v):,})", color=_SPLIT_COLORS.get(name), lw=2)
    if logy:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 30)
    else:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    ax.legend(loc="upper right", fontsize="small", frameon=False)


#: the captions of the plots (written beside them to ``plots/captions.json``)
CAPTIONS = {
    "occupancy.png": "Wafer occupancy (TCs above 1 MIP_T) per split",
    "calq_sum.png": "Wafer CALQ sum per split",
    "hottest_fraction.png": "Hottest-TC fraction of the wafer CALQ sum",
    "eta.png": "Wafer |eta| per split",
    "layer.png": "Wafer layer per split",
    "occupancy_map.png": "Average 8x8 (encoding A) maps: P(TC > 1 MIP_T) and mean AEin",
    "occupancy_vs_eta.png": "Occupancy vs |eta|: electron-shower and pileup-only wafers",
}


def make_plots(plot_dir: Path, splits: dict[str, dict[str, np.ndarray]], source: str) -> list[str]:
    import matplotlib.pyplot as plt
    import mplhep as hep

    plot_dir.mkdir(parents=True, exist_ok=True)
    n_all = sum(len(s["event"]) for s in splits.values())
    written = []

    def save(fig, name):
        fig.savefig(plot_dir / name, dpi=90, metadata={"Software": None})
        written.append(name)

    col = lambda k: {n: s[k] for n, s in splits.items()}  # noqa: E731
    with plt.style.context(hep.style.CMS):
        fig, ax = _figure()
        _hist(ax, col("occupancy"), np.arange(0, 50) - 0.5, logy=True)
        ax.set_xlabel(r"occupancy (TCs above 1 MIP$_T$)")
        ax.set_ylabel("fraction of wafers")
        _label(ax, source, n_all)
        save(fig, "occupancy.png")

        sums = {n: s["calq"].sum(axis=1, dtype=np.int64) for n, s in splits.items()}
        allsum = np.concatenate(list(sums.values())) if n_all else np.ones(1)
        lo, hi = max(allsum.min(), 1), max(allsum.max(), 2)
        fig, ax = _figure()
        _hist(ax, sums, np.geomspace(lo, hi * 1.01, 60), logy=True)
        ax.set_xscale("log")
        ax.set_xlabel("wafer CALQ sum (counts; 35 = 1 MIP)")
        ax.set_ylabel("fraction of wafers")
        _label(ax, source, n_all)
        save(fig, "calq_sum.png")

        frac = {n: (s["calq"].max(axis=1) / np.maximum(s["calq"].sum(axis=1, dtype=np.int64), 1))
                for n, s in splits.items()}
        fig, ax = _figure()
        _hist(ax, frac, np.linspace(0, 1, 51), logy=True)
        ax.set_xlabel("hottest-TC fraction of the wafer CALQ sum")
        ax.set_ylabel("fraction of wafers")
        _label(ax, source, n_all)
        save(fig, "hottest_fraction.png")

        fig, ax = _figure()
        _hist(ax, col("eta"), np.linspace(1.4, 3.1, 35))
        ax.set_xlabel(r"wafer $|\eta|$")
        ax.set_ylabel("fraction of wafers")
        _label(ax, source, n_all)
        save(fig, "eta.png")

        fig, ax = _figure()
        layers = np.concatenate([s["layer"] for s in splits.values()]) if n_all else np.ones(1)
        _hist(ax, col("layer"), np.arange(layers.min(), layers.max() + 2) - 0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("fraction of wafers")
        _label(ax, source, n_all)
        save(fig, "layer.png")

        # average encoding-A maps over all kept wafers
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(14, 6.5))
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.04, right=0.93, bottom=0.08, top=0.84, wspace=0.3)
        axes = fig.subplots(1, 2)
        if n_all:
            calq = np.concatenate([s["calq"] for s in splits.values()])
            eta = np.concatenate([s["eta"] for s in splits.values()]).astype(np.float64)
            aein = np.concatenate([s["aein"] for s in splits.values()])
            above = (calq / frontend.MIPT_CALQ / np.cosh(eta)[:, None] > 1.0).mean(axis=0)
            mean_ae = frontend.aein_value(aein).mean(axis=0)
        else:
            above = mean_ae = np.zeros(N_TC)
        for ax, vals, title in ((axes[0], above, r"P(TC > 1 MIP$_T$)"),
                                (axes[1], mean_ae, "mean AEin")):
            img = np.ma.masked_array(to_8x8(vals), mask=to_8x8(np.ones(N_TC)) == 0)
            im = ax.imshow(img, cmap="viridis", origin="upper")
            ax.set_title(title, fontsize="medium")
            ax.set_xticks(range(8))
            ax.set_yticks(range(8))
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.suptitle(f"average 8x8 (encoding A) maps, {n_all:,} wafers", fontsize="medium")
        save(fig, "occupancy_map.png")

        # occupancy vs |eta|: electron-shower wafers vs pileup-only wafers
        sim = np.concatenate([s["simenergy"] for s in splits.values()]) if n_all else np.zeros(0)
        if n_all and np.isfinite(sim).all():
            occ = np.concatenate([s["occupancy"] for s in splits.values()])
            eta = np.concatenate([s["eta"] for s in splits.values()])
            edges = np.linspace(1.4, 3.1, 18)
            fig, ax = _figure()
            for lab, m, c in (("electron shower (simenergy > 0)", sim > 0, "tab:red"),
                              ("pileup only", sim == 0, "tab:gray")):
                centres, med, q16, q84 = [], [], [], []
                for a, b in zip(edges[:-1], edges[1:], strict=True):
                    sel = m & (eta >= a) & (eta < b)
                    if sel.sum() >= 10:
                        centres.append((a + b) / 2)
                        q = np.percentile(occ[sel], [16, 50, 84])
                        q16.append(q[0])
                        med.append(q[1])
                        q84.append(q[2])
                if centres:
                    ax.plot(centres, med, "o-", color=c, label=f"{lab}: median")
                    ax.fill_between(centres, q16, q84, color=c, alpha=0.25, label="16-84 %")
            ax.set_xlabel(r"wafer $|\eta|$")
            ax.set_ylabel(r"occupancy (TCs above 1 MIP$_T$)")
            ax.set_ylim(0, ax.get_ylim()[1] * 1.6)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize="small", frameon=False)
            _label(ax, source, n_all)
            save(fig, "occupancy_vs_eta.png")
    write_captions(plot_dir, {n: CAPTIONS[n] for n in written})
    return written


# ------------------------------------------------------------------ stage
def _split_stats(arrs: dict[str, np.ndarray]) -> dict:
    n = len(arrs["event"])
    if n == 0:
        return {"wafers": 0, "events": 0}
    occ = arrs["occupancy"]
    return {"wafers": n, "events": int(np.unique(arrs["event"]).size),
            "occupancy_mean": round(float(occ.mean()), 4),
            "occupancy_median": float(np.median(occ)),
            "calq_sum_median": float(np.median(arrs["calq"].sum(axis=1, dtype=np.int64))),
            "eta_mean": round(float(arrs["eta"].astype(np.float64).mean()), 4),
            "shower_wafers": int((arrs["simenergy"] > 0).sum())}


def run(ctx) -> None:
    s = ctx.settings
    out = Path(ctx.out)
    t0 = time.perf_counter()
    gen_stats = None
    timings: dict[str, float] = {}
    if s.source == "synthetic":
        paths, gstats = data_generator.write_ntuples(s, out / "root", ctx.seed, progress=True)
        gen_stats = gstats.as_dict()
        timings["generate_s"] = time.perf_counter() - t0
        layout = "per_tc"
    else:
        paths = ntuple.expand_paths(s.root_files)
        for p in paths:
            ctx.add_input(p)
        layout = s.layout
    t1 = time.perf_counter()
    splits, drops, rstats = build_dataset(paths, s, ctx.seed, layout=layout, progress=True)
    timings["read_s"] = time.perf_counter() - t1
    n_kept = sum(len(a["event"]) for a in splits.values())
    if n_kept == 0:
        raise DataFormatError(f"no wafer survived the selection (read {rstats['wafers']} wafers "
                              f"from {len(paths)} file(s); drops {drops}); expected at least one "
                              "wafer: check data.layers, data.min_occupancy, data.min_sum_mipt")
    t2 = time.perf_counter()
    sizes = {}
    for name, arrs in splits.items():
        write_split(out / split_file(name), arrs, compress=s.compress)
        sizes[name] = (out / split_file(name)).stat().st_size
    timings["save_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    plots = make_plots(out / "plots", splits, s.source)
    timings["plot_s"] = time.perf_counter() - t3

    wafers_read = rstats["wafers"] + rstats["wafers_not_in_layers"]
    for f in rstats["files"]:  # synthetic files: path relative to the stage directory
        p = Path(f["path"])
        if p.is_relative_to(out):
            f["path"] = p.relative_to(out).as_posix()
    stats = {
        "source": s.source,
        "layout": rstats["layout"],
        "words_available": rstats["words_available"],
        "events_read": rstats["events"],
        "wafers_read": wafers_read,
        "wafers_kept": n_kept,
        "drops": drops,
        "splits": {name: _split_stats(a) for name, a in splits.items()},
        "split_fractions": list(s.split),
        "reader": rstats,
        "generator": gen_stats,
        "npz_bytes": sizes,
        "plots": plots,
    }
    atomic_write_bytes(out / "stats.json", (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())

    wall = time.perf_counter() - t0
    ctx.metrics.update({
        "wafers_read": wafers_read, "wafers_kept": n_kept,
        "wafers": {name: len(a["event"]) for name, a in splits.items()},
        "events": {name: stats["splits"][name]["events"] for name in SPLITS},
        "drops": drops,
        "npz_bytes": sum(sizes.values()),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "read_wafers_per_s": round(wafers_read / max(timings["read_s"], 1e-9), 1),
        "occupancy_mean": round(float(np.mean(np.concatenate(
            [a["occupancy"] for a in splits.values()]))), 4),
    })
    if gen_stats is not None:
        ctx.metrics["generated_wafers"] = gen_stats["wafers_written"]
        ctx.metrics["generate_wafers_per_s"] = round(
            gen_stats["wafers_written"] / max(timings["generate_s"], 1e-9), 1)
        ctx.metrics["shower_containment"] = gen_stats["shower_containment"]
    ctx.add_summary("source / layout", f"{s.source} / {rstats['layout']}")
    ctx.add_summary("input files", len(paths))
    ctx.add_summary("events read", rstats["events"])
    ctx.add_summary("wafers read", f"{wafers_read:,}")
    for name in SPLITS:
        ctx.add_summary(f"wafers {name}", f"{len(splits[name]['event']):,}")
    ctx.add_summary("drops", ", ".join(f"{k} {v:,}" for k, v in drops.items()))
    if gen_stats is not None:
        ctx.add_summary("generate", f"{timings['generate_s']:.1f} s "
                        f"({ctx.metrics['generate_wafers_per_s']:,.0f} wafers/s)")
    ctx.add_summary("read + select", f"{timings['read_s']:.1f} s "
                    f"({ctx.metrics['read_wafers_per_s']:,.0f} wafers/s)")
    ctx.add_summary("npz size", f"{sum(sizes.values()) / 1e6:.1f} MB"
                    f"{' (deflated)' if s.compress else ''}")
    ctx.add_summary("wall", f"{wall:.1f} s")


# ------------------------------------------------------------------ bench
def bench(cfg, workdir: Path, min_seconds: float = 3.0) -> dict[str, float]:
    """Generator and reader throughput (wafers/s) on this machine.

    Generates synthetic events with ``cfg.data``'s generator settings (at most
    1000 events per round, in memory and then written to ROOT files under
    ``workdir``) until at least ``min_seconds`` were spent writing, then reads
    the files back (reader + front end) until ``min_seconds`` were spent.
    Wall-clock and process-CPU rates are both returned (the CPU rates are the
    stable ones on a shared machine).
    """
    s = cfg.data
    workdir = Path(workdir)
    n = min(s.n_events, 1000)
    acc = dict.fromkeys(("gen_w", "gen_t", "gen_c", "write_w", "write_t", "write_c",
                         "read_w", "read_t", "read_c"), 0.0)
    paths: list[Path] = []
    rounds = 0
    while (acc["write_t"] < min_seconds or rounds == 0) and rounds < 50:
        t, c = time.perf_counter(), time.process_time()
        for c0 in range(0, n, s.chunk_size):
            _, _, cst = data_generator.generate_chunk(s, 1000 + rounds, c0, c0, min(s.chunk_size, n - c0))
            acc["gen_w"] += cst.wafers_written
        acc["gen_t"] += time.perf_counter() - t
        acc["gen_c"] += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        rp, wst = data_generator.write_ntuples(s, workdir / f"bench_{rounds}", 1000 + rounds,
                                      progress=False, n_events=n)
        acc["write_t"] += time.perf_counter() - t
        acc["write_c"] += time.process_time() - c
        acc["write_w"] += wst.wafers_written
        paths.extend(rp)
        rounds += 1
    reads = 0
    while (acc["read_t"] < min_seconds or reads == 0) and reads < 50:
        t, c = time.perf_counter(), time.process_time()
        w, _ = ntuple.read_wafers(paths, tree=s.tree, chunk_size=s.chunk_size, layers=s.layers,
                                  drop=s.drop, calvalue=s.calvalue)
        acc["read_t"] += time.perf_counter() - t
        acc["read_c"] += time.process_time() - c
        acc["read_w"] += len(w)
        reads += 1
    rate = lambda w, t: acc[w] / max(acc[t], 1e-9)  # noqa: E731
    return {
        "data_generate_wafers_per_s": rate("gen_w", "gen_t"),
        "data_generate_and_write_wafers_per_s": rate("write_w", "write_t"),
        "data_read_wafers_per_s": rate("read_w", "read_t"),
        "data_generate_wafers_per_cpu_s": rate("gen_w", "gen_c"),
        "data_generate_and_write_wafers_per_cpu_s": rate("write_w", "write_c"),
        "data_read_wafers_per_cpu_s": rate("read_w", "read_c"),
        "data_bench_wafers_generated": float(acc["write_w"]),
        "data_bench_write_s": acc["write_t"],
        "data_bench_read_s": acc["read_t"],
    }
