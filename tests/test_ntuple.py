"""Reader of HGCAL trigger ntuples (flow.data.ntuple): both layouts, chunking, errors."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from flow.core import frontend as frontend
from flow.core.geometry import N_TC, TC_UV
from flow.data.ntuple import NO_WORD, detect_layout, expand_paths, read_wafers
from flow.runner.errors import DataFormatError

TREE = "dirA/sub/HGCalTriggerNtuple"
DROP = 3


def _counter(name: str) -> str:
    return name.split("_", 1)[0] + "_n"


def _write(path, tree, branches):
    with uproot.recreate(path) as f:
        f.mktree(tree, branches, counter_name=_counter)


def _rejected(path, branches, match):
    """``branches`` written to ``path`` (tree ``t``): reading it raises DataFormatError matching
    ``match``."""
    _write(path, "t", branches)
    with pytest.raises(DataFormatError, match=match):
        read_wafers([path], tree="t")


def make_per_tc(rng, n_events, *, first_event=0, layers=(1, 3, 5)):
    """Random per-TC events and the wafers they must give (in reader order)."""
    cols = {k: [] for k in ("tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu",
                            "tc_cellv", "tc_data", "tc_simenergy", "tc_eta")}
    counts, wafers = [], []
    for e in range(n_events):
        n_w = rng.integers(0, 5)
        keys = set()
        while len(keys) < n_w:
            keys.add((int(rng.choice([-1, 1])), int(rng.choice(layers)), int(rng.integers(-6, 7)),
                      int(rng.integers(-6, 7))))
        ev_rows = []
        for z, lay, u, v in sorted(keys):
            ntc = int(rng.integers(1, N_TC + 1))
            tcs = rng.permutation(N_TC)[:ntc]
            data = rng.integers(0, 200000, ntc) * (rng.random(ntc) < 0.8)
            sim = rng.exponential(0.1, ntc).astype(np.float32)
            eta = (z * rng.uniform(1.5, 3.0, ntc)).astype(np.float32)
            charge = np.zeros(N_TC, dtype=np.int64)
            charge[tcs] = data
            wafers.append({"event": first_event + e, "zside": z, "layer": lay, "u": u, "v": v,
                           "charge": charge, "sim": float(sim.astype(np.float64).sum()),
                           "eta": float(np.abs(eta.astype(np.float64)).mean())})
            for i in range(ntc):
                ev_rows.append((z, lay, u, v, TC_UV[tcs[i], 0], TC_UV[tcs[i], 1], data[i], sim[i],
                                eta[i]))
        order = rng.permutation(len(ev_rows))  # TCs of wafers interleaved in the file
        ev_rows = [ev_rows[i] for i in order]
        counts.append(len(ev_rows))
        for j, k in enumerate(cols):
            cols[k].extend(r[j] for r in ev_rows)
    dtypes = {"tc_zside": np.int32, "tc_layer": np.int32, "tc_waferu": np.int32,
              "tc_waferv": np.int32, "tc_cellu": np.int32, "tc_cellv": np.int32,
              "tc_data": np.uint32, "tc_simenergy": np.float32, "tc_eta": np.float32}
    counts = np.asarray(counts, dtype=np.int64)
    branches = {k: ak.unflatten(np.asarray(v, dtype=dtypes[k]), counts) for k, v in cols.items()}
    ones = np.ones(n_events, dtype=np.int64)
    branches["gen_pt"] = ak.unflatten(rng.uniform(1, 35, n_events).astype(np.float32), ones)
    branches["gen_eta"] = ak.unflatten(rng.uniform(1.6, 2.9, n_events).astype(np.float32), ones)
    branches["event"] = np.arange(n_events, dtype=np.int64) + 1000
    return branches, wafers


def expected(wafers, drop=DROP, cal=2048):
    charge = np.stack([w["charge"] for w in wafers])
    words = frontend.encode_charges(charge >> drop)
    calq = frontend.calibrate(frontend.decode_words(words, drop), np.full(N_TC, cal))
    return words, calq


@pytest.fixture(scope="module")
def per_tc_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pertc")
    rng = np.random.default_rng(1)
    b1, w1 = make_per_tc(rng, 13)
    b2, w2 = make_per_tc(rng, 9, first_event=13)
    _write(d / "f1.root", TREE, b1)
    _write(d / "f2.root", TREE, b2)
    return d, w1 + w2, (b1, b2)


def test_per_tc_round_trip_exact(per_tc_files):
    d, wafers, (b1, b2) = per_tc_files
    w, st = read_wafers([d / "f1.root", d / "f2.root"], tree=TREE, chunk_size=4, drop=DROP)
    words, calq = expected(wafers)
    assert len(w) == len(wafers) and st.layout == "per_tc" and st.events == 22
    np.testing.assert_array_equal(w.words, words)
    np.testing.assert_array_equal(w.calq, calq)
    np.testing.assert_array_equal(w.event, [x["event"] for x in wafers])
    np.testing.assert_array_equal(w.zside, [x["zside"] for x in wafers])
    np.testing.assert_array_equal(w.layer, [x["layer"] for x in wafers])
    np.testing.assert_array_equal(w.waferu, [x["u"] for x in wafers])
    np.testing.assert_array_equal(w.waferv, [x["v"] for x in wafers])
    np.testing.assert_allclose(w.simenergy, [x["sim"] for x in wafers], rtol=1e-6)
    np.testing.assert_allclose(w.eta, [x["eta"] for x in wafers], rtol=1e-6)
    np.testing.assert_array_equal(w.occupancy, frontend.occupancy(calq, w.eta))
    gen_pt = np.concatenate([ak.to_numpy(ak.firsts(b["gen_pt"])) for b in (b1, b2)])
    np.testing.assert_array_equal(w.gen_pt, gen_pt[w.event].astype(np.float64))
    assert np.isnan(w.gen_phi).all()          # these files have no gen_phi branch
    assert w.words.max() <= 127


def test_chunk_size_and_glob_do_not_change_the_result(per_tc_files):
    d, wafers, _ = per_tc_files
    ref, _ = read_wafers([d / "f1.root", d / "f2.root"], tree=TREE, chunk_size=1000)
    for chunk in (1, 3, 7):
        w, _ = read_wafers(expand_paths([str(d / "*.root")]), tree=TREE, chunk_size=chunk)
        for k in w.FIELDS:
            np.testing.assert_array_equal(getattr(w, k), getattr(ref, k), err_msg=k)


def test_layer_selection_counts_dropped_wafers(per_tc_files):
    d, wafers, _ = per_tc_files
    w, st = read_wafers([d / "f1.root", d / "f2.root"], tree=TREE, chunk_size=5, layers=[3])
    assert set(w.layer) <= {3}
    assert len(w) == sum(x["layer"] == 3 for x in wafers)
    assert st.wafers_not_in_layers == sum(x["layer"] != 3 for x in wafers)


def test_calvalue_and_low_density(per_tc_files):
    d, wafers, _ = per_tc_files
    w, _ = read_wafers([d / "f1.root"], tree=TREE, drop=1, calvalue=1500)
    n = len(w)
    words, calq = expected(wafers[:n], drop=1, cal=1500)
    np.testing.assert_array_equal(w.calq, calq)
    np.testing.assert_array_equal(w.words, words)


def test_expand_paths_errors(tmp_path):
    with pytest.raises(DataFormatError, match="matches no file"):
        expand_paths([str(tmp_path / "*.root")])
    with pytest.raises(DataFormatError, match="does not exist"):
        expand_paths([str(tmp_path / "nope.root")])


def test_tree_path(per_tc_files):
    d, _, _ = per_tc_files
    with pytest.raises(DataFormatError) as e:
        read_wafers([d / "f1.root"], tree="HGCalTriggerNtuple")
    msg = str(e.value)
    assert "f1.root" in msg and "'HGCalTriggerNtuple'" in msg and TREE in msg


# ------------------------------------------------------------- per wafer
def make_per_wafer(rng, n_events, *, jagged=True, n_calq=64):
    n_w = rng.integers(1, 5, n_events) if jagged else np.ones(n_events, dtype=np.int64)
    tot = int(n_w.sum())
    calq = rng.integers(0, 3000, (tot, n_calq)) * (rng.random((tot, n_calq)) < 0.5)
    cols = {"wafer_layer": rng.choice([1, 3, 5], tot).astype(np.int32),
            "wafer_eta": rng.uniform(1.5, 3.0, tot).astype(np.float32) * rng.choice([-1, 1], tot),
            "wafer_waferu": rng.integers(-5, 6, tot).astype(np.int32),
            "wafer_waferv": rng.integers(-5, 6, tot).astype(np.int32),
            "wafer_wafertype": np.zeros(tot, dtype=np.int32),
            "wafer_simenergy": rng.exponential(1.0, tot).astype(np.float32),
            "wafer_energy": rng.exponential(1.0, tot).astype(np.float32)}
    for i in range(n_calq):
        cols[f"wafer_CALQ{i}"] = calq[:, i].astype(np.int32)
        cols[f"wafer_AEin{i}"] = np.zeros(tot, dtype=np.float32)
    if jagged:
        branches = {k: ak.unflatten(v, n_w) for k, v in cols.items()}
    else:
        branches = dict(cols)
        branches["event"] = np.repeat(np.arange(n_events // 2 + 1), 2)[:n_events].astype(np.int64)
    return branches, cols, calq[:, :N_TC], n_w


def test_per_wafer_jagged_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    b, cols, calq, n_w = make_per_wafer(rng, 11)
    _write(tmp_path / "w.root", "t", b)
    assert detect_layout(set(b)) == "per_wafer"
    ref = None
    for chunk in (2, 100):
        w, st = read_wafers([tmp_path / "w.root"], tree="t", chunk_size=chunk)
        assert st.layout == "per_wafer" and not st.as_dict()["words_available"]
        # the reader orders wafers by (event, zside, layer, u, v) within each event
        ev = np.repeat(np.arange(11), n_w)
        z = np.where(cols["wafer_eta"] < 0, -1, 1)
        order = np.lexsort((cols["wafer_waferv"], cols["wafer_waferu"], cols["wafer_layer"], z, ev))
        np.testing.assert_array_equal(w.calq, calq[order])
        np.testing.assert_array_equal(w.event, ev[order])
        np.testing.assert_allclose(w.eta, np.abs(cols["wafer_eta"][order]), rtol=1e-7)
        assert (w.words == NO_WORD).all()
        if ref is not None:
            for k in w.FIELDS:
                np.testing.assert_array_equal(getattr(w, k), getattr(ref, k))
        ref = w


def test_per_wafer_flat_uses_event_branch(tmp_path):
    rng = np.random.default_rng(3)
    b, cols, calq, _ = make_per_wafer(rng, 9, jagged=False, n_calq=48)
    _write(tmp_path / "a.root", "t", b)
    _write(tmp_path / "b.root", "t", b)
    w, _ = read_wafers([tmp_path / "a.root", tmp_path / "b.root"], tree="t", chunk_size=4)
    np.testing.assert_array_equal(w.calq, np.concatenate([calq, calq]))
    ev = b["event"]
    np.testing.assert_array_equal(w.event, np.concatenate([ev, (1 << 40) | ev]))


# ----------------------------------------------------------------- errors
def test_wrong_layout_and_missing_branch(tmp_path):
    rng = np.random.default_rng(4)
    b, _, _, _ = make_per_wafer(rng, 3)
    _write(tmp_path / "w.root", "t", b)
    with pytest.raises(DataFormatError) as e:
        read_wafers([tmp_path / "w.root"], tree="t", layout="per_tc")
    msg = str(e.value)
    assert "w.root" in msg and "tc_data" in msg and "per_tc layout" in msg
    assert "looks like the per_wafer layout" in msg

    tc, _ = make_per_tc(rng, 3)
    del tc["tc_cellv"]
    _write(tmp_path / "m.root", "t", tc)
    with pytest.raises(DataFormatError, match=r"m\.root.*tc_cellv.*required by the per_tc"):
        read_wafers([tmp_path / "m.root"], tree="t", layout="per_tc")
    with pytest.raises(DataFormatError, match="unknown ntuple layout"):
        read_wafers([tmp_path / "m.root"], tree="t")

    b2 = dict(b)
    del b2["wafer_CALQ17"]
    _rejected(tmp_path / "c.root", b2, r"c\.root.*wafer_CALQ17")


def test_truncated_and_garbage_files(tmp_path, per_tc_files):
    d, _, _ = per_tc_files
    raw = (d / "f1.root").read_bytes()
    for frac in (0.1, 0.5, 0.9):
        p = tmp_path / f"trunc{frac}.root"
        p.write_bytes(raw[: int(len(raw) * frac)])
        with pytest.raises(DataFormatError) as e:
            read_wafers([p], tree=TREE, chunk_size=2)
        assert p.name in str(e.value)
        assert "truncated" in str(e.value) or "corrupt" in str(e.value)
    p = tmp_path / "text.root"
    p.write_text("this is not a ROOT file\n" * 10)
    with pytest.raises(DataFormatError, match=r"text\.root: cannot open as a ROOT file"):
        read_wafers([p], tree=TREE)


@pytest.mark.parametrize("branch,value,what", [
    ("tc_simenergy", np.nan, "NaN"),
    ("tc_simenergy", -1.0, "negative"),
    ("tc_eta", np.inf, "NaN/inf"),
    ("tc_data", -5, "negative"),
])
def test_bad_values_per_tc(tmp_path, branch, value, what):
    rng = np.random.default_rng(5)
    b, _ = make_per_tc(rng, 6)
    flat = ak.to_numpy(ak.flatten(b[branch]))
    flat = flat.astype(np.int32) if branch == "tc_data" else flat.copy()
    flat[3] = value
    b[branch] = ak.unflatten(flat, ak.num(b[branch]))
    _write(tmp_path / "bad.root", "t", b)
    with pytest.raises(DataFormatError) as e:
        read_wafers([tmp_path / "bad.root"], tree="t")
    msg = str(e.value)
    assert "bad.root" in msg and branch in msg and what in msg and "entry" in msg


def test_bad_values_per_wafer(tmp_path):
    rng = np.random.default_rng(6)
    b, cols, _, _ = make_per_wafer(rng, 4, jagged=False)
    b = dict(b)
    b["wafer_CALQ5"] = b["wafer_CALQ5"].astype(np.float32)
    b["wafer_CALQ5"][2] = np.nan
    _rejected(tmp_path / "nan.root", b, r"nan\.root.*wafer_CALQ5.*NaN")
    b["wafer_CALQ5"][2] = 0.5
    _rejected(tmp_path / "frac.root", b, r"wafer_CALQ5.*integer")


def test_invalid_and_duplicate_cells(tmp_path):
    rng = np.random.default_rng(7)
    b, _ = make_per_tc(rng, 5)
    cu = ak.to_numpy(ak.flatten(b["tc_cellu"])).copy()
    cv = ak.to_numpy(ak.flatten(b["tc_cellv"])).copy()
    counts = ak.num(b["tc_cellu"])
    bad = dict(b)
    cu2, cv2 = cu.copy(), cv.copy()
    cu2[0], cv2[0] = 0, 7  # (0, 7) is not one of the 48 TCs
    bad["tc_cellu"], bad["tc_cellv"] = ak.unflatten(cu2, counts), ak.unflatten(cv2, counts)
    _rejected(tmp_path / "inv.root", bad, r"inv\.root.*tc_cellu/tc_cellv.*\(0, 7\)")
    # duplicate: an event with the same TC twice in one wafer
    one = np.ones(1, dtype=np.int64)
    dup = {k: ak.unflatten(np.asarray(v, dtype=np.int32), [2]) for k, v in
           {"tc_zside": [1, 1], "tc_layer": [1, 1], "tc_waferu": [0, 0], "tc_waferv": [0, 0],
            "tc_cellu": [4, 4], "tc_cellv": [4, 4], "tc_data": [10, 20]}.items()}
    dup["tc_eta"] = ak.unflatten(np.array([2.0, 2.0], dtype=np.float32), [2])
    dup["event"] = one
    _rejected(tmp_path / "dup.root", dup, r"dup\.root.*appears 2 times")


def test_mismatched_jagged_lengths(tmp_path):
    rng = np.random.default_rng(8)
    b, _ = make_per_tc(rng, 4)
    b = dict(b)
    flat = ak.to_numpy(ak.flatten(b["tc_eta"]))
    counts = ak.to_numpy(ak.num(b["tc_eta"])).copy()
    counts[-1] += 1
    b["tc_eta"] = ak.unflatten(np.append(flat, np.float32(2.0)), counts)
    with uproot.recreate(tmp_path / "len.root") as f:  # tc_eta gets its own counter
        f.mktree("t", b, counter_name=lambda n: "n" + n if n == "tc_eta" else _counter(n))
    with pytest.raises(DataFormatError, match=r"len\.root.*tc_eta.*same number of entries"):
        read_wafers([tmp_path / "len.root"], tree="t")
