"""Fixed-point number formats and exact quantization (the flow's one definition).

A :class:`FixedFormat` is Xilinx ``ap_fixed<W, I, Q, O>`` / ``ap_ufixed``:
``width`` bits in all, ``int_bits`` of them left of the binary point
*including* the sign bit (so ``frac_bits = width - int_bits``, which may be
negative or exceed ``width``).  A value is stored as an integer *code*:

    value = code * 2**-frac_bits,   min_code <= code <= max_code

with ``[min_code, max_code] = [-2**(W-1), 2**(W-1) - 1]`` (signed) or
``[0, 2**W - 1]`` (unsigned).  Codes are signed integers; the raw W-bit
pattern (two's complement) is :func:`to_bits` / :func:`from_bits`.

Conversion into a format first rounds to a multiple of its LSB
(:class:`Rounding`, the ``AP_*`` quantization modes) and then handles values
outside ``[min_code, max_code]`` (:class:`Overflow`, the ``AP_*`` overflow
modes), exactly as ``ap_fixed``'s conversion does (checked bit for bit
against the Xilinx headers shipped with hls4ml by ``tests/test_fixedpoint.py``):

=============  ============================================================
TRN            floor (toward -inf); the ap_fixed default
TRN_ZERO       toward zero
RND            nearest, ties toward +inf
RND_ZERO       nearest, ties toward zero
RND_MIN_INF    nearest, ties toward -inf
RND_INF        nearest, ties away from zero
RND_CONV       nearest, ties to even (convergent)
WRAP           keep the low W bits (two's complement wrap); the default
SAT            clamp to [min_code, max_code]
SAT_ZERO       any out-of-range result becomes 0
SAT_SYM        signed: clamp to [-max_code, max_code], so even an in-range
               result equal to min_code becomes -max_code; unsigned and
               1-bit signed formats: as SAT (ap_fixed sets the LSB of the
               1-bit minimum, which is the minimum itself)
=============  ============================================================

Every operation is exact.  :func:`requantize` works on integers only (the
golden model's integer multiply-accumulate results); :func:`quantize` /
:func:`to_code` take floats and stay exact in float64 because scaling by a
power of two is exact and every code of a format of at most
:data:`FLOAT_MAX_WIDTH` bits is a float64 integer.

QKeras (0.9.0, ``qkeras/quantizers.py``), as reproduced by
:meth:`FixedFormat.from_qkeras`
------------------------------------------------------------------------
``quantized_bits(bits, integer, symmetric=0, keep_negative=True, alpha)``
with ``alpha`` None or 1 computes, in float32, the code
``clip(tf.round(x * 2**(bits - keep_negative - integer)), lo, 2**(bits - keep_negative) - 1)``
with ``lo = -2**(bits-1) + symmetric`` if ``keep_negative`` else 0, times the
LSB ``2**(integer - bits + keep_negative)``.  ``tf.round`` rounds half to
even, so:

* ``keep_negative=True``:  ``fixed<bits, integer + 1, RND_CONV, SAT>``, codes
  ``[-2**(bits-1), 2**(bits-1) - 1]`` (``integer`` excludes the sign bit);
  with ``symmetric=1`` the low code ``-2**(bits-1)`` is excluded, which is
  ``SAT_SYM``.
* ``keep_negative=False``: ``ufixed<bits, integer, RND_CONV, SAT>`` -- all
  ``bits`` carry magnitude, so the LSB is ``2**(integer - bits)`` (half the
  signed one), and negative inputs give 0.

``quantized_relu(bits, integer)`` (``use_sigmoid=0``, ``negative_slope=0``, the
defaults) is ``ufixed<bits, integer, RND_CONV, SAT>``: codes ``[0, 2**bits - 1]``,
so its largest value is ``2**integer - 2**(integer - bits)`` (not ``2**integer``);
negative inputs give 0 (``negative_slope=0`` means a plain relu, no sign bit).

Quirks of QKeras 0.9.0 worth knowing:

* Inputs are cast to float32 before rounding: a float64 input that is not a
  float32 is first rounded to nearest float32, which can move it onto (or off)
  a tie.  Cast to float32 first to reproduce QKeras on float64 data.
* The output is formed by the straight-through-estimator expression
  ``x + stop_gradient(xq - x)`` in float32.  For ``quantized_bits`` this is
  exact for ``|x| < 2**24`` LSBs (``xq - x`` fits float32); beyond, saturated outputs can be
  wrong (e.g. ``quantized_bits(8, 0, keep_negative=False)`` returns ``1.0``, a
  value outside its range, for ``x = 2**17`` and ``0.0`` for ``x >= 2**25``).
  ``quantized_relu`` clips ``x`` first (``is_quantized_clip=True``, the
  default) and is exact for every finite input; with ``is_quantized_clip=False``
  it has the same large-input defect as ``quantized_bits``.
* ``max()`` reports ``max(1, 2**integer)``, not the largest representable
  value (``quantized_relu(6, 0).max()`` is 1.0, the real maximum is 63/64).
* A negative ``integer`` makes QKeras fail (``K.pow(2, integer)`` on integer
  tensors refuses negative powers), so such quantizers are rejected here too.
* ``quantized_bits`` with ``bits - keep_negative == 0`` is a sign (binary)
  quantizer ignoring ``integer``; a string ``alpha`` (e.g. ``"auto_po2"``)
  forces ``symmetric`` and applies a data-dependent per-channel scale.  Neither
  is a fixed-point format: :meth:`FixedFormat.from_qkeras` rejects them.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from enum import Enum, StrEnum

import numpy as np

from flow.runner.errors import ConfigError, InputRangeError, describe_values

#: widest format handled (codes, shifts and bit masks stay inside int64).
MAX_WIDTH = 62
#: widest format the float conversions accept (every code +-1 is a float64 integer).
FLOAT_MAX_WIDTH = 53
#: bound on ``|frac_bits|`` (keeps every LSB and scaled input a normal float64).
MAX_FRAC_BITS = 64
#: bound on the shift ``|frac_in - fmt.frac_bits|`` of :func:`requantize`.
MAX_SHIFT = 62

__all__ = [
    "FLOAT_MAX_WIDTH",
    "MAX_FRAC_BITS",
    "MAX_SHIFT",
    "MAX_WIDTH",
    "FixedFormat",
    "Overflow",
    "Rounding",
    "from_bits",
    "from_code",
    "quantize",
    "requantize",
    "to_bits",
    "to_code",
]


class Rounding(StrEnum):
    """Quantization (rounding) mode; the names of ap_fixed's ``AP_*`` modes."""

    TRN = "TRN"
    TRN_ZERO = "TRN_ZERO"
    RND = "RND"
    RND_ZERO = "RND_ZERO"
    RND_MIN_INF = "RND_MIN_INF"
    RND_INF = "RND_INF"
    RND_CONV = "RND_CONV"


class Overflow(StrEnum):
    """Overflow mode; the names of ap_fixed's ``AP_*`` modes (``WRAP_SM`` is not supported)."""

    WRAP = "WRAP"
    SAT = "SAT"
    SAT_ZERO = "SAT_ZERO"
    SAT_SYM = "SAT_SYM"


def _mode(value, enum: type[Enum], what: str):
    """An enum member from a member or a name with or without ``AP_`` (any case)."""
    if isinstance(value, enum):
        return value
    names = ", ".join(m.value for m in enum)
    if isinstance(value, str):
        name = value.strip().upper()
        name = name[3:] if name.startswith("AP_") else name
        if name in enum.__members__:
            return enum[name]
        hint = " (sign-magnitude wrap is not supported)" if name == "WRAP_SM" else ""
        raise ConfigError(f"{what}: expected one of {names} (optionally AP_-prefixed), got {value!r}{hint}")
    raise ConfigError(f"{what}: expected one of {names}, got {value!r} of type {type(value).__name__}")


def _int_arg(value, what: str) -> int:
    """A Python int from an int or numpy integer (bools and floats are errors)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{what}: expected an integer, got {value!r} of type {type(value).__name__}")
    return int(value)


_DEFAULT_Q, _DEFAULT_O = Rounding.TRN, Overflow.WRAP


@dataclass(frozen=True)
class FixedFormat:
    """A signed or unsigned fixed-point format with rounding and overflow modes.

    ``FixedFormat(8, 1)`` is ``ap_fixed<8,1>``; ``FixedFormat(8, 1, False,
    "RND_CONV", "SAT")`` is ``ap_ufixed<8,1,AP_RND_CONV,AP_SAT>``.  Mode
    arguments accept the enums or their names (with or without ``AP_``).

    Attributes:
        width: total bits, sign included (1 .. :data:`MAX_WIDTH`).
        int_bits: bits left of the binary point *including* the sign bit
            (ap_fixed convention); may be <= 0 or > ``width``, as long as
            ``|width - int_bits| <= MAX_FRAC_BITS``.
        signed: two's complement (True) or unsigned.
        rounding: how values between two codes are rounded.
        overflow: how values outside ``[min_code, max_code]`` are handled.
    """

    width: int
    int_bits: int
    signed: bool = True
    rounding: Rounding = Rounding.TRN
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self):
        width = _int_arg(self.width, "fixed-point width")
        int_bits = _int_arg(self.int_bits, "fixed-point int_bits")
        if not 1 <= width <= MAX_WIDTH:
            raise ConfigError(f"fixed-point width: expected 1 .. {MAX_WIDTH} bits (sign included), "
                              f"got {width}")
        if abs(width - int_bits) > MAX_FRAC_BITS:
            raise ConfigError(f"fixed-point format <{width},{int_bits}>: expected fractional bits "
                              f"width - int_bits in [-{MAX_FRAC_BITS}, {MAX_FRAC_BITS}], "
                              f"got {width - int_bits}")
        if not isinstance(self.signed, bool | np.bool_):
            raise ConfigError(f"fixed-point signed: expected True or False, got {self.signed!r}")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "int_bits", int_bits)
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "rounding", _mode(self.rounding, Rounding, "rounding mode"))
        object.__setattr__(self, "overflow", _mode(self.overflow, Overflow, "overflow mode"))

    # ------------------------------------------------------------ properties
    @property
    def frac_bits(self) -> int:
        """Bits right of the binary point: ``width - int_bits`` (may be negative)."""
        return self.width - self.int_bits

    @property
    def lsb(self) -> float:
        """Value of one code step, ``2**-frac_bits`` (exact)."""
        return 2.0 ** -self.frac_bits

    @property
    def min_code(self) -> int:
        """Smallest code: ``-2**(width-1)`` signed, 0 unsigned."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        """Largest code: ``2**(width-1) - 1`` signed, ``2**width - 1`` unsigned."""
        return (1 << (self.width - self.signed)) - 1

    @property
    def min_value(self) -> float:
        """Smallest representable value, ``min_code * lsb`` (exact up to 53 bits)."""
        return float(np.ldexp(float(self.min_code), -self.frac_bits))

    @property
    def max_value(self) -> float:
        """Largest representable value, ``max_code * lsb`` (exact up to 53 bits)."""
        return float(np.ldexp(float(self.max_code), -self.frac_bits))

    def __str__(self) -> str:
        return self.to_ap_string()

    # --------------------------------------------------------------- strings
    _TYPE_RE = re.compile(r"^\s*(?P<ap>ap_)?(?P<u>u)?(?P<kind>fixed|int)\s*<(?P<args>[^<>]*)>\s*$")
    _EXPECTED = ("a type like 'ap_fixed<W,I[,Q[,O[,N]]]>', 'ap_ufixed<...>', 'fixed<...>', "
                 "'ufixed<...>' or 'ap_[u]int<W>' / '[u]int<W>' (modes with or without AP_, N = 0)")

    @classmethod
    def from_ap_string(cls, text: str) -> FixedFormat:
        """Parse an ap_fixed / hls4ml precision string.

        Accepts ``ap_fixed<W,I>``, ``ap_ufixed<W,I,Q,O>``, hls4ml's
        ``fixed<W,I,RND_CONV,SAT>`` / ``ufixed<...>`` (modes with or without the
        ``AP_`` prefix; omitted modes are TRN and WRAP; an optional fifth
        field, the saturation-bit count, must be 0) and the integer types
        ``ap_int<W>``, ``ap_uint<W>``, ``int<W>``, ``uint<W>`` (``I = W``).
        """
        if not isinstance(text, str):
            raise ConfigError(f"precision string: expected {cls._EXPECTED}, got {text!r} "
                              f"of type {type(text).__name__}")
        m = cls._TYPE_RE.match(text)
        if not m:
            raise ConfigError(f"precision string: expected {cls._EXPECTED}, got {text!r}")
        args = [a.strip() for a in m["args"].split(",")]
        nums = 1 if m["kind"] == "int" else 2
        if not nums <= len(args) <= (1 if nums == 1 else 5):
            raise ConfigError(f"precision string {text!r}: expected "
                              f"{'1 field (W)' if nums == 1 else '2 to 5 fields (W, I[, Q[, O[, N]]])'}, "
                              f"got {len(args)}")
        try:
            width, int_bits = (int(args[0]), int(args[0])) if nums == 1 else (int(args[0]), int(args[1]))
        except ValueError:
            raise ConfigError(f"precision string {text!r}: expected integer W and I, "
                              f"got {', '.join(args[:nums])}") from None
        rounding = _mode(args[2], Rounding, f"rounding mode in {text!r}") if len(args) > 2 else _DEFAULT_Q
        overflow = _mode(args[3], Overflow, f"overflow mode in {text!r}") if len(args) > 3 else _DEFAULT_O
        if len(args) > 4 and args[4] != "0":
            raise ConfigError(f"precision string {text!r}: expected saturation bits N = 0 "
                              f"(N > 0 is not supported), got {args[4]!r}")
        return cls(width, int_bits, not m["u"], rounding, overflow)

    def _type_args(self, prefix: str) -> str:
        args = [str(self.width), str(self.int_bits)]
        if self.rounding != _DEFAULT_Q or self.overflow != _DEFAULT_O:
            args.append(prefix + self.rounding.value)
        if self.overflow != _DEFAULT_O:
            args.append(prefix + self.overflow.value)
        return ",".join(args)

    def to_ap_string(self) -> str:
        """``ap_fixed<W,I[,AP_Q[,AP_O]]>`` / ``ap_ufixed<...>``, default modes omitted."""
        return f"ap_{'' if self.signed else 'u'}fixed<{self._type_args('AP_')}>"

    def to_hls4ml_string(self) -> str:
        """hls4ml's ``fixed<W,I[,Q[,O]]>`` / ``ufixed<...>``, default modes omitted."""
        return f"{'' if self.signed else 'u'}fixed<{self._type_args('')}>"

    # ---------------------------------------------------------------- QKeras
    @classmethod
    def from_qkeras(cls, quantizer) -> FixedFormat:
        """The format whose :func:`quantize` reproduces a QKeras quantizer exactly.

        ``quantizer`` is a ``quantized_bits`` / ``quantized_relu`` object, its
        config string (``"quantized_bits(6,0,alpha=1)"``, ``"quantized_relu(8,1)"``)
        or its Keras serialisation ``{"class_name": ..., "config": {...}}``.
        ``quantized_bits(b, i, keep_negative=True)`` gives
        ``fixed<b, i+1, RND_CONV, SAT>`` (``SAT_SYM`` with ``symmetric``),
        ``keep_negative=False`` gives ``ufixed<b, i, RND_CONV, SAT>``;
        ``quantized_relu(b, i)`` gives ``ufixed<b, i, RND_CONV, SAT>``.  See the
        module docstring for the QKeras semantics and quirks.

        Raises:
            ConfigError: another quantizer, or an option that is not plain
                fixed-point: ``alpha`` other than None/1 (the power-of-two
                ``"auto_po2"`` and ``"auto"`` scales are not supported),
                stochastic rounding, ``qnoise_factor != 1``, ``integer < 0``,
                more than 24 magnitude bits (QKeras computes in float32), a
                1-bit signed (binary) ``quantized_bits``, ``use_sigmoid`` or a
                ``negative_slope`` in ``quantized_relu``.
        """
        kind, p = _qkeras_params(quantizer)
        where = f"QKeras {_describe_quantizer(quantizer)}"
        bits = _q_int(p["bits"], f"{where}: bits")
        integer = _q_int(p["integer"], f"{where}: integer")
        if integer < 0:
            raise ConfigError(f"{where}: expected integer >= 0 (QKeras 0.9.0 evaluates 2**integer on "
                              f"integer tensors, which fails for negative powers), got integer={integer}")
        if _q_scalar(p["use_stochastic_rounding"]):
            raise ConfigError(f"{where}: expected use_stochastic_rounding=False (fixed-point rounding is "
                              f"deterministic), got {p['use_stochastic_rounding']!r}")
        qnoise = _q_scalar(p["qnoise_factor"])
        if qnoise != 1:
            raise ConfigError(f"{where}: expected qnoise_factor=1 (fully quantized output), got {qnoise!r}")
        magnitude_bits = bits - (kind == "quantized_bits" and bool(_q_scalar(p["keep_negative"])))
        if magnitude_bits > _QKERAS_MAX_MAGNITUDE_BITS:
            raise ConfigError(f"{where}: expected at most {_QKERAS_MAX_MAGNITUDE_BITS} magnitude bits "
                              f"(QKeras computes in float32, so its largest code 2**bits - 1 is not exact "
                              f"beyond), got {magnitude_bits}")
        if kind == "quantized_bits":
            _check_alpha(p["alpha"], where)
            keep_negative = bool(_q_scalar(p["keep_negative"]))
            if bits - keep_negative < 1:
                raise ConfigError(f"{where}: expected bits >= {1 + keep_negative} "
                                  f"(with bits - keep_negative == 0 QKeras is a sign quantizer, "
                                  f"not fixed-point), got bits={bits}")
            if keep_negative:
                sym = bool(_q_scalar(p["symmetric"]))
                overflow = Overflow.SAT_SYM if sym else Overflow.SAT
                return cls(bits, integer + 1, True, Rounding.RND_CONV, overflow)
            return cls(bits, integer, False, Rounding.RND_CONV, Overflow.SAT)
        # quantized_relu
        if _q_scalar(p["use_sigmoid"]):
            raise ConfigError(f"{where}: expected use_sigmoid=0 (a plain relu), got {p['use_sigmoid']!r}")
        slope = _q_scalar(p["negative_slope"])
        if slope != 0:
            raise ConfigError(f"{where}: expected negative_slope=0 (with a slope the negative side is "
                              f"scaled, not a single fixed-point format), got {slope!r}")
        if bits < 1:
            raise ConfigError(f"{where}: expected bits >= 1, got {bits}")
        fmt = cls(bits, integer, False, Rounding.RND_CONV, Overflow.SAT)
        bound = _q_scalar(p["relu_upper_bound"])
        if not _q_scalar(p["is_quantized_clip"]) and bound is not None and bound < fmt.max_value:
            raise ConfigError(f"{where}: expected relu_upper_bound None or >= {fmt.max_value} (the "
                              f"format's largest value) with is_quantized_clip=False, got {bound!r}")
        return fmt


# ------------------------------------------------------------- QKeras params
#: float32 holds every integer code of at most 24 bits exactly.
_QKERAS_MAX_MAGNITUDE_BITS = 24
#: constructor parameters (in positional order) and defaults of QKeras 0.9.0.
_QKERAS_SIGNATURES: dict[str, tuple[tuple[str, object], ...]] = {
    "quantized_bits": (
        ("bits", 8), ("integer", 0), ("symmetric", 0), ("keep_negative", True), ("alpha", None),
        ("use_stochastic_rounding", False), ("scale_axis", None), ("qnoise_factor", 1.0),
        ("var_name", None), ("use_ste", True), ("use_variables", False),
    ),
    "quantized_relu": (
        ("bits", 8), ("integer", 0), ("use_sigmoid", 0), ("negative_slope", 0.0),
        ("use_stochastic_rounding", False), ("relu_upper_bound", None), ("is_quantized_clip", True),
        ("qnoise_factor", 1.0), ("var_name", None), ("use_ste", True), ("use_variables", False),
    ),
}
_QKERAS_EXPECTED = ("a QKeras quantized_bits or quantized_relu object, its config string "
                    "(e.g. 'quantized_bits(6,0,alpha=1)') or {'class_name': ..., 'config': {...}}")


def _describe_quantizer(q) -> str:
    if isinstance(q, str):
        return repr(q.strip())
    if isinstance(q, dict):
        return f"{q.get('class_name')}({q.get('config')})"
    try:  # QKeras's own __str__ fails on some values it accepts (array alpha)
        return str(q)
    except Exception:  # noqa: BLE001 - only a description for a message
        return type(q).__name__


def _qkeras_params(q) -> tuple[str, dict]:
    """(class name, every constructor parameter) of a quantizer object/string/dict."""
    if isinstance(q, str):
        name, given = _parse_qkeras_string(q)
    elif isinstance(q, dict):
        name, given = q.get("class_name"), q.get("config", {})
        if not isinstance(given, dict):
            raise ConfigError(f"QKeras quantizer: expected {_QKERAS_EXPECTED}, got {q!r}")
    else:  # an object: read the attributes QKeras stores under the parameter names
        name = type(q).__name__
        given = {k: getattr(q, k) for k, _ in _QKERAS_SIGNATURES.get(name, ()) if hasattr(q, k)}
    if name not in _QKERAS_SIGNATURES:
        raise ConfigError(f"QKeras quantizer: expected {_QKERAS_EXPECTED}, got {_describe_quantizer(q)}")
    sig = dict(_QKERAS_SIGNATURES[name])
    unknown = sorted(set(given) - set(sig))
    if unknown:
        raise ConfigError(f"QKeras {name}: expected parameters among {', '.join(sig)}, "
                          f"got unknown {', '.join(unknown)}")
    return name, {**sig, **given}


def _parse_qkeras_string(text: str) -> tuple[str, dict]:
    """``"quantized_bits(6, 0, alpha=1)"`` -> ("quantized_bits", {bits: 6, integer: 0, alpha: 1})."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(f"QKeras quantizer: expected {_QKERAS_EXPECTED}, got {text!r}") from None
    if isinstance(node, ast.Name):  # bare class name: all defaults, as QKeras's safe_eval
        node = ast.Call(func=node, args=[], keywords=[])
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _QKERAS_SIGNATURES):
        raise ConfigError(f"QKeras quantizer: expected {_QKERAS_EXPECTED}, got {text!r}")
    name = node.func.id
    order = [k for k, _ in _QKERAS_SIGNATURES[name]]
    if len(node.args) > len(order):
        raise ConfigError(f"QKeras {text!r}: expected at most {len(order)} positional arguments "
                          f"({', '.join(order)}), got {len(node.args)}")
    try:
        params = {k: ast.literal_eval(a) for k, a in zip(order, node.args, strict=False)}
        for kw in node.keywords:
            if kw.arg is None or kw.arg in params:
                raise ConfigError(f"QKeras {text!r}: expected each parameter once by name, "
                                  f"got {'**kwargs' if kw.arg is None else repr(kw.arg)} twice")
            params[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise ConfigError(f"QKeras {text!r}: expected literal arguments (numbers, strings, "
                          f"True/False/None)") from None
    return name, params


def _q_scalar(v):
    """A Python scalar from a literal, numpy scalar/0-d array or tf.Variable/Tensor."""
    if hasattr(v, "numpy"):
        v = v.numpy()
    if isinstance(v, np.ndarray | np.generic):
        if v.size != 1:
            return v
        v = v.item()
    return v


def _q_int(v, what: str) -> int:
    s = _q_scalar(v)
    if isinstance(s, bool) or not isinstance(s, int | float) or s != int(s):
        raise ConfigError(f"{what}: expected an integer, got {v!r}")
    return int(s)


def _check_alpha(alpha, where: str) -> None:
    if alpha is None:
        return
    if isinstance(alpha, str):
        raise ConfigError(f"{where}: expected alpha=1 or None, got alpha={alpha!r} (the data-dependent "
                          f"'auto' / power-of-two 'auto_po2' scales are not supported)")
    a = _q_scalar(alpha)
    try:
        ok = bool(np.all(np.asarray(a, dtype=np.float64) == 1.0))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: expected alpha=1 or None, got alpha={describe_values(np.ravel(a))} "
                          f"(per-channel scales are not supported)")


# ------------------------------------------------------------ array checks
def _as_format(fmt) -> FixedFormat:
    if isinstance(fmt, FixedFormat):
        return fmt
    if isinstance(fmt, str):
        return FixedFormat.from_ap_string(fmt)
    raise ConfigError(f"format: expected a FixedFormat or a precision string, got {fmt!r}")


def _as_codes(a, what: str) -> np.ndarray:
    """int64 array from an integer array; floats are refused (values are not codes)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise InputRangeError(f"{what}: expected integer codes, got dtype {arr.dtype}"
                              + (" (float values need quantize/to_code)" if arr.dtype.kind == "f" else ""))
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InputRangeError(f"{what}: expected codes within int64, got "
                              f"{describe_values(arr[arr > np.iinfo(np.int64).max])}")
    return arr.astype(np.int64)


def _check_codes(codes: np.ndarray, lo: int, hi: int, what: str) -> None:
    bad = (codes < lo) | (codes > hi)
    if np.any(bad):
        raise InputRangeError(f"{what}: expected codes in [{lo}, {hi}], got {describe_values(codes[bad])} "
                              f"({int(bad.sum())} out of range)")


def _as_values(x, fmt: FixedFormat) -> np.ndarray:
    """float64 array holding exactly the input values; non-finite values are errors."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise InputRangeError(f"quantize to {fmt}: expected real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if arr.dtype.kind in "iu" and arr.size and np.any(np.abs(out) > 2.0 ** 53):
        raise InputRangeError(f"quantize to {fmt}: expected integers of magnitude <= 2**53 (exact in "
                              f"float64), got {describe_values(arr[np.abs(out) > 2.0 ** 53])}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8 and np.any(out.astype(arr.dtype) != arr):
        raise InputRangeError(f"quantize to {fmt}: expected values exact in float64, got {arr.dtype} "
                              f"values that are not")
    if arr.dtype.kind == "f":
        nan = np.isnan(out)
        if np.any(nan):
            raise InputRangeError(f"quantize to {fmt}: expected finite values, got {int(nan.sum())} NaN(s) "
                                  f"among {out.size} values")
        inf = np.isinf(out)
        if np.any(inf):
            raise InputRangeError(f"quantize to {fmt}: expected finite values, got {int(inf.sum())} "
                                  f"infinite value(s) {describe_values(out[inf])} among {out.size} values")
    return out


def _check_float_width(fmt: FixedFormat, what: str) -> None:
    if fmt.width > FLOAT_MAX_WIDTH:
        raise ConfigError(f"{what} {fmt}: expected width <= {FLOAT_MAX_WIDTH} for float conversion "
                          f"(exact in float64), got {fmt.width}; use integer codes and requantize")


# ------------------------------------------------------- rounding/overflow
def _increment(mode: Rounding, neg, odd, above, tie, inexact):
    """Whether to add 1 to the floor, given the discarded fraction's position.

    ``neg``: the value is negative (equivalently its floor is); ``odd``: the
    floor is odd; ``above`` / ``tie`` / ``inexact``: the discarded fraction is
    > 1/2, == 1/2, != 0.
    """
    if mode is Rounding.TRN:
        return np.zeros(np.shape(neg), dtype=bool)
    if mode is Rounding.TRN_ZERO:
        return neg & inexact
    if mode is Rounding.RND:
        return above | tie
    if mode is Rounding.RND_ZERO:
        return above | (tie & neg)
    if mode is Rounding.RND_MIN_INF:
        return above
    if mode is Rounding.RND_INF:
        return above | (tie & ~neg)
    if mode is Rounding.RND_CONV:
        return above | (tie & odd)
    raise AssertionError(mode)  # pragma: no cover - enum is closed


def _overflow(r: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """Rounded int64 codes (any int64) -> codes of ``fmt`` per its overflow mode."""
    lo, hi = fmt.min_code, fmt.max_code
    if fmt.overflow is Overflow.WRAP:
        low = r & np.int64((1 << fmt.width) - 1)
        return np.where(low > hi, low - np.int64(1 << fmt.width), low) if fmt.signed else low
    if fmt.overflow is Overflow.SAT:
        return np.clip(r, lo, hi)
    if fmt.overflow is Overflow.SAT_ZERO:
        return np.where((r < lo) | (r > hi), np.int64(0), r)
    # SAT_SYM: [-max, max]; ap_fixed<1,...>'s "symmetric" minimum is still -1
    return np.clip(r, -hi if fmt.signed and fmt.width > 1 else lo, hi)


# ----------------------------------------------------------------- public
def to_code(x, fmt: FixedFormat | str) -> np.ndarray:
    """Real values -> int64 codes of ``fmt`` (rounding and overflow per its modes).

    Exact for every finite float64 input: ``x * 2**frac_bits`` is computed by
    ``ldexp`` (exact: inputs far below any LSB or far above any range are
    first replaced by values that convert identically), the discarded
    fraction is compared with 1/2 exactly, and overflow is applied on
    integers.  ``fmt`` may be a precision string.

    Raises:
        InputRangeError: NaN or infinite inputs (the message counts them),
            non-numeric input, integers beyond 2**53.
        ConfigError: ``fmt.width > FLOAT_MAX_WIDTH``.
    """
    fmt = _as_format(fmt)
    _check_float_width(fmt, "to_code/quantize to")
    v = _as_values(x, fmt)
    mag = np.abs(v)
    # |v| < 2**-600 rounds like +-2**-600 and |v| >= 2**900 wraps/saturates like
    # +-2**900 for every |frac_bits| <= 64; both keep ldexp exact and finite.
    v = np.where((mag > 0) & (mag < 2.0 ** -600), np.copysign(2.0 ** -600, v), v)
    v = np.where(mag > 2.0 ** 900, np.copysign(2.0 ** 900, v), v)
    y = np.ldexp(v, fmt.frac_bits)
    fl = np.floor(y)
    rem = y - fl  # exact: fl and y are within 1 of each other
    inc = _increment(fmt.rounding, fl < 0, np.fmod(fl, 2.0) != 0, rem > 0.5, rem == 0.5, rem != 0)
    r = fl + inc
    if fmt.overflow is Overflow.WRAP:
        r = np.fmod(r, 2.0 ** fmt.width)  # exact; |r| < 2**width afterwards
    else:  # out-of-range values only need to stay out of range
        r = np.clip(r, fmt.min_code - 1, fmt.max_code + 1)
    return _overflow(r.astype(np.int64), fmt)


def quantize(x, fmt: FixedFormat | str) -> np.ndarray:
    """Real values -> the float64 values of ``fmt`` they convert to (same shape).

    ``quantize(x, fmt) == from_code(to_code(x, fmt), fmt)``; every output is
    exactly representable in ``fmt``.  See :func:`to_code` for errors.
    """
    fmt = _as_format(fmt)
    return from_code(to_code(x, fmt), fmt)


def from_code(codes, fmt: FixedFormat | str) -> np.ndarray:
    """int codes -> float64 values ``code * 2**-frac_bits`` (exact).

    Raises:
        InputRangeError: non-integer input or codes outside ``[min_code, max_code]``.
        ConfigError: ``fmt.width > FLOAT_MAX_WIDTH``.
    """
    fmt = _as_format(fmt)
    _check_float_width(fmt, "from_code for")
    c = _as_codes(codes, f"from_code for {fmt}")
    _check_codes(c, fmt.min_code, fmt.max_code, f"from_code for {fmt}")
    return np.ldexp(c.astype(np.float64), -fmt.frac_bits)


def to_bits(codes, fmt: FixedFormat | str) -> np.ndarray:
    """Signed codes -> raw ``width``-bit patterns (two's complement), int64 in [0, 2**width).

    Raises:
        InputRangeError: non-integer input or codes outside ``[min_code, max_code]``.
    """
    fmt = _as_format(fmt)
    c = _as_codes(codes, f"to_bits for {fmt}")
    _check_codes(c, fmt.min_code, fmt.max_code, f"to_bits for {fmt}")
    return c & np.int64((1 << fmt.width) - 1)


def from_bits(bits, fmt: FixedFormat | str) -> np.ndarray:
    """Raw ``width``-bit patterns -> codes (sign-extended for signed formats).

    Raises:
        InputRangeError: non-integer input or patterns outside ``[0, 2**width)``.
    """
    fmt = _as_format(fmt)
    b = _as_codes(bits, f"from_bits for {fmt}")
    _check_codes(b, 0, (1 << fmt.width) - 1, f"from_bits (raw {fmt.width}-bit patterns) for {fmt}")
    if not fmt.signed:
        return b
    return np.where(b > fmt.max_code, b - np.int64(1 << fmt.width), b)


def requantize(codes, frac_in: int, fmt: FixedFormat | str) -> np.ndarray:
    """Integer codes with ``frac_in`` fractional bits -> codes of ``fmt``, on integers only.

    ``codes`` (any int64, e.g. a multiply-accumulate result whose value is
    ``codes * 2**-frac_in``) are rounded to ``fmt.frac_bits`` fractional bits
    per ``fmt.rounding`` and then brought into range per ``fmt.overflow`` --
    exactly what assigning an ``ap_fixed`` with ``frac_in`` fractional bits to
    ``fmt`` does.  Works for any width up to :data:`MAX_WIDTH`.

    Raises:
        InputRangeError: non-integer codes.
        ConfigError: ``|frac_in - fmt.frac_bits| > MAX_SHIFT``.
    """
    fmt = _as_format(fmt)
    frac_in = _int_arg(frac_in, "requantize frac_in")
    c = _as_codes(codes, f"requantize into {fmt}")
    shift = frac_in - fmt.frac_bits
    if abs(shift) > MAX_SHIFT:
        raise ConfigError(f"requantize into {fmt}: expected |frac_in - frac_bits| <= {MAX_SHIFT}, "
                          f"got frac_in={frac_in}, frac_bits={fmt.frac_bits} (shift {shift})")
    if shift > 0:  # drop `shift` bits: floor, then round up per the discarded bits
        fl = c >> np.int64(shift)
        rem = c & np.int64((1 << shift) - 1)
        half = np.int64(1 << (shift - 1))
        inc = _increment(fmt.rounding, fl < 0, (fl & 1) == 1, rem > half, rem == half, rem != 0)
        return _overflow(fl + inc, fmt)
    if shift == 0:
        return _overflow(c, fmt)
    t = -shift  # append t zero bits: no rounding, but the shift must not overflow int64
    if fmt.overflow is Overflow.WRAP:
        if t >= fmt.width:
            return np.zeros(c.shape, dtype=np.int64)
        return _overflow((c & np.int64((1 << (fmt.width - t)) - 1)) << np.int64(t), fmt)
    cmin, cmax = -((-fmt.min_code) >> t), fmt.max_code >> t  # ceil(min / 2**t), floor(max / 2**t)
    inside = np.where((c >= cmin) & (c <= cmax), c, 0) << np.int64(t)
    r = np.where(c > cmax, np.int64(fmt.max_code + 1), np.where(c < cmin, np.int64(fmt.min_code - 1), inside))
    return _overflow(r, fmt)
