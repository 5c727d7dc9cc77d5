"""The autoencoder's Keras models and their inputs, shared by the autoencoder stage
(training), the physics stage (decoding the latent codes) and the tests: the float
decoder, the training model around the quantized encoder (:mod:`flow.core.encoder`),
the conditional decoder's side inputs and the model inputs of a dataset split.

TensorFlow is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

import numpy as np

from flow.core import encoder as E
from flow.core.geometry import REMAP_8X8, to_8x8

#: decoder variants: ``plain`` sees the 16 latent values; ``conditional`` also the
#: module sum, the layer and |eta| of the wafer, which the back end knows
DECODERS = ("plain", "conditional")
#: conditioning inputs of the conditional decoder (all in about [0, 1])
N_COND = 3


def build_decoder(latent: int = E.N_LATENT, name: str = "decoder"):
    """Float decoder (training only): Dense 128 -> 4x4x8 -> ConvT 8 3x3/2 -> ConvT 1 3x3 -> sigmoid."""
    from tensorflow import keras

    inp = keras.Input((latent,), name="latent_in")
    x = keras.layers.Dense(128, activation="relu", name="dec_dense")(inp)
    x = keras.layers.Reshape((4, 4, 8), name="dec_reshape")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu",
                                     name="dec_convt1")(x)
    x = keras.layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid", name="dec_convt2")(x)
    return keras.Model(inp, x, name=name)


def gather_tc(img):
    """TF: ``(N, 8, 8, 1)`` encoding-A image -> ``(N, 48)`` TC order (dead positions dropped)."""
    import tensorflow as tf

    return tf.gather(tf.reshape(img, (-1, 64)), tf.constant(REMAP_8X8, tf.int32), axis=1)


def build_autoencoder(latent_bits: int, decoder: str = "plain", arch: E.EncoderArch = E.ECONT_ARCH):
    """(training model, encoder, decoder); the encoder of architecture ``arch`` (default: the
    ECON-T's), the decoder the same for every architecture.

    ``plain``: ``8x8x1 -> 48``.  ``conditional``: inputs ``[8x8x1, (N_COND,)]``; the
    decoder's input is the 16 latent values followed by the ``N_COND`` conditions
    (:func:`conditions`).  The encoder (the on-chip part) is the same in both.
    """
    from tensorflow import keras

    enc = E.build_qkeras_encoder(latent_bits, arch=arch)
    inp = keras.Input((8, 8, 1), name="aein")
    if decoder == "plain":
        dec = build_decoder()
        out = keras.layers.Lambda(gather_tc, name="to_tc")(dec(enc(inp)))
        return keras.Model(inp, out, name="autoencoder"), enc, dec
    cond = keras.Input((N_COND,), name="conditions")
    dec = build_decoder(E.N_LATENT + N_COND, name="decoder_conditional")
    z = keras.layers.Concatenate(name="latent_and_conditions")([enc(inp), cond])
    out = keras.layers.Lambda(gather_tc, name="to_tc")(dec(z))
    return keras.Model([inp, cond], out, name="autoencoder_conditional"), enc, dec


def conditions(split: dict) -> np.ndarray:
    """The conditional decoder's extra inputs ``(N, 3)`` float32: log2(1 + module sum) / 35
    (the module sum decoded from its 9-bit code to its bin's lower edge, as the back end
    decodes it; the largest code decodes to about 2^35), (layer - 1) / 27 and
    (|eta| - 1.5) / 1.5."""
    from flow.core.frontend import decode_sum

    s = decode_sum(split["sum_code"]).astype(np.float64)
    c = np.stack([np.log2(1.0 + s) / 35.0, (split["layer"].astype(np.float64) - 1.0) / 27.0,
                  (np.abs(split["eta"].astype(np.float64)) - 1.5) / 1.5], axis=1)
    return c.astype(np.float32)


def model_inputs(split: dict, decoder: str = "plain") -> tuple:
    """(model inputs, unit-sum 48-cell targets) for a split: AEin values as 8x8x1
    images (plus the conditions for the conditional decoder)."""
    v = split["aein"].astype(np.float32) * np.float32(E.INPUT_FMT.lsb)
    x = to_8x8(v)[..., None]
    t = (v / v.sum(-1, keepdims=True)).astype(np.float32)
    return (x if decoder == "plain" else [x, conditions(split)]), t
