"""The bit-exact ECON-T front end against worked examples and a scalar reference."""
import re
from pathlib import Path

import numpy as np
import pytest

from flow.core import frontend as fe
from flow.runner.errors import InputRangeError, ShapeError


# ---- an independent scalar transcription of docs/reference.md section 4 (plain Python ints)
def ref_decode(word: int, drop: int) -> int:
    e, m = word >> 3, word & 7
    d = m if e == 0 else (8 + m) << (e - 1)
    d <<= drop
    s = max(e - 1, 0)
    if drop + s > 0:
        d += 1 << (drop + s - 1)
    return d


def ref_sum_code(s: int) -> int:
    if s < 16:
        return s
    e = s.bit_length() - 4
    m = (s >> (e - 1)) & 0xF
    return 511 if e > 31 else (e << 4) | m


def ref_normalise(calq: list[int]) -> list[int]:
    total = sum(calq)
    if total == 0:
        return [0] * len(calq)
    k = min(total.bit_length() - 1, 21)  # the shift saturates at 21 (docs/reference.md section 4)
    return [min((128 * c) >> k, 255) for c in calq]


# ---------------------------------------------------------------- words
@pytest.mark.parametrize("drop", [1, 3])
def test_decode_all_128_words(drop):
    words = np.arange(128)
    got = fe.decode_words(words, drop)
    assert got.tolist() == [ref_decode(w, drop) for w in range(128)]


def test_decode_examples():
    assert fe.decode_word_raw([0, 7, 8, 9, 16, 127]).tolist() == [0, 7, 8, 9, 16, 15 << 14]
    # word 0x08 (e=1, m=0) with drop 3: 8<<3 = 64, plus half-LSB 1<<2
    assert fe.decode_words([8], 3).tolist() == [68]
    # word 0 with drop 1: 0 + half-LSB 1<<0
    assert fe.decode_words([0], 1).tolist() == [1]


def test_encode_inverts_decode_on_every_word_and_bins_every_charge():
    words = np.arange(128)
    raw = fe.decode_word_raw(words)
    assert np.array_equal(fe.encode_charges(raw), words)
    assert np.all(np.diff(raw) > 0)  # monotone
    q = np.arange(0, fe.WORD_MAX_CHARGE + 5000)
    w = fe.encode_charges(q)
    lo = fe.decode_word_raw(w)
    hi = np.where(w < 127, fe.decode_word_raw(np.minimum(w + 1, 127)), np.iinfo(np.int64).max)
    assert np.all((lo <= q) & (q < hi) | (w == 127))
    assert fe.encode_charges([10 ** 9]).tolist() == [127]  # saturates


def test_bad_words_and_charges_are_rejected_with_what_arrived():
    with pytest.raises(InputRangeError, match=r"\[0, 127\].*128"):
        fe.decode_words([1, 128], 3)
    with pytest.raises(InputRangeError, match="-1"):
        fe.decode_word_raw([-1])
    with pytest.raises(InputRangeError, match="fractional"):
        fe.decode_word_raw([1.5])
    with pytest.raises(InputRangeError, match="non-finite"):
        fe.encode_charges([np.nan])
    with pytest.raises(InputRangeError, match=r"charges.*-5"):
        fe.encode_charges([3, -5])
    with pytest.raises(InputRangeError, match="drop: expected 1 .* or 3 .*got 2"):
        fe.decode_words([1], 2)
    with pytest.raises(InputRangeError, match="integer array"):
        fe.decode_word_raw(np.array(["a"]))


# ------------------------------------------------------------ calibration
def test_calibration_floor_and_unity():
    d = np.array([0, 1, 100, 2 ** 21 - 1])
    assert fe.calibrate(d, fe.CAL_UNITY).tolist() == d.tolist()
    assert fe.calibrate([100], [1024]).tolist() == [50]
    assert fe.calibrate([3], [1024]).tolist() == [1]            # floor(1.5)
    assert fe.calibrate([3], [4095]).tolist() == [(3 * 4095) >> 11]
    with pytest.raises(InputRangeError, match=r"CALVALUE.*\[0, 4095\].*4096"):
        fe.calibrate([1], [4096])


def test_calq_fits_22_bits_for_all_words_and_max_calibration():
    calq = fe.calibrate(fe.decode_words(np.arange(128), 3), 4095)
    assert calq.max() < 2 ** 22


# ---------------------------------------------------------- normalisation
def test_normalisation_worked_examples():
    x = np.zeros(48, dtype=np.int64)
    x[:2] = [100, 28]
    codes, k = fe.normalise(x)
    assert k == 7
    np.testing.assert_array_equal(fe.aein_value(codes)[:3], [0.78125, 0.21875, 0.0])
    x[:2] = [100, 27]
    codes, k = fe.normalise(x)
    assert k == 6
    np.testing.assert_array_equal(fe.aein_value(codes)[:3], [1.5625, 0.421875, 0.0])


def test_normalisation_all_zero_and_single_cell():
    codes, k = fe.normalise(np.zeros((2, 48), dtype=np.int64))
    assert codes.sum() == 0 and k.tolist() == [0, 0]
    for c in [1, 2, 3, 35, 2 ** 21 + 12345, 2 ** 22 - 1]:
        x = np.zeros(48, dtype=np.int64)
        x[17] = c
        codes, _ = fe.normalise(x)
        assert codes[17] == 128 * c >> (c.bit_length() - 1)
        assert 128 <= codes[17] <= 255


# The converter's shift saturates at 21: module sums >= 2^22 are divided by 2^21.
# Hand-computed; every case fails with the uncapped k = floor(log2 S).
def test_normalisation_shift_saturates_at_21_sum_exactly_2_22():
    x = np.zeros(48, dtype=np.int64)
    x[:2] = 2 ** 21                      # S = 2^22: uncapped k = 22 would give 64, 64
    codes, k = fe.normalise(x)
    assert k == 21
    assert codes.tolist() == [128, 128] + [0] * 46


def test_normalisation_shift_saturates_four_cells_of_3_2_20():
    x = np.zeros(48, dtype=np.int64)
    x[[0, 9, 20, 47]] = 3 * 2 ** 20      # S = 3 * 2^22: uncapped k = 23 would give 48 each
    codes, k = fe.normalise(x)
    assert k == 21
    assert codes[[0, 9, 20, 47]].tolist() == [192] * 4 and codes.sum() == 4 * 192


def test_normalisation_shift_boundary_just_below_and_above_2_22():
    x = np.zeros((3, 48), dtype=np.int64)
    x[:, 0] = 2 ** 21
    x[:, 1] = [2 ** 21 - 1, 2 ** 21, 2 ** 21 + 1]   # S = 2^22 - 1, 2^22, 2^22 + 1
    codes, k = fe.normalise(x)
    assert k.tolist() == [21, 21, 21]
    # S = 2^22 - 1 has k = 21 uncapped too: 128 * (2^21 - 1) / 2^21 -> 127
    assert codes[:, :2].tolist() == [[128, 127], [128, 128], [128, 128]]


def test_frontend_all_max_words_drop3_unity_calibration():
    # word 127 (e = 15, m = 7) at drop 3: (15 << 14 << 3) + (1 << 16) = 2,031,616 = CALQ at unity
    # calibration; S = 48 * CALQ ~ 2^26.5, k = 21: 128 * 2031616 / 2^21 = 124 (uncapped: 3)
    aein, sum_code = fe.FrontEnd(drop=3)(np.full(48, 127))
    assert aein.tolist() == [124] * 48
    assert sum_code == fe.encode_sum(48 * 2_031_616)   # the module sum is not capped


def test_normalisation_against_scalar_reference_random():
    rng = np.random.default_rng(3)
    for scale in [10, 1000, 2 ** 22 - 1]:
        calq = rng.integers(0, scale, size=(300, 48)) * (rng.random((300, 48)) < 0.3)
        codes, _ = fe.normalise(calq)
        assert codes.tolist() == [ref_normalise(row.tolist()) for row in calq]
        assert codes.max() <= 255


def test_normalise_rejects_wrong_shape_and_range():
    with pytest.raises(ShapeError, match=r"\(\.\.\., 48\).*\(47,\)"):
        fe.normalise(np.zeros(47, dtype=np.int64))
    with pytest.raises(InputRangeError, match="CALQ"):
        fe.normalise(np.full(48, 2 ** 22))


# -------------------------------------------------------------- module sum
def test_module_sum_examples():
    assert fe.encode_sum(100).tolist() == 57
    assert fe.encode_sum([0, 1, 15, 16, 17, 31, 32, 33]).tolist() == [0, 1, 15, 16, 17, 31, 32, 32]
    assert fe.encode_sum(2 ** 40).tolist() == 511  # e = 37 > 31 saturates
    assert fe.encode_sum((2 ** 35) - 1).tolist() == (31 << 4) | 15


def test_module_sum_against_scalar_reference_and_decode():
    powers = (2 ** np.arange(40, dtype=np.int64))[:, None] + np.arange(-3, 4)
    vals = np.unique(np.concatenate([np.arange(5000), powers.ravel()]))
    vals = vals[vals >= 0]
    codes = fe.encode_sum(vals)
    assert codes.tolist() == [ref_sum_code(int(v)) for v in vals]
    ok = codes < 511
    lo = fe.decode_sum(codes[ok])
    assert np.all(lo <= vals[ok])
    assert np.array_equal(fe.encode_sum(lo), codes[ok])  # lower edge encodes to the same code


# ---------------------------------------------------------------- the block
def test_frontend_block_end_to_end_against_reference():
    rng = np.random.default_rng(5)
    words = rng.integers(0, 128, size=(200, 48)) * (rng.random((200, 48)) < 0.4)
    cal = rng.integers(1500, 2600, size=48)
    block = fe.FrontEnd(drop=3, calvalues=tuple(cal.tolist()))
    aein, sum_code = block(words)
    for row, a, s in zip(words.tolist(), aein.tolist(), sum_code.tolist(), strict=True):
        calq = [(ref_decode(w, 3) * c) >> 11 for w, c in zip(row, cal.tolist(), strict=True)]
        assert a == ref_normalise(calq)
        assert s == ref_sum_code(sum(calq))


def test_frontend_block_validation():
    with pytest.raises(ShapeError, match="expected 48 values"):
        fe.FrontEnd(calvalues=(2048,) * 47)
    with pytest.raises(InputRangeError, match="4096"):
        fe.FrontEnd(calvalues=(4096,) * 48)
    with pytest.raises(ShapeError, match=r"one value per trigger cell.*\(2, 40\)"):
        fe.FrontEnd()(np.zeros((2, 40), dtype=np.int64))
    with pytest.raises(InputRangeError, match="200"):
        fe.FrontEnd()(np.full(48, 200))


def test_occupancy():
    calq = np.zeros((2, 48))
    calq[0, :5] = 36
    calq[1, :5] = 36 * 3
    occ = fe.occupancy(calq, np.array([0.0, np.arccosh(2.0)]))
    assert occ.tolist() == [5, 5]
    assert fe.occupancy(calq, np.array([np.arccosh(2.0), np.arccosh(4.0)])).tolist() == [0, 0]


def test_the_aein_format_is_defined_once():
    """Python code takes AEin from frontend.AEIN_FMT; the hand-written HLS and Verilog front
    ends, which cannot import it, are checked against it."""
    from flow.core import encoder as encoder
    from flow.core.frontend import AEIN_BITS, AEIN_FMT, AEIN_FRAC_BITS
    from flow.hdl import datapath as rtl_encoder

    assert encoder.INPUT_FMT is AEIN_FMT
    assert (AEIN_FMT.width, AEIN_FMT.int_bits, AEIN_FMT.signed) == (8, 1, False)
    assert rtl_encoder.AEIN_BITS == AEIN_BITS and AEIN_FRAC_BITS == AEIN_FMT.frac_bits == 7
    res = Path(__file__).resolve().parents[1] / "flow" / "resources"
    hls = (res / "hls" / "econt_frontend.h").read_text()
    assert re.search(rf"typedef u<{AEIN_BITS}> aein_code_t;", hls)
    v = (res / "rtl" / "econt_frontend.v").read_text()
    assert re.search(rf"parameter integer AEIN_BITS\s*= {AEIN_BITS},", v)
    assert re.search(rf"parameter integer AEIN_FRAC\s*= {AEIN_FRAC_BITS},", v)
