"""The encoder's number formats, register image and golden model vs QKeras (exact codes)."""
import numpy as np
import pytest

from flow.core import encoder as E
from flow.core.frontend import FrontEnd
from flow.runner.errors import InputRangeError, ShapeError


@pytest.fixture(scope="module")
def qmodel():
    return E.build_qkeras_encoder()


def _wafers(n, seed):
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 128, size=(n, 48)) * (rng.random((n, 48)) < rng.random((n, 1)))
    aein, _ = FrontEnd()(words)
    corners = np.zeros((50, 48), dtype=np.int64)
    corners[1:49][np.arange(48), np.arange(48)] = 128        # one hot cell at each position
    corners[49] = 255                                         # every cell at maximum
    return np.concatenate([aein, corners])


def test_formats_are_the_asics():
    assert (E.WEIGHT_FMT.min_value, E.WEIGHT_FMT.max_value) == (-1.0, 31 / 32)
    assert (E.INPUT_FMT.max_code, E.INPUT_FMT.lsb) == (255, 1 / 128)
    lat = E.latent_format()
    assert (lat.width, lat.int_bits, lat.signed, lat.max_code, lat.lsb) == (9, 1, False, 511, 1 / 256)
    assert E.N_PARAMS == 2144 and E.IMAGE_BITS == 12864


def test_qkeras_quantizers_match_asic_formats(qmodel):
    from flow.core.fixedpoint import FixedFormat

    conv, dense = qmodel.get_layer("conv"), qmodel.get_layer("dense")
    for q in (conv.kernel_quantizer_internal, conv.bias_quantizer_internal,
              dense.kernel_quantizer_internal, dense.bias_quantizer_internal):
        f = FixedFormat.from_qkeras(q)
        assert (f.width, f.int_bits, f.signed) == (6, 1, True)
    f = FixedFormat.from_qkeras(qmodel.get_layer("conv_act").quantizer)
    assert (f.width, f.int_bits, f.signed) == (8, 1, False)
    f = FixedFormat.from_qkeras(qmodel.get_layer("latent").quantizer)
    assert (f.width, f.int_bits, f.signed) == (9, 1, False)
    # weights on the grid: the QKeras quantizer reproduces the codes exactly
    w = E.EncoderWeights.random(4)
    w.set_keras(qmodel)
    qk = np.asarray(conv.kernel_quantizer_internal(conv.get_weights()[0]))
    np.testing.assert_array_equal(qk, w.conv_w * (1 / 32))


def test_register_image_round_trips():
    for seed in range(5):
        w = E.EncoderWeights.random(seed)
        img = w.to_image()
        assert len(img) * 8 == 12864
        back = E.EncoderWeights.from_image(img)
        np.testing.assert_array_equal(back.to_vector(), w.to_vector())
        np.testing.assert_array_equal(E.EncoderWeights.from_mem(w.to_mem()).to_vector(), w.to_vector())
    # register order: conv weights, conv biases, dense weights, dense biases
    vec = np.zeros(2144, dtype=np.int64)
    vec[0], vec[72], vec[80], vec[2128] = -32, 31, -1, 5
    w = E.EncoderWeights.from_vector(vec)
    assert w.conv_w[0, 0, 0, 0] == -32 and w.conv_b[0] == 31 and w.dense_w[0, 0] == -1
    assert w.dense_b[0] == 5
    img = int.from_bytes(w.to_image(), "little")
    assert img & 0x3F == 0b100000                      # -32 two's complement
    assert (img >> (6 * 72)) & 0x3F == 31
    assert (img >> (6 * 80)) & 0x3F == 0x3F             # -1


def test_weights_validation():
    with pytest.raises(InputRangeError, match=r"\[-32, 31\].*32"):
        E.EncoderWeights.from_vector(np.full(2144, 32))
    with pytest.raises(ShapeError, match="2144"):
        E.EncoderWeights.from_vector(np.zeros(2000, dtype=np.int64))
    with pytest.raises(ShapeError, match="1608 bytes"):
        E.EncoderWeights.from_image(b"\0" * 10)


def test_aein_validation():
    w = E.EncoderWeights.random(0)
    with pytest.raises(InputRangeError, match=r"\[0, 255\].*256"):
        E.golden_encode(np.full((1, 48), 256), w)
    with pytest.raises(ShapeError, match=r"\(N, 48\)"):
        E.golden_encode(np.zeros((1, 64), dtype=np.int64), w)
    with pytest.raises(InputRangeError, match="integer"):
        E.golden_encode(np.zeros((1, 48)), w)


def test_golden_conv_hand_computed():
    # one cell at the top-left grid corner (TC 28) with value 1.0 (code 128); a kernel with a
    # single weight 0.5 at (0, 0) for filter 3 -> output (0,0,3) = 0.5 -> code 64
    w = E.EncoderWeights.from_vector(np.zeros(2144, dtype=np.int64))
    cw = np.zeros(E.CONV_W_SHAPE, dtype=np.int64)
    cw[0, 0, 0, 3] = 16
    w = E.EncoderWeights(cw, np.zeros(8, dtype=np.int64), w.dense_w, w.dense_b)
    x = np.zeros((1, 48), dtype=np.int64)
    x[0, 28] = 128
    h = E.golden_conv(x, w)
    assert h[0, 0, 0, 3] == 64 and h.sum() == 64
    # 'same' padding on the bottom/right: the kernel tap (2, 2) of output (3, 3) reads padding
    cw[:] = 0
    cw[2, 2, 0, 0] = 31
    w = E.EncoderWeights(cw, np.zeros(8, dtype=np.int64), w.dense_w, w.dense_b)
    assert E.golden_conv(np.full((1, 48), 255), w)[0, 3, 3, 0] == 0


def test_golden_rounds_half_to_even_and_saturates():
    zero = np.zeros(2144, dtype=np.int64)
    w = E.EncoderWeights.from_vector(zero)
    cw = np.zeros(E.CONV_W_SHAPE, dtype=np.int64)
    cw[0, 0, 0, 0] = 1                                    # 1/32
    x = np.zeros((4, 48), dtype=np.int64)
    # x * w has 12 fractional bits; the output LSB is 2^-7, so x/32 output LSBs:
    # 16 -> 0.5 -> 0 (even), 48 -> 1.5 -> 2, 80 -> 2.5 -> 2 (even), 255 -> 7.97 -> 8
    x[:, 28] = [16, 48, 80, 255]
    w = E.EncoderWeights(cw, np.zeros(8, dtype=np.int64), w.dense_w, w.dense_b)
    assert E.golden_conv(x, w)[:, 0, 0, 0].tolist() == [0, 2, 2, 8]
    cw[0, 0, 0, 0] = 31
    w = E.EncoderWeights(cw, np.full(8, 31), w.dense_w, w.dense_b)
    assert E.golden_conv(np.full((1, 48), 255), w)[0, 0, 0, 0] == 255   # saturates


def test_golden_matches_qkeras_exactly(qmodel):
    aein = _wafers(5000, 1)
    for seed in range(3):
        w = E.EncoderWeights.random(seed)
        w.set_keras(qmodel)
        g = E.golden_encode(aein, w)
        k = E.keras_latent_codes(qmodel, aein)
        mism = np.argwhere(g != k)
        assert len(mism) == 0, f"{len(mism)} mismatches, first {mism[:5].tolist()}"
        assert 0.05 < (g > 0).mean() and (g == 511).mean() < 0.9    # the test exercises both ends


# ------------------------------------------------- the parameterised architecture (co-design sweep)
ARCHS = [E.EncoderArch(4, 4, 6), E.EncoderArch(16, 8, 8), E.EncoderArch(8, 5, 6), E.EncoderArch(2, 3, 10)]


def test_econt_arch_is_the_default_and_keeps_the_asic_constants():
    a = E.ECONT_ARCH
    assert a == E.EncoderArch() and a.to_dict() == {"filters": 8, "weight_bits": 6, "act_bits": 8}
    assert (a.n_params, a.image_bits, a.image_bytes) == (2144, 12864, 1608)
    assert a.weight_fmt == E.WEIGHT_FMT and a.conv_act_fmt == E.CONV_ACT_FMT
    assert a.register_layout == E.REGISTER_LAYOUT and a.weight_qkeras == "quantized_bits(6,0,alpha=1)"
    assert E.EncoderWeights.random(0).arch == a


def test_arch_validation_names_the_field():
    from flow.runner.errors import ConfigError

    with pytest.raises(ConfigError, match=r"filters: expected an integer in \[1, 64\], got 0"):
        E.EncoderArch(filters=0)
    with pytest.raises(ConfigError, match=r"weight_bits.*got 1"):
        E.EncoderArch(weight_bits=1)
    with pytest.raises(ConfigError, match=r"act_bits.*got 8.5"):
        E.EncoderArch(act_bits=8.5)
    with pytest.raises(ConfigError, match=r"got also \['latent_bits'\]"):
        E.EncoderArch.from_dict({"filters": 4, "latent_bits": 3})
    assert E.EncoderArch.from_dict({"filters": 4}) == E.EncoderArch(4, 6, 8)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"f{a.filters}w{a.weight_bits}a{a.act_bits}")
def test_register_image_round_trips_for_every_arch(arch):
    w = E.EncoderWeights.random(3, arch)
    assert w.arch == arch and w.dense_w.shape == (16 * arch.filters, 16)
    assert w.to_vector().shape == (arch.n_params,)
    assert arch.n_params == 9 * arch.filters + arch.filters + 16 * arch.filters * 16 + 16
    img = w.to_image()
    assert len(img) == -(-arch.n_params * arch.weight_bits // 8)
    np.testing.assert_array_equal(E.EncoderWeights.from_image(img, arch).to_vector(), w.to_vector())
    np.testing.assert_array_equal(E.EncoderWeights.from_mem(w.to_mem(), arch).to_vector(), w.to_vector())
    # the extreme codes round-trip (two's complement of arch.weight_bits bits)
    lo, hi = arch.weight_fmt.min_code, arch.weight_fmt.max_code
    vec = np.resize(np.array([lo, hi, -1, 0, 1]), arch.n_params)
    np.testing.assert_array_equal(E.EncoderWeights.from_image(
        E.EncoderWeights.from_vector(vec, arch).to_image(), arch).to_vector(), vec)
    # an image of another architecture is refused with both sizes named
    other = E.EncoderArch(arch.filters + 1, arch.weight_bits, arch.act_bits)
    with pytest.raises(ShapeError, match=f"expected {other.image_bytes} bytes.*got {len(img)}"):
        E.EncoderWeights.from_image(img, other)


def test_image_padding_bits_must_be_zero():
    arch = E.EncoderArch(2, 7, 8)          # 548 codes x 7 bits = 3836 bits -> 480 bytes, 4 padding
    assert (arch.n_params, arch.image_bits, arch.image_bytes) == (548, 3836, 480)
    img = bytearray(E.EncoderWeights.random(1, arch).to_image())
    assert img[-1] >> 4 == 0
    img[-1] |= 0x80
    with pytest.raises(InputRangeError, match="4 padding bits above bit 3835 to be zero"):
        E.EncoderWeights.from_image(bytes(img), arch)


def test_weights_of_another_arch_are_refused():
    w = E.EncoderWeights.random(0, E.EncoderArch(4, 6, 8))
    with pytest.raises(ShapeError, match=r"expected shape \(3, 3, 1, 8\).*got \(3, 3, 1, 4\)"):
        E.EncoderWeights(w.conv_w, w.conv_b, w.dense_w, w.dense_b)
    with pytest.raises(InputRangeError, match=r"expected 4-bit codes in \[-8, 7\]"):
        E.EncoderWeights.from_vector(np.full(E.EncoderArch(4, 4, 8).n_params, 8), E.EncoderArch(4, 4, 8))


@pytest.mark.parametrize("arch,latent_bits", list(zip(ARCHS, (3, 5, 7, 9), strict=True)),
                         ids=lambda v: str(v) if isinstance(v, int) else
                         f"f{v.filters}w{v.weight_bits}a{v.act_bits}")
def test_golden_matches_qkeras_exactly_for_every_arch(arch, latent_bits):
    model = E.build_qkeras_encoder(latent_bits, arch=arch)
    assert E.arch_of(model) == arch
    with pytest.raises(ShapeError, match=f"expected 8 filters, 6-bit weights.*got {arch.filters} filters"):
        E.EncoderWeights.random(0).set_keras(model)
    aein = _wafers(3000, 2)
    top = 2 ** latent_bits - 1
    for seed in range(3):
        w = E.EncoderWeights.random(seed, arch)
        w.set_keras(model)
        back = E.EncoderWeights.from_keras(model)
        assert back.arch == arch and np.array_equal(back.to_vector(), w.to_vector())
        g = E.golden_encode(aein, w, latent_bits)
        assert g.max() <= top
        k = E.keras_latent_codes(model, aein)
        mism = np.argwhere(g != k)
        assert len(mism) == 0, f"{arch}: {len(mism)} mismatches, first {mism[:5].tolist()}"
        assert (g > 0).mean() > 0.02 and (g == top).mean() < 0.95
