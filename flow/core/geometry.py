"""The 48 trigger cells (TC) of an HGCAL silicon wafer as the ECON-T sees them.

All tables come from ``flow/resources/geometry.json`` (vendored from the
collaboration's public code, see ``docs/reference.md``).  The TC index 0..47
is the CALQ index; TCs ``16 g .. 16 g + 15`` belong to readout chip ``g``.

Two tensor layouts are used by the flow:

* **encoding A** (8x8x1): the autoencoder input.  ``GRID_8X8[r][c]`` is the TC
  index at row ``r``, column ``c`` (``-1``: a dead position, always zero).
* **encoding B** (4x4x3): the EMD-CNN input.  channel ``t // 16``,
  row ``(t % 16) // 4``, column ``t % 4``.

Functions accept any leading batch shape; the last axis (or last axes) are
the cell axis (or the image axes).
"""
from __future__ import annotations

import json
from fractions import Fraction
from functools import lru_cache
from importlib import resources

import numpy as np

from flow.runner.errors import InputRangeError, ShapeError

N_TC = 48
N_ROC = 3

_G = json.loads(resources.files("flow").joinpath("resources/geometry.json").read_text())

#: (x, y) of each TC centre; neighbouring TCs of ROC 0/1 are 2.0 apart.
TC_XY: np.ndarray = np.asarray(_G["tc_xy"], dtype=np.float64)
#: (cellu, cellv) of each TC in the HGCAL trigger-cell coordinates.
TC_UV: np.ndarray = np.asarray(_G["tc_uv"], dtype=np.int64)
#: flattened 8x8 position of each TC (encoding A).
REMAP_8X8: np.ndarray = np.asarray(_G["remap_8x8"], dtype=np.int64)
#: TC index at each 8x8 position, -1 where the position is dead.
GRID_8X8: np.ndarray = np.asarray(_G["grid_8x8"], dtype=np.int64)
#: the 36 2x2 super-cells (4 TC indices each) of the telescope loss.
SUPERCELLS_2X2: np.ndarray = np.asarray(_G["supercells_2x2"], dtype=np.int64)
#: weight of each 2x2 super-cell (exact fractions, summing to 201/16).
SUPERCELL_WEIGHTS_EXACT: tuple[Fraction, ...] = tuple(Fraction(w) for w in _G["supercell_weights"])
SUPERCELL_WEIGHTS: np.ndarray = np.asarray([float(w) for w in SUPERCELL_WEIGHTS_EXACT])
#: the three 4x4 groups (= readout chips) of the telescope loss.
GROUPS_4X4: np.ndarray = np.asarray(_G["groups_4x4"], dtype=np.int64)
#: readout chip of each TC.
TC_ROC: np.ndarray = np.arange(N_TC) // 16
#: the 16 dead positions of the flattened 8x8 grid.
DEAD_8X8: np.ndarray = np.flatnonzero(GRID_8X8.ravel() < 0)
#: TC index for each (cellu, cellv), -1 where no TC.
_UV_TO_TC = np.full((8, 8), -1, dtype=np.int64)
_UV_TO_TC[TC_UV[:, 0], TC_UV[:, 1]] = np.arange(N_TC)

#: AE-block index (the hardware's row-major numbering of the 48 live 8x8
#: positions) of each TC.
LIVE_8X8: np.ndarray = np.flatnonzero(GRID_8X8.ravel() >= 0)
TC_TO_AEBLOCK: np.ndarray = np.searchsorted(LIVE_8X8, REMAP_8X8)


def _check_last(a: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape[a.ndim - len(shape):] != shape or a.ndim < len(shape):
        raise ShapeError(f"{what}: expected trailing shape {shape}, got array of shape {a.shape}")
    return a


def to_8x8(tc: np.ndarray) -> np.ndarray:
    """Encoding A: ``(..., 48)`` TC values -> ``(..., 8, 8)`` image, dead positions 0."""
    tc = _check_last(tc, (N_TC,), "to_8x8")
    out = np.zeros(tc.shape[:-1] + (64,), dtype=tc.dtype)
    out[..., REMAP_8X8] = tc
    return out.reshape(tc.shape[:-1] + (8, 8))


def from_8x8(img: np.ndarray, *, strict: bool = True) -> np.ndarray:
    """Inverse of :func:`to_8x8`: ``(..., 8, 8)`` (or ``(..., 8, 8, 1)``) -> ``(..., 48)``.

    With ``strict`` a non-zero value at a dead position is an error (it
    would silently be lost otherwise).
    """
    img = np.asarray(img)
    if img.ndim >= 3 and img.shape[-3:] == (8, 8, 1):
        img = img[..., 0]
    img = _check_last(img, (8, 8), "from_8x8")
    flat = img.reshape(img.shape[:-2] + (64,))
    if strict and np.any(flat[..., DEAD_8X8] != 0):
        hit = (flat[..., DEAD_8X8] != 0).reshape(-1, len(DEAD_8X8)).any(0)
        raise InputRangeError(f"from_8x8: expected 0 at the dead 8x8 positions {DEAD_8X8.tolist()}, "
                              f"got non-zero values at {np.asarray(DEAD_8X8)[hit].tolist()}")
    return flat[..., REMAP_8X8]


def to_4x4x3(tc: np.ndarray) -> np.ndarray:
    """Encoding B: ``(..., 48)`` -> ``(..., 4, 4, 3)`` (channels last, channel = ROC)."""
    tc = _check_last(tc, (N_TC,), "to_4x4x3")
    return np.moveaxis(tc.reshape(tc.shape[:-1] + (3, 4, 4)), -3, -1)


def from_4x4x3(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_4x4x3`."""
    img = _check_last(img, (4, 4, 3), "from_4x4x3")
    return np.moveaxis(img, -1, -3).reshape(img.shape[:-3] + (N_TC,))


def uv_to_tc(cellu: np.ndarray, cellv: np.ndarray) -> np.ndarray:
    """TC index for trigger-cell coordinates; -1 where (u, v) is no TC."""
    u = np.asarray(cellu, dtype=np.int64)
    v = np.asarray(cellv, dtype=np.int64)
    ok = (u >= 0) & (u < 8) & (v >= 0) & (v < 8)
    return np.where(ok, _UV_TO_TC[np.clip(u, 0, 7), np.clip(v, 0, 7)], -1)


@lru_cache(maxsize=1)
def _ground_distance() -> np.ndarray:
    d = TC_XY[:, None, :] - TC_XY[None, :, :]
    m = np.sqrt((d ** 2).sum(-1))
    m.setflags(write=False)
    return m


def ground_distance() -> np.ndarray:
    """48x48 Euclidean distance matrix between TC centres (read-only)."""
    return _ground_distance()


def supercell_sums(tc: np.ndarray) -> np.ndarray:
    """``(..., 48)`` -> ``(..., 36)`` sums over the 2x2 super-cells."""
    tc = _check_last(tc, (N_TC,), "supercell_sums")
    return tc[..., SUPERCELLS_2X2].sum(-1)


def group_sums(tc: np.ndarray) -> np.ndarray:
    """``(..., 48)`` -> ``(..., 3)`` sums over the 4x4 groups (readout chips)."""
    tc = _check_last(tc, (N_TC,), "group_sums")
    return tc[..., GROUPS_4X4].sum(-1)
