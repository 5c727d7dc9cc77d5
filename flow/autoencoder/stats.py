"""Statistics of the loss comparison: medians with bootstrap errors, aggregation over
seeds, ratios with their spread, and the EMD CNN checked on reconstructions.

Pure numpy, no TensorFlow: the ``autoencoder`` stage calls these on the exact
EMD of every (loss, seed) model, and the tests call them on hand-made inputs.

Conventions (``docs/autoencoder.md``, "Statistics"):

* per model (loss, seed): the median exact EMD over the test wafers, overall and
  per occupancy / |eta| bin, each with the standard deviation of the median over
  ``n_boot`` bootstrap resamples of the test wafers (``boot_std``);
* per loss: the **median over seeds** of those medians with the **min-max
  spread** over seeds; ``boot_std`` is the largest per-seed bootstrap error;
* ratio A / B of two losses: the ratio of their medians over seeds, with the
  envelope ``min(A) / max(B)`` .. ``max(A) / min(B)`` over seeds as its spread
  (no pairing of seeds across losses: seed i of one loss has nothing in
  common with seed i of another).
"""
from __future__ import annotations

import numpy as np

from flow.runner.errors import ShapeError


def bootstrap_median_std(values, n_boot: int, seed: int = 0) -> float | None:
    """Standard deviation of the median of ``values`` (finite ones) over ``n_boot``
    bootstrap resamples; ``None`` for fewer than two values or ``n_boot == 0``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if n_boot <= 0 or len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    meds = np.empty(n_boot)
    for i in range(n_boot):
        meds[i] = np.median(v[rng.integers(0, len(v), len(v))])
    return float(meds.std(ddof=1))


def median_summary(values, n_boot: int, seed: int = 0) -> dict:
    """Median, 16/84 % quantiles, count and bootstrap error of the median."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "median": None, "q16": None, "q84": None, "boot_std": None}
    q16, q50, q84 = np.percentile(v, [16, 50, 84])
    return {"n": int(len(v)), "median": float(q50), "q16": float(q16), "q84": float(q84),
            "boot_std": bootstrap_median_std(v, n_boot, seed)}


def binned_summaries(values, x, edges, n_boot: int, seed: int = 0) -> list[dict]:
    """:func:`median_summary` of ``values`` in bins ``[lo, hi)`` of ``x``."""
    values = np.asarray(values, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if values.shape != x.shape:
        raise ShapeError(f"binned_summaries: values {values.shape} and x {x.shape} differ")
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        sel = (x >= lo) & (x < hi)
        rows.append({"lo": float(lo), "hi": float(hi), **median_summary(values[sel], n_boot, seed + 1 + k)})
    return rows


def _spread(meds: list) -> dict:
    m = [float(v) for v in meds if v is not None]
    if not m:
        return {"median": None, "min": None, "max": None, "n_seeds": 0}
    return {"median": float(np.median(m)), "min": float(min(m)), "max": float(max(m)), "n_seeds": len(m)}


def _max_or_none(vals) -> float | None:
    v = [float(x) for x in vals if x is not None]
    return max(v) if v else None


def aggregate_seeds(per_seed: list[dict]) -> dict:
    """Per-seed model summaries -> one per loss.

    Each element of ``per_seed`` holds ``median`` and ``boot_std`` (overall) and
    ``vs_occupancy`` / ``vs_eta`` lists of bins with ``lo``, ``hi``, ``median``,
    ``boot_std``, ``n`` (all seeds binned alike).  Returns ``median``, ``min``,
    ``max``, ``n_seeds``, ``boot_std`` (largest per seed), ``seed_medians`` and
    the same per bin.
    """
    if not per_seed:
        raise ShapeError("aggregate_seeds: expected at least one seed, got none")
    out = {**_spread([p["median"] for p in per_seed]),
           "boot_std": _max_or_none(p.get("boot_std") for p in per_seed),
           "seed_medians": [p["median"] for p in per_seed]}
    for key in ("vs_occupancy", "vs_eta"):
        if key not in per_seed[0]:
            continue
        n_bins = len(per_seed[0][key])
        if any(len(p[key]) != n_bins for p in per_seed):
            raise ShapeError(f"aggregate_seeds: {key} has {[len(p[key]) for p in per_seed]} bins "
                             "across seeds; expected the same binning for every seed")
        rows = []
        for b in range(n_bins):
            bins = [p[key][b] for p in per_seed]
            rows.append({"lo": bins[0]["lo"], "hi": bins[0]["hi"], "n": bins[0].get("n"),
                         **_spread([x["median"] for x in bins]),
                         "boot_std": _max_or_none(x.get("boot_std") for x in bins)})
        out[key] = rows
    return out


def ratio_with_spread(a: dict, b: dict) -> dict:
    """Ratio of two aggregated medians (``aggregate_seeds`` outputs, or any dicts with
    ``median``, ``min``, ``max``) with the seed envelope as its spread."""
    try:
        return {"ratio": a["median"] / b["median"], "min": a["min"] / b["max"], "max": a["max"] / b["min"]}
    except (TypeError, ZeroDivisionError, KeyError):
        return {"ratio": None, "min": None, "max": None}


def binned_ratio(a_bins: list[dict], b_bins: list[dict]) -> list[dict]:
    """:func:`ratio_with_spread` bin by bin."""
    return [{"lo": x["lo"], "hi": x["hi"], **ratio_with_spread(x, y)} for x, y in zip(a_bins, b_bins,
                                                                                     strict=True)]


# ------------------------------------------------ the EMD CNN on reconstructions
CNN_CHECK_EMD_EDGES = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 14.0]
CNN_CHECK_OCC_EDGES = [0.0, 2.0, 4.0, 8.0, 16.0, 49.0]


def _rel_summary(r: np.ndarray) -> dict:
    if len(r) == 0:
        return {"n": 0, "mean": None, "std": None}
    return {"n": int(len(r)), "mean": float(r.mean()), "std": float(r.std())}


def cnn_check(pred, true, occupancy, *, min_emd: float) -> dict:
    """Relative difference ``(pred - true) / true`` of the EMD CNN on (input,
    reconstruction) pairs with ``true >= min_emd``: overall and in bins of true EMD
    and occupancy (mean and std of the relative difference)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    occ = np.asarray(occupancy, dtype=np.float64)
    if not (pred.shape == true.shape == occ.shape):
        raise ShapeError(f"cnn_check: pred {pred.shape}, true {true.shape} and occupancy {occ.shape} "
                         "must have the same shape")
    ok = np.isfinite(true) & np.isfinite(pred) & (true >= min_emd)
    r = (pred[ok] - true[ok]) / true[ok]
    out = {"min_emd": min_emd, "n_pairs": int(len(true)), "n_excluded": int((~ok).sum()),
           **{f"rel_{k}": v for k, v in _rel_summary(r).items() if k != "n"}, "n": int(ok.sum())}
    for key, x, edges in (("by_true_emd", true[ok], CNN_CHECK_EMD_EDGES),
                          ("by_occupancy", occ[ok], CNN_CHECK_OCC_EDGES)):
        out[key] = [{"lo": lo, "hi": hi, **_rel_summary(r[(x >= lo) & (x < hi)])}
                    for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return out
