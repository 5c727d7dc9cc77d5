"""Statistics of the loss comparison on hand-made inputs (no TensorFlow)."""
import numpy as np
import pytest

from flow.autoencoder import stats as S
from flow.runner.errors import ShapeError


def _seed(median, boot, occ_meds):
    return {"median": median, "boot_std": boot,
            "vs_occupancy": [{"lo": lo, "hi": lo + 2, "n": 10, "median": m, "boot_std": boot / 2}
                             for lo, m in zip((0, 2, 4), occ_meds, strict=True)],
            "vs_eta": [{"lo": 1.6, "hi": 1.8, "n": 5, "median": median, "boot_std": boot}]}


def test_aggregate_three_seeds_by_hand():
    agg = S.aggregate_seeds([_seed(0.70, 0.010, [1.0, 0.5, None]),
                             _seed(0.66, 0.020, [1.2, 0.4, None]),
                             _seed(0.90, 0.015, [0.8, 0.6, 0.3])])
    assert agg["n_seeds"] == 3
    assert agg["median"] == pytest.approx(0.70) and agg["min"] == 0.66 and agg["max"] == 0.90
    assert agg["boot_std"] == 0.020                 # the largest per-seed bootstrap error
    assert agg["seed_medians"] == [0.70, 0.66, 0.90]
    occ = agg["vs_occupancy"]
    assert [b["median"] for b in occ] == [pytest.approx(1.0), pytest.approx(0.5), 0.3]
    assert (occ[0]["min"], occ[0]["max"]) == (0.8, 1.2)
    assert occ[2]["n_seeds"] == 1                   # empty bins of two seeds are left out
    assert agg["vs_eta"][0]["median"] == pytest.approx(0.70)


def test_aggregate_rejects_no_seeds_and_mixed_binnings():
    with pytest.raises(ShapeError, match="at least one seed"):
        S.aggregate_seeds([])
    a, b = _seed(1, 0.1, [1, 1, 1]), _seed(1, 0.1, [1, 1, 1])
    b["vs_occupancy"] = b["vs_occupancy"][:2]
    with pytest.raises(ShapeError, match=r"vs_occupancy has \[3, 2\] bins"):
        S.aggregate_seeds([a, b])


def test_ratio_envelope_by_hand():
    a = {"median": 0.6, "min": 0.5, "max": 0.8}
    b = {"median": 1.0, "min": 0.8, "max": 1.25}
    r = S.ratio_with_spread(a, b)
    assert r["ratio"] == pytest.approx(0.6)
    assert r["min"] == pytest.approx(0.4) and r["max"] == pytest.approx(1.0)
    assert S.ratio_with_spread(a, {"median": None, "min": None, "max": None})["ratio"] is None
    rows = S.binned_ratio([{"lo": 0, "hi": 1, **a}], [{"lo": 0, "hi": 1, **b}])
    assert rows[0]["lo"] == 0 and rows[0]["ratio"] == pytest.approx(0.6)


def test_bootstrap_error_of_the_median_on_a_known_distribution():
    # the median of n standard normal values has std sqrt(pi / 2) / sqrt(n)
    n = 10_000
    v = np.random.default_rng(4).standard_normal(n)
    got = S.bootstrap_median_std(v, 400, seed=1)
    assert got == pytest.approx(np.sqrt(np.pi / 2 / n), rel=0.2)
    assert S.bootstrap_median_std(v, 0) is None and S.bootstrap_median_std([1.0], 100) is None
    assert S.bootstrap_median_std(v, 50, seed=3) == S.bootstrap_median_std(v, 50, seed=3)  # deterministic


def test_median_summary_and_bins_ignore_nan():
    v = np.array([1.0, 2.0, np.nan, 3.0, 4.0])
    x = np.array([0.5, 0.5, 0.5, 1.5, 1.5])
    m = S.median_summary(v, 0)
    assert m["n"] == 4 and m["median"] == 2.5 and m["boot_std"] is None
    rows = S.binned_summaries(v, x, [0, 1, 2, 3], 0)
    assert [r["n"] for r in rows] == [2, 2, 0]
    assert [r["median"] for r in rows] == [1.5, 3.5, None]
    with pytest.raises(ShapeError):
        S.binned_summaries(v, x[:3], [0, 1], 0)


def test_cnn_check_relative_difference_by_hand():
    true = np.array([1.0, 2.0, 4.0, 0.01, np.nan])
    pred = np.array([1.1, 1.8, 4.0, 5.0, 1.0])
    occ = np.array([1, 3, 10, 1, 1])
    c = S.cnn_check(pred, true, occ, min_emd=0.05)
    r = np.array([0.1, -0.1, 0.0])
    assert c["n"] == 3 and c["n_excluded"] == 2 and c["n_pairs"] == 5
    assert c["rel_mean"] == pytest.approx(r.mean()) and c["rel_std"] == pytest.approx(r.std())
    by_emd = {(b["lo"], b["hi"]): b["n"] for b in c["by_true_emd"]}
    assert by_emd[(1.0, 2.0)] == 1 and by_emd[(2.0, 4.0)] == 1 and by_emd[(4.0, 14.0)] == 1
    assert [b["n"] for b in c["by_occupancy"]][:3] == [1, 1, 0]
    with pytest.raises(ShapeError):
        S.cnn_check(pred[:2], true, occ, min_emd=0.05)
