"""hls4ml conversion and C simulation of encoders of other architectures (issue #18 groundwork).

The co-design sweep converts encoders of any :class:`~flow.core.encoder.EncoderArch` (filters,
weight bits, conv-activation bits) and latent width; csim must stay bit-exact for each.  The
slow tests run the real ``convert`` and ``csim`` stages (Vitis backend) on a fabricated upstream
whose autoencoder exports a random-weight encoder of another architecture, and compare the
harness's integer latent codes with :func:`flow.core.encoder.golden_encode`.
"""
import json
import time

import numpy as np
import pytest
from fakes import fake_stage
from test_convert import _fake_data, _fake_emd, make_cfg

from flow.convert.stage import _formats
from flow.core import encoder as E
from flow.core.csim import simulate
from flow.core.encoder_file import write_encoder
from flow.core.fixedpoint import FixedFormat
from flow.core.hls import (
    _check_model,
    accum_format,
    convert_backend,
    econt_params_h,
    layer_formats,
    layer_precisions,
    readme,
)
from flow.core.vectors import read_vectors
from flow.runner import config as C
from flow.runner.errors import FlowError
from flow.runner.stages import run_stage

SMALL = E.EncoderArch(filters=4, weight_bits=4, act_bits=6)
WIDE = E.EncoderArch(filters=16, weight_bits=8, act_bits=7)
WEIGHT_SEED = 23


# -------------------------------------------------------------- precisions
def test_layer_formats_follow_the_arch():
    f = layer_formats(3, SMALL)
    w4 = FixedFormat(4, 1, True)
    assert f["conv"]["weight"] == f["conv"]["bias"] == f["dense"]["weight"] == f["dense"]["bias"] == w4
    # conv: 9 products of AEin codes 0..255 (7 frac bits) and weight codes -8..7 (3 frac bits),
    # plus a bias code -8..7 shifted to 10 frac bits:
    #   lo = 9 * 255 * -8 - 8 * 2^7 = -19384, hi = 9 * 255 * 7 + 7 * 2^7 = 16961 -> 15 bits + sign
    assert f["conv"]["accum"] == f["conv"]["result"] == f["conv_linear"]["result"] == FixedFormat(16, 6, True)
    # dense: 64 inputs (4 x 4 x 4) of ufixed<6,1> codes 0..63 (5 frac bits) times -8..7:
    #   lo = 64 * 63 * -8 - 8 * 2^5 = -32512, hi = 64 * 63 * 7 + 7 * 2^5 = 28448 -> 15 bits + sign
    assert f["dense"]["accum"] == f["dense_linear"]["result"] == FixedFormat(16, 8, True)
    assert f["conv_act"]["result"] == SMALL.conv_act_fmt == FixedFormat(6, 1, False, "RND_CONV", "SAT")
    assert f["latent"]["result"] == E.latent_format(3)
    assert f["input_q"]["result"] == E.INPUT_FMT
    # the accumulators are exact for every code: one bit less would not hold the extremes
    for layer, n, x in (("conv", 9, E.INPUT_FMT), ("dense", SMALL.n_hidden, SMALL.conv_act_fmt)):
        acc = f[layer]["accum"]
        assert acc == accum_format(n, x, SMALL.weight_fmt, SMALL.weight_fmt)
        lo = n * x.max_code * SMALL.weight_fmt.min_code + (-8 << x.frac_bits)
        assert acc.min_code <= lo and FixedFormat(acc.width - 1, acc.int_bits - 1, True).min_code > lo
    # the default is the ECON-T's, unchanged
    assert layer_formats(9) == layer_formats(9, E.ECONT_ARCH)
    assert layer_precisions(9)["dense"]["accum"] == "fixed<21,9>"
    p = layer_precisions(7, WIDE)
    assert p["conv"]["weight"] == "fixed<8,1>" and p["conv_act"]["result"] == "ufixed<7,1,RND_CONV,SAT>"
    # dense: 256 inputs, 7 + 7 frac bits
    assert p["dense"]["accum"] == accum_format(256, WIDE.conv_act_fmt, WIDE.weight_fmt,
                                               WIDE.weight_fmt).to_hls4ml_string()


def test_texts_state_the_arch():
    """vectors_meta formats, econt_params.h and the README name a non-ECON-T architecture; the
    ECON-T's texts have no architecture note."""
    assert _formats(9) == _formats(9, E.ECONT_ARCH)
    fm = _formats(3, SMALL)
    assert fm["weights"] == "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"
    assert fm["conv_act"] == "ap_ufixed<6,1,AP_RND_CONV,AP_SAT>"
    assert econt_params_h(9) == econt_params_h(9, E.ECONT_ARCH)
    assert "architecture" not in econt_params_h(9)
    h = econt_params_h(3, SMALL)
    assert "4 filters, 4-bit weights, 6-bit conv activations" in h and "#define ECONT_LATENT_BITS 3" in h
    settings = C.parse_config({}).convert
    layers = [{"name": "dense", "class": "Dense", "precisions": {"accum": "fixed<16,8>"}}]
    text = readme("Vitis", {"layers": layers, "hls4ml": "x", "arch": SMALL.to_dict()}, settings, 3,
                  "0" * 64, "-O2")
    assert "Conv2D 4x3x3 stride 2" in text and "`quantized_bits(4,0)` -> `fixed<4,1>`" in text
    assert "all 4-bit weight codes" in text and "* Encoder architecture 4 filters" in text
    assert "2144" not in text and "quantized_bits(6,0)" not in text
    econt = readme("Vitis", {"layers": layers, "hls4ml": "x"}, settings, 9, "0" * 64, "-O2")
    assert econt == readme("Vitis", {"layers": layers, "hls4ml": "x", "arch": E.ECONT_ARCH.to_dict()},
                           settings, 9, "0" * 64, "-O2")
    assert "Conv2D 8x3x3" in econt and "all 6-bit weight codes" in econt
    assert "Encoder architecture" not in econt


# --------------------------------------------------------------- the model
def _odd_encoder(conv_wq="quantized_bits(4,0,alpha=1)", dense_wq="quantized_bits(4,0,alpha=1)",
                 input_q=None, plain_act=False):
    """A model with the encoder's layer names that is not quite the flow's encoder."""
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow import keras

    inp = keras.Input((8, 8, 1), name="aein")
    x = QActivation(input_q or quantized_bits(8, 1, keep_negative=False, alpha=1), name="input_q")(inp)
    x = QConv2D(4, 3, strides=2, padding="same", kernel_quantizer=conv_wq, bias_quantizer=conv_wq,
                name="conv")(x)
    x = (keras.layers.Activation("relu", name="conv_act") if plain_act
         else QActivation(quantized_relu(6, 1), name="conv_act"))(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = QDense(16, kernel_quantizer=dense_wq, bias_quantizer=dense_wq, name="dense")(x)
    out = QActivation(quantized_relu(3, 1), name="latent")(x)
    return keras.Model(inp, out)


def test_check_model_reads_the_arch_and_rejects_other_models():
    from qkeras import quantized_bits

    assert _check_model(_odd_encoder(), None) == (3, SMALL)
    assert _check_model(E.build_qkeras_encoder(7, arch=WIDE), 7, WIDE) == (7, WIDE)
    with pytest.raises(FlowError, match=r"has 4 filters, 4-bit weights, 6-bit conv activations, "
                                        r"expected 8 filters, 6-bit weights, 8-bit conv"):
        _check_model(_odd_encoder(), 3, E.ECONT_ARCH)
    with pytest.raises(FlowError, match=r"not the flow's encoder .*expected one weight width"):
        _check_model(_odd_encoder(dense_wq="quantized_bits(6,0,alpha=1)"), None)
    with pytest.raises(FlowError, match=r"not the flow's encoder .*quantizer"):
        _check_model(_odd_encoder(plain_act=True), None)
    with pytest.raises(FlowError, match=r"encoder quantizer input_q: expected the format "
                                        r"ap_ufixed<8,1,AP_RND_CONV,AP_SAT> .*got ap_ufixed<8,2"):
        _check_model(_odd_encoder(input_q=quantized_bits(8, 2, keep_negative=False, alpha=1)), None)
    with pytest.raises(FlowError, match="latent quantizer has 3 bits, expected autoencoder.latent_bits = 5"):
        _check_model(_odd_encoder(), 5)


def test_conversion_refuses_a_model_of_another_arch(tmp_path):
    """The child checks the model against the architecture the precisions were computed for."""
    model = E.build_qkeras_encoder(3, arch=SMALL)
    E.EncoderWeights.random(1, SMALL).set_keras(model)
    model.save(tmp_path / "encoder.h5")
    settings = C.parse_config({}).convert
    with pytest.raises(FlowError, match=r"has 4 filters, 4-bit weights, 6-bit conv activations, expected "
                                        r"8 filters"):
        convert_backend("Vitis", model=tmp_path / "encoder.h5", weights_image=None,
                        projects_dir=tmp_path / "prj", settings=settings, latent_bits=3,
                        log=tmp_path / "c.log")


# ------------------------------------------------ convert + csim, the real stages
def _fabricate(cfg, arch: E.EncoderArch, latent_bits: int) -> E.EncoderWeights:
    """Fake data/emd stages (tests/test_convert.py) and an autoencoder stage exporting a random
    encoder of ``arch`` the way the real one does (encoder.h5, weights.bin + encoder.json,
    weights.mem, weights.npz), run through the real runner."""
    w = E.EncoderWeights.random(WEIGHT_SEED, arch)

    def autoencoder(ctx):
        model = E.build_qkeras_encoder(latent_bits, arch=arch)
        w.set_keras(model)
        model.save(ctx.out / "encoder.h5")
        write_encoder(ctx.out, w, latent_bits)
        (ctx.out / "weights.mem").write_text(w.to_mem())
        np.savez(ctx.out / "weights.npz", conv_w=w.conv_w, conv_b=w.conv_b, dense_w=w.dense_w,
                 dense_b=w.dense_b)

    with pytest.MonkeyPatch.context() as mp:
        for name, body in (("data", _fake_data), ("emd", _fake_emd), ("autoencoder", autoencoder)):
            fake_stage(mp, name, body)
            run_stage(cfg, name, echo=lambda *a: None)
    return w


def _first_mismatches(exp: np.ndarray, got: np.ndarray, k: int = 5) -> list[tuple[int, int, int, int]]:
    rows, cols = np.nonzero(exp != got)
    return [(int(r), int(c), int(exp[r, c]), int(got[r, c])) for r, c in zip(rows[:k], cols[:k], strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "latent_bits"), [(SMALL, 3), (WIDE, 7)],
                         ids=["f4w4a6-lat3", "f16w8a7-lat7"])
def test_csim_is_bit_exact_for_other_archs(tmp_path, arch, latent_bits):
    t0 = time.perf_counter()
    cfg = make_cfg(tmp_path, convert={"backends": ["Vitis"]}, autoencoder={"latent_bits": latent_bits})
    w = _fabricate(cfg, arch, latent_bits)
    run_stage(cfg, "convert", echo=lambda *a: None)
    conv = cfg.stage_dir("convert")
    prj = conv / "hls_projects" / "Vitis"
    meta = json.loads((conv / "vectors_meta.json").read_text())
    assert meta["formats"]["weights"] == arch.weight_fmt.to_ap_string()
    assert meta["formats"]["conv_act"] == arch.conv_act_fmt.to_ap_string()
    project = json.loads((prj / "econt_project.json").read_text())
    layers = {la["name"]: la["precisions"] for la in project["layers"]}
    for name, want in layer_precisions(latent_bits, arch).items():
        for key, prec in want.items():
            if name in layers and key in layers[name]:
                assert FixedFormat.from_ap_string(layers[name][key]) == FixedFormat.from_ap_string(prec)
    text = (prj / "README.md").read_text()
    assert f"Conv2D {arch.filters}x3x3" in text and arch.describe() in text
    assert arch.describe() in (prj / "firmware" / "econt_params.h").read_text()

    # csim: the real stage (compile, every vector file, compare with the files' expectations) ...
    man = run_stage(cfg, "csim", echo=lambda *a: None)
    rep = json.loads((cfg.stage_dir("csim") / "Vitis" / "report.json").read_text())
    assert rep["n_mismatch"] == 0 and man["metrics"]["n_mismatch"] == 0, (
        f"{arch.describe()}, {latent_bits}-bit latents: {rep['n_mismatch']} of {rep['n_total']} vectors "
        f"differ (per field {rep['fields']}); first: {rep['first_mismatches'][:5]}")
    # ... and, directly, the harness's latent codes against golden_encode of its own AEin codes
    n_total, n_mismatch, first = 0, 0, []
    binary = cfg.stage_dir("csim") / "Vitis" / "econt_csim"
    for name in meta["files"]:
        v = read_vectors(conv / name)
        res, _ = simulate(binary, v, latent_bits=latent_bits, n=None, log=tmp_path / f"{name}.log",
                          timeout=300, scratch=tmp_path)
        np.testing.assert_array_equal(res["aein"], v["aein"])
        want = E.golden_encode(res["aein"], w, latent_bits)
        got = res["latent"].astype(np.int64)
        bad = np.any(want != got, axis=1)
        n_total += len(res)
        n_mismatch += int(bad.sum())
        first += [(name, *m) for m in _first_mismatches(want, got)]
    lat = E.golden_encode(read_vectors(conv / "vectors.npz")["aein"], w, latent_bits)
    print(f"\n{arch.describe()}, latent {latent_bits}: n_total={n_total} n_mismatch={n_mismatch} "
          f"(latent codes: {np.mean(lat == 0):.0%} zero, {np.mean(lat == (1 << latent_bits) - 1):.0%} "
          f"saturated) in {time.perf_counter() - t0:.0f} s")
    assert n_total == rep["n_total"] >= 3000
    assert n_mismatch == 0, (f"{arch.describe()}, {latent_bits}-bit latents: {n_mismatch} of {n_total} "
                             f"vectors differ from golden_encode; first (file, vector, latent, expected, "
                             f"got): {first[:5]}")
    # the vectors exercise the arithmetic: zero, in-between and saturated latent codes
    assert (lat == 0).any() and (lat == (1 << latent_bits) - 1).any()
    assert ((lat > 0) & (lat < (1 << latent_bits) - 1)).mean() > 0.05
