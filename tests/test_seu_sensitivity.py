"""SEU sensitivity of the weight bits (golden model + numpy decoder + exact EMD) and the
selective-TMR proposal (flow/cosim/sensitivity.py)."""
import json

import h5py
import numpy as np
import pytest
from fakes import fake_stage

from flow.core import dataset as dataset
from flow.core import encoder as E
from flow.core.encoder_file import write_encoder
from flow.core.geometry import GRID_8X8, N_TC, REMAP_8X8
from flow.cosim import sensitivity as S
from flow.runner import config as C
from flow.runner.manifest import StageContext
from flow.runner.stages import run_stage

QUIET = dict(echo=lambda *a: None)


def zero_weights(**codes) -> E.EncoderWeights:
    parts = {n: np.zeros(s, dtype=np.int64) for n, s in E.REGISTER_LAYOUT}
    parts.update(codes)
    return E.EncoderWeights(**parts)


def small_decoder(seed: int = 0) -> S.NumpyDecoder:
    rng = np.random.default_rng(seed)
    return S.NumpyDecoder(rng.normal(0, 0.3, (16, 128)), rng.normal(0, 0.1, 128),
                          rng.normal(0, 0.3, (3, 3, 8, 8)), rng.normal(0, 0.1, 8),
                          rng.normal(0, 0.3, (3, 3, 1, 8)), np.zeros(1))


def random_wafers(n: int, seed: int):
    rng = np.random.default_rng(seed)
    aein = rng.integers(0, 256, (n, N_TC)) * (rng.random((n, N_TC)) < 0.5)
    aein[:, 0] = np.maximum(aein[:, 0], 1)
    calq = aein * 37 + rng.integers(0, 30, (n, N_TC)) * (aein > 0)
    return aein, calq


def flipped(w: E.EncoderWeights, tensor: str, index: int, bit: int) -> E.EncoderWeights:
    v = w.to_vector().copy()
    i = S._offsets()[tensor] + index
    v[i] = S.flip_code(v[i], bit)
    return E.EncoderWeights.from_vector(v)


# ------------------------------------------------------------- bits
def test_flip_code_and_image_position():
    assert S.flip_code(0, 5) == -32 and S.flip_code(-1, 5) == 31 and S.flip_code(3, 0) == 2
    assert S.flip_code(-32, 4) == -16 and S.flip_code(15, 4) == 31 and S.flip_code(31, 4) == 15
    w = E.EncoderWeights.random(5)
    for tensor, index, bit in (("conv_w", 7, 2), ("conv_b", 3, 5), ("dense_w", 1000, 0), ("dense_b", 15, 4)):
        pos = int(S.image_bit(tensor, index, bit))
        a, b = (int.from_bytes(x.to_image(), "little") for x in (w, flipped(w, tensor, index, bit)))
        assert a ^ b == 1 << pos                       # exactly that bit of the register image


def test_flip_engine_equals_golden_model_on_flipped_weights():
    w = E.EncoderWeights.random(11)
    aein, _ = random_wafers(200, 1)
    eng = S.FlipEngine(w, aein)
    assert np.array_equal(eng.latent, E.golden_encode(aein, w))
    for tensor, index, bit in S.select_bits(2, 3)[::5]:
        want = E.golden_encode(aein, flipped(w, tensor, index, bit))
        assert np.array_equal(eng.flipped_latent(tensor, index, bit), want), (tensor, index, bit)
        if tensor == "dense_w":
            col, j = eng.dense_w_latent_columns([index], bit)
            assert np.array_equal(col[:, 0], want[:, j[0]])


def test_select_bits_small_tensors_whole_dense_sampled():
    flips = S.select_bits(3, 0)
    assert len(flips) == (72 + 8 + 16) * 6 + 3 * 6
    assert len(set(flips)) == len(flips) and flips == S.select_bits(3, 0)
    assert len(S.select_bits(0, 0)) == E.IMAGE_BITS


# ------------------------------------------------------------- decoder
def test_numpy_decoder_shapes_and_h5_roundtrip(tmp_path):
    d = small_decoder(2)
    z = np.random.default_rng(0).random((7, 16))
    y = d(z)
    assert y.shape == (7, 48) and np.all((y > 0) & (y < 1))
    zero = S.NumpyDecoder(*(np.zeros_like(a) for a in (d.dense_w, d.dense_b, d.ct1_w, d.ct1_b,
                                                         d.ct2_w, d.ct2_b)))
    assert np.array_equal(zero(z), np.full((7, 48), 0.5))
    path = tmp_path / "decoder.h5"
    write_decoder_h5(path, d)
    d32 = S.NumpyDecoder(*(a.astype(np.float32) for a in (d.dense_w, d.dense_b, d.ct1_w, d.ct1_b,
                                                          d.ct2_w, d.ct2_b)))     # what h5 stores
    assert np.array_equal(S.NumpyDecoder.from_h5(path)(z), d32(z))


def test_numpy_decoder_transposed_convolution_by_hand():
    """One active dense unit -> one 4x4x8 pixel; check where its taps land on the 8x8 image."""
    dense_w = np.zeros((16, 128))
    dense_w[0, (1 * 4 + 2) * 8 + 0] = 1.0              # latent 0 -> pixel (1, 2), channel 0
    ct1 = np.zeros((3, 3, 8, 8))
    ct1[2, 0, 0, 0] = 1.0                              # tap (2, 0): output (2*1+2, 2*2+0) = (4, 4)
    ct2 = np.zeros((3, 3, 1, 8))
    ct2[1, 1, 0, 0] = 1.0                              # centre tap: identity
    d = S.NumpyDecoder(dense_w, np.zeros(128), ct1, np.zeros(8), ct2, np.zeros(1))
    img = np.full(64, 0.5)
    img[4 * 8 + 4] = 1 / (1 + np.exp(-3.0))
    z = np.zeros((1, 16))
    z[0, 0] = 3.0
    assert np.allclose(d(z)[0], img[REMAP_8X8])


# --------------------------------------------------------- measurement
def test_flip_of_a_weight_on_an_always_zero_input_changes_nothing():
    """Filter 2 is dead (non-positive weights and bias: its ReLU output is always 0), so a
    dense weight reading it multiplies zero; the wafers are zero at every odd (row, column),
    so conv tap (1, 1) only ever sees zeros.  Their flips change nothing at all."""
    rng = np.random.default_rng(4)
    w = E.EncoderWeights.random(8)
    conv_w = w.conv_w.copy()
    conv_w[..., 2] = -np.abs(conv_w[..., 2])
    conv_b = w.conv_b.copy()
    conv_b[2] = -5
    w = zero_weights(conv_w=conv_w, conv_b=conv_b, dense_w=w.dense_w, dense_b=w.dense_b)
    even = [int(GRID_8X8[r, c]) for r in range(0, 8, 2) for c in range(0, 8, 2) if GRID_8X8[r, c] >= 0]
    assert len(even) >= 8
    aein = np.zeros((60, N_TC), dtype=np.int64)
    aein[:, even] = rng.integers(0, 256, (60, len(even)))
    aein[:, even[0]] += 1
    calq = aein * 100
    k = (1 * 4 + 3) * 8 + 2                                        # dense row of filter 2 at (1, 3)
    tap_11 = [int(np.ravel_multi_index((1, 1, 0, f), E.CONV_W_SHAPE)) for f in (0, 5)]
    flips = [("dense_w", k * 16 + j, b) for j in (0, 9) for b in (5, 3, 0)]
    flips += [("conv_w", i, b) for i in tap_11 for b in (5, 0)]
    flips += [("dense_w", 0 * 16 + 1, 5)]                          # a live one, for contrast
    m = S.measure(w, small_decoder(1), aein, calq, flips)
    cols = m["columns"]
    for key in ("delta_median_emd", "mean_delta_emd", "max_delta_emd", "frac_latent_changed"):
        assert np.all(cols[key][:-1] == 0.0), key
    assert cols["frac_latent_changed"][-1] > 0


def test_dense_bias_msb_flip_is_the_hand_computed_latent_code():
    """All weights 0 except dense bias 3 = -1 (code 0b111111): every latent is 0.  Flipping
    its MSB (the sign) gives code 0b011111 = 31, value 31/32; the latent ReLU ufixed<9,1>
    (8 fractional bits) gives code 31/32 * 256 = 248 for latent 3 of every wafer."""
    dense_b = np.zeros(16, dtype=np.int64)
    dense_b[3] = -1
    w = zero_weights(dense_b=dense_b)
    aein, calq = random_wafers(30, 2)
    eng = S.FlipEngine(w, aein)
    assert not eng.latent.any()
    lat = eng.flipped_latent("dense_b", 3, 5)
    want = np.zeros((30, 16), dtype=np.int64)
    want[:, 3] = 248
    assert np.array_equal(lat, want)
    assert np.array_equal(E.golden_encode(aein, flipped(w, "dense_b", 3, 5)), want)
    assert np.array_equal(S.FlipEngine(w, aein, latent_bits=7).flipped_latent("dense_b", 3, 5)[:, 3],
                          np.full(30, 62))               # 7 bits: 6 fractional, 31/32 * 64
    m = S.measure(w, small_decoder(3), aein, calq, [("dense_b", 3, 5), ("dense_b", 3, 0)])
    assert m["columns"]["frac_latent_changed"].tolist() == [1.0, 0.0]   # -1 -> -2: still ReLU 0


# ---------------------------------------------------------- selection
def test_greedy_protect_hand_table():
    damage = [5.0, 4.0, 3.0, 0.5, 0.0]
    cost = [2.0, 1.0, 3.0, 1.0, 1.0]
    # damage / cost: 2.5, 4, 1, 0.5, 0 -> take 1 (spent 1), 0 (3); 2 does not fit; 3 fits at 4
    assert S.greedy_protect(damage, cost, 3.0).tolist() == [True, True, False, False, False]
    assert S.greedy_protect(damage, cost, 4.0).tolist() == [True, True, False, True, False]
    assert S.greedy_protect(damage, cost, 100.0).tolist() == [True, True, True, True, False]
    assert not S.greedy_protect(damage, cost, 0.5).any()
    # ties by register order; a zero-damage item is never taken
    assert S.greedy_protect([1.0, 1.0, 1.0], 1.0, 2.0).tolist() == [True, True, False]
    assert S.residual_damage(damage, [True, True, False, True, False]) == pytest.approx(3.0 / 5)


def test_tmr_proposal_residual_at_zero_and_full_budget():
    rng = np.random.default_rng(0)
    d = rng.exponential(1.0, E.IMAGE_BITS) * (rng.random(E.IMAGE_BITS) < 0.8)
    cls = np.arange(E.IMAGE_BITS) % 24
    p = S.tmr_proposal(d, cls, [0.0, 0.05, 1.0], voter_flops=0.5)
    b0, b5, b100 = p["budgets"]
    assert b0["n_protected"] == 0 and b0["residual_damage"] == pytest.approx(d.mean())
    assert p["damage_no_tmr"] == pytest.approx(d.mean()) and p["damage_full_tmr"] == 0.0
    assert b100["residual_damage"] == 0.0 and b100["n_protected"] == int((d > 0).sum())
    assert b100["class_level"]["residual_damage"] == 0.0
    k = int(np.floor(0.05 * E.IMAGE_BITS))
    assert b5["n_protected"] == k and b5["extra_flops"] == 2 * k and b5["voters"] == k
    assert b5["flop_equivalents"] == pytest.approx(2.5 * k)
    assert b5["residual_damage"] == pytest.approx(np.sort(d)[::-1][k:].sum() / E.IMAGE_BITS)
    assert p["ranking_image_bits"][:k] == np.argsort(-d, kind="stable")[:k].tolist()
    assert sum(b5["protected_by_class"].values()) == k


def test_full_damage_extrapolates_the_class_mean():
    flips = S.select_bits(2, 1)
    dmg = np.arange(len(flips), dtype=np.float64)
    all_d, cls = S.full_damage(flips, dmg)
    assert np.all(np.isfinite(all_d)) and len(all_d) == E.IMAGE_BITS
    sampled = [(i, f) for i, f in enumerate(flips) if f[0] == "dense_w" and f[2] == 4]
    other = S.image_bit("dense_w", next(i for i in range(2048) if i not in {f[1] for _, f in sampled}), 4)
    assert all_d[other] == pytest.approx(np.mean([dmg[i] for i, _ in sampled]))
    assert all_d[S.image_bit("conv_b", 2, 1)] == dmg[flips.index(("conv_b", 2, 1))]


# --------------------------------------------------------- end to end
def test_analyse_small_end_to_end(tmp_path):
    aein, calq = random_wafers(40, 5)
    res = S.analyse(E.EncoderWeights.random(3), small_decoder(4), aein, calq, n_wafers=16,
                    n_bits_per_class=1, budgets=(0.1, 1.0), seed=2)
    json.dumps(res)
    assert res["n_wafers"] == 16 and res["cost"]["n_flips"] == 576 + 6
    assert len(res["classes"]) == 24 and {c["n_measured"] for c in res["classes"]} == {1, 8, 16, 72}
    assert res["tmr"]["budgets"][-1]["residual_damage"] == 0.0
    assert len(res["bits"]["image_bit"]) == 582
    files = S.plot(res, tmp_path)
    assert all((tmp_path / f).stat().st_size > 1000 for f in files)


def write_decoder_h5(path, d: S.NumpyDecoder) -> None:
    """The Keras HDF5 layout of ``decoder.h5`` (only what :meth:`NumpyDecoder.from_h5` reads)."""
    with h5py.File(path, "w") as f:
        for layer, (k, b) in (("dec_dense", (d.dense_w, d.dense_b)), ("dec_convt1", (d.ct1_w, d.ct1_b)),
                              ("dec_convt2", (d.ct2_w, d.ct2_b))):
            g = f.create_group(f"model_weights/{layer}/{layer}")
            g["kernel:0"] = k.astype(np.float32)
            g["bias:0"] = b.astype(np.float32)


def test_cosim_hook_writes_results_and_records_upstreams(tmp_path, monkeypatch):
    w = E.EncoderWeights.random(6)
    aein, calq = random_wafers(50, 6)

    def data(ctx):
        arrays = {k: np.zeros(len(aein) if k not in ("words", "calq", "aein") else (len(aein), N_TC), dt)
                  for k, dt in dataset.NPZ_DTYPES.items()}
        arrays.update(aein=aein.astype(np.uint8), calq=calq.astype(np.int32))
        dataset.write_split(ctx.out / dataset.split_file("test"), arrays, compress=False)

    def autoencoder(ctx):
        write_encoder(ctx.out, w, 7)                   # the latent width comes from encoder.json
        write_decoder_h5(ctx.out / "decoder.h5", small_decoder(7))
    fake_stage(monkeypatch, "data", data)
    fake_stage(monkeypatch, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))
    fake_stage(monkeypatch, "autoencoder", autoencoder)
    cfg = C.parse_config({"name": "seu", "workdir": str(tmp_path), "seed": 1,
                          "cosim": {"seu_sensitivity": {"n_wafers": 12, "n_bits_per_class": 1,
                                                        "workers": 1, "budgets": [0.1]}}})
    for st in ("data", "emd", "autoencoder"):
        run_stage(cfg, st, **QUIET)
    out = tmp_path / "cosim_out"
    out.mkdir()
    ctx = StageContext(cfg=cfg, stage="cosim", out=out, upstream={}, checkpoint_dir=tmp_path)
    res = S.run_in_stage(ctx)
    assert set(ctx.upstream) == {"autoencoder", "data"}
    saved = json.loads((out / "seu" / "seu_sensitivity.json").read_text())
    assert saved["schema"] == S.SCHEMA and saved["n_wafers"] == 12 == res["n_wafers"]
    assert saved["latent_bits"] == 7 and saved["cost"]["workers"] == 1
    assert (out / "seu" / "seu_sensitivity_map.png").is_file()
    m = ctx.metrics["seu_sensitivity"]
    assert m["worst_class"] and set(m["residual_fraction"]) == {"0.1"}
    _report_section_shows(out, saved, tmp_path)
    off = C.parse_config({"name": "seu", "workdir": str(tmp_path), "seed": 1,
                          "cosim": {"seu_sensitivity": {"enabled": False}}})
    ctx2 = StageContext(cfg=off, stage="cosim", out=out, upstream={}, checkpoint_dir=tmp_path)
    assert S.run_in_stage(ctx2) is None and ctx2.upstream == {}


def test_config_rejects_bad_budgets():
    from flow.runner.errors import ConfigError

    with pytest.raises(ConfigError, match="budgets"):
        C.parse_config({"cosim": {"seu_sensitivity": {"budgets": [1.5]}}})
    with pytest.raises(ConfigError, match="metric"):
        C.parse_config({"cosim": {"seu_sensitivity": {"metric": "max"}}})


def _report_section_shows(out, saved, tmp_path):
    """The report's SEU section renders these results: one row per class, one per budget,
    both plots with the captions the hook wrote."""
    from flow.report import sections as RS
    from flow.report.doc import Figure, Table
    from flow.report.inputs import Figures
    from flow.report.render import render_html, render_md

    class Up:                                    # the cosim artifact, as the report reads it
        def json(self, stage, rel):
            return json.loads((out / rel).read_text())

        def config(self, stage):
            return {}

        def has(self, stage, rel):
            return (out / rel).is_file()

        def path(self, stage, rel):
            return out / rel

    figs = Figures(tmp_path / "report")
    sec = RS.seu(Up(), figs)
    tables = {b.id: b for b in sec.blocks if isinstance(b, Table)}
    assert len(tables["seu-classes"].rows) == len(saved["classes"])
    assert len(tables["seu-tmr"].rows) == len(saved["tmr"]["budgets"]) == 1
    shown = [f for b in sec.blocks if isinstance(b, list) for f in b if isinstance(f, Figure)]
    names = ("seu_sensitivity_map.png", "seu_tmr_curve.png")
    assert [f.caption for f in shown] == [S.CAPTIONS[n] for n in names]
    # and the page renders it (HTML and Markdown), figures included
    page = render_html("t", "PASS", "", "", "today", "seu", [sec])
    md = render_md("t", "PASS", "", "", [sec])
    assert 'id="tbl-seu-classes"' in page and page.count("<img") == 2 and "seu-tmr" in page
    assert "Selective TMR proposal" in md
