"""The golden-vector files (``convert/vectors.npz``, ``convert/vectors_regs<k>.npz``): the
contract between ``convert``, which writes them, and ``csim``, ``cosim`` and ``handoff``,
which read them; and :func:`golden`, the one function that computes expected outputs
(front end then encoder) for TC words.

A vector file holds (:data:`VECTOR_DTYPES`): ``words`` uint8 (N, 48) 7-bit TC words
(TC/CALQ order), ``calvalues`` uint16 (48,) the CALVALUE registers, ``drop`` int64
scalar, ``aein`` uint8 (N, 48) expected AEin codes, ``latent`` uint16 (N, 16) expected
latent codes, ``sum_code`` uint16 (N,) expected 9-bit module sum, ``kind`` uint8 (N,)
and its legend ``kind_names`` (str array, indexed by kind).  Every expected value comes
from the Python golden chain, :class:`flow.core.frontend.FrontEnd` then
:func:`flow.core.encoder.golden_encode`; nothing here depends on the RTL generator, so the
cosim reference model may use it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.core import encoder as E
from flow.core.frontend import FrontEnd
from flow.core.geometry import N_TC
from flow.core.npzfile import STR, read_npz, write_npz
from flow.runner.errors import DataFormatError

#: kind codes of the golden vectors; ``kind_names[kind]`` is the legend
KIND_NAMES = ("test_wafer", "all_zero", "one_hot", "all_max", "random_full", "random_sparse",
              "uniform", "sum_boundary")
KIND = {name: i for i, name in enumerate(KIND_NAMES)}
#: the vector-file contract: array name -> dtype (shapes in the module docstring)
VECTOR_DTYPES = {"words": np.uint8, "calvalues": np.uint16, "drop": np.int64, "aein": np.uint8,
                 "latent": np.uint16, "sum_code": np.uint16, "kind": np.uint8}
#: every array of a vector file: the contract plus the kind legend
FILE_DTYPES = {**VECTOR_DTYPES, "kind_names": STR}
MAX_WORD = 127
#: the per-vector arrays (the others are the registers and the kind legend)
ROW_ARRAYS = ("words", "aein", "latent", "sum_code", "kind")
#: wafers per front end + encoder call of :func:`golden` (bounds the memory)
GOLDEN_CHUNK = 50_000


def golden(words, *, drop: int, calvalues, weights: E.EncoderWeights,
           latent_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected ``(aein uint8 (N, 48), latent uint16 (N, 16), sum_code uint16 (N,))`` of TC
    ``words`` (N, 48) under the registers ``drop``/``calvalues``: the front end
    (:class:`flow.core.frontend.FrontEnd`) then the integer encoder
    (:func:`flow.core.encoder.golden_encode`)."""
    words = np.asarray(words)
    fe = FrontEnd(drop=int(drop), calvalues=tuple(int(c) for c in np.asarray(calvalues).ravel()))
    n = len(words)
    aein = np.zeros((n, N_TC), dtype=np.uint8)
    latent = np.zeros((n, E.N_LATENT), dtype=np.uint16)
    sum_code = np.zeros(n, dtype=np.uint16)
    for i in range(0, n, GOLDEN_CHUNK):
        a, s = fe(words[i:i + GOLDEN_CHUNK])
        aein[i:i + GOLDEN_CHUNK] = a
        sum_code[i:i + GOLDEN_CHUNK] = s
        latent[i:i + GOLDEN_CHUNK] = E.golden_encode(a, weights, latent_bits)
    return aein, latent, sum_code


def golden_vectors(words, kind, weights: E.EncoderWeights, *, drop: int, calvalues,
                   latent_bits: int) -> dict[str, np.ndarray]:
    """The arrays of a vector file for ``words``, expected outputs from :func:`golden`."""
    words = np.asarray(words)
    aein, latent, sum_code = golden(words, drop=drop, calvalues=calvalues, weights=weights,
                                    latent_bits=latent_bits)
    return {"words": words.astype(np.uint8), "calvalues": np.asarray(calvalues, dtype=np.uint16),
            "drop": np.asarray(int(drop), dtype=np.int64), "aein": aein, "latent": latent,
            "sum_code": sum_code, "kind": np.asarray(kind, dtype=np.uint8),
            "kind_names": np.asarray(KIND_NAMES)}


def check_vectors(v: dict[str, np.ndarray], where: str = "vectors") -> int:
    """Check the vector-file contract (names, dtypes, shapes); returns N."""
    missing = [k for k in FILE_DTYPES if k not in v]
    if missing:
        raise DataFormatError(f"{where}: missing arrays {missing}; expected {list(VECTOR_DTYPES)} "
                              "and kind_names")
    n = len(v["words"])
    shapes = {"words": (n, N_TC), "calvalues": (N_TC,), "drop": (), "aein": (n, N_TC),
              "latent": (n, E.N_LATENT), "sum_code": (n,), "kind": (n,)}
    for k, dt in VECTOR_DTYPES.items():
        a = v[k]
        if a.dtype != dt or a.shape != shapes[k]:
            raise DataFormatError(f"{where}: array {k} expected {np.dtype(dt)} {shapes[k]}, "
                                  f"got {a.dtype} {a.shape}")
    if n and int(v["words"].max()) > MAX_WORD:
        raise DataFormatError(f"{where}: words above {MAX_WORD}")
    return n


def write_vectors(path: str | Path, v: dict[str, np.ndarray]) -> None:
    """Write one vector file (checked first): fixed zip timestamps, the same arrays give the
    same bytes."""
    check_vectors(v, str(path))
    write_npz(path, {k: v[k] for k in FILE_DTYPES})


def read_vectors(path: str | Path) -> dict[str, np.ndarray]:
    """A vector file as a dict of arrays, after checking names, dtypes and shapes."""
    v = read_npz(path, FILE_DTYPES, what="golden-vector file")
    check_vectors(v, str(path))
    return v


def select_spread(kind: np.ndarray, budget: int) -> np.ndarray:
    """Sorted indices of at most ``budget`` vectors, spread evenly over the kinds:
    kinds smaller than their share whole, the others evenly spaced within the kind
    (deterministic, no random numbers).  ``budget`` 0: everything."""
    kind = np.asarray(kind)
    n = len(kind)
    if budget <= 0 or budget >= n:
        return np.arange(n)
    groups = sorted((np.flatnonzero(kind == k) for k in np.unique(kind)), key=len)
    take, left = [], budget
    for g_i, g in enumerate(groups):
        share = left // (len(groups) - g_i)
        m = min(len(g), share)
        if m >= len(g):
            take.append(g)
        elif m > 0:
            take.append(g[np.unique(np.linspace(0, len(g) - 1, m).round().astype(np.int64))])
        left -= min(len(g), m)
    return np.sort(np.concatenate(take)) if take else np.zeros(0, np.int64)


def subset(v: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    """The vector file ``v`` restricted to the rows ``idx`` (registers and legend kept)."""
    return {k: (a[idx] if k in ROW_ARRAYS else a) for k, a in v.items()}
