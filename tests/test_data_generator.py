"""Synthetic generator (flow.core.generator): geometry, determinism, physics sanity, front end."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from flow.core import frontend as frontend
from flow.core import generator as data_generator
from flow.core.geometry import N_TC
from flow.data.ntuple import read_wafers
from flow.runner.config import parse_config


def settings(**data):
    base = {"n_events": 60, "n_files": 1, "chunk_size": 30}
    base.update(data)
    return parse_config({"data": base}).data


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Generated + read back sample shared by the physics tests."""
    s = settings(n_events=150, n_files=2, chunk_size=40)
    d = tmp_path_factory.mktemp("synth")
    paths, st = data_generator.write_ntuples(s, d, seed=99, progress=False)
    w, rs = read_wafers(paths, tree=s.tree, chunk_size=s.chunk_size, layers=s.layers,
                        drop=s.drop, calvalue=s.calvalue)
    return s, paths, st, w, rs


# -------------------------------------------------------------- geometry
def test_tc_centres_map_to_themselves():
    det = data_generator.Detector()
    wu = np.array([0, 3, -4, 7])
    wv = np.array([0, -2, 5, 1])
    x, y = det.tc_positions(wu, wv)
    cx, cy = det.centre(wu, wv)
    # edge TC centres lie on the wafer boundary (half cells): pull points 2 % inwards
    x, y = cx[:, None] + 0.98 * (x - cx[:, None]), cy[:, None] + 0.98 * (y - cy[:, None])
    u2, v2, tc = det.locate(x, y)
    np.testing.assert_array_equal(u2, np.repeat(wu[:, None], N_TC, 1))
    np.testing.assert_array_equal(v2, np.repeat(wv[:, None], N_TC, 1))
    np.testing.assert_array_equal(tc, np.tile(np.arange(N_TC), (4, 1)))


def test_wafer_of_is_the_nearest_centre():
    det = data_generator.Detector()
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-150, 150, (2, 20000))
    wu, wv = det.wafer_of(x, y)
    cx, cy = det.centre(wu, wv)
    d0 = np.hypot(x - cx, y - cy)
    for du, dv in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)):
        nx, ny = det.centre(wu + du, wv + dv)
        assert (d0 <= np.hypot(x - nx, y - ny) + 1e-9).all()
    assert d0.max() <= det.wafer_size_cm / np.sqrt(3) + 1e-9


def test_tc_areas():
    a = data_generator.tc_areas(200)
    assert abs(a.sum() - 49.0) < 0.5            # hexagon of apothem 7 units = 49 full cells
    assert np.median(a) == pytest.approx(1.0, abs=0.03)  # interior cells are full cells
    assert a.min() > 0.4 and a.max() < 1.8


# ---------------------------------------------------------- determinism
def test_generate_chunk_is_deterministic():
    s = settings()
    a = data_generator.generate_chunk(s, 5, 0, 0, 20)
    b = data_generator.generate_chunk(s, 5, 0, 0, 20)
    c = data_generator.generate_chunk(s, 6, 0, 0, 20)
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    assert a[2].as_dict() == b[2].as_dict()
    assert not np.array_equal(a[0]["pt"], c[0]["pt"])


def test_root_files_are_byte_identical(tmp_path, sample):
    s, paths, _, _, _ = sample
    again, _ = data_generator.write_ntuples(s, tmp_path, seed=99, progress=False)
    for p, q in zip(paths, again, strict=True):
        assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(q.read_bytes()).digest()


def test_root_layout(sample):
    import uproot

    s, paths, _, _, _ = sample
    t = uproot.open(paths[0])[s.tree]
    assert type(t).__name__.startswith("Model_TTree")
    need = {"gen_pt", "gen_eta", "tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu",
            "tc_cellv", "tc_data", "tc_simenergy", "tc_eta", "event"}
    assert need <= set(t.keys())
    ev = t["event"].array(library="np")
    assert ev[0] == 0 and (np.diff(ev) == 1).all()


# ------------------------------------------------------- physics sanity
def test_words_and_calq_bit_exact(sample):
    s, _, _, w, _ = sample
    assert w.words.dtype == np.uint8 and w.words.max() <= 127
    fe = frontend.FrontEnd(drop=s.drop, calvalues=(s.calvalue,) * N_TC)
    np.testing.assert_array_equal(fe.calq(w.words), w.calq)


def test_counts_and_acceptance(sample):
    s, _, st, w, rs = sample
    assert rs.events == 150 and len(w) == st.wafers_written
    assert set(np.unique(w.layer)) <= set(s.layers)
    assert (w.eta >= s.synth.acceptance_eta[0] - 0.3).all()
    assert (w.eta <= s.synth.acceptance_eta[1] + 0.3).all()
    assert st.as_dict()["shower_containment"] > 0.95


def test_energy_weighted_eta_follows_the_electron(sample):
    s, _, _, w, _ = sample
    sim = w.simenergy
    num = np.bincount(w.event, weights=sim * w.eta)
    den = np.bincount(w.event, weights=sim)
    gen = np.zeros(den.size)
    gen[w.event] = np.abs(w.gen_eta)
    ok = den > 0
    ew = num[ok] / den[ok]
    lo, hi = s.synth.eta_range
    assert ((ew > lo - 0.15) & (ew < hi + 0.15)).all()
    assert np.median(np.abs(ew - gen[ok])) < 0.05


def test_longitudinal_profile_peaks_mid_calorimeter(sample):
    _, _, _, w, _ = sample
    per_layer = {int(lay): w.simenergy[w.layer == lay].sum() for lay in np.unique(w.layer)}
    peak = max(per_layer, key=per_layer.get)
    assert 5 <= peak <= 15
    assert per_layer[1] < 0.2 * per_layer[peak] and per_layer[27] < 0.2 * per_layer[peak]


def test_shower_wafers_are_hotter_than_pileup(sample):
    _, _, _, w, _ = sample
    total = w.calq.sum(axis=1)
    shower = w.simenergy > 1.0          # > 1 GeV of electron energy in the wafer
    pileup = w.simenergy == 0
    assert shower.sum() > 100 and pileup.sum() > 100
    assert np.median(total[shower]) > 5 * np.median(total[pileup])
    assert np.median(w.occupancy[shower]) > np.median(w.occupancy[pileup])
    hot = w.calq.max(axis=1) / total
    assert np.median(hot[shower]) > np.median(hot[pileup])


def test_occupancy_is_non_trivial(sample):
    _, _, _, w, _ = sample
    occ = np.bincount(w.occupancy)
    assert len(occ) > 10                  # up to >= 10 TCs above 1 MIP_T
    assert occ[0] < 0.6 * len(w)          # not dominated by empty-looking wafers
    assert (occ[1:6] > 0).all()
    # pileup grows with |eta|
    pu = w.simenergy == 0
    lo = pu & (w.eta < 2.0)
    hi = pu & (w.eta > 2.6)
    assert w.occupancy[hi].mean() > w.occupancy[lo].mean()


def test_noise_free_zero_suppression():
    """Without noise and pileup, every read-out TC is above the ZS threshold."""
    s = settings(synth={"noise_mip": 0.0, "pileup": {"clusters_per_wafer": 0.0,
                                                      "wafers_per_layer": 0}})
    _, wf, st = data_generator.generate_chunk(s, 3, 0, 0, 20)
    data = wf["data"]
    thr = s.synth.zs_threshold_mip * frontend.MIPT_CALQ
    assert ((data == 0) | (data >= np.floor(thr))).all()
    assert (data > 0).any(axis=1).all()
    assert st.pileup_clusters == 0
    assert (wf["simenergy"].sum(axis=1) > 0).all()


def test_reader_order_independent_of_tc_order(tmp_path, sample):
    """Shuffling the TCs inside each event (unsorted path of the reader) changes nothing."""
    import awkward as ak
    import uproot

    s, paths, _, w, _ = sample
    t = uproot.open(paths[0])[s.tree]
    arrs = t.arrays(library="ak")
    counts = ak.to_numpy(ak.num(arrs["tc_data"]))
    rng = np.random.default_rng(1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    perm = np.concatenate([st + rng.permutation(c) for st, c in zip(starts, counts, strict=True)])
    out = {}
    for k in arrs.fields:
        if k.startswith("tc_") and k != "tc_n":
            out[k] = ak.unflatten(ak.to_numpy(ak.flatten(arrs[k]))[perm], counts)
        elif k not in ("tc_n", "gen_n"):
            out[k] = arrs[k]
    with uproot.recreate(tmp_path / "shuffled.root") as f:
        f.mktree(s.tree, out, counter_name=lambda b: b.split("_", 1)[0] + "_n")
    w2, _ = read_wafers([tmp_path / "shuffled.root"], tree=s.tree, chunk_size=17)
    n = len(w2)
    assert n == int((w.event < t.num_entries).sum())
    for k in w2.FIELDS:
        np.testing.assert_allclose(getattr(w2, k), getattr(w, k)[:n], rtol=1e-6, err_msg=k)
