"""The ECON-T encoder: number formats, QKeras model, integer golden model, register image.

Architecture (``docs/reference.md`` section 5; fixed in the ASIC, weights reprogrammable)::

    AEin 8x8x1 ufixed<8,1>
      -> Conv2D 8 filters 3x3 stride 2 'same' (pad one row/column bottom/right) -> 4x4x8
      -> ReLU quantized to ufixed<8,1>
      -> Flatten (128, Keras order: row, column, channel)
      -> Dense 16 -> ReLU quantized to ufixed<9,1>   (16 latent values, codes 0..511)

Weights and biases are 6-bit two's complement with 5 fractional bits
(``quantized_bits(6, 0, alpha=1)``: values k/32, k in [-32, 31]).

That is the ECON-T's design, :data:`ECONT_ARCH`.  The number of filters, the weight width
and the conv-activation width are parameters (:class:`EncoderArch`, the co-design sweep's
axes); the latent width is a parameter of its own (``latent_bits``).  Every function here
takes the architecture from the :class:`EncoderWeights` or an ``arch`` argument, default
the ECON-T's; the module constants (``WEIGHT_FMT``, ``N_PARAMS``, ...) are the ECON-T's.

The golden model (:func:`golden_encode`) is pure integer arithmetic on codes
and shares no code with QKeras, hls4ml or the RTL; it is the reference all
of them are compared against, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.core.fixedpoint import FixedFormat, requantize, to_code
from flow.core.frontend import AEIN_FMT
from flow.core.geometry import N_TC, to_8x8
from flow.runner.errors import (
    ConfigError,
    InputRangeError,
    ShapeError,
    checked_int_codes,
    describe_values,
)

#: AEin, the encoder input: the front end's output format, ufixed<8,1> (defined once, in
#: :data:`flow.core.frontend.AEIN_FMT`).
INPUT_FMT = AEIN_FMT
N_FILTERS, KERNEL, STRIDE = 8, 3, 2
N_LATENT = 16
CONV_OUT = 4                                    # 4 x 4 conv output positions (stride 2 on 8 x 8)

#: bounds of the parameterised architecture (the co-design sweep's axes)
FILTERS_RANGE, WEIGHT_BITS_RANGE, ACT_BITS_RANGE = (1, 64), (2, 12), (2, 12)


@dataclass(frozen=True)
class EncoderArch:
    """The encoder's trainable shape and number formats, everything but the latent width.

    The ECON-T's own design is :data:`ECONT_ARCH` (8 filters, 6-bit weights, 8-bit conv
    activations).  The fixed facts stay: 48 x ufixed<8,1> AEin in (8 x 8 image), a 3 x 3
    stride-2 'same' convolution, ReLU, Flatten, Dense 16, ReLU.  Every weight and bias is
    ``quantized_bits(weight_bits, 0, alpha=1)`` = ``fixed<weight_bits,1>`` (values
    ``k / 2^(weight_bits-1)``); the conv ReLU is ``quantized_relu(act_bits, 1)`` =
    ``ufixed<act_bits,1>``.
    """

    filters: int = 8
    weight_bits: int = 6
    act_bits: int = 8

    def __post_init__(self):
        for name, (lo, hi) in (("filters", FILTERS_RANGE), ("weight_bits", WEIGHT_BITS_RANGE),
                               ("act_bits", ACT_BITS_RANGE)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                raise ConfigError(f"encoder architecture {name}: expected an integer in [{lo}, {hi}], "
                                  f"got {v!r}")
            object.__setattr__(self, name, int(v))

    # ---- number formats
    @property
    def weight_fmt(self) -> FixedFormat:
        """Every weight and bias: ``fixed<weight_bits,1>``, RND_CONV, SAT."""
        return FixedFormat(self.weight_bits, 1, signed=True, rounding="RND_CONV", overflow="SAT")

    @property
    def conv_act_fmt(self) -> FixedFormat:
        """The conv ReLU output: ``ufixed<act_bits,1>``, RND_CONV, SAT."""
        return FixedFormat(self.act_bits, 1, signed=False, rounding="RND_CONV", overflow="SAT")

    @property
    def weight_qkeras(self) -> str:
        """The QKeras quantizer string of every weight and bias."""
        return f"quantized_bits({self.weight_bits},0,alpha=1)"

    # ---- shapes and the register image
    @property
    def n_hidden(self) -> int:
        """Flattened conv outputs (the dense layer's inputs)."""
        return CONV_OUT * CONV_OUT * self.filters

    @property
    def conv_w_shape(self) -> tuple[int, int, int, int]:
        """Keras kernel layout (kh, kw, cin, cout)."""
        return (KERNEL, KERNEL, 1, self.filters)

    @property
    def dense_w_shape(self) -> tuple[int, int]:
        return (self.n_hidden, N_LATENT)

    @property
    def register_layout(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Register order of the weight image: (name, shape)."""
        return (("conv_w", self.conv_w_shape), ("conv_b", (self.filters,)),
                ("dense_w", self.dense_w_shape), ("dense_b", (N_LATENT,)))

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(s)) for _, s in self.register_layout)

    @property
    def image_bits(self) -> int:
        """Bits of the register image: ``n_params * weight_bits``."""
        return self.n_params * self.weight_bits

    @property
    def image_bytes(self) -> int:
        """Bytes of the register image file (the last byte zero-padded)."""
        return (self.image_bits + 7) // 8

    # ---- naming and files
    def describe(self) -> str:
        return (f"{self.filters} filters, {self.weight_bits}-bit weights, "
                f"{self.act_bits}-bit conv activations")

    def to_dict(self) -> dict[str, int]:
        return {"filters": self.filters, "weight_bits": self.weight_bits, "act_bits": self.act_bits}

    @classmethod
    def from_dict(cls, d: dict, where: str = "encoder architecture") -> EncoderArch:
        """From :meth:`to_dict`'s mapping; missing keys are the ECON-T's values."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping with filters, weight_bits, act_bits, "
                              f"got {type(d).__name__}")
        extra = set(d) - {"filters", "weight_bits", "act_bits"}
        if extra:
            raise ConfigError(f"{where}: expected keys filters, weight_bits, act_bits, got also "
                              f"{sorted(extra)}")
        try:
            return cls(**d)
        except ConfigError as err:
            raise ConfigError(str(err).replace("encoder architecture", where, 1)) from None


#: the ECON-T's encoder (the ASIC)
ECONT_ARCH = EncoderArch()
#: every weight and bias of the ECON-T encoder: 6-bit signed, 5 fractional bits, [-1, 31/32].
WEIGHT_FMT = ECONT_ARCH.weight_fmt
#: ReLU after the convolution of the ECON-T encoder: ufixed<8,1>.
CONV_ACT_FMT = ECONT_ARCH.conv_act_fmt
CONV_W_SHAPE = ECONT_ARCH.conv_w_shape
DENSE_W_SHAPE = ECONT_ARCH.dense_w_shape
#: register order of the ECON-T weight image: name, shape
REGISTER_LAYOUT = ECONT_ARCH.register_layout
N_PARAMS = ECONT_ARCH.n_params          # 2144
IMAGE_BITS = ECONT_ARCH.image_bits      # 12864


def latent_format(bits: int = 9) -> FixedFormat:
    """Latent output: ufixed<bits,1> (9 bits in the ASIC; 3/5/7 for fewer links)."""
    return FixedFormat(bits, 1, signed=False, rounding="RND_CONV", overflow="SAT")


# -------------------------------------------------------------- weights
@dataclass(frozen=True)
class EncoderWeights:
    """Integer weight codes of the encoder (``arch.weight_bits``-bit two's complement values as
    int64) and the architecture they belong to (default: the ECON-T's)."""

    conv_w: np.ndarray
    conv_b: np.ndarray
    dense_w: np.ndarray
    dense_b: np.ndarray
    arch: EncoderArch = ECONT_ARCH

    def __post_init__(self):
        if not isinstance(self.arch, EncoderArch):
            raise ConfigError(f"encoder weights arch: expected an EncoderArch, got "
                              f"{type(self.arch).__name__}")
        fmt = self.arch.weight_fmt
        for name, shape in self.arch.register_layout:
            a = np.asarray(getattr(self, name))
            if a.shape != shape:
                raise ShapeError(f"encoder weights {name}: expected shape {shape} ({self.arch.describe()}), "
                                 f"got {a.shape}")
            if a.dtype.kind not in "iu":
                raise InputRangeError(f"encoder weights {name}: expected integer codes, got {a.dtype}")
            bad = (a < fmt.min_code) | (a > fmt.max_code)
            if np.any(bad):
                raise InputRangeError(f"encoder weights {name}: expected {fmt.width}-bit codes in "
                                      f"[{fmt.min_code}, {fmt.max_code}], got "
                                      f"{describe_values(a[bad])}")
            a = a.astype(np.int64)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    # ---- register image: conv weights, conv biases, dense weights, dense biases
    def to_vector(self) -> np.ndarray:
        """The ``arch.n_params`` codes (2144 for the ECON-T) in register order (each array
        flattened row-major)."""
        return np.concatenate([getattr(self, n).ravel() for n, _ in self.arch.register_layout])

    @classmethod
    def from_vector(cls, vec, arch: EncoderArch = ECONT_ARCH) -> EncoderWeights:
        vec = np.asarray(vec, dtype=np.int64)
        if vec.shape != (arch.n_params,):
            raise ShapeError(f"weight vector: expected {arch.n_params} codes ({arch.describe()}), "
                             f"got shape {vec.shape}")
        parts, i = {}, 0
        for name, shape in arch.register_layout:
            n = int(np.prod(shape))
            parts[name] = vec[i:i + n].reshape(shape)
            i += n
        return cls(**parts, arch=arch)

    def to_image(self) -> bytes:
        """The register image (12864 bits for the ECON-T), little-endian: value ``i`` occupies
        bits ``b i .. b i + b - 1`` (two's complement, ``b = arch.weight_bits``) of an
        ``arch.image_bytes``-byte string (1608 for the ECON-T; unused top bits zero)."""
        wb = self.arch.weight_bits
        bits = np.asarray(self.to_vector()) & ((1 << wb) - 1)
        total = 0
        for i, v in enumerate(bits.tolist()):
            total |= v << (wb * i)
        return total.to_bytes(self.arch.image_bytes, "little")

    @classmethod
    def from_image(cls, image: bytes, arch: EncoderArch = ECONT_ARCH) -> EncoderWeights:
        if len(image) != arch.image_bytes:
            raise ShapeError(f"weight image: expected {arch.image_bytes} bytes ({arch.image_bits} bits, "
                             f"{arch.describe()}), got {len(image)}")
        total = int.from_bytes(image, "little")
        if total >> arch.image_bits:
            raise InputRangeError(f"weight image: expected the {arch.image_bytes * 8 - arch.image_bits} "
                                  f"padding bits above bit {arch.image_bits - 1} to be zero, got "
                                  f"{bin(total >> arch.image_bits)}")
        wb = arch.weight_bits
        mask, half = (1 << wb) - 1, 1 << (wb - 1)
        raw = np.array([(total >> (wb * i)) & mask for i in range(arch.n_params)], dtype=np.int64)
        return cls.from_vector(np.where(raw >= half, raw - 2 * half, raw), arch)

    def to_mem(self) -> str:
        """``$readmemh`` text: one hex value (``arch.weight_bits``-bit two's complement; 2 digits
        for the ECON-T's 6 bits) per line, register order."""
        wb = self.arch.weight_bits
        digits = (wb + 3) // 4
        return "".join(f"{v & ((1 << wb) - 1):0{digits}x}\n" for v in self.to_vector().tolist())

    @classmethod
    def from_mem(cls, text: str, arch: EncoderArch = ECONT_ARCH) -> EncoderWeights:
        wb = arch.weight_bits
        vals = [int(tok, 16) for tok in text.split()]
        if any(v >> wb for v in vals):
            raise InputRangeError(f"weight .mem file: expected {wb}-bit hex values "
                                  f"(0..{(1 << wb) - 1:x})")
        raw = np.array(vals, dtype=np.int64)
        return cls.from_vector(np.where(raw >= 1 << (wb - 1), raw - (1 << wb), raw), arch)

    @classmethod
    def random(cls, seed: int, arch: EncoderArch = ECONT_ARCH) -> EncoderWeights:
        """Uniformly random codes (for tests and pre-training hardware bring-up)."""
        rng = np.random.default_rng(seed)
        fmt = arch.weight_fmt
        return cls(**{n: rng.integers(fmt.min_code, fmt.max_code + 1, size=s)
                      for n, s in arch.register_layout}, arch=arch)

    @classmethod
    def from_keras(cls, model) -> EncoderWeights:
        """Codes of a (trained) QKeras encoder built by :func:`build_qkeras_encoder`:
        the float weights quantized exactly as its quantizers do; the architecture is read
        from the model (:func:`arch_of`)."""
        arch = arch_of(model)
        conv_w, conv_b = model.get_layer("conv").get_weights()
        dense_w, dense_b = model.get_layer("dense").get_weights()
        return cls(**{n: to_code(np.asarray(a, dtype=np.float64), arch.weight_fmt)
                      for n, a in (("conv_w", conv_w), ("conv_b", conv_b),
                                   ("dense_w", dense_w), ("dense_b", dense_b))}, arch=arch)

    def set_keras(self, model) -> None:
        """Write these codes into a QKeras encoder of the same architecture as exactly
        representable floats."""
        got = arch_of(model)
        if got != self.arch:
            raise ShapeError(f"QKeras encoder: expected {self.arch.describe()} for these weights, "
                             f"got {got.describe()}")
        lsb = self.arch.weight_fmt.lsb
        model.get_layer("conv").set_weights([self.conv_w * lsb, self.conv_b * lsb])
        model.get_layer("dense").set_weights([self.dense_w * lsb, self.dense_b * lsb])


# ---------------------------------------------------------- golden model
def check_aein_codes(codes) -> np.ndarray:
    """AEin codes ``(N, 48)``, integers 0..255; errors say what arrived."""
    return checked_int_codes(codes, "AEin codes", N_TC, INPUT_FMT.max_code + 1,
                             dtype_text="integer codes (ufixed<8,1>)")


def golden_conv(aein_codes, w: EncoderWeights) -> np.ndarray:
    """Conv + quantized ReLU: ``(N, 48)`` AEin codes -> ``(N, 4, 4, filters)`` codes of
    ``ufixed<act_bits,1>`` (``(N, 4, 4, 8)`` ufixed<8,1> for the ECON-T)."""
    x = to_8x8(check_aein_codes(aein_codes))                       # (N, 8, 8), 7 frac bits
    x = np.pad(x, ((0, 0), (0, 1), (0, 1)))                        # 'same', stride 2: bottom/right
    n = x.shape[0]
    wf, af = w.arch.weight_fmt, w.arch.conv_act_fmt
    acc = np.zeros((n, CONV_OUT, CONV_OUT, w.arch.filters), dtype=np.int64)
    for di in range(KERNEL):
        for dj in range(KERNEL):
            patch = x[:, di:di + STRIDE * CONV_OUT:STRIDE, dj:dj + STRIDE * CONV_OUT:STRIDE]
            acc += patch[..., None] * w.conv_w[di, dj, 0][None, None, None, :]
    frac = INPUT_FMT.frac_bits + wf.frac_bits                # 12 for the ECON-T
    acc += w.conv_b << (frac - wf.frac_bits)
    return requantize(np.maximum(acc, 0), frac, af)


def golden_encode(aein_codes, w: EncoderWeights, latent_bits: int = 9) -> np.ndarray:
    """The whole encoder on integer codes: ``(N, 48)`` AEin -> ``(N, 16)`` latent codes."""
    h = golden_conv(aein_codes, w).reshape(-1, w.arch.n_hidden)    # Keras Flatten order
    acc = h @ w.dense_w
    wf = w.arch.weight_fmt
    frac = w.arch.conv_act_fmt.frac_bits + wf.frac_bits       # 12 for the ECON-T
    acc += w.dense_b << (frac - wf.frac_bits)
    return requantize(np.maximum(acc, 0), frac, latent_format(latent_bits))


# ------------------------------------------------------------ QKeras model
def build_qkeras_encoder(latent_bits: int = 9, name: str = "encoder", arch: EncoderArch = ECONT_ARCH):
    """The encoder in QKeras with the exact number formats of ``arch`` (default: the ASIC's).

    Input: ``(8, 8, 1)`` AEin values (code / 128).  The layer names
    (``input_q``, ``conv``, ``conv_act``, ``flatten``, ``dense``, ``latent``)
    are relied upon by the hls4ml conversion and :class:`EncoderWeights`.
    """
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    wq = arch.weight_qkeras
    inp = keras.Input((8, 8, 1), name="aein")
    x = QActivation(quantized_bits(8, 1, keep_negative=False, alpha=1), name="input_q")(inp)
    x = QConv2D(arch.filters, KERNEL, strides=STRIDE, padding="same", kernel_quantizer=wq,
                bias_quantizer=wq, name="conv")(x)
    x = QActivation(quantized_relu(arch.act_bits, 1), name="conv_act")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = QDense(N_LATENT, kernel_quantizer=wq, bias_quantizer=wq, name="dense")(x)
    out = QActivation(quantized_relu(latent_bits, 1), name="latent")(x)
    return keras.Model(inp, out, name=name)


def keras_latent_codes(model, aein_codes, batch_size: int = 4096) -> np.ndarray:
    """Run a QKeras encoder on AEin codes and return its outputs as latent codes.

    Raises if an output is not exactly on the latent grid (it would mean the
    float model is not bit-exact to begin with).
    """
    codes = check_aein_codes(aein_codes)
    x = to_8x8(codes.astype(np.float64) * INPUT_FMT.lsb)[..., None].astype(np.float32)
    y = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    fmt = latent_format(int(model.get_layer("latent").quantizer.bits))
    scaled = y / fmt.lsb
    off = scaled != np.round(scaled)
    if np.any(off):
        raise InputRangeError(f"QKeras encoder output is off the {fmt} grid for {int(off.sum())} "
                              f"values, e.g. {describe_values(y[off])}")
    return scaled.astype(np.int64)


def arch_of(model) -> EncoderArch:
    """The :class:`EncoderArch` of a QKeras encoder built by :func:`build_qkeras_encoder`
    (filters and quantizer widths read from its layers; errors name what is not one)."""
    from flow.core.fixedpoint import FixedFormat as F

    try:
        conv, dense, act = model.get_layer("conv"), model.get_layer("dense"), model.get_layer("conv_act")
    except ValueError as e:
        raise ShapeError(f"QKeras encoder: expected layers conv, conv_act, dense, got "
                         f"{[la.name for la in model.layers]}") from e
    fmts = {}
    for what, q in (("conv kernel", conv.kernel_quantizer_internal),
                    ("conv bias", conv.bias_quantizer_internal),
                    ("dense kernel", dense.kernel_quantizer_internal),
                    ("dense bias", dense.bias_quantizer_internal), ("conv_act", act.quantizer)):
        fmts[what] = F.from_qkeras(q)
    widths = {fmts[k].width for k in fmts if k != "conv_act"}
    if len(widths) != 1:
        raise ShapeError(f"QKeras encoder: expected one weight width for every kernel and bias, got "
                         f"{ {k: str(v) for k, v in fmts.items()} }")
    arch = EncoderArch(filters=int(conv.filters), weight_bits=widths.pop(), act_bits=fmts["conv_act"].width)
    want = {**{k: arch.weight_fmt for k in fmts if k != "conv_act"}, "conv_act": arch.conv_act_fmt}
    for k, f in fmts.items():
        if f != want[k]:
            raise ShapeError(f"QKeras encoder {k}: expected {want[k]}, got {f}")
    if dense.units != N_LATENT:
        raise ShapeError(f"QKeras encoder dense: expected {N_LATENT} units, got {dense.units}")
    return arch
