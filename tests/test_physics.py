"""ECON-T output algorithms (bit budgets, integer frames) and the trigger reconstruction."""
from __future__ import annotations

import json

import numpy as np
import pytest

from flow.core import algorithms as A
from flow.core import frontend as frontend
from flow.core import reco as R
from flow.core.captions import read_captions
from flow.core.generator import Detector
from flow.core.geometry import N_TC
from flow.runner.errors import InputRangeError, StageInputError


def _wafers(seed: int = 1, n: int = 400) -> np.ndarray:
    """Random sparse and dense wafers plus the corner cases (empty, full scale, one-hot)."""
    rng = np.random.default_rng(seed)
    occ = rng.random((n, N_TC)) < rng.uniform(0.02, 1.0, (n, 1))
    calq = np.where(occ, np.exp(rng.uniform(0, np.log(2 ** 22 - 1), (n, N_TC))), 0).astype(np.int64)
    corners = [np.zeros(N_TC, np.int64), np.full(N_TC, 2 ** 22 - 1, np.int64)]
    corners += [np.eye(N_TC, dtype=np.int64)[t] * 5000 for t in (0, 17, 47)]
    return np.concatenate([calq, np.stack(corners)])


def _bits(value: int, width: int) -> str:
    assert 0 <= value < 2 ** width
    return format(value, f"0{width}b")


def _frame_str(fr: A.Frames, i: int) -> str:
    return "".join(str(b) for b in fr.bits[i, :fr.nbits[i]])


# ------------------------------------------------------------- float codes
def test_float_codes_match_the_front_end_and_decode_to_their_bin():
    v = np.arange(0, 300_000)
    np.testing.assert_array_equal(A.encode_float(v, 4, 3), frontend.encode_charges(v))
    np.testing.assert_array_equal(A.encode_float(v, 5, 4), frontend.encode_sum(v))
    for e, m in ((4, 3), (5, 3), (5, 4)):
        codes = np.arange(2 ** (e + m))
        mid = A.decode_float(codes, e, m)
        np.testing.assert_array_equal(A.encode_float(mid, e, m), codes)   # midpoint in its bin
        assert np.all(np.diff(mid) > 0)
    assert int(A.encode_float(100, 5, 4)) == 57            # docs/reference.md section 4 example
    assert int(A.encode_float(2 ** 40, 4, 3)) == 127       # saturates to all ones


# ----------------------------------------------------------------- budgets
@pytest.mark.parametrize("elinks", A.ELINKS)
def test_every_algorithm_stays_within_the_budget(elinks):
    calq = _wafers()
    budget = 32 * elinks
    for alg in A.ALGORITHMS:
        thr = 35 if alg == "threshold_sum" else None
        fr = A.encode(alg, calq, elinks, threshold=thr)
        worst = A.frame_bits(alg, elinks)
        assert fr.nbits.max() <= worst
        if alg == "uncompressed":
            assert worst == 48 * 22 and (fr.nbits == worst).all()
            continue
        assert worst <= budget, (alg, elinks, worst, budget)
        if alg != "threshold_sum":                     # fixed-length formats
            assert (fr.nbits == worst).all()
        assert not fr.bits[np.arange(fr.bits.shape[1]) >= fr.nbits[:, None]].any()  # zero padding
    assert A.ae_frame_bits(elinks) == 4 + 9 + 16 * A.AE_LATENT_BITS[elinks] <= budget


def test_budget_table_numbers():
    rows = {r["elinks"]: r for r in A.budget_table()}
    assert [rows[e]["autoencoder"] for e in A.ELINKS] == [61, 93, 125, 157]
    assert [rows[e]["best_choice"] for e in A.ELINKS] == [64, 90, 123, 158]
    assert [rows[e]["best_choice_n_tc"] for e in A.ELINKS] == [4, 6, 9, 14]
    assert [rows[e]["threshold_sum_max_tcs"] for e in A.ELINKS] == [3, 5, 9, 13]
    assert [rows[e]["stc4"] for e in A.ELINKS] == [58, 94, 112, 136]
    assert all(rows[e]["stc16"] == 43 for e in A.ELINKS)


def test_uncompressed_is_lossless():
    calq = _wafers(2)
    fr = A.encode_uncompressed(calq)
    np.testing.assert_array_equal(A.decode_uncompressed(fr), calq)
    assert fr.as_ints()[-3] == 5000 << (22 * 47)           # one-hot TC 0: first 22 bits


# ------------------------------------------------------------- best choice
def test_best_choice_keeps_exactly_the_n_largest_and_its_frame():
    calq = np.zeros((1, N_TC), np.int64)
    calq[0, [5, 17, 30, 41, 2, 44]] = [800, 1608, 80, 4000, 1600, 8]
    fr = A.encode_best_choice(calq, 2, drop=3)               # N = 4, addresses
    q = calq[0] >> 3                                           # 100, 201, 10, 500, 200, 1
    kept = [2, 5, 17, 41]                                      # the 4 largest, ascending TC index
    np.testing.assert_array_equal(A.best_choice_select(calq, 4), [kept])
    rest = int(q.sum() - q[kept].sum())                        # 10 + 1: not-sent sum
    want = (_bits(0, 4) + _bits(int(A.encode_float(rest, 5, 3)), 8)
            + "".join(_bits(t, 6) for t in kept)
            + "".join(_bits(int(A.encode_float(q[t], 4, 3)), 7) for t in kept))
    assert _frame_str(fr, 0) == want and len(want) == 64
    dec = A.decode_best_choice(fr, 2, drop=3)
    for t in kept:                                             # bin midpoints, back in CALQ units
        assert dec[0, t] == int(A.decode_float(A.encode_float(q[t], 4, 3), 4, 3)) << 3
    others = np.setdiff1d(np.arange(N_TC), kept)
    assert dec[0, others].sum() == (int(A.decode_float(A.encode_float(rest, 5, 3), 5, 3) << 3)
                                    // 44) * 44


def test_best_choice_ties_go_to_the_lower_tc_index_and_map_mode():
    calq = np.zeros((1, N_TC), np.int64)
    calq[0, [40, 7, 3, 20, 33]] = 800                          # five equal charges, N = 4
    np.testing.assert_array_equal(A.best_choice_select(calq, 4), [[3, 7, 20, 33]])
    calq = np.arange(N_TC, dtype=np.int64)[None] * 64          # distinct, 4 eLinks: N = 9, map
    fr = A.encode_best_choice(calq, 4, drop=3)
    s = _frame_str(fr, 0)
    assert s[12:60] == "0" * 39 + "1" * 9                      # the 9 largest: TCs 39..47
    dec = A.decode_best_choice(fr, 4, drop=3)
    assert (dec[0, 39:] > 0).all() and len(s) == 123


# ----------------------------------------------------------- threshold sum
def test_threshold_sum_frames_address_map_and_truncated():
    calq = np.zeros((3, N_TC), np.int64)
    calq[0, [3, 10, 11]] = [500, 900, 20]                      # 2 above 100: address mode
    calq[1, :10] = np.arange(10) * 100 + 200                   # 10 above: map mode
    calq[2, :] = 1000                                          # 48 above: truncated at 5 eLinks
    fr = A.encode_threshold_sum(calq, 5, 100, drop=3)
    want0 = (_bits(0, 5) + "010" + _bits(int(A.encode_float(20, 5, 3)), 8) + _bits(2, 3)
             + _bits(3, 6) + _bits(10, 6) + _bits(int(A.encode_float(500 >> 3, 4, 3)), 7)
             + _bits(int(A.encode_float(900 >> 3, 4, 3)), 7))
    assert _frame_str(fr, 0) == want0
    s1 = _frame_str(fr, 1)
    assert s1[5:8] == "100" and s1[16:64] == "1" * 10 + "0" * 38 and len(s1) == 16 + 48 + 70
    s2 = _frame_str(fr, 2)
    assert s2 == _bits(0, 5) + "110" + _bits(int(A.encode_float(48000, 5, 3)), 8)
    dec = A.decode_threshold_sum(fr, 5, drop=3)
    assert dec[0, 3] == int(A.decode_float(A.encode_float(500 >> 3, 4, 3), 4, 3)) << 3
    assert dec[0, 11] == 0 and dec[0, 12] == 0                 # 20 spread over 46 TCs: 0 each
    np.testing.assert_array_equal(dec[1, 10:], 0)
    assert (dec[2] == dec[2, 0]).all() and abs(dec[2].sum() - 48000) < 48000 * 0.07
    # the same wafers at 2 eLinks: at most 3 TCs fit, so row 1 is truncated too
    fr2 = A.encode_threshold_sum(calq, 2, 100, drop=3)
    assert fr2.nbits.tolist() == [45, 16, 16] and fr2.nbits.max() <= 64


def test_threshold_choice_is_the_smallest_grid_value_meeting_the_target():
    rng = np.random.default_rng(3)
    eta = rng.uniform(1.6, 2.9, 2000)
    mipt = np.exp(rng.normal(-0.5, 1.2, (2000, N_TC)))             # TC E_T in MIP_T
    calq = np.floor(mipt * 35 * np.cosh(eta)[:, None]).astype(np.int64)
    grid = (0.5, 1.0, 2.0, 4.0, 8.0)
    trunc = lambda t: np.mean((calq >= A.threshold_counts(t, eta)[:, None]).sum(1)  # noqa: E731
                              > A.ts_max_tcs(3))
    t = A.choose_threshold(calq, 3, eta, max_truncated=0.05, grid_mipt=grid)
    assert trunc(t) <= 0.05 and t > grid[0]
    assert trunc(grid[grid.index(t) - 1]) > 0.05
    assert A.choose_threshold(calq, 3, eta, max_truncated=0.0, grid_mipt=(0.1, 0.2)) == 0.2


# ---------------------------------------------------- super trigger cells
def test_stc_groups_sums_addresses_and_frames():
    assert sorted(A.STC4_GROUPS.ravel().tolist()) == list(range(N_TC))   # a tiling
    calq = np.zeros((1, N_TC), np.int64)
    g0 = A.STC4_GROUPS[0]
    calq[0, g0] = [10, 300, 300, 5]                           # tie: the last position wins
    sums, addr = A.stc_sums(calq, A.STC4_GROUPS)
    assert sums[0, 0] == 615 and addr[0, 0] == 2
    fr = A.encode_stc(calq, 5, "stc4", drop=3)                 # 12 groups x (2 + 9)
    s = _frame_str(fr, 0)
    assert len(s) == 136 and s[4:6] == "10" and s[28:37] == _bits(int(A.encode_float(615, 5, 4)), 9)
    dec = A.decode_stc(fr, 5, "stc4", drop=3)
    assert dec[0, g0[2]] == A.decode_float(A.encode_float(615, 5, 4), 5, 4) and dec[0].sum() == dec[0, g0[2]]
    # 2 eLinks: 6 groups with 7-bit sums; a charge in group 11 is not sent
    calq[0, A.STC4_GROUPS[11][0]] = 4000
    dec2 = A.decode_stc(A.encode_stc(calq, 2, "stc4", drop=3), 2, "stc4", drop=3)
    assert dec2[0, A.STC4_GROUPS[11]].sum() == 0 and dec2[0, g0[2]] > 0
    fr16 = A.encode_stc(calq, 2, "stc16", drop=3)
    d16 = A.decode_stc(fr16, 2, "stc16", drop=3)
    assert fr16.nbits[0] == 43 and d16[0, A.STC4_GROUPS[11][0]] > 0


# ------------------------------------------------------------- autoencoder
@pytest.mark.parametrize("elinks", A.ELINKS)
def test_autoencoder_frame_roundtrip_and_decode(elinks):
    rng = np.random.default_rng(elinks)
    b = A.AE_LATENT_BITS[elinks]
    lat = rng.integers(0, 2 ** b, (50, 16))
    sums = rng.integers(0, 512, 50)
    fr = A.encode_ae_frame(lat, sums, elinks)
    assert (fr.nbits == A.ae_frame_bits(elinks)).all() and fr.nbits[0] <= 32 * elinks
    lat2, sums2 = A.decode_ae_frame(fr, elinks)
    np.testing.assert_array_equal(lat2, lat)
    np.testing.assert_array_equal(sums2, sums)
    seen = []
    uniform = lambda x: seen.append(x) or np.ones((len(x), 8, 8, 1))  # noqa: E731
    e = A.decode_autoencoder(lat, sums, uniform, elinks)
    np.testing.assert_allclose(seen[0], lat / 2 ** (b - 1))    # ufixed<b,1> values
    np.testing.assert_allclose(e.sum(1), A.decode_float(sums, 5, 4))
    np.testing.assert_allclose(e[:, 0], A.decode_float(sums, 5, 4) / 48)
    with pytest.raises(InputRangeError):
        A.encode_ae_frame(lat + 2 ** b, sums, elinks)          # a code wider than b bits
    side = rng.random((50, 3))                                  # a conditional decoder's inputs
    got = []
    A.decode_autoencoder(lat, sums, lambda x: got.append(x) or np.ones((len(x), 48)), elinks,
                         conditions=side)
    assert got[0].shape == (50, 19)
    np.testing.assert_allclose(got[0][:, 16:], side.astype(np.float32))


# ---------------------------------------------------------- reconstruction
_DET = Detector()
_LAYERS = np.arange(1, 28, 2)
_PROFILE = np.exp(-0.5 * ((_LAYERS - 9.0) / 5.0) ** 2)
_PROFILE /= _PROFILE.sum()


def _electron_event(ev: int, pt: float, eta: float, phi: float, *, mip_t_per_gev: float = 40.0):
    """Wafers of one hand-placed electron, no pileup: in each layer, E_T = profile x pT is put
    in the TC hit by the axis (70 %) and spread over its wafer's other TCs within 3 cm (30 %)."""
    rows = {}
    for layer, f in zip(_LAYERS, _PROFILE, strict=True):
        z = float(_DET.z(layer))
        rho = z / np.sinh(abs(eta))
        x, y = rho * np.cos(phi), rho * np.sin(phi)
        wu, wv, tc = (int(a[0]) for a in _DET.locate(np.asarray([x]), np.asarray([y])))
        tx, ty = _DET.tc_positions(np.asarray(wu), np.asarray(wv))
        d = np.hypot(tx - x, ty - y)
        share = np.where(np.arange(N_TC) == tc, 0.7, 0.0)
        near = (d < 3.0) & (np.arange(N_TC) != tc)
        share = share + np.where(near, 0.3 / max(near.sum(), 1), 0.0)
        if not near.any():
            share[tc] = 1.0
        teta = np.arcsinh(z / np.hypot(tx, ty))
        calq = np.round(share * f * pt * mip_t_per_gev * frontend.MIPT_CALQ * np.cosh(teta))
        rows[(layer, wu, wv)] = calq
    n = len(rows)
    keys = list(rows)
    return {"event": np.full(n, ev), "layer": np.asarray([k[0] for k in keys]),
            "waferu": np.asarray([k[1] for k in keys]), "waferv": np.asarray([k[2] for k in keys]),
            "zside": np.full(n, 1 if eta > 0 else -1), "gen_pt": np.full(n, pt, np.float32),
            "gen_eta": np.full(n, eta, np.float32), "gen_phi": np.full(n, phi, np.float32),
            "calq": np.stack([rows[k] for k in keys]).astype(np.int64)}


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_single_hand_placed_electron_recovers_its_pt_after_calibration():
    rng = np.random.default_rng(5)
    train = _concat([_electron_event(i, rng.uniform(5, 40), rng.choice([-1, 1]) * rng.uniform(1.65, 2.85),
                                     rng.uniform(-np.pi, np.pi)) for i in range(300)])
    cl_train, skips = R.cluster(train, train["calq"], _DET)
    assert skips == {"no_gen": 0} and cl_train.matched.all()
    cal = R.fit_calibration(cl_train)
    test = _electron_event(7, 23.0, -2.05, 0.4)
    cl, _ = R.cluster(test, test["calq"], _DET)
    assert cl.matched.all()
    assert abs(cl.eta[0] - (-2.05)) < 0.01 and abs(R.delta_phi(cl.phi[0], 0.4)) < 0.01
    raw = cl.raw_et[0] / 40.0
    assert abs(raw / 23.0 - 1) < 0.05                      # energy is inside the cluster
    pt = cal.apply(cl)[0]
    assert abs(pt / 23.0 - 1) < 0.01, pt


def test_autoencoder_decode_path_with_a_perfect_decoder_recovers_the_pt():
    """Decoder output = the wafer's true charge fractions: the AE path (fractions x decoded
    9-bit module sum) then loses only the module-sum quantisation."""
    rng = np.random.default_rng(6)
    evs = [_electron_event(i, rng.uniform(5, 40), rng.uniform(1.65, 2.85), rng.uniform(-3, 3))
           for i in range(300)]
    train = _concat(evs)
    test = _electron_event(7, 23.0, 2.05, 0.4)

    def via_ae(sp):
        calq = sp["calq"]
        sums = frontend.encode_sum(calq.sum(1))
        lat = np.zeros((len(calq), 16), np.int64)
        return A.decode_autoencoder(lat, sums, lambda x: calq.astype(np.float64), 5)

    e_tr = via_ae(train)
    assert np.all(np.abs(e_tr.sum(1) / train["calq"].sum(1) - 1) <= 1 / 32)  # 5E4M half-bin
    cal = R.fit_calibration(R.cluster(train, e_tr, _DET)[0])
    cl, _ = R.cluster(test, via_ae(test), _DET)
    assert abs(cal.apply(cl)[0] / 23.0 - 1) < 0.02


def test_cluster_skips_events_without_a_generated_electron_and_needs_gen_phi():
    a = _electron_event(1, 20.0, 2.2, 1.0)
    b = _electron_event(2, 20.0, 2.2, 1.0)
    b["gen_pt"][:] = np.nan
    both = _concat([a, b])
    cl, skips = R.cluster(both, both["calq"], _DET)
    assert skips["no_gen"] == 1 and cl.event.tolist() == [1]
    del both["gen_phi"]
    with pytest.raises(StageInputError, match="gen_phi"):
        R.cluster(both, both["calq"], _DET)


def test_cluster_ignores_energy_far_from_the_electron():
    a = _electron_event(1, 20.0, 2.2, 1.0)
    far = _electron_event(1, 3.0, 2.2, -2.0)                 # same event, another place
    ev = _concat([a, far])
    cl, _ = R.cluster(ev, ev["calq"], _DET)
    cl_a, _ = R.cluster(a, a["calq"], _DET)
    np.testing.assert_allclose(cl.raw_et, cl_a.raw_et)
    assert cl.matched.all()


# -------------------------------------------------------------- resolution
def test_effective_rms_on_known_distributions():
    assert R.effective_rms(np.arange(100)) == 33.5           # 68 values span 67
    rng = np.random.default_rng(0)
    g = rng.normal(1.0, 0.1, 200_000)
    # shortest 68 % interval of a Gaussian: +-0.9945 sigma
    assert abs(R.effective_rms(g) - 0.09945) < 0.0015
    res = R.effective_resolution(g[:20_000], n_boot=100)
    assert abs(res["value"] - 0.0995) < 0.004 and 0 < res["err"] < 0.003
    u = rng.uniform(0, 1, 100_000)
    assert abs(R.effective_rms(u) - 0.34) < 0.003
    assert R.effective_resolution(g[:5])["value"] is None


def test_paired_ratio_cancels_the_common_fluctuation():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 5000)
    a = 1 + 0.05 * base
    b = 1 + 0.05 * base + rng.normal(0, 0.01, 5000)      # almost the same electrons' errors
    r = R.paired_resolution_ratio(b, a, n_boot=100)
    single = R.effective_resolution(a, n_boot=100)["err"] / 0.05
    assert abs(r["value"] - np.hypot(0.05, 0.01) / 0.05) < 0.01
    assert r["err"] < np.sqrt(2) * single / 2               # under half the unpaired error
    same = R.paired_resolution_ratio(a, a, n_boot=20)
    assert same["value"] == 1.0 and same["err"] == 0.0
    c = np.where(np.arange(5000) < 10, np.nan, a)
    assert R.paired_resolution_ratio(c, a, n_boot=20)["n"] == 4990


def test_paired_ratio_per_eta_bin_is_the_ratio_on_that_bin():
    from flow.physics.stage import _paired

    rng = np.random.default_rng(3)
    n = 4000
    abseta = rng.uniform(1.6, 3.0, n)
    ref = 1 + 0.03 * rng.standard_normal(n)
    worse = 1 + (0.03 + 0.03 * (abseta > 2.3)) * rng.standard_normal(n)   # worse at high |eta|
    ref[::7] = np.nan                                                    # unmatched electrons
    q = _paired({"_ratio": worse, "_abseta": abseta}, {"_ratio": ref}, n_boot=50, seed=1)
    assert q["n"] == int(np.isfinite(ref).sum())
    assert len(q["vs_eta"]) == len(R.ETA_EDGES) - 1
    for row in q["vs_eta"]:
        inside = (abseta >= row["lo"]) & (abseta < row["hi"])
        direct = R.paired_resolution_ratio(worse[inside], ref[inside], n_boot=50, seed=1)
        assert row["n"] == direct["n"] and row["value"] == pytest.approx(direct["value"], rel=1e-12)
    lo = [r["value"] for r in q["vs_eta"] if r["hi"] <= 2.3]
    hi = [r["value"] for r in q["vs_eta"] if r["lo"] >= 2.3]
    assert max(lo) < 1.3 < min(hi)


def test_resolution_table_bins_and_efficiency():
    n = 4000
    rng = np.random.default_rng(1)
    cl = R.Clusters(event=np.arange(n), gen_pt=rng.uniform(2, 35, n),
                    gen_eta=rng.uniform(1.6, 2.9, n), gen_phi=np.zeros(n), eta=np.zeros(n),
                    phi=np.zeros(n), layer_et=np.zeros((n, 1)), layers=np.asarray([1]),
                    matched=rng.random(n) < 0.9)
    pt = cl.gen_pt * rng.normal(1.0, 0.05, n)
    tab = R.resolution_table(pt, cl, min_pt=10.0, n_boot=50)
    assert abs(tab["integrated"]["value"] - 0.05) < 0.005
    assert len(tab["vs_eta"]) == 14 and tab["vs_eta"][0]["lo"] == 1.6
    assert abs(tab["efficiency"]["value"] - 0.9) < 0.02
    assert sum(r["n"] for r in tab["vs_pt"]) == int(cl.matched.sum())


# ------------------------------------------------------------------- stage
def u_n(m) -> int:
    """Electrons of the uncompressed reference's integrated resolution (all matched here)."""
    return m["n_electrons"]


def test_physics_stage_on_a_tiny_run(tmp_path, monkeypatch):
    """data (real, tiny) -> fake emd -> fake autoencoder with untrained models of 9, 5 and
    4 latent bits -> physics: metrics, budgets, the AE only where its width fits."""
    from fakes import fake_stage

    from flow.core import encoder as E
    from flow.core.ae_model import build_decoder
    from flow.runner.config import load_config
    from flow.runner.manifest import verify
    from flow.runner.stages import run_stage

    cfg = load_config("configs/smoke.yaml", [
        f"workdir={tmp_path}", "data.n_events=80", "data.n_files=1", "data.chunk_size=80",
        "physics.n_boot=20", "physics.min_per_eta_bin=5", "physics.emd_wafers=300"])

    def ae(ctx):
        import tensorflow as tf

        tf.keras.utils.set_random_seed(1)
        for name, bits, n_in in (("emd_cnn", 9, 16), ("w5", 5, 16), ("w4", 4, 16),
                                 ("tele/seed0", 9, 16), ("weighted_mse/seed0", 9, 16),
                                 ("c+cond/seed0", 9, 19), ("emd_cnn_3elinks", 5, 16)):
            d = ctx.out / "models" / name          # both layouts: <loss>/ and <model>/seed<i>/
            d.mkdir(parents=True)
            E.build_qkeras_encoder(bits).save(d / "encoder.h5")
            build_decoder(n_in).save(d / "decoder.h5")
        # the exported encoder (emd_cnn) at 5 eLinks, and one trained for 3 eLinks
        (ctx.out / "elinks.json").write_text(json.dumps({
            "3": {"latent_bits": 5, "trained": True, "seed_index": 0},
            "5": {"latent_bits": 9, "trained": False, "seed_index": 0}}))

    quiet = lambda *a: None  # noqa: E731
    run_stage(cfg, "data", echo=quiet)
    fake_stage(monkeypatch, "emd", lambda ctx: (ctx.out / "e.txt").write_text("e"))
    fake_stage(monkeypatch, "autoencoder", ae)
    run_stage(cfg, "emd", echo=quiet)
    run_stage(cfg, "autoencoder", echo=quiet)
    man = run_stage(cfg, "physics", echo=quiet)
    m = man["metrics"]
    assert m["elinks"] == [2, 3, 4, 5] and m["n_electrons"] > 10
    assert m["algorithms"][:5] == list(A.ALGORITHMS)
    assert {"autoencoder_emd_cnn", "autoencoder_w5", "autoencoder_w4", "autoencoder_tele_seed0",
            "autoencoder_c+cond_seed0"} <= set(m["algorithms"])
    for a in m["algorithms"]:
        for e in m["elinks"]:
            b = m["bits_per_bx"][a][str(e)]
            assert b == 1056 if a == "uncompressed" else b <= 32 * e
            assert len(m["resolution_vs_eta"][a][str(e)] or [None] * 14) == 14
    avail = {a: [e for e in m["elinks"] if m["resolution"][a][str(e)] is not None]
             for a in m["algorithms"]}
    assert avail["autoencoder_emd_cnn"] == [5] and avail["autoencoder_w5"] == [3]
    assert avail["autoencoder_w4"] == [] and avail["autoencoder_tele_seed0"] == [5]
    assert avail["autoencoder_c+cond_seed0"] == [5]      # the conditional decoder's side inputs
    assert "latent_bits=3" in m["unavailable"]["autoencoder_emd_cnn"]["2"]
    assert all(avail[a] == [2, 3, 4, 5] for a in A.ALGORITHMS)
    # the exported encoder's row: its own model at 5 eLinks, the 3-eLink one (no row of its own)
    assert avail["autoencoder"] == [3, 5] and "autoencoder_emd_cnn_3elinks" not in m["algorithms"]
    assert m["autoencoder_models"] == {"3": "autoencoder_emd_cnn_3elinks", "5": "autoencoder_emd_cnn"}
    assert m["resolution"]["autoencoder"]["5"] == m["resolution"]["autoencoder_emd_cnn"]["5"]
    assert m["median_emd"]["autoencoder"]["5"] == m["median_emd"]["autoencoder_emd_cnn"]["5"]
    assert "autoencoder.elinks" in m["unavailable"]["autoencoder"]["2"]
    assert m["bits_per_bx"]["autoencoder"] == {str(e): A.ae_frame_bits(e) for e in (2, 3, 4, 5)}
    # consistency: the lossless reference has EMD 0 and no algorithm resolves clearly better
    u = m["resolution"]["uncompressed"]["5"]
    for a in m["algorithms"]:
        for e in avail[a]:
            assert m["median_emd"]["uncompressed"][str(e)] == 0.0
            assert m["median_emd"][a][str(e)] >= 0.0
            r = m["resolution"][a][str(e)]
            assert u["value"] <= r["value"] + 2 * (u["err"] + r["err"])
    paired = m["resolution_over_uncompressed"]
    assert paired["uncompressed"]["5"] == {"value": 1.0, "err": 0.0, "n": u_n(m)}
    assert paired["autoencoder_emd_cnn"]["2"] is None and paired["autoencoder_emd_cnn"]["5"]["n"] > 0
    # per |eta| bin, on the same electrons; every autoencoder relative to the weighted-MSE one
    # of its seed (none for the seedless models, not itself)
    vs = m["resolution_over_uncompressed_vs_eta"]
    assert len(vs["best_choice"]["3"]) == 14
    assert all(q["value"] in (None, 1.0) for q in vs["uncompressed"]["5"])
    assert set(m["resolution_over_weighted_mse"]) == {"autoencoder_tele_seed0", "autoencoder_c+cond_seed0"}
    w = m["resolution_over_weighted_mse"]["autoencoder_tele_seed0"]
    assert w["2"] is None and w["5"]["n"] > 0 and len(w["5"]["vs_eta"]) == 14
    assert "resolution_over_weighted_mse_vs_eta.png" in m["plots"]
    out = cfg.stage_dir("physics")
    assert (out / "summary.csv").read_text().count("\n") == 1 + 4 * len(m["algorithms"])
    assert all((out / "plots" / p).is_file() for p in m["plots"])
    assert set(read_captions(out / "plots" / "captions.json")) == set(m["plots"])
    # the autoencoder stage is a recorded input: rebuilding it makes physics stale
    assert set(man["upstream"]) == {"data", "autoencoder"}
    run_stage(cfg, "autoencoder", echo=quiet)
    with pytest.raises(StageInputError, match="stage 'physics' is stale"):
        verify(cfg, "physics")
    # without the autoencoder, the stage needs (and records) only the data stage
    cfg2 = load_config("configs/smoke.yaml", [
        f"workdir={tmp_path}", "data.n_events=80", "data.n_files=1", "data.chunk_size=80",
        "physics.n_boot=20", "physics.min_per_eta_bin=5", "physics.emd_wafers=0",
        "physics.autoencoder=false", "physics.elinks=[2]", "physics.algorithms=[uncompressed]"])
    man2 = run_stage(cfg2, "physics", echo=quiet)
    assert set(man2["upstream"]) == {"data"} and man2["metrics"]["algorithms"] == ["uncompressed"]
    assert man2["metrics"]["median_emd"]["uncompressed"]["2"] is None      # emd_wafers = 0


def test_exported_row_names_a_missing_budget_model(tmp_path):
    """elinks.json lists a budget whose model the autoencoder stage did not save: a clear
    error naming what was expected and what exists; an artifact without elinks.json (older
    flow) gives no exported row."""
    from flow.physics.stage import _budget_models

    f = tmp_path / "elinks.json"
    f.write_text(json.dumps({"2": {"trained": True, "seed_index": 1},
                             "5": {"trained": False, "seed_index": 1}}))
    ae = type("Up", (), {"manifest": {"outputs": {"elinks.json": {}}}, "path": lambda self, rel: f})()
    names = ["autoencoder_emd_cnn_seed1", "autoencoder_emd_cnn_2elinks_seed1"]
    assert _budget_models(ae, "emd_cnn", names) == {2: ("autoencoder_emd_cnn_2elinks_seed1", True),
                                                    5: ("autoencoder_emd_cnn_seed1", False)}
    with pytest.raises(StageInputError, match=r"2-eLink encoder.*emd_cnn_2elinks_seed1.*rerun"):
        _budget_models(ae, "emd_cnn", names[:1])
    old = type("Old", (), {"manifest": {"outputs": {}}})()
    assert _budget_models(old, "emd_cnn", names) == {}
