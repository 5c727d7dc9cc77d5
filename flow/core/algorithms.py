"""The ECON-T's output algorithms at a given eLink budget: bit-exact frames and decoding.

Every algorithm takes the 48 CALQ values of each wafer (22-bit unsigned, the
front end's calibrated charges, :mod:`flow.core.frontend`), writes one frame per
wafer and bunch crossing (BX) into at most ``32 * elinks`` bits, and decodes
the frame back to 48 integer TC charges in CALQ counts.  Frames are numpy bit
arrays (:class:`Frames`, most significant bit first), so the integer format is
explicit and testable: decoding reads the bits, never the encoder's arrays.

Formats (field widths in bits, in frame order; after the public ECON-T
emulator ``cmantill/ECONT_Emulator``, ``ASICBlocks/Algorithms.py`` and
``ASICBlocks/Formatter.py``; ``docs/physics.md`` has the tables):

* ``threshold_sum`` (TS): header 5 (BX counter) + type 3 + module sum 8
  (5E3M) + either nothing (type ``000``, no TC above threshold), or
  N 3 + N x address 6 + N x charge 7 (type ``010``, 1 <= N < 8), or a 48-bit
  map + N x charge 7 (type ``100``, N >= 8).  Charges are 4E3M of
  ``CALQ >> drop``, in TC-index order.  The module sum is, as the ASIC's
  ``USE_SUM`` register chooses, the full CALQ sum or the sum of the TCs *not*
  sent (default: not sent).  A frame longer than the budget is replaced by
  the emulator's truncated frame: header 5 + type ``110`` + full module sum 8.
* ``best_choice`` (BC): header 4 + module sum 8 (5E3M of the sum of
  ``CALQ >> drop``; full or not-sent, default not-sent) + either N x address 6
  (N < 8) or a 48-bit map (N >= 8) + N x charge 7 (4E3M of ``CALQ >> drop``,
  saturating at 2^18 - 1 as the emulator's sorter input), addresses ascending,
  charges in TC-index order.  N per budget: the emulator's ``tcPerLink``
  (2 -> 4, 3 -> 6, 4 -> 9, 5 -> 14).
* ``stc4`` (2x2 super trigger cells): header 4 + n x address 2 + n x sum (7:
  4E3M of ``sum >> drop``, or 9: 5E4M of the sum); the 12 groups are the first
  12 entries of :data:`flow.core.geometry.SUPERCELLS_2X2` (a non-overlapping 2x2
  tiling of the wafer), sent in that order; ``n`` and the sum width per budget
  follow the emulator's STC4_7 / STC4_9 tables (2 -> 6 x 7 bit, 3 -> 10 x 7,
  4 -> 12 x 7, 5 -> 12 x 9).  No module sum (the ASIC's STC frames have none).
* ``stc16`` (4x4 super trigger cells = readout chips): header 4 + 3 x address 4
  + 3 x sum 9 (5E4M).
* ``uncompressed``: the 48 CALQ values, 22 bits each (1056 bits): the
  lossless reference ("floor"), not an ECON-T output format; it is exempt from
  the budget and every other algorithm stays within it.
* the autoencoder: header 4 + module sum 9 (5E4M, :func:`flow.core.frontend.encode_sum`)
  + 16 x latent ``b`` bits with ``b`` = 3 / 5 / 7 / 9 for 2 / 3 / 4 / 5 eLinks
  (:data:`AE_LATENT_BITS`); decoded as decoder output (normalised to unit sum)
  times the decoded module sum (:func:`decode_autoencoder`).

Decoding rules: a float code decodes to the midpoint of its bin (integer,
rounded down); energy that a frame carries only as a sum (the not-sent sum of
TS and BC, a truncated TS frame's module sum) is spread evenly over the TCs it
belongs to; a super trigger cell's sum is put on its maximum TC.

Ties: best choice keeps the N largest ``CALQ >> drop`` values; among equal
values the lower TC index wins (a stable sort).  The ASIC's Batcher network
may pick another TC of the same charge (same energy, another position).  The
address of a super trigger cell's maximum is the *last* position holding the
maximum in group order, as in the emulator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.core.encoder_file import ELINK_LATENT_BITS
from flow.core.frontend import CALQ_BITS
from flow.core.geometry import GROUPS_4X4, N_TC, SUPERCELLS_2X2
from flow.runner.errors import InputRangeError, ShapeError, checked_int_codes, describe_values

#: bits per BX per eLink (1.28 Gb/s at 40 MHz).
BITS_PER_ELINK = 32
#: eLink budgets of a module.
ELINKS = (2, 3, 4, 5)
#: autoencoder bits per latent value by eLink budget (public training code).
AE_LATENT_BITS = ELINK_LATENT_BITS
AE_N_LATENT = 16
AE_HEADER_BITS = 4
AE_SUM_BITS = 9
#: best choice: TCs sent by eLink budget (emulator ``tcPerLink``).
BC_N_TC = {1: 1, 2: 4, 3: 6, 4: 9, 5: 14, 6: 18, 7: 23, 8: 28}
#: 2x2 super trigger cells: (number of groups, sum bits) by eLink budget.
STC4_FORMAT = {2: (6, 7), 3: (10, 7), 4: (12, 7), 5: (12, 9)}
#: the 12 non-overlapping 2x2 groups and the 3 4x4 groups (TC indices).
STC4_GROUPS: np.ndarray = SUPERCELLS_2X2[:12]
STC16_GROUPS: np.ndarray = GROUPS_4X4
#: best-choice sorter input saturation (18 bits).
BC_SATURATION = (1 << 18) - 1

ALGORITHMS = ("uncompressed", "threshold_sum", "best_choice", "stc4", "stc16")


def budget_bits(elinks: int) -> int:
    """Bits per BX of an eLink budget."""
    if int(elinks) != elinks or elinks < 1:
        raise InputRangeError(f"eLinks: expected a positive integer, got {elinks!r}")
    return BITS_PER_ELINK * int(elinks)


# --------------------------------------------------------------- bit frames
@dataclass(frozen=True)
class Frames:
    """One frame per wafer: ``bits`` (n, L) uint8 of 0/1, most significant bit
    first; ``nbits`` (n,) the used length of each frame (the rest is padding 0)."""

    bits: np.ndarray
    nbits: np.ndarray

    def __len__(self) -> int:
        return len(self.nbits)

    def as_ints(self) -> list[int]:
        """Each frame as one Python integer (``nbits`` wide, first bit most significant)."""
        out = []
        for row, n in zip(self.bits, self.nbits, strict=True):
            v = 0
            for b in row[:n]:
                v = (v << 1) | int(b)
            out.append(v)
        return out


def _to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """(..., ) unsigned ints -> (..., width) bits, MSB first."""
    v = np.asarray(values, dtype=np.int64)
    if np.any((v < 0) | (v >= (1 << width))):
        bad = v[(v < 0) | (v >= (1 << width))]
        raise InputRangeError(f"frame field: expected values in [0, 2^{width}), got "
                              f"{describe_values(bad)}")
    sh = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((v[..., None] >> sh) & 1).astype(np.uint8)


def _from_bits(bits: np.ndarray) -> np.ndarray:
    """(..., width) bits MSB first -> (...,) int64."""
    w = bits.shape[-1]
    return (bits.astype(np.int64) << np.arange(w - 1, -1, -1, dtype=np.int64)).sum(-1)


def _pack(fields: list[tuple[np.ndarray, int]], n: int) -> np.ndarray:
    """Concatenate fixed-position fields; each value array is (n,) or (n, k) (k fields)."""
    parts = []
    for vals, width in fields:
        v = np.asarray(vals, dtype=np.int64)
        if v.ndim == 1:
            v = v[:, None]
        parts.append(_to_bits(v, width).reshape(n, -1))
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.uint8)


def _read(bits: np.ndarray, offset, width: int) -> np.ndarray:
    """Read a ``width``-bit field at per-frame ``offset`` (n,) or a scalar."""
    n = bits.shape[0]
    off = np.broadcast_to(np.asarray(offset, dtype=np.int64), (n,))
    idx = off[:, None] + np.arange(width)
    idx = np.minimum(idx, bits.shape[1] - 1)
    return _from_bits(np.take_along_axis(bits, idx, axis=1))


def _check_calq(calq) -> np.ndarray:
    return checked_int_codes(calq, "CALQ", N_TC, 1 << CALQ_BITS, limit_text=f"2^{CALQ_BITS}",
                             dtype_text="an integer array")


def _check_drop(drop: int) -> int:
    if drop not in (0, 1, 2, 3, 4):
        raise InputRangeError(f"drop (DropLSB): expected 0..4, got {drop!r}")
    return int(drop)


def _check_budget(frames: Frames, elinks: int, name: str) -> Frames:
    b = budget_bits(elinks)
    if frames.nbits.max(initial=0) > b:
        raise AssertionError(f"{name}: a frame of {int(frames.nbits.max())} bits exceeds the "
                             f"{elinks}-eLink budget of {b} bits (a bug)")
    return frames


# ------------------------------------------------------------ float codes
def encode_float(value, exp_bits: int, mant_bits: int) -> np.ndarray:
    """Unsigned integer -> ``exp_bits``E``mant_bits``M code (truncating, the emulator's
    ``encode(v, 0, e, m)``): ``v < 2^m``: code = v; else ``e = bit_length(v) - m``,
    mantissa = the ``m`` bits after the leading one; ``e >= 2^exp_bits`` saturates
    to all ones."""
    v = np.asarray(value, dtype=np.int64)
    if np.any(v < 0):
        raise InputRangeError(f"float encode: expected non-negative values, got "
                              f"{describe_values(v[v < 0])}")
    nb = np.zeros(v.shape, dtype=np.int64)
    x = v.copy()
    for sh in (32, 16, 8, 4, 2, 1):
        big = (x >> sh) > 0
        nb = np.where(big, nb + sh, nb)
        x = np.where(big, x >> sh, x)
    nb = nb + (x > 0)
    e = np.maximum(nb - mant_bits, 0)
    m = np.where(e == 0, v, (v >> np.maximum(e - 1, 0)) & ((1 << mant_bits) - 1))
    code = (e << mant_bits) | m
    return np.where(e >= (1 << exp_bits), (1 << (exp_bits + mant_bits)) - 1, code)


def decode_float(code, exp_bits: int, mant_bits: int) -> np.ndarray:
    """Code -> the integer midpoint of its bin, ``lower + width // 2``
    (``lower = m`` for ``e = 0``, else ``(2^m_bits + m) << (e - 1)``; ``width = 2^(e-1)``)."""
    c = np.asarray(code, dtype=np.int64)
    if np.any((c < 0) | (c >= 1 << (exp_bits + mant_bits))):
        raise InputRangeError(f"float decode: expected codes in [0, 2^{exp_bits + mant_bits}), "
                              f"got {describe_values(c)}")
    e = c >> mant_bits
    m = c & ((1 << mant_bits) - 1)
    lower = np.where(e == 0, m, ((1 << mant_bits) + m) << np.maximum(e - 1, 0))
    width = np.where(e == 0, 1, 1 << np.maximum(e - 1, 0))
    return lower + width // 2


def _spread(total: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Spread ``total`` (n,) evenly (integer floor) over the True cells of ``where`` (n, 48)."""
    k = where.sum(1)
    share = np.where(k > 0, total // np.maximum(k, 1), 0)
    return np.where(where, share[:, None], 0)


# ------------------------------------------------------------ uncompressed
def uncompressed_bits(elinks: int | None = None) -> int:
    return N_TC * CALQ_BITS


def encode_uncompressed(calq, elinks: int | None = None) -> Frames:
    """48 x 22-bit CALQ in TC order (the lossless reference; not an ECON-T format)."""
    c = _check_calq(calq)
    bits = _pack([(c, CALQ_BITS)], len(c))
    return Frames(bits, np.full(len(c), bits.shape[1], dtype=np.int64))


def decode_uncompressed(frames: Frames, elinks: int | None = None) -> np.ndarray:
    n = len(frames)
    return _from_bits(frames.bits[:, :N_TC * CALQ_BITS].reshape(n, N_TC, CALQ_BITS))


# ----------------------------------------------------------- threshold sum
TS_HEADER, TS_TYPE, TS_SUM = 5, 3, 8
TS_TYPE_EMPTY, TS_TYPE_ADDR, TS_TYPE_MAP, TS_TYPE_TRUNC = 0b000, 0b010, 0b100, 0b110


def ts_frame_bits(n_sent) -> np.ndarray:
    """Threshold-sum frame length for ``n_sent`` TCs above threshold."""
    n = np.asarray(n_sent, dtype=np.int64)
    base = TS_HEADER + TS_TYPE + TS_SUM
    return np.where(n == 0, base, np.where(n < 8, base + 3 + 13 * n, base + 48 + 7 * n))


def ts_max_tcs(elinks: int) -> int:
    """Most TCs a threshold-sum frame can carry within the budget."""
    b = budget_bits(elinks)
    fits = [n for n in range(N_TC + 1) if ts_frame_bits(n) <= b]
    return max(fits)


def threshold_sum_bits(elinks: int) -> int:
    """Longest threshold-sum frame the budget allows (bits per BX, worst case)."""
    return int(max(ts_frame_bits(n) for n in range(ts_max_tcs(elinks) + 1)))


def _threshold(calq: np.ndarray, threshold) -> np.ndarray:
    t = np.asarray(threshold)
    if t.ndim == 1 and t.shape[0] == calq.shape[0]:
        t = t[:, None]
    try:
        t = np.broadcast_to(t, calq.shape).astype(np.int64)
    except ValueError:
        raise ShapeError(f"threshold: expected a scalar, (n,) per wafer or (n, 48) per TC "
                         f"with n = {calq.shape[0]}, got shape {np.shape(threshold)}") from None
    if np.any(t < 1):
        raise InputRangeError(f"threshold: expected CALQ thresholds >= 1, got "
                              f"{describe_values(t[t < 1])}")
    return t


def _pack_var(values: np.ndarray, widths: np.ndarray, length: int) -> np.ndarray:
    """Pack per-frame variable fields: ``values``/``widths`` (n, F), a field of width 0 is
    absent; fields are concatenated in column order, MSB first, into (n, length) bits."""
    n, f = values.shape
    start = np.cumsum(widths, axis=1) - widths
    bits = np.zeros((n, length), np.uint8)
    for j in range(int(widths.max(initial=0))):
        r, c = np.nonzero(widths > j)
        bit = (values[r, c] >> (widths[r, c] - 1 - j)) & 1
        bits[r, start[r, c] + j] = bit.astype(np.uint8)
    return bits


def encode_threshold_sum(calq, elinks: int, threshold, *, drop: int = 3, use_sum: bool = False,
                         bx=None) -> Frames:
    """Threshold-sum frames (format in the module docstring); ``threshold`` in CALQ counts
    (scalar, per wafer or per TC): a TC is sent when ``CALQ >= threshold``."""
    c = _check_calq(calq)
    drop = _check_drop(drop)
    n = len(c)
    t = _threshold(c, threshold)
    sent = c >= t
    nsent = sent.sum(1)
    length = ts_frame_bits(nsent)
    trunc = length > budget_bits(elinks)
    bx = np.zeros(n, np.int64) if bx is None else np.asarray(bx, np.int64) % 32
    full_sum = encode_float(c.sum(1), 5, 3)
    ns_sum = encode_float(np.where(sent, 0, c).sum(1), 5, 3)
    words = encode_float(np.minimum(c >> drop, BC_SATURATION), 4, 3)
    typ = np.where(nsent == 0, TS_TYPE_EMPTY, np.where(nsent < 8, TS_TYPE_ADDR, TS_TYPE_MAP))
    typ = np.where(trunc, TS_TYPE_TRUNC, typ)
    msum = np.where(trunc | use_sum, full_sum, ns_sum)
    addr_mode = (typ == TS_TYPE_ADDR)[:, None]
    map_mode = (typ == TS_TYPE_MAP)[:, None]
    tcs = np.broadcast_to(np.arange(N_TC), (n, N_TC))
    # fields: header, type, sum, N, 48 addresses, 48 map bits, 48 charges (absent: width 0)
    values = np.concatenate([bx[:, None], typ[:, None], msum[:, None], nsent[:, None], tcs,
                             sent.astype(np.int64), words], axis=1)
    widths = np.concatenate([
        np.full((n, 1), TS_HEADER), np.full((n, 1), TS_TYPE), np.full((n, 1), TS_SUM),
        np.where(addr_mode, 3, 0), np.where(addr_mode & sent, 6, 0), np.where(map_mode & (tcs >= 0), 1, 0),
        np.where((addr_mode | map_mode) & sent, 7, 0)], axis=1).astype(np.int64)
    nbits = widths.sum(1)
    bits = _pack_var(values.astype(np.int64), widths, max(budget_bits(elinks), 16))
    return _check_budget(Frames(bits, nbits), elinks, "threshold_sum")


def decode_threshold_sum(frames: Frames, elinks: int, *, drop: int = 3) -> np.ndarray:
    """Threshold-sum frames -> CALQ estimates (n, 48); see the module's decoding rules."""
    drop = _check_drop(drop)
    b = frames.bits
    n = len(frames)
    typ = _read(b, 5, 3)
    known = np.isin(typ, (TS_TYPE_EMPTY, TS_TYPE_ADDR, TS_TYPE_MAP, TS_TYPE_TRUNC))
    if not known.all():
        raise InputRangeError(f"threshold_sum frames: unknown data types "
                              f"{describe_values(typ[~known])}")
    msum = decode_float(_read(b, 8, 8), 5, 3)
    out = np.zeros((n, N_TC), np.int64)
    sent = np.zeros((n, N_TC), bool)
    rows = np.flatnonzero(typ == TS_TYPE_ADDR)
    k = _read(b[rows], 16, 3)
    for j in range(7):
        r = rows[k > j]
        kk = k[k > j]
        idx = _read(b[r], 19 + 6 * j, 6)
        if np.any(idx >= N_TC):
            raise InputRangeError(f"threshold_sum frame: TC address >= {N_TC}: "
                                  f"{describe_values(idx[idx >= N_TC])}")
        w = _read(b[r], 19 + 6 * kk + 7 * j, 7)
        out[r, idx] = decode_float(w, 4, 3) << drop
        sent[r, idx] = True
    rows = np.flatnonzero(typ == TS_TYPE_MAP)
    m = b[rows, 16:64].astype(bool)
    rank = np.cumsum(m, axis=1) - 1
    r, t = np.nonzero(m)
    w = _read(b[rows[r]], 64 + 7 * rank[r, t], 7)
    out[rows[r], t] = decode_float(w, 4, 3) << drop
    sent[rows[r], t] = True
    return out + _spread(msum, ~sent)


# ------------------------------------------------------------- best choice
BC_HEADER, BC_SUM = 4, 8


def best_choice_bits(elinks: int) -> int:
    k = BC_N_TC[elinks]
    return BC_HEADER + BC_SUM + (6 * k if k < 8 else N_TC) + 7 * k


def best_choice_select(calq, k: int, *, drop: int = 3) -> np.ndarray:
    """Indices (n, k) of the ``k`` largest ``min(CALQ >> drop, 2^18 - 1)``, ties to the
    lower TC index, returned in ascending TC order."""
    c = np.minimum(_check_calq(calq) >> _check_drop(drop), BC_SATURATION)
    order = np.argsort(-c, axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1)


def encode_best_choice(calq, elinks: int, *, drop: int = 3, use_sum: bool = False,
                       bx=None) -> Frames:
    """Best-choice frames (format in the module docstring)."""
    c = _check_calq(calq)
    if elinks not in BC_N_TC:
        raise InputRangeError(f"best_choice: expected eLinks in {sorted(BC_N_TC)}, got {elinks!r}")
    k = BC_N_TC[elinks]
    n = len(c)
    q = np.minimum(c >> _check_drop(drop), BC_SATURATION)
    idx = best_choice_select(c, k, drop=drop)
    sel = np.zeros((n, N_TC), bool)
    np.put_along_axis(sel, idx, True, axis=1)
    total = q.sum(1) if use_sum else np.where(sel, 0, q).sum(1)
    words = encode_float(np.take_along_axis(q, idx, axis=1), 4, 3)
    bx = np.zeros(n, np.int64) if bx is None else np.asarray(bx, np.int64) % 16
    fields = [(bx, BC_HEADER), (encode_float(total, 5, 3), BC_SUM)]
    fields.append((idx, 6) if k < 8 else (sel.astype(np.int64), 1))
    fields.append((words, 7))
    bits = _pack(fields, n)
    return _check_budget(Frames(bits, np.full(n, bits.shape[1], np.int64)), elinks, "best_choice")


def decode_best_choice(frames: Frames, elinks: int, *, drop: int = 3) -> np.ndarray:
    k = BC_N_TC[elinks]
    b = frames.bits
    n = len(frames)
    total = decode_float(_read(b, 4, 8), 5, 3) << drop
    pos = 12
    if k < 8:
        idx = _from_bits(b[:, pos:pos + 6 * k].reshape(n, k, 6))
        pos += 6 * k
    else:
        m = b[:, pos:pos + N_TC].astype(bool)
        if np.any(m.sum(1) != k):
            raise InputRangeError(f"best_choice frame: expected {k} bits set in the map, got "
                                  f"{describe_values(m.sum(1)[m.sum(1) != k])}")
        idx = np.nonzero(m)[1].reshape(n, k)
        pos += N_TC
    w = _from_bits(b[:, pos:pos + 7 * k].reshape(n, k, 7))
    if np.any(idx >= N_TC):
        raise InputRangeError(f"best_choice frame: TC address >= {N_TC}: {describe_values(idx)}")
    out = np.zeros((n, N_TC), np.int64)
    np.put_along_axis(out, idx, decode_float(w, 4, 3) << drop, axis=1)
    sel = np.zeros((n, N_TC), bool)
    np.put_along_axis(sel, idx, True, axis=1)
    return out + _spread(total, ~sel)


# ---------------------------------------------------- super trigger cells
STC_HEADER = 4


def _stc_format(name: str, elinks: int) -> tuple[np.ndarray, int, int, int]:
    """(groups, groups sent, address bits, sum bits)."""
    if name == "stc4":
        if elinks not in STC4_FORMAT:
            raise InputRangeError(f"stc4: expected eLinks in {sorted(STC4_FORMAT)}, got {elinks!r}")
        k, sbits = STC4_FORMAT[elinks]
        return STC4_GROUPS, k, 2, sbits
    if elinks < 2:
        raise InputRangeError(f"stc16: expected at least 2 eLinks, got {elinks!r}")
    return STC16_GROUPS, 3, 4, 9


def stc_bits(name: str, elinks: int) -> int:
    _, k, abits, sbits = _stc_format(name, elinks)
    return STC_HEADER + k * (abits + sbits)


def stc_sums(calq, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sums (n, G), address of the maximum in group order (n, G); ties: the last position)."""
    c = _check_calq(calq)
    g = c[:, groups]                                      # (n, G, s)
    s = groups.shape[1]
    addr = s - 1 - np.argmax(g[..., ::-1], axis=-1)
    return g.sum(-1), addr


def encode_stc(calq, elinks: int, name: str = "stc4", *, drop: int = 3, bx=None) -> Frames:
    """Super-trigger-cell frames: ``name`` ``stc4`` (2x2) or ``stc16`` (4x4)."""
    groups, k, abits, sbits = _stc_format(name, elinks)
    sums, addr = stc_sums(calq, groups)
    sums, addr = sums[:, :k], addr[:, :k]
    codes = (encode_float(sums >> _check_drop(drop), 4, 3) if sbits == 7
             else encode_float(sums, 5, 4))
    n = len(sums)
    bx = np.zeros(n, np.int64) if bx is None else np.asarray(bx, np.int64) % 16
    bits = _pack([(bx, STC_HEADER), (addr, abits), (codes, sbits)], n)
    return _check_budget(Frames(bits, np.full(n, bits.shape[1], np.int64)), elinks, name)


def decode_stc(frames: Frames, elinks: int, name: str = "stc4", *, drop: int = 3) -> np.ndarray:
    """Each group's decoded sum on its maximum TC; groups not sent decode to 0."""
    groups, k, abits, sbits = _stc_format(name, elinks)
    b = frames.bits
    n = len(frames)
    addr = _from_bits(b[:, 4:4 + k * abits].reshape(n, k, abits))
    codes = _from_bits(b[:, 4 + k * abits:4 + k * (abits + sbits)].reshape(n, k, sbits))
    if np.any(addr >= groups.shape[1]):
        raise InputRangeError(f"{name} frame: address >= group size {groups.shape[1]}")
    val = (decode_float(codes, 4, 3) << drop) if sbits == 7 else decode_float(codes, 5, 4)
    out = np.zeros((n, N_TC), np.int64)
    tc = groups[:k][np.arange(k), addr]                   # (n, k)
    np.put_along_axis(out, tc, val, axis=1)
    return out


# ------------------------------------------------------------- autoencoder
def ae_frame_bits(elinks: int) -> int:
    """Autoencoder frame: 4-bit header + 9-bit module sum + 16 latents x b bits."""
    if elinks not in AE_LATENT_BITS:
        raise InputRangeError(f"autoencoder: expected eLinks in {sorted(AE_LATENT_BITS)}, "
                              f"got {elinks!r}")
    return AE_HEADER_BITS + AE_SUM_BITS + AE_N_LATENT * AE_LATENT_BITS[elinks]


def encode_ae_frame(latent_codes, sum_codes, elinks: int, *, bx=None) -> Frames:
    """Pack latent codes (n, 16) of ``AE_LATENT_BITS[elinks]`` bits and 9-bit module-sum codes."""
    b = AE_LATENT_BITS.get(elinks)
    if b is None:
        raise InputRangeError(f"autoencoder: expected eLinks in {sorted(AE_LATENT_BITS)}, "
                              f"got {elinks!r}")
    lat = np.asarray(latent_codes, np.int64)
    if lat.ndim != 2 or lat.shape[1] != AE_N_LATENT:
        raise ShapeError(f"latent codes: expected shape (n, {AE_N_LATENT}), got {lat.shape}")
    n = len(lat)
    bx = np.zeros(n, np.int64) if bx is None else np.asarray(bx, np.int64) % 16
    bits = _pack([(bx, AE_HEADER_BITS), (sum_codes, AE_SUM_BITS), (lat, b)], n)
    return _check_budget(Frames(bits, np.full(n, bits.shape[1], np.int64)), elinks, "autoencoder")


def decode_ae_frame(frames: Frames, elinks: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames -> (latent codes (n, 16), module-sum codes (n,))."""
    b = AE_LATENT_BITS[elinks]
    n = len(frames)
    s = _read(frames.bits, AE_HEADER_BITS, AE_SUM_BITS)
    p = AE_HEADER_BITS + AE_SUM_BITS
    lat = _from_bits(frames.bits[:, p:p + AE_N_LATENT * b].reshape(n, AE_N_LATENT, b))
    return lat, s


def decode_autoencoder(latent_codes, sum_codes, decoder, elinks: int | None,
                       batch_size: int = 8192, conditions=None, latent_bits: int | None = None) -> np.ndarray:
    """Decoded TC charges (n, 48), float CALQ counts: the decoder's output for the latent
    values ``code / 2^(b - 1)`` (ufixed<b,1>), normalised to unit sum, times the decoded
    9-bit module sum (bin midpoint).  ``decoder``: a Keras model (``predict``) or a callable
    ``(n, 16) float32 -> (n, 8, 8[, 1])`` encoding-A image or ``(n, 48)`` TC values.
    ``conditions`` (n, k): side inputs of a conditional decoder (what the back end knows
    besides the frame), appended after the 16 latent values.  ``latent_bits``: the latent
    width when it is not the one of an eLink budget (``elinks`` None; the co-design sweep)."""
    from flow.core.geometry import REMAP_8X8

    if latent_bits is None:
        if elinks not in AE_LATENT_BITS:
            raise InputRangeError(f"autoencoder: expected eLinks in {sorted(AE_LATENT_BITS)}, got {elinks!r}")
        b = AE_LATENT_BITS[elinks]
    else:
        b = int(latent_bits)
    lat = np.asarray(latent_codes, np.float32) / np.float32(1 << (b - 1))
    if conditions is not None:
        cond = np.asarray(conditions, np.float32)
        if cond.ndim != 2 or len(cond) != len(lat):
            raise ShapeError(f"decoder conditions: expected shape ({len(lat)}, k), got {cond.shape}")
        lat = np.concatenate([lat, cond], axis=1)
    out = (decoder.predict(lat, batch_size=batch_size, verbose=0) if hasattr(decoder, "predict")
           else decoder(lat))
    out = np.asarray(out, np.float64)
    n = len(lat)
    if out.shape[1:] in ((8, 8), (8, 8, 1)):
        out = out.reshape(n, 64)[:, REMAP_8X8]
    elif out.shape[1:] != (N_TC,):
        raise ShapeError(f"decoder output: expected (n, 8, 8[, 1]) or (n, {N_TC}), got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise InputRangeError("decoder output: expected finite values, got NaN/inf")
    tot = out.sum(1, keepdims=True)
    frac = np.where(tot > 0, out / np.where(tot > 0, tot, 1.0), 0.0)
    return frac * decode_float(sum_codes, 5, 4)[:, None]


# ----------------------------------------------------------------- registry
def frame_bits(algorithm: str, elinks: int) -> int:
    """Worst-case bits per BX of an algorithm at a budget (``uncompressed``: 1056 always)."""
    if algorithm == "uncompressed":
        return uncompressed_bits()
    if algorithm == "threshold_sum":
        return threshold_sum_bits(elinks)
    if algorithm == "best_choice":
        return best_choice_bits(elinks)
    if algorithm in ("stc4", "stc16"):
        return stc_bits(algorithm, elinks)
    if algorithm == "autoencoder":
        return ae_frame_bits(elinks)
    raise InputRangeError(f"algorithm: expected one of {ALGORITHMS + ('autoencoder',)}, "
                          f"got {algorithm!r}")


def encode(algorithm: str, calq, elinks: int, *, drop: int = 3, threshold=None) -> Frames:
    """Frames of one non-autoencoder algorithm (``threshold`` only for ``threshold_sum``)."""
    if algorithm == "uncompressed":
        return encode_uncompressed(calq)
    if algorithm == "threshold_sum":
        if threshold is None:
            raise InputRangeError("threshold_sum: expected a threshold (CALQ counts), got None")
        return encode_threshold_sum(calq, elinks, threshold, drop=drop)
    if algorithm == "best_choice":
        return encode_best_choice(calq, elinks, drop=drop)
    if algorithm in ("stc4", "stc16"):
        return encode_stc(calq, elinks, algorithm, drop=drop)
    raise InputRangeError(f"algorithm: expected one of {ALGORITHMS}, got {algorithm!r}")


def decode(algorithm: str, frames: Frames, elinks: int, *, drop: int = 3) -> np.ndarray:
    if algorithm == "uncompressed":
        return decode_uncompressed(frames)
    if algorithm == "threshold_sum":
        return decode_threshold_sum(frames, elinks, drop=drop)
    if algorithm == "best_choice":
        return decode_best_choice(frames, elinks, drop=drop)
    if algorithm in ("stc4", "stc16"):
        return decode_stc(frames, elinks, algorithm, drop=drop)
    raise InputRangeError(f"algorithm: expected one of {ALGORITHMS}, got {algorithm!r}")


def budget_table() -> list[dict]:
    """Per eLink budget: bits, AE latent bits, and each algorithm's worst-case frame bits."""
    rows = []
    for e in ELINKS:
        row = {"elinks": e, "budget_bits": budget_bits(e), "ae_latent_bits": AE_LATENT_BITS[e],
               "autoencoder": ae_frame_bits(e), "best_choice_n_tc": BC_N_TC[e],
               "threshold_sum_max_tcs": ts_max_tcs(e),
               "stc4_groups": STC4_FORMAT[e][0], "stc4_sum_bits": STC4_FORMAT[e][1]}
        for a in ALGORITHMS:
            row[a] = frame_bits(a, e)
        rows.append(row)
    return rows


def choose_threshold(calq, elinks: int, eta, *, max_truncated: float = 0.01,
                     grid_mipt=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)) -> float:
    """Smallest threshold (MIP_T; per wafer ``t * 35 * cosh(eta)`` CALQ counts) from
    ``grid_mipt`` whose threshold-sum frames are truncated for at most ``max_truncated``
    of the given wafers (fit on a training sample; the largest grid value if none fits)."""
    c = _check_calq(calq)
    cosh = np.cosh(np.asarray(eta, np.float64))
    for t in grid_mipt:
        thr = np.maximum(np.floor(t * 35.0 * cosh), 1).astype(np.int64)
        n = (c >= thr[:, None]).sum(1)
        if np.mean(n > ts_max_tcs(elinks)) <= max_truncated:
            return float(t)
    return float(grid_mipt[-1])


def threshold_counts(t_mipt: float, eta) -> np.ndarray:
    """Per-wafer threshold in CALQ counts for ``t_mipt`` MIP_T at the wafer's |eta|."""
    return np.maximum(np.floor(t_mipt * 35.0 * np.cosh(np.asarray(eta, np.float64))), 1
                      ).astype(np.int64)
