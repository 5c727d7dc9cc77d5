"""The ECON-T encoder: number formats, QKeras model, integer golden model, register image.

Architecture (``docs/reference.md`` section 5; fixed in the ASIC, weights reprogrammable)::

    AEin 8x8x1 ufixed<8,1>
      -> Conv2D 8 filters 3x3 stride 2 'same' (pad one row/column bottom/right) -> 4x4x8
      -> ReLU quantized to ufixed<8,1>
      -> Flatten (128, Keras order: row, column, channel)
      -> Dense 16 -> ReLU quantized to ufixed<9,1>   (16 latent values, codes 0..511)

Weights and biases are 6-bit two's complement with 5 fractional bits
(``quantized_bits(6, 0, alpha=1)``: values k/32, k in [-32, 31]).

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
from flow.runner.errors import InputRangeError, ShapeError, checked_int_codes, describe_values

#: AEin, the encoder input: the front end's output format, ufixed<8,1> (defined once, in
#: :data:`flow.core.frontend.AEIN_FMT`).
INPUT_FMT = AEIN_FMT
#: every weight and bias: 6-bit signed, 5 fractional bits, [-1, 31/32].
WEIGHT_FMT = FixedFormat(6, 1, signed=True, rounding="RND_CONV", overflow="SAT")
#: ReLU after the convolution: ufixed<8,1>.
CONV_ACT_FMT = FixedFormat(8, 1, signed=False, rounding="RND_CONV", overflow="SAT")

N_FILTERS, KERNEL, STRIDE = 8, 3, 2
N_LATENT = 16
CONV_W_SHAPE = (KERNEL, KERNEL, 1, N_FILTERS)   # Keras kernel layout (kh, kw, cin, cout)
DENSE_W_SHAPE = (4 * 4 * N_FILTERS, N_LATENT)
#: register order of the weight image: name, shape
REGISTER_LAYOUT: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("conv_w", CONV_W_SHAPE), ("conv_b", (N_FILTERS,)),
    ("dense_w", DENSE_W_SHAPE), ("dense_b", (N_LATENT,)),
)
N_PARAMS = sum(int(np.prod(s)) for _, s in REGISTER_LAYOUT)   # 2144
IMAGE_BITS = N_PARAMS * WEIGHT_FMT.width                     # 12864


def latent_format(bits: int = 9) -> FixedFormat:
    """Latent output: ufixed<bits,1> (9 bits in the ASIC; 3/5/7 for fewer links)."""
    return FixedFormat(bits, 1, signed=False, rounding="RND_CONV", overflow="SAT")


# -------------------------------------------------------------- weights
@dataclass(frozen=True)
class EncoderWeights:
    """Integer weight codes of the encoder (6-bit two's complement values as int64)."""

    conv_w: np.ndarray
    conv_b: np.ndarray
    dense_w: np.ndarray
    dense_b: np.ndarray

    def __post_init__(self):
        for name, shape in REGISTER_LAYOUT:
            a = np.asarray(getattr(self, name))
            if a.shape != shape:
                raise ShapeError(f"encoder weights {name}: expected shape {shape}, got {a.shape}")
            if a.dtype.kind not in "iu":
                raise InputRangeError(f"encoder weights {name}: expected integer codes, got {a.dtype}")
            bad = (a < WEIGHT_FMT.min_code) | (a > WEIGHT_FMT.max_code)
            if np.any(bad):
                raise InputRangeError(f"encoder weights {name}: expected 6-bit codes in "
                                      f"[{WEIGHT_FMT.min_code}, {WEIGHT_FMT.max_code}], got "
                                      f"{describe_values(a[bad])}")
            a = a.astype(np.int64)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    # ---- register image: conv weights, conv biases, dense weights, dense biases
    def to_vector(self) -> np.ndarray:
        """The 2144 codes in register order (each array flattened row-major)."""
        return np.concatenate([getattr(self, n).ravel() for n, _ in REGISTER_LAYOUT])

    @classmethod
    def from_vector(cls, vec) -> EncoderWeights:
        vec = np.asarray(vec, dtype=np.int64)
        if vec.shape != (N_PARAMS,):
            raise ShapeError(f"weight vector: expected {N_PARAMS} codes, got shape {vec.shape}")
        parts, i = {}, 0
        for name, shape in REGISTER_LAYOUT:
            n = int(np.prod(shape))
            parts[name] = vec[i:i + n].reshape(shape)
            i += n
        return cls(**parts)

    def to_image(self) -> bytes:
        """The 12864-bit register image, little-endian: value ``i`` occupies bits
        ``6 i .. 6 i + 5`` (two's complement) of a 1608-byte string."""
        bits = np.asarray(self.to_vector()) & 0x3F
        total = 0
        for i, v in enumerate(bits.tolist()):
            total |= v << (6 * i)
        return total.to_bytes(IMAGE_BITS // 8, "little")

    @classmethod
    def from_image(cls, image: bytes) -> EncoderWeights:
        if len(image) != IMAGE_BITS // 8:
            raise ShapeError(f"weight image: expected {IMAGE_BITS // 8} bytes ({IMAGE_BITS} bits), "
                             f"got {len(image)}")
        total = int.from_bytes(image, "little")
        raw = np.array([(total >> (6 * i)) & 0x3F for i in range(N_PARAMS)], dtype=np.int64)
        return cls.from_vector(np.where(raw >= 32, raw - 64, raw))

    def to_mem(self) -> str:
        """``$readmemh`` text: one 2-digit hex value (6-bit two's complement) per line, register order."""
        return "".join(f"{v & 0x3F:02x}\n" for v in self.to_vector().tolist())

    @classmethod
    def from_mem(cls, text: str) -> EncoderWeights:
        vals = [int(tok, 16) for tok in text.split()]
        if any(v > 0x3F for v in vals):
            raise InputRangeError("weight .mem file: expected 6-bit hex values (00..3f)")
        raw = np.array(vals, dtype=np.int64)
        return cls.from_vector(np.where(raw >= 32, raw - 64, raw))

    @classmethod
    def random(cls, seed: int) -> EncoderWeights:
        """Uniformly random codes (for tests and pre-training hardware bring-up)."""
        rng = np.random.default_rng(seed)
        return cls(**{n: rng.integers(WEIGHT_FMT.min_code, WEIGHT_FMT.max_code + 1, size=s)
                      for n, s in REGISTER_LAYOUT})

    @classmethod
    def from_keras(cls, model) -> EncoderWeights:
        """Codes of a (trained) QKeras encoder built by :func:`build_qkeras_encoder`:
        the float weights quantized exactly as its quantizers do."""
        conv_w, conv_b = model.get_layer("conv").get_weights()
        dense_w, dense_b = model.get_layer("dense").get_weights()
        return cls(**{n: to_code(np.asarray(a, dtype=np.float64), WEIGHT_FMT)
                      for n, a in (("conv_w", conv_w), ("conv_b", conv_b),
                                   ("dense_w", dense_w), ("dense_b", dense_b))})

    def set_keras(self, model) -> None:
        """Write these codes into a QKeras encoder as exactly representable floats."""
        lsb = WEIGHT_FMT.lsb
        model.get_layer("conv").set_weights([self.conv_w * lsb, self.conv_b * lsb])
        model.get_layer("dense").set_weights([self.dense_w * lsb, self.dense_b * lsb])


# ---------------------------------------------------------- golden model
def check_aein_codes(codes) -> np.ndarray:
    """AEin codes ``(N, 48)``, integers 0..255; errors say what arrived."""
    return checked_int_codes(codes, "AEin codes", N_TC, INPUT_FMT.max_code + 1,
                             dtype_text="integer codes (ufixed<8,1>)")


def golden_conv(aein_codes, w: EncoderWeights) -> np.ndarray:
    """Conv + quantized ReLU: ``(N, 48)`` AEin codes -> ``(N, 4, 4, 8)`` ufixed<8,1> codes."""
    x = to_8x8(check_aein_codes(aein_codes))                       # (N, 8, 8), 7 frac bits
    x = np.pad(x, ((0, 0), (0, 1), (0, 1)))                        # 'same', stride 2: bottom/right
    n = x.shape[0]
    acc = np.zeros((n, 4, 4, N_FILTERS), dtype=np.int64)
    for di in range(KERNEL):
        for dj in range(KERNEL):
            patch = x[:, di:di + 2 * 4:STRIDE, dj:dj + 2 * 4:STRIDE]   # (N, 4, 4)
            acc += patch[..., None] * w.conv_w[di, dj, 0][None, None, None, :]
    frac = INPUT_FMT.frac_bits + WEIGHT_FMT.frac_bits                # 12
    acc += w.conv_b << (frac - WEIGHT_FMT.frac_bits)
    return requantize(np.maximum(acc, 0), frac, CONV_ACT_FMT)


def golden_encode(aein_codes, w: EncoderWeights, latent_bits: int = 9) -> np.ndarray:
    """The whole encoder on integer codes: ``(N, 48)`` AEin -> ``(N, 16)`` latent codes."""
    h = golden_conv(aein_codes, w).reshape(-1, DENSE_W_SHAPE[0])   # Keras Flatten order
    acc = h @ w.dense_w
    frac = CONV_ACT_FMT.frac_bits + WEIGHT_FMT.frac_bits             # 12
    acc += w.dense_b << (frac - WEIGHT_FMT.frac_bits)
    return requantize(np.maximum(acc, 0), frac, latent_format(latent_bits))


# ------------------------------------------------------------ QKeras model
def build_qkeras_encoder(latent_bits: int = 9, name: str = "encoder"):
    """The encoder in QKeras with the ASIC's exact number formats.

    Input: ``(8, 8, 1)`` AEin values (code / 128).  The layer names
    (``input_q``, ``conv``, ``conv_act``, ``flatten``, ``dense``, ``latent``)
    are relied upon by the hls4ml conversion and :class:`EncoderWeights`.
    """
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    wq = "quantized_bits(6,0,alpha=1)"
    inp = keras.Input((8, 8, 1), name="aein")
    x = QActivation(quantized_bits(8, 1, keep_negative=False, alpha=1), name="input_q")(inp)
    x = QConv2D(N_FILTERS, KERNEL, strides=STRIDE, padding="same", kernel_quantizer=wq,
                bias_quantizer=wq, name="conv")(x)
    x = QActivation(quantized_relu(CONV_ACT_FMT.width, CONV_ACT_FMT.int_bits), name="conv_act")(x)
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
