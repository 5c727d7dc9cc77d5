"""Resolution of the EMD CNN against exact labels, and its plots.

The figure of merit is the relative difference ``r = (pred - true) / true``
over held-out pairs (paper: mean -1.3 %, standard deviation 5.3 %).  Pairs
whose true EMD is below ``min_emd`` are left out (``r`` is undefined at 0)
and counted.  The occupancy of a pair is the mean occupancy of its two
wafers (TCs above 1 MIP_T, as the data stage defines it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.core.captions import write_captions

EMD_EDGES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 14.0]
OCC_EDGES = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 49.0]


def _summary(r: np.ndarray) -> dict[str, float]:
    if r.size == 0:
        return {"n": 0}
    q16, q50, q84 = np.quantile(r, [0.16, 0.5, 0.84])
    return {"n": int(r.size), "mean": float(r.mean()), "std": float(r.std()),
            "rms": float(np.sqrt(np.mean(r ** 2))), "median": float(q50),
            "q16": float(q16), "q84": float(q84), "iqr68_half": float((q84 - q16) / 2)}


def rel_metrics(pred: np.ndarray, true: np.ndarray, min_emd: float) -> dict[str, float]:
    """Summary of the relative difference over pairs with ``true >= min_emd``."""
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    ok = np.isfinite(true) & (true >= min_emd)
    out = _summary((pred[ok] - true[ok]) / true[ok])
    out["n_excluded"] = int((~ok).sum())
    return out


def _binned(x: np.ndarray, r: np.ndarray, edges: list[float]) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (x >= lo) & (x < hi)
        rows.append({"lo": lo, "hi": hi, **_summary(r[sel])})
    return rows


def evaluate(pred, true, occ_a, occ_b, *, min_emd: float) -> dict:
    """Overall and binned (true EMD, pair occupancy) relative-difference metrics."""
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    occ = (np.asarray(occ_a, np.float64) + np.asarray(occ_b, np.float64)) / 2
    ok = np.isfinite(true) & (true >= min_emd)
    r = (pred[ok] - true[ok]) / true[ok]
    d = pred - true
    return {
        "definition": "r = (pred - true) / true over pairs with true EMD >= min_emd; "
                      "pair occupancy = mean of the two wafers' occupancies",
        "min_emd": min_emd,
        "n_pairs": int(len(true)),
        "relative": rel_metrics(pred, true, min_emd),
        "absolute": {"mean": float(d.mean()), "std": float(d.std()),
                     "mae": float(np.abs(d).mean())} if len(d) else {},
        "true_emd": {"mean": float(true.mean()), "median": float(np.median(true))} if len(true) else {},
        "by_true_emd": _binned(true[ok], r, EMD_EDGES),
        "by_occupancy": _binned(occ[ok], r, OCC_EDGES),
    }


#: the captions of the evaluation plots (written beside them to ``captions.json``)
CAPTIONS = {
    "rel_diff.png": "EMD CNN resolution: (EMD CNN - exact EMD) / exact EMD on the test pairs",
    "pred_vs_true.png": "EMD CNN vs exact EMD on the test pairs",
    "resolution_vs_emd.png": "Relative difference (mean, std) vs exact EMD",
    "resolution_vs_occupancy.png": "Relative difference (mean, std) vs pair occupancy",
}


def plot(pred, true, occ_a, occ_b, out_dir: str | Path, *, min_emd: float, title: str = "") -> list[Path]:
    """Write the evaluation plots (PNG) and their ``captions.json`` into ``out_dir``;
    return the plots' paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import mplhep

        mplhep.style.use("CMS")
    except Exception:  # noqa: BLE001 - style only
        pass
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    ok = np.isfinite(true) & (true >= min_emd)
    r = (pred[ok] - true[ok]) / true[ok]
    ev = evaluate(pred, true, occ_a, occ_b, min_emd=min_emd)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.hist(np.clip(r * 100, -40, 40), bins=160, range=(-40, 40), histtype="step", lw=2)
    rel = ev["relative"]
    if rel["n"]:
        ax.text(0.03, 0.95, f"mean {rel['mean'] * 100:.2f} %\nstd {rel['std'] * 100:.2f} %\n"
                f"{rel['n']} pairs", transform=ax.transAxes, va="top", fontsize=14)
    ax.set_xlabel("(EMD CNN - EMD) / EMD [%]")
    ax.set_ylabel("pairs")
    paths.append(_save(fig, ax, title, out_dir / "rel_diff.png"))

    fig, ax = plt.subplots(figsize=(8, 7))
    hi = float(np.quantile(true, 0.999)) if len(true) else 1.0
    ax.hist2d(true, pred, bins=100, range=[[0, hi], [0, hi]], cmin=1, norm=matplotlib.colors.LogNorm())
    ax.plot([0, hi], [0, hi], "r--", lw=1)
    ax.set_xlabel("exact EMD")
    ax.set_ylabel("EMD CNN")
    paths.append(_save(fig, ax, title, out_dir / "pred_vs_true.png"))

    for key, xlabel, name in (("by_true_emd", "exact EMD", "resolution_vs_emd.png"),
                              ("by_occupancy", "pair occupancy (mean of the two wafers)",
                               "resolution_vs_occupancy.png")):
        rows = [b for b in ev[key] if b["n"] > 0]
        fig, ax = plt.subplots(figsize=(8, 6))
        if rows:
            x = [(b["lo"] + b["hi"]) / 2 for b in rows]
            xerr = [(b["hi"] - b["lo"]) / 2 for b in rows]
            ax.errorbar(x, [b["std"] * 100 for b in rows], xerr=xerr, fmt="o", label="std")
            ax.errorbar(x, [b["mean"] * 100 for b in rows], xerr=xerr, fmt="s", label="mean")
            ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("relative difference [%]")
        ax.legend()
        paths.append(_save(fig, ax, title, out_dir / name))
    write_captions(out_dir, {p.name: CAPTIONS[p.name] for p in paths})
    return paths


def _save(fig, ax, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=14)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
