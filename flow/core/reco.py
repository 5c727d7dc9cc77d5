"""Trigger-level electron reconstruction from decoded trigger cells (the paper's section 5).

Chain, per algorithm and eLink budget (``docs/physics.md``):

1. **Positions.**  Every TC gets its global centre from the synthetic
   generator's geometry (:class:`flow.core.generator.Detector`: wafer ``(u, v)`` lattice,
   the 48 TC centres of a wafer, ``|z|`` of the layer; ``z`` signed by the
   wafer's ``zside``).  Real ntuples would need their ``tc_x/y/z`` branches,
   which the data stage's split files do not carry (see ``docs/physics.md``).
2. **Transverse energy.**  ``E_T = CALQ / 35 / cosh(eta_TC)`` in MIP_T.
3. **Clustering** (one cluster per event and endcap, like a histogram-seeded
   back end): TCs are projected on ``(x/|z|, y/|z|)`` (locally equivalent to
   the back end's ``(r/z, r/z * phi)``), binned in square cells of
   ``seed_cell`` (0.01 = 1.4 TC pitches at layer 1), the cell histogram of E_T
   is smoothed by summing the 3x3 neighbourhood, and the cell with the largest
   smoothed sum is the seed; the seed position is the E_T-weighted centroid of
   its 3x3 cells; the cluster is every TC of that event and endcap within
   ``radius`` (0.03, the back end's default dR in r/z) of the seed position.
   Cluster eta/phi from the E_T-weighted centroid of its TCs (projective
   coordinates), per-layer E_T sums kept for the calibration.
4. **Calibration**, fitted on the training split: layer weights by
   non-negative least squares of ``pT_gen`` on the per-layer cluster E_T with
   one free offset per |eta| bin (it absorbs the pileup, so the weights are not
   "derived without pileup" as in CMS, where a no-pileup sample exists; here
   none does), then in each |eta| bin of 0.1 a linear response
   ``pT_w = a pT_gen + b`` (the |eta|-dependent pileup correction) inverted:
   ``pT_L1 = (pT_w - b) / a``.
5. **Matching**: the cluster of the electron's endcap, if within ``dr_match``
   (0.2) of the generated electron in (eta, phi).

All per-TC work is vectorised over the whole sample (no Python loop over events).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from flow.core.frontend import MIPT_CALQ
from flow.core.geometry import N_TC
from flow.runner.errors import InputRangeError, ShapeError, StageInputError

#: |eta| bins of the resolution and of the pileup correction (0.1 wide from 1.6).
ETA_EDGES = np.round(np.arange(1.6, 3.0001, 0.1), 2)
#: generated-pT bins (GeV) of the resolution.
PT_EDGES = np.asarray([2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0])


@dataclass(frozen=True)
class ClusterSettings:
    seed_cell: float = 0.01
    radius: float = 0.03
    dr_match: float = 0.2


@dataclass
class Clusters:
    """One entry per event: the cluster in the generated electron's endcap."""

    event: np.ndarray            # event id
    gen_pt: np.ndarray
    gen_eta: np.ndarray          # signed
    gen_phi: np.ndarray
    eta: np.ndarray              # cluster eta (signed), NaN if no TC with energy
    phi: np.ndarray
    layer_et: np.ndarray         # (n_events, n_layers) MIP_T
    layers: np.ndarray           # the layer of each column
    matched: np.ndarray          # bool

    @property
    def raw_et(self) -> np.ndarray:
        return self.layer_et.sum(1)

    def select(self, m) -> Clusters:
        return Clusters(**{k: (getattr(self, k)[m] if k != "layers" else self.layers)
                           for k in self.__dataclass_fields__})


def tc_positions(detector, waferu, waferv, layer, zside) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Global (x, y, z) in cm of the 48 TC centres of each wafer: three (n, 48) arrays."""
    x, y = detector.tc_positions(np.asarray(waferu, np.int64), np.asarray(waferv, np.int64))
    z = detector.z(np.asarray(layer)) * np.where(np.asarray(zside) < 0, -1.0, 1.0)
    return x, y, np.broadcast_to(z[:, None], x.shape)


def _group_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(keys.shape)


def delta_phi(a, b) -> np.ndarray:
    return (np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi


def cluster(split: dict, energy: np.ndarray, detector,
            settings: ClusterSettings = ClusterSettings()) -> tuple[Clusters, dict]:
    """Cluster the decoded TC charges ``energy`` (n_wafers, 48; CALQ counts) of the split's
    wafers; returns the clusters (one per event with a generated electron) and skip counts.

    ``split`` needs ``event``, ``layer``, ``waferu``, ``waferv``, ``zside``, ``gen_pt``,
    ``gen_eta`` (signed) and ``gen_phi``.  Events whose generated particle is missing
    (NaN) are skipped and counted (``no_gen``)."""
    need = ("event", "layer", "waferu", "waferv", "zside", "gen_pt", "gen_eta", "gen_phi")
    missing = [k for k in need if k not in split]
    if missing:
        raise StageInputError(f"split file lacks arrays {missing} needed for clustering "
                              f"(gen_phi exists since the data stage records it: rerun 'data')")
    e = np.asarray(energy, np.float64)
    n = len(split["event"])
    if e.shape != (n, N_TC):
        raise ShapeError(f"decoded energies: expected shape ({n}, {N_TC}), got {e.shape}")
    if np.any(e < 0) or not np.all(np.isfinite(e)):
        raise InputRangeError("decoded energies: expected finite non-negative CALQ values")
    ev_ids, ev_of_wafer = _group_index(np.asarray(split["event"], np.int64))
    n_ev = len(ev_ids)
    first = np.zeros(n_ev, np.int64)
    first[ev_of_wafer[::-1]] = np.arange(n)[::-1]
    gen_pt = split["gen_pt"][first].astype(np.float64)
    gen_eta = split["gen_eta"][first].astype(np.float64)
    gen_phi = split["gen_phi"][first].astype(np.float64)
    has_gen = np.isfinite(gen_pt) & np.isfinite(gen_eta) & np.isfinite(gen_phi)
    side = np.where(gen_eta < 0, -1, 1)

    # wafers of the electron's endcap only (the other endcap has no electron to match)
    zs = np.where(np.asarray(split["zside"]) < 0, -1, 1)
    w_ok = has_gen[ev_of_wafer] & (zs == side[ev_of_wafer])
    widx = np.flatnonzero(w_ok)
    x, y, z = tc_positions(detector, split["waferu"][widx], split["waferv"][widx],
                           split["layer"][widx], zs[widx])
    ex = e[widx]
    hit = ex > 0
    wi, ti = np.nonzero(hit)
    tx, ty, tz = x[wi, ti], y[wi, ti], z[wi, ti]
    rho = np.hypot(tx, ty)
    teta = np.arcsinh(tz / np.maximum(rho, 1e-9))
    et = ex[wi, ti] / MIPT_CALQ / np.cosh(teta)
    tev = ev_of_wafer[widx][wi]
    u, v = tx / np.abs(tz), ty / np.abs(tz)
    layers = np.unique(split["layer"]).astype(np.int64)
    tlay = np.searchsorted(layers, split["layer"][widx][wi])

    # ---- seeding: E_T histogram in projective cells, 3x3 smoothing, maximum per event
    c = settings.seed_cell
    iu, iv = np.floor(u / c).astype(np.int64), np.floor(v / c).astype(np.int64)
    off = 1 << 12
    key = (tev * (2 * off) + (iu + off)) * (2 * off) + (iv + off)
    ckeys, cinv = np.unique(key, return_inverse=True)
    csum = np.bincount(cinv, weights=et, minlength=len(ckeys))
    cev = ckeys // (4 * off * off)
    smooth = np.zeros_like(csum)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            nk = ckeys + du * (2 * off) + dv
            pos = np.clip(np.searchsorted(ckeys, nk), 0, len(ckeys) - 1)
            found = ckeys[pos] == nk
            smooth += np.where(found, csum[pos], 0.0)
    # best cell per event: sort by (event, -smooth, key) and take the first of each event
    order = np.lexsort((ckeys, -smooth, cev))
    firsts = order[np.r_[True, cev[order][1:] != cev[order][:-1]]] if len(order) else order
    seed_key = np.full(n_ev, -1, np.int64)
    seed_key[cev[firsts]] = ckeys[firsts]
    # seed position: E_T-weighted centroid of the TCs in the seed's 3x3 cells
    sk = seed_key[tev]
    d_iu = (key // (2 * off)) % (2 * off) - (sk // (2 * off)) % (2 * off)
    d_iv = key % (2 * off) - sk % (2 * off)
    near = (sk >= 0) & (np.abs(d_iu) <= 1) & (np.abs(d_iv) <= 1)
    wsum = np.bincount(tev[near], weights=et[near], minlength=n_ev)
    su = np.bincount(tev[near], weights=(et * u)[near], minlength=n_ev) / np.maximum(wsum, 1e-300)
    sv = np.bincount(tev[near], weights=(et * v)[near], minlength=n_ev) / np.maximum(wsum, 1e-300)

    # ---- cluster: TCs within the radius of the seed position
    inc = (wsum[tev] > 0) & (np.hypot(u - su[tev], v - sv[tev]) < settings.radius)
    layer_et = np.zeros((n_ev, len(layers)))
    np.add.at(layer_et, (tev[inc], tlay[inc]), et[inc])
    tot = np.bincount(tev[inc], weights=et[inc], minlength=n_ev)
    cu = np.bincount(tev[inc], weights=(et * u)[inc], minlength=n_ev) / np.maximum(tot, 1e-300)
    cv = np.bincount(tev[inc], weights=(et * v)[inc], minlength=n_ev) / np.maximum(tot, 1e-300)
    r = np.hypot(cu, cv)
    ceta = np.where(tot > 0, side * np.arcsinh(1.0 / np.maximum(r, 1e-12)), np.nan)
    cphi = np.where(tot > 0, np.arctan2(cv, cu), np.nan)
    dr = np.hypot(ceta - gen_eta, delta_phi(cphi, gen_phi))
    matched = (tot > 0) & (dr < settings.dr_match)
    cl = Clusters(event=ev_ids, gen_pt=gen_pt, gen_eta=gen_eta, gen_phi=gen_phi, eta=ceta,
                  phi=cphi, layer_et=layer_et, layers=layers, matched=matched)
    skips = {"no_gen": int((~has_gen).sum())}
    return cl.select(has_gen), skips


# ------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """Layer weights (GeV per MIP_T) and per-|eta|-bin linear response ``(a, b)``."""

    layers: np.ndarray
    weights: np.ndarray
    eta_edges: np.ndarray
    slope: np.ndarray
    offset: np.ndarray
    n_fit: dict = field(default_factory=dict)

    def weighted(self, cl: Clusters) -> np.ndarray:
        if not np.array_equal(cl.layers, self.layers):
            raise InputRangeError(f"calibration: fitted for layers {self.layers.tolist()}, "
                                  f"got clusters with layers {cl.layers.tolist()}")
        return cl.layer_et @ self.weights

    def apply(self, cl: Clusters) -> np.ndarray:
        """Calibrated pT (GeV) of each cluster, using the cluster's own |eta|."""
        b = _eta_bin(np.abs(cl.eta), self.eta_edges)
        pw = self.weighted(cl)
        return (pw - self.offset[b]) / self.slope[b]

    def as_dict(self) -> dict:
        return {"layers": self.layers.tolist(), "weights": self.weights.round(6).tolist(),
                "eta_edges": self.eta_edges.tolist(), "slope": self.slope.round(6).tolist(),
                "offset": self.offset.round(6).tolist(), "n_fit": self.n_fit}


def _eta_bin(abseta, edges) -> np.ndarray:
    a = np.nan_to_num(np.asarray(abseta, np.float64), nan=edges[0])
    return np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(edges) - 2)


def fit_calibration(cl: Clusters, eta_edges=ETA_EDGES, *, min_per_bin: int = 20,
                    response_window=(0.3, 3.0)) -> Calibration:
    """Fit layer weights and the |eta|-dependent linear correction on matched clusters
    (see the module docstring).  Clusters whose raw response falls outside
    ``response_window`` after a first, global scale are left out of the fits (badly
    seeded or pileup-dominated ones); bins with fewer than ``min_per_bin`` electrons
    take the global linear response."""
    eta_edges = np.asarray(eta_edges, np.float64)
    m = cl.matched & (cl.raw_et > 0)
    need = max(2 * min_per_bin, cl.layer_et.shape[1] + 2)
    if m.sum() < need:
        raise InputRangeError(f"calibration: expected at least {need} matched training "
                              f"electrons, got {int(m.sum())}")
    c = cl.select(m)
    scale = np.median(c.gen_pt / c.raw_et)
    resp = c.raw_et * scale / c.gen_pt
    keep = (resp > response_window[0]) & (resp < response_window[1])
    c = c.select(keep)
    b = _eta_bin(np.abs(c.eta), eta_edges)
    nb = len(eta_edges) - 1
    onehot = np.zeros((len(b), nb))
    onehot[np.arange(len(b)), b] = 1.0
    # pT_gen = sum_l w_l E_l + o_bin  (w >= 0, o of either sign: +1 and -1 columns)
    A = np.concatenate([c.layer_et, onehot, -onehot], axis=1)
    sol, _ = nnls(A, c.gen_pt, maxiter=50 * A.shape[1])
    w = sol[:c.layer_et.shape[1]]
    pw = c.layer_et @ w
    g_a, g_b = np.polyfit(c.gen_pt, pw, 1)
    slope = np.full(nb, g_a)
    offset = np.full(nb, g_b)
    counts = {}
    for i in range(nb):
        s = b == i
        counts[f"{eta_edges[i]:.1f}"] = int(s.sum())
        if s.sum() >= min_per_bin and np.ptp(c.gen_pt[s]) > 0:
            a_i, b_i = np.polyfit(c.gen_pt[s], pw[s], 1)
            if a_i > 0.05:
                slope[i], offset[i] = a_i, b_i
    return Calibration(layers=c.layers.copy(), weights=w, eta_edges=eta_edges, slope=slope,
                       offset=offset, n_fit={"electrons": int(len(b)), "per_eta_bin": counts,
                                             "left_out": int((~keep).sum())})


# ------------------------------------------------------------- resolution
def effective_rms(x) -> float:
    """Half-width of the shortest interval containing 68 % of the values
    (``ceil(0.68 n)`` of them)."""
    v = np.sort(np.asarray(x, np.float64))
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return float("nan")
    k = int(np.ceil(0.68 * n))
    widths = v[k - 1:] - v[:n - k + 1]
    return float(widths.min() / 2.0)


def _eff_rms_rows(s: np.ndarray, k: int) -> np.ndarray:
    """Effective RMS of each row of an already sorted (B, n) array."""
    return (s[:, k - 1:] - s[:, :s.shape[1] - k + 1]).min(1) / 2.0


def effective_resolution(ratio, *, n_boot: int = 200, seed: int = 0,
                         min_n: int = 10) -> dict:
    """``effective_rms(ratio) / mean(ratio)`` with its bootstrap standard deviation.

    Returns ``{"value", "err", "n", "mean"}``; ``value`` and ``err`` are None with
    fewer than ``min_n`` finite values."""
    r = np.asarray(ratio, np.float64)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < max(min_n, 2):
        return {"value": None, "err": None, "n": n, "mean": float(r.mean()) if n else None}
    val = effective_rms(r) / r.mean()
    rng = np.random.default_rng(seed)
    k = int(np.ceil(0.68 * n))
    errs = []
    for lo in range(0, n_boot, 50):             # bounded memory: 50 replicas at a time
        idx = rng.integers(0, n, (min(50, n_boot - lo), n))
        s = np.sort(r[idx], axis=1)
        errs.append(_eff_rms_rows(s, k) / s.mean(1))
    boot = np.concatenate(errs) if errs else np.zeros(0)
    return {"value": float(val), "err": float(boot.std(ddof=1)) if len(boot) > 1 else None,
            "n": n, "mean": float(r.mean())}


def paired_resolution_ratio(ratio_a, ratio_b, *, n_boot: int = 200, seed: int = 0,
                            min_n: int = 10) -> dict:
    """Resolution of ``a`` over resolution of ``b`` measured on the same electrons (aligned
    arrays of pT(L1)/pT(gen); pairs with a non-finite member are dropped), with a paired
    bootstrap (the same resampled electrons for both): the correlated part of the two
    uncertainties cancels.  ``{"value", "err", "n"}``, None below ``min_n`` pairs."""
    a = np.asarray(ratio_a, np.float64)
    b = np.asarray(ratio_b, np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"paired ratio: expected aligned arrays, got shapes {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    if n < max(min_n, 2):
        return {"value": None, "err": None, "n": n}
    k = int(np.ceil(0.68 * n))
    val = (effective_rms(a) / a.mean()) / (effective_rms(b) / b.mean())
    rng = np.random.default_rng(seed)
    boot = []
    for lo in range(0, n_boot, 50):
        idx = rng.integers(0, n, (min(50, n_boot - lo), n))
        sa, sb = np.sort(a[idx], axis=1), np.sort(b[idx], axis=1)
        boot.append((_eff_rms_rows(sa, k) / sa.mean(1)) / (_eff_rms_rows(sb, k) / sb.mean(1)))
    boot = np.concatenate(boot)
    return {"value": float(val), "err": float(boot.std(ddof=1)), "n": n}


def resolution_table(pt_l1, cl: Clusters, *, eta_edges=ETA_EDGES, pt_edges=PT_EDGES,
                     min_pt: float = 10.0, n_boot: int = 200, seed: int = 0) -> dict:
    """Resolution integrated (generated pT >= ``min_pt``), per |eta| bin (same pT cut) and
    per generated-pT bin, over matched electrons; plus the matching efficiency."""
    ratio = np.asarray(pt_l1, np.float64) / cl.gen_pt
    abseta = np.abs(cl.gen_eta)
    sel = cl.matched & (cl.gen_pt >= min_pt)
    out = {"min_gen_pt": min_pt,
           "integrated": effective_resolution(ratio[sel], n_boot=n_boot, seed=seed),
           "vs_eta": [], "vs_pt": []}
    for lo, hi in zip(eta_edges[:-1], eta_edges[1:], strict=True):
        s = sel & (abseta >= lo) & (abseta < hi)
        row = effective_resolution(ratio[s], n_boot=n_boot, seed=seed)
        out["vs_eta"].append({"lo": round(float(lo), 3), "hi": round(float(hi), 3), **row})
    for lo, hi in zip(pt_edges[:-1], pt_edges[1:], strict=True):
        s = cl.matched & (cl.gen_pt >= lo) & (cl.gen_pt < hi)
        row = effective_resolution(ratio[s], n_boot=n_boot, seed=seed)
        out["vs_pt"].append({"lo": float(lo), "hi": float(hi), **row})
    den = cl.gen_pt >= min_pt
    out["efficiency"] = {"matched": int((cl.matched & den).sum()), "electrons": int(den.sum()),
                         "value": float(cl.matched[den].mean()) if den.any() else None}
    return out


# --------------------------------------------------------- one algorithm's figures
def events_subset(split: dict, max_events: int) -> dict:
    """The wafers of the split's first ``max_events`` events (0: all)."""
    if not max_events:
        return split
    ev = np.unique(split["event"])[:max_events]
    m = np.isin(split["event"], ev)
    return {k: v[m] for k, v in split.items()}


def median_emd(calq: np.ndarray, decoded: np.ndarray) -> dict:
    """Median exact EMD (input CALQ vs decoded); a decoded wafer that is empty while the
    input is not counts as infinitely far (it lost everything) and is counted."""
    from flow.core.emd_exact import emd_pairs

    if len(calq) == 0:
        return {"median": None, "n": 0, "n_empty_decoded": 0}
    e = emd_pairs(calq.astype(np.float64), decoded.astype(np.float64), empty="nan")
    empty = ~np.isfinite(e)
    e = np.where(empty, np.inf, e)
    med = float(np.median(e))
    return {"median": med if np.isfinite(med) else None, "n": int(len(e)),
            "n_empty_decoded": int(empty.sum()),
            "q16": float(np.percentile(e, 16)) if np.isfinite(np.percentile(e, 16)) else None,
            "q84": float(np.percentile(e, 84)) if np.isfinite(np.percentile(e, 84)) else None}


def evaluate_decoded(dec_train, dec_test, train: dict, test: dict, detector, s, *, seed: int,
                     calq_emd: np.ndarray) -> dict:
    """Every figure of one algorithm from its decoded TC charges of the train and test splits:
    clusters (:func:`cluster`), the calibration fitted on train, the resolution table on test
    (:func:`resolution_table`) and the median exact EMD of the first ``len(calq_emd)`` test
    wafers against ``calq_emd``.  ``s``: the ``physics`` settings (``seed_cell``, ``radius``,
    ``dr_match``, ``min_per_eta_bin``, ``min_gen_pt``, ``n_boot``).  Keys starting with ``_``
    are per-event arrays (the ratio pT(L1)/pT(gen) of the selected electrons, their |eta|) for
    paired comparisons, not for JSON."""
    settings = ClusterSettings(seed_cell=s.seed_cell, radius=s.radius, dr_match=s.dr_match)
    cl_tr, skip_tr = cluster(train, dec_train, detector, settings)
    cl_te, skip_te = cluster(test, dec_test, detector, settings)
    cal = fit_calibration(cl_tr, min_per_bin=s.min_per_eta_bin)
    pt = cal.apply(cl_te)
    tab = resolution_table(pt, cl_te, min_pt=s.min_gen_pt, n_boot=s.n_boot, seed=seed)
    emd = median_emd(calq_emd, dec_test[:len(calq_emd)])
    sel = cl_te.matched & (cl_te.gen_pt >= s.min_gen_pt)
    ratio = np.where(sel, pt / cl_te.gen_pt, np.nan)      # per test event, aligned across runs
    return {"resolution": tab, "median_emd": emd, "calibration": cal.as_dict(),
            "skipped": {"train": skip_tr, "test": skip_te}, "_ratio": ratio,
            "_abseta": np.abs(cl_te.gen_eta)}
