"""flow.core.fixedpoint against QKeras 0.9.0 and the Xilinx ap_fixed headers, bit for bit.

* QKeras: every ``quantized_bits`` / ``quantized_relu`` configuration the flow can
  meet, on a dense float32 grid holding every half-LSB tie, the points between,
  out-of-range values and negatives; outputs must be identical.
* ap_fixed: a C++ program built once per session from the ``ap_types`` headers
  that ship with hls4ml converts every code of 10-bit signed and unsigned
  sources (4 fractional bits) into targets that round, overflow, shift left and
  shift past the source width -- every one of the 7 x 4 mode pairs, the full
  product where rounding and overflow interact (see ``AP_CASES``) -- both from
  an ap_fixed source (:func:`requantize`) and from a double (:func:`to_code`,
  the path hls4ml's weight initialisers take).
* Unit tests: round trips over every code, bit patterns, strings and errors.

QKeras and g++ are hard requirements: a missing one fails the module, never skips it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hls4ml  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import qkeras  # noqa: E402
from hls4ml.backends.fpga.fpga_backend import FPGABackend  # noqa: E402

from flow.core.fixedpoint import (  # noqa: E402
    FixedFormat,
    Overflow,
    Rounding,
    from_bits,
    from_code,
    quantize,
    requantize,
    to_bits,
    to_code,
)
from flow.runner.errors import ConfigError, InputRangeError  # noqa: E402

ROUNDINGS = list(Rounding)
OVERFLOWS = list(Overflow)
AP_TYPES = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"


# ===================================================================== QKeras
def qkeras_grid(fmt: FixedFormat, seed: int) -> np.ndarray:
    """float32 inputs in quarter-LSB steps (every half-LSB tie and the points
    between) over three times the range, their float32 neighbours, large
    values QKeras still handles exactly (|x| < 2**24 LSB, see the module
    docstring of flow.core.fixedpoint), random values and signed zeros.  Formats
    with more than 2**12 codes get the steps near min, 0 and max plus random
    quarter-LSB points instead of the full sweep (rounded to float32 where
    they need more than 24 bits)."""
    quarter = fmt.lsb / 4
    span = 3 * max(abs(fmt.min_value), fmt.max_value + fmt.lsb)
    k_span = int(span / quarter)
    rng = np.random.default_rng(seed)
    if fmt.max_code - fmt.min_code < 2 ** 12:
        k = np.arange(-k_span, k_span + 1)
    else:
        k = np.concatenate([np.arange(-1024, 1025) + int(round(c / quarter))
                            for c in (fmt.min_value, 0.0, fmt.max_value)]
                           + [rng.integers(-k_span, k_span + 1, 20000)])
    steps = (k * quarter).astype(np.float32)
    if fmt.width <= 20:  # quarter LSBs need width + 2 bits: every tie is in the grid
        assert np.array_equal(steps.astype(np.float64), k * quarter)
    big = np.ldexp(1.0, np.arange(0, int(np.log2(2.0 ** 24 * fmt.lsb)))).astype(np.float32)
    rand = rng.uniform(-span, span, 5000).astype(np.float32)
    x = np.concatenate([steps, np.nextafter(steps, np.float32(np.inf)),
                        np.nextafter(steps, np.float32(-np.inf)), big, -big, rand,
                        np.array([0.0, -0.0], dtype=np.float32)])
    assert x.dtype == np.float32
    return x


def assert_same_as_qkeras(q, fmt: FixedFormat, seed: int = 0):
    x = qkeras_grid(fmt, seed)
    want = np.asarray(q(x), dtype=np.float64)
    got = quantize(x, fmt)
    bad = got != want
    assert not bad.any(), (f"{q} as {fmt}: {int(bad.sum())} mismatches, e.g. x={x[bad][:5]} "
                           f"qkeras={want[bad][:5]} ours={got[bad][:5]}")


@pytest.mark.parametrize("keep_negative", [True, False])
@pytest.mark.parametrize("integer", [0, 1, 2, 3])
@pytest.mark.parametrize("bits", range(2, 11))
def test_quantized_bits_matches_qkeras(bits, integer, keep_negative):
    q = qkeras.quantized_bits(bits, integer, keep_negative=keep_negative, alpha=1)
    fmt = FixedFormat.from_qkeras(q)
    if keep_negative:
        assert fmt == FixedFormat(bits, integer + 1, True, "RND_CONV", "SAT")
        assert (fmt.min_code, fmt.max_code) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    else:
        assert fmt == FixedFormat(bits, integer, False, "RND_CONV", "SAT")
        assert (fmt.min_code, fmt.max_code) == (0, 2 ** bits - 1)
    assert_same_as_qkeras(q, fmt, seed=bits * 10 + integer)


@pytest.mark.parametrize(("bits", "integer"), [(4, 0), (6, 1), (9, 3)])
def test_symmetric_quantized_bits_is_sat_sym(bits, integer):
    q = qkeras.quantized_bits(bits, integer, symmetric=1, alpha=1)
    fmt = FixedFormat.from_qkeras(q)
    assert fmt == FixedFormat(bits, integer + 1, True, "RND_CONV", "SAT_SYM")
    assert_same_as_qkeras(q, fmt)


def test_quantized_bits_alpha_none_equals_alpha_one():
    fmt = FixedFormat.from_qkeras(qkeras.quantized_bits(6, 0, alpha=None))
    assert fmt == FixedFormat.from_qkeras(qkeras.quantized_bits(6, 0, alpha=1))
    assert_same_as_qkeras(qkeras.quantized_bits(6, 0), fmt)


#: the flow's (8,1), (9,1), (6,0), the 1-bit and the widest exact (24 bits) cases
RELU_CASES = [(8, 1), (9, 1), (6, 0), (1, 0), (4, 2), (10, 3), (16, 6), (24, 4)]


@pytest.mark.parametrize(("bits", "integer"), RELU_CASES)
def test_quantized_relu_matches_qkeras(bits, integer):
    q = qkeras.quantized_relu(bits, integer)
    fmt = FixedFormat.from_qkeras(q)
    assert fmt == FixedFormat(bits, integer, False, "RND_CONV", "SAT")
    # the largest output is 2**integer - lsb, not 2**integer (what q.max() reports)
    assert fmt.max_value == 2.0 ** integer - 2.0 ** (integer - bits)
    assert float(np.asarray(q(np.float32(1e6)))) == fmt.max_value
    assert_same_as_qkeras(q, fmt, seed=bits)


def test_quantized_relu_without_quantized_clip():
    q = qkeras.quantized_relu(8, 1, is_quantized_clip=False)
    fmt = FixedFormat.from_qkeras(q)
    assert fmt == FixedFormat.from_qkeras(qkeras.quantized_relu(8, 1))
    assert_same_as_qkeras(q, fmt)


def test_qkeras_quirks_documented_in_module():
    """Canaries: if QKeras changes these behaviours, the documentation must change."""
    # 1. straight-through estimator in float32: large inputs of quantized_bits
    #    give values outside the format (ufixed<8,0>: lsb 2**-8, safe below 2**16).
    q = qkeras.quantized_bits(8, 0, keep_negative=False, alpha=1)
    fmt = FixedFormat.from_qkeras(q)
    x = np.float32([2.0 ** 16, 2.0 ** 17, 2.0 ** 25])
    assert np.array_equal(np.asarray(q(x)), [fmt.max_value, 1.0, 0.0])
    assert np.array_equal(quantize(x, fmt), [fmt.max_value] * 3)
    #    quantized_relu clips first and stays exact
    r = qkeras.quantized_relu(8, 0)
    assert np.array_equal(np.asarray(r(x)), quantize(x, FixedFormat.from_qkeras(r)))
    # 2. inputs are rounded to float32 first: a float64 just above a tie lands on it
    fmt = FixedFormat.from_qkeras(qkeras.quantized_bits(4, 0, alpha=1))  # lsb 1/8
    x64 = np.array([1 / 16 + 2.0 ** -40])
    assert np.asarray(qkeras.quantized_bits(4, 0, alpha=1)(x64))[0] == 0.0  # tie -> even
    assert quantize(x64, fmt)[0] == 0.125
    assert quantize(x64.astype(np.float32), fmt)[0] == 0.0
    #    ... and so is quantized_relu with is_quantized_clip=False
    r = qkeras.quantized_relu(8, 1, is_quantized_clip=False)
    assert np.asarray(r(np.float32([2.0 ** 25])))[0] == 2.0 != FixedFormat.from_qkeras(r).max_value
    # 3. max() is 2**integer (at least 1), not the largest representable value
    assert qkeras.quantized_relu(6, 0).max() == 1.0
    assert FixedFormat.from_qkeras(qkeras.quantized_relu(6, 0)).max_value == 63 / 64
    # 4. a negative `integer` fails inside QKeras (integer tensor to a negative power)
    with pytest.raises(Exception, match="negative integer powers"):
        qkeras.quantized_bits(4, -1, alpha=1)(np.float32([0.1]))
    with pytest.raises(ConfigError, match="integer >= 0"):
        FixedFormat.from_qkeras(qkeras.quantized_bits(4, -1, alpha=1))


def test_from_qkeras_reads_tf_variables():
    q = qkeras.quantized_bits(6, 1, alpha=1, use_variables=True)
    x = qkeras_grid(FixedFormat(6, 2, True, "RND_CONV", "SAT"), seed=1)
    want = np.asarray(q(x))  # builds: q.integer is now a tf.Variable
    assert not isinstance(q.integer, int)
    fmt = FixedFormat.from_qkeras(q)
    assert fmt == FixedFormat(6, 2, True, "RND_CONV", "SAT")
    assert np.array_equal(quantize(x, fmt), want)


@pytest.mark.parametrize("q", [
    qkeras.quantized_bits(6, 0, alpha=1),
    qkeras.quantized_bits(8, 2, keep_negative=False, alpha=1),
    qkeras.quantized_bits(5, 1, symmetric=1, alpha=1),
    qkeras.quantized_relu(8, 1),
    qkeras.quantized_relu(9, 1),
], ids=str)
def test_from_qkeras_object_string_and_config_agree(q):
    fmt = FixedFormat.from_qkeras(q)
    assert FixedFormat.from_qkeras(str(q)) == fmt
    assert FixedFormat.from_qkeras({"class_name": type(q).__name__, "config": q.get_config()}) == fmt


def test_from_qkeras_config_strings():
    assert FixedFormat.from_qkeras("quantized_bits(6,0,alpha=1)") == FixedFormat.from_ap_string(
        "ap_fixed<6,1,AP_RND_CONV,AP_SAT>")
    assert FixedFormat.from_qkeras("quantized_bits(bits=8, integer=3, keep_negative=False)") == FixedFormat(
        8, 3, False, "RND_CONV", "SAT")
    assert FixedFormat.from_qkeras("quantized_relu(8,1)").to_hls4ml_string() == "ufixed<8,1,RND_CONV,SAT>"
    assert FixedFormat.from_qkeras("quantized_relu") == FixedFormat(8, 0, False, "RND_CONV", "SAT")
    assert FixedFormat.from_qkeras("quantized_bits(4,0,alpha=1.0)") == FixedFormat(
        4, 1, True, "RND_CONV", "SAT")


@pytest.mark.parametrize(("quantizer", "expected", "arrived"), [
    ("quantized_bits(6,0,alpha='auto_po2')", "alpha=1 or None", "'auto_po2'"),
    ("quantized_bits(6,0,alpha='auto')", "alpha=1 or None", "'auto'"),
    ("quantized_bits(6,0,alpha=0.5)", "alpha=1 or None", "0.5"),
    ("quantized_bits(1,0)", "bits >= 2", "bits=1"),
    ("quantized_bits(6,0,use_stochastic_rounding=True)", "use_stochastic_rounding=False", "True"),
    ("quantized_bits(6,0,qnoise_factor=0.5)", "qnoise_factor=1", "0.5"),
    ("quantized_bits(6,0,foo=1)", "parameters among bits, integer", "unknown foo"),
    ("quantized_relu(6,0,negative_slope=0.25)", "negative_slope=0", "0.25"),
    ("quantized_relu(6,0,use_sigmoid=1)", "use_sigmoid=0", "1"),
    ("quantized_relu(6,0,is_quantized_clip=False,relu_upper_bound=0.5)",
     "relu_upper_bound None or >=", "0.5"),
    ("quantized_tanh(6,0)", "quantized_bits or quantized_relu", "quantized_tanh"),
    ("quantized_bits(6,", "quantized_bits or quantized_relu", "'quantized_bits(6,'"),
    ("quantized_bits(6.5,0)", "bits: expected an integer", "6.5"),
    ("quantized_relu(4,-1)", "integer >= 0", "integer=-1"),
    ("quantized_relu(25,1)", "at most 24 magnitude bits", "got 25"),
    ("quantized_bits(26,1,keep_negative=True)", "at most 24 magnitude bits", "got 25"),
])
def test_from_qkeras_rejects(quantizer, expected, arrived):
    with pytest.raises(ConfigError) as err:
        FixedFormat.from_qkeras(quantizer)
    assert expected in str(err.value) and arrived in str(err.value), str(err.value)


def test_from_qkeras_rejects_objects():
    with pytest.raises(ConfigError, match=r"auto_po2.*power-of-two"):
        FixedFormat.from_qkeras(qkeras.quantized_bits(6, 0, alpha="auto_po2"))
    with pytest.raises(ConfigError, match="quantized_bits or quantized_relu.*binary"):
        FixedFormat.from_qkeras(qkeras.binary())
    with pytest.raises(ConfigError, match="per-channel"):
        FixedFormat.from_qkeras(qkeras.quantized_bits(6, 0, alpha=np.array([1.0, 2.0])))
    assert FixedFormat.from_qkeras(qkeras.quantized_bits(6, 0, alpha=np.ones(3))) == FixedFormat(
        6, 1, True, "RND_CONV", "SAT")


# ==================================================================== ap_fixed
#: sources: every code of a 10-bit signed / unsigned type with 4 fractional bits.
SRC_WIDTH, SRC_FRAC = 10, 4
SRC_S = FixedFormat(SRC_WIDTH, SRC_WIDTH - SRC_FRAC, True)
SRC_U = FixedFormat(SRC_WIDTH, SRC_WIDTH - SRC_FRAC, False)

#: mode sets: every pair; every rounding (wrapping) plus the saturating modes
#: once; SAT_SYM under every rounding; the overflow modes alone.
ALL_MODES = [(q, o) for q in ROUNDINGS for o in OVERFLOWS]
ROUNDING_MODES = [(q, Overflow.WRAP) for q in ROUNDINGS] + [
    (Rounding.RND_CONV, o) for o in (Overflow.SAT, Overflow.SAT_ZERO, Overflow.SAT_SYM)]
SAT_SYM_MODES = [(q, Overflow.SAT_SYM) for q in ROUNDINGS] + [
    (Rounding.TRN, o) for o in (Overflow.WRAP, Overflow.SAT, Overflow.SAT_ZERO)]
OVERFLOW_MODES = [(Rounding.TRN, o) for o in OVERFLOWS]

#: (source, target (width, int_bits), target signed, modes).  Every template
#: instantiation costs ~30 ms of g++ time, so the full 7 x 4 product is taken
#: where rounding and overflow interact -- <6,3> drops a fraction bit and 3
#: integer bits; <7,6> overflows only through a rounding carry -- and the
#: other shapes exercise their code paths with fewer modes: <3,12> shifts right
#: past the source width (13 bits), <4,8> by 8 into a target whose integer
#: part exceeds its width, <4,-1> shifts left (no rounding), <1,1> is a 1-bit
#: signed type (SAT_SYM is SAT there), <12,8> widens (sign changes only).
AP_CASES = [
    (SRC_S, (6, 3), True, ALL_MODES), (SRC_S, (6, 3), False, ALL_MODES),
    (SRC_U, (6, 3), True, ALL_MODES), (SRC_U, (6, 3), False, ALL_MODES),
    (SRC_S, (7, 6), True, ALL_MODES), (SRC_S, (7, 6), False, ROUNDING_MODES),
    (SRC_S, (1, 1), True, SAT_SYM_MODES),
    (SRC_S, (3, 12), True, ROUNDING_MODES), (SRC_S, (3, 12), False, ROUNDING_MODES),
    (SRC_U, (3, 12), True, ROUNDING_MODES),
    (SRC_S, (4, 8), True, ROUNDING_MODES), (SRC_S, (4, 8), False, ROUNDING_MODES),
    (SRC_S, (4, -1), True, OVERFLOW_MODES), (SRC_S, (4, -1), False, OVERFLOW_MODES),
    (SRC_U, (4, -1), True, OVERFLOW_MODES), (SRC_U, (4, -1), False, OVERFLOW_MODES),
    (SRC_S, (12, 8), False, OVERFLOW_MODES), (SRC_U, (12, 8), True, OVERFLOW_MODES),
]


def ap_pairs() -> list[tuple[FixedFormat, FixedFormat]]:
    return [(src, FixedFormat(w, i, signed, q, o))
            for src, (w, i), signed, modes in AP_CASES for q, o in modes]


CPP_COMMON = r"""
#include <ap_fixed.h>
#include <cstring>

// conv: a source-type value holding the bits of code c, assigned to the
// target type.  fromd: the target type built from a double.  Both return
// the target's raw bits.
template <class Src, class Dst> static unsigned long long conv(long long c) {
  Src s;
  s.setBits((ap_ulong)c);
  Dst d = s;
  return d.range().to_uint64();
}
template <class Dst> static unsigned long long fromd(double x) {
  Dst d = x;
  return d.range().to_uint64();
}
struct Entry {
  const char* key;
  unsigned long long (*conv)(long long);
  unsigned long long (*fromd)(double);
};
"""

CPP_PART = r"""
#include "common.h"
static const Entry table[] = {
@TABLE@
};
const Entry* lookup_@K@(const char* key) {
  for (const Entry& e : table)
    if (!std::strcmp(e.key, key)) return &e;
  return nullptr;
}
"""

CPP_MAIN = r"""
#include <cstdio>
#include <vector>
#include "common.h"
@DECLS@

// Input lines "<source type>|<target type> <n> <code_1> ... <code_n>" (codes
// of the source type).  Output per input line: the target bits converted from
// the source, then a line of the target bits built from the doubles
// code * 2^-@FRAC@.
int main() {
  char key[256];
  int n;
  while (std::scanf("%255s %d", key, &n) == 2) {
    std::vector<long long> codes(n);
    for (int i = 0; i < n; ++i)
      if (std::scanf("%lld", &codes[i]) != 1) return 3;
    const Entry* e = nullptr;
@LOOKUPS@
    if (!e) { std::fprintf(stderr, "unknown key %s\n", key); return 2; }
    for (long long c : codes) std::printf("%llu ", e->conv(c));
    std::printf("\n");
    for (long long c : codes) std::printf("%llu ", e->fromd((double)c / (double)(1LL << @FRAC@)));
    std::printf("\n");
  }
  return 0;
}
"""


def ap_key(src: FixedFormat, dst: FixedFormat) -> str:
    return f"{src}|{dst}"


@pytest.fixture(scope="session")
def ap_program(tmp_path_factory) -> Path:
    """The ap_fixed reference converter, compiled once per session (two g++ -O1 jobs)."""
    gxx = shutil.which("g++")
    assert gxx, "g++ is required for the ap_fixed bit-exactness tests"
    assert (AP_TYPES / "ap_fixed.h").is_file(), f"ap_fixed.h not found in {AP_TYPES}"
    work = tmp_path_factory.mktemp("ap_fixed")
    (work / "common.h").write_text(CPP_COMMON)
    pairs = ap_pairs()
    n_parts = 2
    for k in range(n_parts):
        rows = [f'  {{"{ap_key(s, d)}", &conv<{s}, {d} >, &fromd<{d} >}},'
                for s, d in pairs[k::n_parts]]
        part = CPP_PART.replace("@TABLE@", "\n".join(rows)).replace("@K@", str(k))
        (work / f"part{k}.cpp").write_text(part)
    (work / "main.cpp").write_text(
        CPP_MAIN.replace("@FRAC@", str(SRC_FRAC))
        .replace("@DECLS@", "\n".join(f"const Entry* lookup_{k}(const char*);" for k in range(n_parts)))
        .replace("@LOOKUPS@", "\n".join(f"    if (!e) e = lookup_{k}(key);" for k in range(n_parts))))
    # -DNDEBUG: for a right shift past the source width, ap_fixed's operator=
    # reads "the bit after the LSB" (asserting: bit beyond MSB) before choosing
    # the sign bit instead; the value read is unused.
    flags = ["-O1", "-DNDEBUG", "-std=c++14", "-w", f"-I{AP_TYPES}", f"-I{work}"]
    sources = [f"part{k}.cpp" for k in range(n_parts)] + ["main.cpp"]
    jobs = [subprocess.Popen([gxx, *flags, "-c", s, "-o", s[:-4] + ".o"], cwd=work,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in sources]
    for job, s in zip(jobs, sources, strict=True):
        _, err = job.communicate()
        assert job.returncode == 0, f"g++ {s}:\n{err[-3000:]}"
    link = subprocess.run([gxx, *[s[:-4] + ".o" for s in sources], "-o", "ref"], cwd=work,
                          capture_output=True, text=True)
    assert link.returncode == 0, link.stderr[-3000:]
    return work / "ref"


@pytest.fixture(scope="session")
def ap_results(ap_program):
    """{(src, dst): (codes, ap bits from the ap_fixed source, ap bits from the double)}."""
    jobs = []
    lines = []
    for s, d in ap_pairs():
        codes = np.arange(s.min_code, s.max_code + 1)
        jobs.append((s, d, codes))
        lines.append(f"{ap_key(s, d)} {codes.size} " + " ".join(map(str, codes)))
    proc = subprocess.run([str(ap_program)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 2 * len(jobs)
    return {(s, d): (codes, np.array(out[2 * k].split(), dtype=np.int64),
                     np.array(out[2 * k + 1].split(), dtype=np.int64))
            for k, (s, d, codes) in enumerate(jobs)}


def _case_id(case) -> str:
    src, (w, i), signed, modes = case
    return f"{src.to_hls4ml_string()}-to-{'' if signed else 'u'}fixed<{w},{i}>-{len(modes)}modes"


@pytest.mark.parametrize("case", range(len(AP_CASES)), ids=[_case_id(c) for c in AP_CASES])
def test_requantize_matches_ap_fixed(ap_results, case):
    """Every source code, every mode of the case: ap_fixed assignment = requantize."""
    src, (w, i), signed, modes = AP_CASES[case]
    failures = []
    for q, o in modes:
        dst = FixedFormat(w, i, signed, q, o)
        codes, ap_bits, _ = ap_results[(src, dst)]
        ours = to_bits(requantize(codes, src.frac_bits, dst), dst)
        bad = ours != ap_bits
        if bad.any():
            failures.append(f"{src} -> {dst}: {int(bad.sum())} mismatches, codes {codes[bad][:4]} "
                            f"ap {from_bits(ap_bits[bad][:4], dst)} ours {from_bits(ours[bad][:4], dst)}")
    assert not failures, "\n".join(failures)


def test_to_code_matches_ap_fixed_double_constructor(ap_results):
    """ap_fixed<...>(double) = to_code(double) for every source value, target and mode."""
    failures = []
    for (src, dst), (codes, _, ap_bits) in ap_results.items():
        ours = to_bits(to_code(from_code(codes, src), dst), dst)
        bad = ours != ap_bits
        if bad.any():
            failures.append(f"{from_code(codes[bad][:4], src)} -> {dst}: {int(bad.sum())} mismatches")
    assert not failures, "\n".join(failures)


def test_ap_cases_cover_every_mode_pair(ap_results):
    assert {(d.rounding, d.overflow) for (_, d) in ap_results} == set(ALL_MODES)
    assert len(ap_results) == len(ap_pairs()) == len(set(ap_pairs()))


# ============================================================= float vs. integer
MANTISSA_FORMATS = [FixedFormat(6, 1, True, q, o) for q in ROUNDINGS for o in OVERFLOWS] + [
    FixedFormat(12, -3, False, "RND_INF", "SAT"), FixedFormat(5, 9, True, "RND", "WRAP"),
    FixedFormat(53, 20, True, "RND_CONV", "WRAP"), FixedFormat(53, 2, False, "TRN", "SAT")]


@pytest.mark.parametrize("fmt", MANTISSA_FORMATS, ids=str)
def test_to_code_equals_requantize_of_exact_mantissa(fmt):
    """x = m * 2**(e - 53) exactly; to_code(x) must equal requantize(m, 53 - e)."""
    rng = np.random.default_rng(7)
    mant = rng.uniform(-1, 1, 4000)
    exps = rng.integers(-12, 40 if fmt.width > 40 else 12, 4000)
    x = np.ldexp(mant, exps)
    x = np.concatenate([x, np.round(x * 64) / 64, [0.0, -0.0, 5e-324, -5e-324]])
    f, e = np.frexp(x)
    m = np.ldexp(f, 53).astype(np.int64)
    frac_in = 53 - e
    for sh in np.unique(frac_in):
        sel = frac_in == sh
        if abs(int(sh) - fmt.frac_bits) > 62:
            continue
        assert np.array_equal(to_code(x[sel], fmt), requantize(m[sel], int(sh), fmt)), (fmt, sh)


def test_to_code_extreme_magnitudes():
    fmt = FixedFormat(8, 1, True, "TRN", "WRAP")
    assert to_code([1e-320, -1e-320, 1e300, -1e300, 2.0 ** 60 + 2.0 ** 8], fmt).tolist() == [0, -1, 0, 0, 0]
    fmt = FixedFormat(8, 1, True, "TRN_ZERO", "SAT")
    assert to_code([-1e-320, 1e300, -1e300], fmt).tolist() == [0, 127, -128]
    fmt = FixedFormat(8, 1, True, "RND", "WRAP")
    assert to_code(2.0 ** -8, fmt) == 1 and to_code(-(2.0 ** -8), fmt) == 0


# ================================================================= unit tests
UNIT_FORMATS = [FixedFormat(8, 1), FixedFormat(8, 1, False), FixedFormat(6, 0, True, "RND", "SAT"),
                FixedFormat(5, -2, False, "RND_CONV", "SAT_SYM"), FixedFormat(4, 7), FixedFormat(1, 1),
                FixedFormat(1, 0, False), FixedFormat(12, 12, True),
                FixedFormat(16, 6, True, "RND_CONV", "SAT")]


@pytest.mark.parametrize("fmt", UNIT_FORMATS, ids=str)
def test_every_code_round_trips(fmt):
    codes = np.arange(fmt.min_code, fmt.max_code + 1)
    assert codes.size == 2 ** fmt.width
    values = from_code(codes, fmt)
    assert np.array_equal(values, codes * fmt.lsb)
    assert np.array_equal(to_code(values, fmt), codes)
    assert np.array_equal(quantize(values, fmt), values)
    assert np.array_equal(requantize(codes, fmt.frac_bits, fmt), codes)
    bits = to_bits(codes, fmt)
    assert bits.min() == 0 and bits.max() == 2 ** fmt.width - 1 and np.unique(bits).size == codes.size
    assert np.array_equal(from_bits(bits, fmt), codes)
    assert (values.min(), values.max()) == (fmt.min_value, fmt.max_value)


def test_properties():
    f = FixedFormat(8, 1)
    assert (f.frac_bits, f.lsb, f.min_code, f.max_code, f.min_value, f.max_value) == (
        7, 2 ** -7, -128, 127, -1.0, 127 / 128)
    u = FixedFormat(8, 1, False)
    assert (u.min_code, u.max_code, u.min_value, u.max_value) == (0, 255, 0.0, 255 / 128)
    g = FixedFormat(4, 7)  # int_bits > width: lsb 8
    assert (g.frac_bits, g.lsb, g.min_value, g.max_value) == (-3, 8.0, -64.0, 56.0)
    h = FixedFormat(4, -2, False)  # int_bits < 0
    assert (h.frac_bits, h.lsb, h.max_value) == (6, 1 / 64, 15 / 64)
    assert FixedFormat(62, 0).max_code == 2 ** 61 - 1


def test_to_bits_is_twos_complement():
    f = FixedFormat(4, 4)
    assert to_bits([-8, -1, 0, 7], f).tolist() == [8, 15, 0, 7]
    assert from_bits([8, 15, 0, 7], f).tolist() == [-8, -1, 0, 7]
    u = FixedFormat(4, 4, False)
    assert from_bits([15], u).tolist() == [15]


def test_works_on_any_shape():
    f = FixedFormat(6, 2, True, "RND_CONV", "SAT")
    x = np.linspace(-3, 3, 2 * 3 * 4).reshape(2, 3, 4)
    assert quantize(x, f).shape == (2, 3, 4) and to_code(x, f).dtype == np.int64
    assert np.shape(quantize(0.3, f)) == () and quantize(0.3, f) == 0.3125
    assert requantize(np.zeros((0, 5), dtype=np.int32), 3, f).shape == (0, 5)
    assert np.array_equal(quantize(x, "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"), quantize(x, f))


def test_rounding_table():
    """Ties and near-ties on a 1-integer-LSB format, the definitions in the module docstring."""
    x = np.array([-2.5, -1.5, -1.25, -0.5, 0.5, 1.5, 2.5, 1.75, -1.75])
    want = {
        "TRN": [-3, -2, -2, -1, 0, 1, 2, 1, -2],
        "TRN_ZERO": [-2, -1, -1, 0, 0, 1, 2, 1, -1],
        "RND": [-2, -1, -1, 0, 1, 2, 3, 2, -2],
        "RND_ZERO": [-2, -1, -1, 0, 0, 1, 2, 2, -2],
        "RND_MIN_INF": [-3, -2, -1, -1, 0, 1, 2, 2, -2],
        "RND_INF": [-3, -2, -1, -1, 1, 2, 3, 2, -2],
        "RND_CONV": [-2, -2, -1, 0, 0, 2, 2, 2, -2],
    }
    for mode, codes in want.items():
        assert to_code(x, FixedFormat(8, 8, True, mode)).tolist() == codes, mode
        assert requantize((x * 4).astype(np.int64), 2, FixedFormat(8, 8, True, mode)).tolist() == codes, mode


def test_overflow_table():
    codes = np.array([-9, -8, -7, 0, 7, 8, 9])  # into 4-bit signed, range [-8, 7]
    want = {"WRAP": [7, -8, -7, 0, 7, -8, -7], "SAT": [-8, -8, -7, 0, 7, 7, 7],
            "SAT_ZERO": [0, -8, -7, 0, 7, 0, 0], "SAT_SYM": [-7, -7, -7, 0, 7, 7, 7]}
    for mode, out in want.items():
        assert requantize(codes, 0, FixedFormat(4, 4, True, "TRN", mode)).tolist() == out, mode
        assert to_code(codes.astype(float), FixedFormat(4, 4, True, "TRN", mode)).tolist() == out, mode
    u = np.array([-1, 0, 15, 16, 17])
    want_u = {"WRAP": [15, 0, 15, 0, 1], "SAT": [0, 0, 15, 15, 15], "SAT_ZERO": [0, 0, 15, 0, 0],
              "SAT_SYM": [0, 0, 15, 15, 15]}
    for mode, out in want_u.items():
        assert requantize(u, 0, FixedFormat(4, 4, False, "TRN", mode)).tolist() == out, mode


def test_requantize_wide_accumulators_and_shifts():
    acc = np.array([2 ** 61 - 1, -(2 ** 61), 12345678901234, -3, 3], dtype=np.int64)
    f = FixedFormat(16, 6, True, "RND_CONV", "SAT")
    assert requantize(acc, 40, f).tolist() == [32767, -32768, 11498, 0, 0]
    w = FixedFormat(62, 62, True, "TRN", "WRAP")
    assert requantize(acc, 0, w).tolist() == acc.tolist()
    # left shifts: exact wrap and saturation without int64 overflow
    big = FixedFormat(62, 2, True, "TRN", "SAT")  # frac 60
    assert requantize(np.array([1, -2, 2, -3]), 0, big).tolist() == [
        2 ** 60, -(2 ** 61), 2 ** 61 - 1, -(2 ** 61)]
    wrap = FixedFormat(8, 8, True, "TRN", "WRAP")
    assert requantize(np.array([1, 3, -1]), -7, wrap).tolist() == [-128, -128, -128]
    assert requantize(np.array([1, 3, -1]), -8, wrap).tolist() == [0, 0, 0]
    assert requantize(np.array([1, 3]), -62, FixedFormat(8, 8, False, "TRN", "WRAP")).tolist() == [0, 0]
    sat = FixedFormat(8, 8, False, "TRN", "SAT")
    assert requantize(np.array([1, 0, -1]), -62, sat).tolist() == [255, 0, 0]


# --------------------------------------------------------------- strings
@pytest.mark.parametrize(("text", "fmt"), [
    ("ap_fixed<6,1,AP_RND_CONV,AP_SAT>", FixedFormat(6, 1, True, "RND_CONV", "SAT")),
    ("ap_ufixed<8,1>", FixedFormat(8, 1, False)),
    ("fixed<16,6,RND,SAT_SYM>", FixedFormat(16, 6, True, "RND", "SAT_SYM")),
    ("ufixed<8, 1, RND_CONV, SAT, 0>", FixedFormat(8, 1, False, "RND_CONV", "SAT")),
    ("fixed<8,-2,AP_TRN_ZERO>", FixedFormat(8, -2, True, "TRN_ZERO")),
    ("  ap_fixed< 4 , 7 , rnd_inf , sat_zero > ", FixedFormat(4, 7, True, "RND_INF", "SAT_ZERO")),
    ("ap_int<12>", FixedFormat(12, 12)),
    ("uint<3>", FixedFormat(3, 3, False)),
])
def test_from_ap_string(text, fmt):
    assert FixedFormat.from_ap_string(text) == fmt


def test_string_round_trips_and_hls4ml_agrees():
    for w, i in [(8, 1), (1, 1), (4, -3), (5, 9)]:
        for s in (True, False):
            for q in ROUNDINGS:
                for o in OVERFLOWS:
                    f = FixedFormat(w, i, s, q, o)
                    assert FixedFormat.from_ap_string(f.to_ap_string()) == f
                    assert FixedFormat.from_ap_string(f.to_hls4ml_string()) == f
                    h = FPGABackend.convert_precision_string(f.to_hls4ml_string())
                    assert (h.width, h.integer, h.signed) == (w, i, s)
                    assert (h.rounding_mode.name, h.saturation_mode.name) == (q.value, o.value)
                    assert FixedFormat.from_ap_string(str(h)) == f  # hls4ml's own spelling
    assert FixedFormat(8, 1).to_ap_string() == "ap_fixed<8,1>"
    assert FixedFormat(8, 1, False, "RND_CONV").to_hls4ml_string() == "ufixed<8,1,RND_CONV>"
    assert FixedFormat(8, 1, True, "TRN", "SAT").to_hls4ml_string() == "fixed<8,1,TRN,SAT>"
    assert FixedFormat(8, 1, True, "RND_CONV", "SAT").to_ap_string() == "ap_fixed<8,1,AP_RND_CONV,AP_SAT>"
    assert str(FixedFormat(8, 1, False)) == "ap_ufixed<8,1>"


@pytest.mark.parametrize(("text", "expected", "arrived"), [
    ("ap_fixed<8>", "2 to 5 fields", "got 1"),
    ("ap_fixed<8,1,AP_RND,AP_SAT,0,1>", "2 to 5 fields", "got 6"),
    ("ap_fixed<8,x>", "integer W and I", "8, x"),
    ("ap_fixed<8,1,AP_ROUND>", "one of TRN, TRN_ZERO, RND", "'AP_ROUND'"),
    ("ap_fixed<8,1,AP_RND,AP_WRAP_SM>", "one of WRAP, SAT, SAT_ZERO, SAT_SYM", "'AP_WRAP_SM'"),
    ("ap_fixed<8,1,AP_RND,AP_SAT,3>", "saturation bits N = 0", "'3'"),
    ("float", "a type like 'ap_fixed<W,I", "'float'"),
    ("ac_fixed<8,1,true>", "a type like 'ap_fixed<W,I", "'ac_fixed<8,1,true>'"),
    ("ap_fixed<0,0>", "width: expected 1 .. 62", "got 0"),
    ("ap_fixed<63,0>", "width: expected 1 .. 62", "got 63"),
    ("ap_fixed<8,100>", "fractional bits width - int_bits in [-64, 64]", "got -92"),
])
def test_from_ap_string_errors(text, expected, arrived):
    with pytest.raises(ConfigError) as err:
        FixedFormat.from_ap_string(text)
    assert expected in str(err.value) and arrived in str(err.value), str(err.value)


def test_constructor_errors():
    cases = [
        (lambda: FixedFormat(0, 0), "width: expected 1 .. 62", "got 0"),
        (lambda: FixedFormat(8.0, 1), "width: expected an integer", "8.0"),
        (lambda: FixedFormat(True, 1), "width: expected an integer", "True"),
        (lambda: FixedFormat(8, "1"), "int_bits: expected an integer", "'1'"),
        (lambda: FixedFormat(8, 1, 1), "signed: expected True or False", "got 1"),
        (lambda: FixedFormat(8, 1, True, "ROUND"), "rounding mode: expected one of TRN", "'ROUND'"),
        (lambda: FixedFormat(8, 1, True, "TRN", 3), "overflow mode: expected one of WRAP", "3"),
        (lambda: FixedFormat.from_ap_string(8), "precision string: expected", "8"),
    ]
    for make, expected, arrived in cases:
        with pytest.raises(ConfigError) as err:
            make()
        assert expected in str(err.value) and arrived in str(err.value), str(err.value)
    assert FixedFormat(np.int64(8), np.int32(1), np.bool_(False)) == FixedFormat(8, 1, False)
    assert FixedFormat(8, 1, True, Rounding.RND, "ap_sat") == FixedFormat(8, 1, True, "AP_RND", Overflow.SAT)


# ----------------------------------------------------------- array errors
def test_nan_and_inf_are_errors_with_counts():
    f = FixedFormat(8, 1)
    x = np.array([0.1, np.nan, 0.2, np.nan, np.nan])
    with pytest.raises(InputRangeError, match=r"expected finite values, got 3 NaN\(s\) among 5 values"):
        quantize(x, f)
    with pytest.raises(InputRangeError, match=r"got 2 infinite value\(s\) \[inf, -inf\]"):
        to_code([np.inf, 1.0, -np.inf], f)


def test_array_errors_say_expected_and_arrived():
    f = FixedFormat(4, 4)
    with pytest.raises(InputRangeError,
                       match=r"expected codes in \[-8, 7\], got \[8, -9\] \(2 out of range\)"):
        from_code([1, 8, -9], f)
    with pytest.raises(InputRangeError, match=r"expected codes in \[-8, 7\], got \[100\]"):
        to_bits([100], f)
    with pytest.raises(InputRangeError, match=r"expected codes in \[0, 15\], got \[16, -1\]"):
        from_bits([16, -1], f)
    with pytest.raises(InputRangeError, match="expected integer codes, got dtype float64"):
        requantize(np.array([1.0]), 0, f)
    with pytest.raises(InputRangeError, match="expected integer codes, got dtype bool"):
        from_code(np.array([True]), f)
    with pytest.raises(InputRangeError, match="expected real numbers, got dtype <U1"):
        quantize(["a"], f)
    with pytest.raises(InputRangeError, match=r"magnitude <= 2\*\*53"):
        quantize(np.array([2 ** 60]), f)
    with pytest.raises(ConfigError, match=r"\|frac_in - frac_bits\| <= 62, got frac_in=63, frac_bits=0"):
        requantize([1], 63, f)
    with pytest.raises(ConfigError, match="frac_in: expected an integer, got 1.5"):
        requantize([1], 1.5, f)
    with pytest.raises(ConfigError, match="width <= 53 for float conversion.*got 54"):
        quantize([0.5], FixedFormat(54, 1))
    with pytest.raises(ConfigError, match="expected a FixedFormat or a precision string, got 8"):
        quantize([0.5], 8)
