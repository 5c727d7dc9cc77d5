"""Pair datasets of the EMD CNN (Shenoy et al. 2023, section 3).

* **input pairs**: random pairs of (non-empty) input wafers.  The wafer pool
  is split 70/30 *by wafer* before pairing, and pairs are formed within a
  split only, so no wafer appears in both the training and the validation
  pairs.  A held-out test set is formed the same way from the data stage's
  ``test`` split (wafers the CNN never sees).
* **(input, autoencoder output) pairs**: :func:`make_ae_pairs`, for the
  autoencoder stage.

A pair file (``pairs_*.npz``) holds ``a``, ``b`` (float32 ``(N, 48)``, each
wafer normalised to unit sum, TC order), ``emd`` (float64 exact label),
``occ_a``, ``occ_b`` (occupancy of each wafer, from the data stage),
``ia``, ``ib`` (row of each wafer in the data split it came from).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.core.dataset import read_split
from flow.core.emd_exact import EmptyPolicy, label_pairs, normalise
from flow.core.geometry import N_TC
from flow.runner.errors import DataFormatError, ShapeError

PAIR_KEYS = ("a", "b", "emd", "occ_a", "occ_b", "ia", "ib")


def load_wafers(path: str | Path, field: str = "aein") -> dict[str, np.ndarray]:
    """Read one data-stage split (:func:`flow.core.dataset.read_split`); keep the non-empty wafers.

    Returns ``wafers`` (float64, unit-sum rows), ``occupancy``, ``index``
    (row in the file) and ``n_empty`` (wafers dropped because all-zero).
    """
    path = Path(path)
    d = read_split(path, keys=(field, "occupancy"))
    raw, occ = d[field], d["occupancy"].astype(np.int64)
    if raw.ndim != 2 or raw.shape[1] != N_TC:
        raise ShapeError(f"{path}: {field} must be (N, 48), got {raw.shape}")
    keep = np.flatnonzero(raw.sum(1) > 0)
    return {"wafers": normalise(raw[keep]), "occupancy": occ[keep], "index": keep,
            "n_empty": np.int64(len(raw) - len(keep))}


def split_wafers(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random (train, val) index sets over ``n`` wafers."""
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def sample_pairs(pool: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs of distinct wafers drawn (with replacement) from ``pool``."""
    pool = np.asarray(pool)
    if len(pool) < 2:
        raise DataFormatError(f"need at least 2 non-empty wafers to form pairs, got {len(pool)}")
    i = rng.integers(0, len(pool), n_pairs)
    j = rng.integers(0, len(pool) - 1, n_pairs)
    j = j + (j >= i)  # uniform over the other wafers
    return pool[i], pool[j]


def make_pair_set(w: dict[str, np.ndarray], pool: np.ndarray, n_pairs: int, rng: np.random.Generator,
                  *, use_ray: bool, chunk_pairs: int, desc: str, progress: bool = True) -> dict:
    """Random pairs from ``pool`` (rows of ``w``) with exact labels."""
    i, j = sample_pairs(pool, n_pairs, rng)
    a, b = w["wafers"][i], w["wafers"][j]
    lab = label_pairs(a, b, use_ray=use_ray, chunk_pairs=chunk_pairs, progress=progress, desc=desc)
    return {"a": a.astype(np.float32), "b": b.astype(np.float32), "emd": lab,
            "occ_a": w["occupancy"][i], "occ_b": w["occupancy"][j],
            "ia": w["index"][i], "ib": w["index"][j]}


def make_ae_pairs(inputs, outputs, *, empty: EmptyPolicy = "nan", use_ray: bool = False,
                  chunk_pairs: int = 5000, progress: bool = False) -> dict[str, np.ndarray]:
    """(input, autoencoder output) pairs with exact EMD labels.

    ``inputs``, ``outputs``: ``(N, 48)`` wafers in TC order, any scale (the
    output of the decoder is typically an unnormalised 0..1 image; use
    :func:`flow.core.geometry.from_8x8` first for 8x8 images).  Returns ``a``,
    ``b`` (float32, unit-sum), ``emd`` (float64).  With the default
    ``empty="nan"`` a pair with an all-zero wafer gets NaN (and NaN rows in
    ``a``/``b``); ``empty="raise"`` makes it an error.  ``use_ray`` needs Ray
    initialised (:func:`flow.core.emd_exact.ray_session`).
    """
    a = normalise(inputs, what="autoencoder input", empty=empty)
    b = normalise(outputs, what="autoencoder output", empty=empty)
    if a.shape != b.shape:
        raise ShapeError(f"make_ae_pairs: inputs {a.shape} and outputs {b.shape} differ")
    lab = label_pairs(inputs, outputs, empty=empty, use_ray=use_ray, chunk_pairs=chunk_pairs,
                      progress=progress, desc="EMD (input, output)")
    return {"a": a.astype(np.float32), "b": b.astype(np.float32), "emd": lab}


def save_pairs(path: str | Path, pairs: dict) -> None:
    np.savez_compressed(path, **{k: pairs[k] for k in PAIR_KEYS})


def load_pairs(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        missing = [k for k in PAIR_KEYS if k not in z.files]
        if missing:
            raise DataFormatError(f"{path}: not a pair file (missing {missing})")
        return {k: z[k] for k in PAIR_KEYS}
