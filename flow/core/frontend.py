"""Bit-exact integer model of the ECON-T front end (``docs/reference.md`` section 4).

Data path for one wafer (48 trigger cells, one bunch crossing)::

    7-bit word (4E3M) --decode--> d --calibrate--> CALQ (22 b) --normalise--> AEin (ufixed<8,1>)
                                                     \\--sum--> S --encode--> 9-bit module sum (5E4M)

Everything here is integer arithmetic on numpy ``int64`` arrays with any
leading batch shape; the cell axis is last.  This module is the reference the
RTL front end and the hls4ml csim harness are checked against, so it shares
no code with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flow.core.fixedpoint import FixedFormat
from flow.core.geometry import N_TC
from flow.runner.errors import InputRangeError, ShapeError, describe_values

#: bits of a trigger-cell word: 4-bit exponent, 3-bit mantissa.
TC_WORD_BITS = 7
TC_EXP_BITS, TC_MANT_BITS = 4, 3
#: CALVALUE registers: unsigned, 1 integer + 11 fractional bits (2048 = 1.0).
CAL_BITS, CAL_FRAC_BITS = 12, 11
CAL_UNITY = 1 << CAL_FRAC_BITS
#: CALQ: 22-bit unsigned.
CALQ_BITS = 22
#: AEin, the encoder input: ufixed<8,1> (codes 0..255, value = code / 128).  The one
#: definition of the format in Python: the encoder (``encoder.INPUT_FMT``), the hls4ml
#: conversion, the RTL generators and the handoff take it from here.  The converter
#: below floors and saturates; RND_CONV/SAT are the modes of the encoder's input
#: quantizer (QKeras, hls4ml), which leaves these codes unchanged.
AEIN_FMT = FixedFormat(8, 1, signed=False, rounding="RND_CONV", overflow="SAT")
AEIN_BITS, AEIN_FRAC_BITS = AEIN_FMT.width, AEIN_FMT.frac_bits
#: the converter's normalisation shift saturates here (CALQ is 22 bits wide):
#: module sums of 2^22 and above are divided by 2^21 (docs/reference.md section 4; the
#: public ECON-T converter model, a Catapult C++ build of the ASIC block).
NORM_SHIFT_MAX = CALQ_BITS - 1
#: module sum: 9-bit float, 5-bit exponent + 4-bit mantissa.
SUM_BITS, SUM_EXP_BITS, SUM_MANT_BITS = 9, 5, 4
#: allowed values of the "drop" shift: 1 low-density, 3 high-density modules.
DROP_LOW_DENSITY, DROP_HIGH_DENSITY = 1, 3
#: 1 MIP_T in CALQ counts (used for occupancy).
MIPT_CALQ = 35


def _as_int(a, what: str, lo: int, hi: int, *, cells: bool = False) -> np.ndarray:
    """Integer array with every value in [lo, hi]; errors say what arrived."""
    arr = np.asarray(a)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputRangeError(f"{what}: expected finite integers in [{lo}, {hi}], "
                                  f"got non-finite values {describe_values(arr[~np.isfinite(arr)])}")
        if np.any(arr != np.floor(arr)):
            raise InputRangeError(f"{what}: expected integers in [{lo}, {hi}], got fractional values "
                                  f"{describe_values(arr[arr != np.floor(arr)])}")
    elif arr.dtype.kind not in "iub":
        raise InputRangeError(f"{what}: expected an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < lo) | (arr > hi)
    if np.any(bad):
        raise InputRangeError(f"{what}: expected integers in [{lo}, {hi}], got "
                              f"{describe_values(arr[bad])} ({int(bad.sum())} out of range)")
    if cells and (arr.ndim == 0 or arr.shape[-1] != N_TC):
        raise ShapeError(f"{what}: expected shape (..., {N_TC}) (one value per trigger cell), "
                         f"got shape {arr.shape}")
    return arr


def _check_drop(drop: int) -> int:
    if drop not in (DROP_LOW_DENSITY, DROP_HIGH_DENSITY):
        raise InputRangeError(f"drop: expected {DROP_LOW_DENSITY} (low density) or "
                              f"{DROP_HIGH_DENSITY} (high density), got {drop!r}")
    return int(drop)


# ----------------------------------------------------------------- TC words
def decode_word_raw(words) -> np.ndarray:
    """4E3M word -> integer charge, without the drop shift and half-LSB.

    ``d = m`` if ``e == 0`` else ``(8 + m) << (e - 1)``.
    """
    w = _as_int(words, "trigger-cell words", 0, (1 << TC_WORD_BITS) - 1)
    e = w >> TC_MANT_BITS
    m = w & ((1 << TC_MANT_BITS) - 1)
    return np.where(e == 0, m, (8 + m) << np.maximum(e - 1, 0))


def decode_words(words, drop: int) -> np.ndarray:
    """The ASIC's "float to fix": word -> ``d``, shifted by ``drop``, plus the half-LSB."""
    drop = _check_drop(drop)
    w = _as_int(words, "trigger-cell words", 0, (1 << TC_WORD_BITS) - 1)
    e = w >> TC_MANT_BITS
    d = decode_word_raw(w) << drop
    shift = drop + np.maximum(e - 1, 0)
    return d + np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)


#: largest charge a word represents exactly (word 127 decodes to this).
WORD_MAX_CHARGE = int((8 + 7) << 14)


def encode_charges(charge) -> np.ndarray:
    """Integer charge -> 7-bit 4E3M word (the ROC's compression; truncating).

    Inverse of :func:`decode_word_raw` on its image: ``encode(decode_raw(w)) == w``
    for all 128 words; any charge ``q`` lands in the word whose bin
    ``[decode_raw(w), decode_raw(w + 1))`` contains it.  Charges above
    :data:`WORD_MAX_CHARGE` saturate to word 127.
    """
    q = _as_int(charge, "charges", 0, np.iinfo(np.int64).max)
    q = np.minimum(q, WORD_MAX_CHARGE)
    nbits = np.zeros(q.shape, dtype=np.int64)
    nz = q > 0
    nbits[nz] = np.floor(np.log2(q[nz])).astype(np.int64) + 1
    # guard against float log2 rounding at powers of two
    nbits = np.where((q >> np.maximum(nbits - 1, 0)) == 0, nbits - 1, nbits)
    nbits = np.where((q >> nbits) > 0, nbits + 1, nbits)
    e = np.where(q < 8, 0, nbits - 3)
    m = np.where(q < 8, q, (q >> np.maximum(e - 1, 0)) - 8)
    return (e << TC_MANT_BITS) | m


# -------------------------------------------------------------- calibration
def calibrate(d, calvalues) -> np.ndarray:
    """``CALQ_t = floor(d_t * CALVALUE_t / 2^11)``; CALVALUE is 12-bit (2048 = 1.0)."""
    d = np.asarray(d, dtype=np.int64)
    cal = _as_int(calvalues, "CALVALUE registers", 0, (1 << CAL_BITS) - 1)
    calq = (d * cal) >> CAL_FRAC_BITS
    if np.any(calq >= (1 << CALQ_BITS)):
        over = calq[calq >= 1 << CALQ_BITS]
        raise InputRangeError(f"CALQ: expected values below 2^{CALQ_BITS}, got {describe_values(over)}")
    return calq


# ------------------------------------------------------------ normalisation
def _bit_length(x: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values."""
    x = np.asarray(x, dtype=np.int64)
    n = np.zeros(x.shape, dtype=np.int64)
    for sh in (32, 16, 8, 4, 2, 1):
        big = (x >> sh) > 0
        n = np.where(big, n + sh, n)
        x = np.where(big, x >> sh, x)
    return n + (x > 0)


def normalise(calq) -> tuple[np.ndarray, np.ndarray]:
    """The converter: CALQ -> AEin codes (ufixed<8,1>, 0..255) and the shift ``k``.

    ``k = min(floor(log2(sum CALQ)), 21)``, ``AEin_t = floor(128 CALQ_t / 2^k)``,
    saturating at 255.  An all-zero wafer gives all-zero AEin and ``k = 0``.

    The shift saturates at :data:`NORM_SHIFT_MAX` = 21, as in the ASIC's
    converter: a wafer whose CALQ sum is 2^22 or more is divided by 2^21, so
    its AEin codes no longer sum to about 128 (e.g. 48 cells of CALQ 2^21
    would each give 128, not 2).  The saturation at 255 still never acts:
    ``CALQ_t < 2^22`` and ``CALQ_t <= S < 2^(k+1)`` for ``S < 2^22``.
    """
    calq = _as_int(calq, "CALQ", 0, (1 << CALQ_BITS) - 1, cells=True)
    s = calq.sum(-1)
    k = np.minimum(np.maximum(_bit_length(s) - 1, 0), NORM_SHIFT_MAX)
    codes = (calq << AEIN_FRAC_BITS) >> k[..., None]
    return np.minimum(codes, (1 << AEIN_BITS) - 1), k


def aein_value(codes) -> np.ndarray:
    """AEin codes -> their real values (code / 128)."""
    return np.asarray(codes, dtype=np.float64) / (1 << AEIN_FRAC_BITS)


# -------------------------------------------------------------- module sum
def encode_sum(total) -> np.ndarray:
    """Module sum -> 9-bit 5E4M code (truncating; saturates to 511).

    ``S < 16``: code = S; else ``e = bit_length(S) - 4``, ``m`` = the 4 bits
    after the leading one.  Example: 100 -> 57.
    """
    s = _as_int(total, "module sum", 0, np.iinfo(np.int64).max)
    e = np.maximum(_bit_length(s) - SUM_MANT_BITS, 0)
    m = np.where(e == 0, s, (s >> np.maximum(e - 1, 0)) & ((1 << SUM_MANT_BITS) - 1))
    code = np.where(e == 0, s, (e << SUM_MANT_BITS) | m)
    return np.where(e > (1 << SUM_EXP_BITS) - 1, (1 << SUM_BITS) - 1, code)


def decode_sum(code) -> np.ndarray:
    """9-bit module-sum code -> the lower edge of its bin (inverse of :func:`encode_sum`)."""
    c = _as_int(code, "module-sum codes", 0, (1 << SUM_BITS) - 1)
    e = c >> SUM_MANT_BITS
    m = c & ((1 << SUM_MANT_BITS) - 1)
    return np.where(e == 0, m, (16 + m) << np.maximum(e - 1, 0))


# ---------------------------------------------------------------- the block
@dataclass(frozen=True)
class FrontEnd:
    """The ECON-T front end of one module: density (``drop``) and calibration registers."""

    drop: int = DROP_HIGH_DENSITY
    calvalues: tuple[int, ...] = field(default_factory=lambda: (CAL_UNITY,) * N_TC)

    def __post_init__(self):
        _check_drop(self.drop)
        cal = _as_int(np.asarray(self.calvalues), "CALVALUE registers", 0, (1 << CAL_BITS) - 1)
        if cal.shape != (N_TC,):
            raise ShapeError(f"CALVALUE registers: expected {N_TC} values, got shape {cal.shape}")
        object.__setattr__(self, "calvalues", tuple(int(c) for c in cal))

    def calq(self, words) -> np.ndarray:
        w = _as_int(words, "trigger-cell words", 0, (1 << TC_WORD_BITS) - 1, cells=True)
        return calibrate(decode_words(w, self.drop), np.asarray(self.calvalues))

    def __call__(self, words) -> tuple[np.ndarray, np.ndarray]:
        """48 words per wafer -> (AEin codes ``(..., 48)``, 9-bit module-sum codes ``(...)``)."""
        calq = self.calq(words)
        aein, _ = normalise(calq)
        return aein, encode_sum(calq.sum(-1))


def occupancy(calq, eta) -> np.ndarray:
    """Number of TCs above 1 MIP_T: ``CALQ / 35 / cosh(eta) > 1``.

    CALQ counts energy (35 counts = 1 MIP); dividing by ``cosh(eta)`` of the
    wafer turns it into transverse units (MIP_T), as the paper's occupancy
    axis does.  ``eta`` broadcasts against the wafer axis.
    """
    calq = np.asarray(calq, dtype=np.float64)
    cosh = np.cosh(np.asarray(eta, dtype=np.float64))[..., None]
    return (calq / MIPT_CALQ / cosh > 1.0).sum(-1)
