"""Synthetic HGCAL trigger ntuples: electron showers + pileup-200-like deposits.

The generator writes ROOT files in the **per-TC layout** of docs/reference.md section 7
(jagged ``tc_*`` branches, one list per event) so that the synthetic and the
real data go through the same reader (:mod:`flow.data.ntuple`).  The physics model
and every parameter are documented in ``docs/data.md``; in short:

* **Detector.**  Layers at ``|z| = z_first + (L - 1) pitch``; each layer is
  tiled by hexagonal wafers (flat-to-flat ``wafer_size_cm``, vertices at
  0, 60, ... degrees) on the lattice ``centre(u, v) = W (sqrt(3)/2 u, u/2 + v)``
  (``waferu``, ``waferv`` = ``u``, ``v``).  A wafer exists where the |eta| of
  its centre is inside ``acceptance_eta``.  The 48 trigger cells (TC) of a wafer
  are the Voronoi cells of the regular triangular lattice given by their HGCAL
  ``(cellu, cellv)`` coordinates (:data:`flow.core.geometry.TC_UV`), clipped to the
  wafer: TC pitch ``W / 7`` (2.39 cm for 16.7 cm wafers), cells on the wafer
  edge are half cells, as on the sensors.
* **Electron showers.**  Flat pT and |eta|, flat phi, straight line from the
  origin.  Longitudinal profile: gamma distribution in radiation lengths
  (``t_max = ln(E / E_c) - 0.5``, ``b = 0.5``) integrated over each layer's
  absorber slice (path length / cos theta); lateral profile: core + halo,
  each ``2 r R^2 / (r^2 + R^2)^2``, radii and core fraction evolving with
  depth.  The layer energy is deposited as a Poisson number of spots with
  exponentially distributed energies (sampling fluctuations) placed by the
  lateral profile; each spot lands in the (wafer, TC) containing it.
* **Pileup.**  In every written wafer, a Poisson number of small deposits with
  a rate growing with |eta| and peaking early in depth, exponential E_T, and
  a narrow lateral profile.  Pileup-only wafers are drawn uniformly in area in
  the endcap opposite to the electron.
* **Electronics.**  Gaussian noise per TC, zero suppression (cells below the
  threshold are sent as 0, wafers with no cell above it are not read out),
  then ``tc_data`` = the linearised integer TC charge of the ROC in units of
  CALQ counts at unit calibration (35 per MIP), before the ROC's ``drop``
  shift and 4E3M compression.  The reader applies the bit-exact ECON-T front
  end (:mod:`flow.core.frontend`).

All randomness comes from ``numpy.random.Generator`` objects seeded from
``(seed, chunk index)``, so a given config and seed always give the same
events; the ROOT files are written with a fixed UUID and timestamp so they are
byte-identical too.
"""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import gammainc

from flow.core.frontend import MIPT_CALQ
from flow.core.geometry import N_TC, TC_UV

SQRT3 = float(np.sqrt(3.0))
#: longitudinal-profile slope parameter b (PDG: about 0.5 for electrons).
PROFILE_B = 0.5
#: compression of the synthetic ROOT files (ZSTD 3: 3x smaller and 4x faster than ZLIB 1).
ROOT_ZSTD_LEVEL = 3
#: fixed ROOT datime code written into every synthetic file (2000-01-01 00:00:00).
_FIXED_DATIME = ((2000 - 1995) << 26) | (1 << 22) | (1 << 17)

# ------------------------------------------------------------ wafer geometry
#: TC centres in units of half the TC pitch, centred on the wafer centre: the
#: regular triangular lattice spanned by the HGCAL (cellu, cellv) coordinates.
_uvf = TC_UV.astype(np.float64)
TC_LOCAL_UNITS = np.stack([SQRT3 * _uvf[:, 1], 2.0 * _uvf[:, 0] - _uvf[:, 1]], axis=1)
TC_LOCAL_UNITS -= TC_LOCAL_UNITS.mean(axis=0)
#: wafer apothem (centre to flat edge) in the same units: the outermost TC
#: centres lie on the edges (half cells), 7 on all six sides.
WAFER_APOTHEM_UNITS = 7.0
_CIRCUM_UNITS = 2.0 * WAFER_APOTHEM_UNITS / SQRT3
_RASTER_RES = 1.0 / 32.0
_RASTER_N = int(np.ceil(2.0 * _CIRCUM_UNITS / _RASTER_RES)) + 2


def _build_raster() -> np.ndarray:
    """Nearest-TC map over the wafer's bounding box (Voronoi cells of the TC centres)."""
    c = (np.arange(_RASTER_N) + 0.5) * _RASTER_RES - _CIRCUM_UNITS - _RASTER_RES
    xx, yy = np.meshgrid(c, c, indexing="ij")
    best = np.full(xx.shape, np.inf)
    out = np.zeros(xx.shape, dtype=np.int16)
    for t, (x, y) in enumerate(TC_LOCAL_UNITS):
        d = (xx - x) ** 2 + (yy - y) ** 2
        closer = d < best
        best = np.where(closer, d, best)
        out[closer] = t
    return out


_RASTER = _build_raster()


def _ring_offsets(rings: int) -> np.ndarray:
    """Lattice offsets (du, dv) of the wafers within ``rings`` steps, the centre first."""
    offs = [(du, dv) for du in range(-rings, rings + 1) for dv in range(-rings, rings + 1)
            if max(abs(du), abs(dv), abs(du + dv)) <= rings]
    offs.sort(key=lambda o: (max(abs(o[0]), abs(o[1]), abs(o[0] + o[1])), o))
    return np.asarray(offs, dtype=np.int64)


@dataclass(frozen=True)
class Detector:
    """Wafer tiling of the layers (positions in cm)."""

    wafer_size_cm: float = 16.7
    z_first_cm: float = 322.1
    layer_pitch_cm: float = 1.4
    acceptance_eta: tuple[float, float] = (1.45, 3.05)

    @property
    def unit_cm(self) -> float:
        """cm per TC-lattice unit (half the TC pitch)."""
        return self.wafer_size_cm / (2.0 * WAFER_APOTHEM_UNITS)

    def z(self, layer) -> np.ndarray:
        return self.z_first_cm + (np.asarray(layer, dtype=np.float64) - 1.0) * self.layer_pitch_cm

    def centre(self, wu, wv) -> tuple[np.ndarray, np.ndarray]:
        w = self.wafer_size_cm
        wu = np.asarray(wu, dtype=np.float64)
        wv = np.asarray(wv, dtype=np.float64)
        return w * SQRT3 / 2.0 * wu, w * (wu / 2.0 + wv)

    def wafer_of(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Lattice coordinates of the wafer containing each point (hexagon rounding)."""
        w = self.wafer_size_cm
        q = 2.0 * np.asarray(x) / (SQRT3 * w)
        r = np.asarray(y) / w - q / 2.0
        s = -q - r
        rq, rr, rs = np.rint(q), np.rint(r), np.rint(s)
        dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
        fix_q = (dq > dr) & (dq > ds)
        fix_r = ~fix_q & (dr > ds)
        rq = np.where(fix_q, -rr - rs, rq)
        rr = np.where(fix_r, -rq - rs, rr)
        return rq.astype(np.int64), rr.astype(np.int64)

    def locate(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(waferu, waferv, TC index) of the cell containing each point."""
        wu, wv = self.wafer_of(x, y)
        cx, cy = self.centre(wu, wv)
        return wu, wv, tc_at_local((np.asarray(x) - cx) / self.unit_cm,
                                   (np.asarray(y) - cy) / self.unit_cm)

    def eta(self, x, y, z) -> np.ndarray:
        """|eta| of points (cm)."""
        rho = np.hypot(x, y)
        return np.arcsinh(np.asarray(z) / np.maximum(rho, 1e-9))

    def tc_positions(self, wu, wv) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the 48 TC centres of each wafer: shapes ``(..., 48)``."""
        cx, cy = self.centre(wu, wv)
        return (cx[..., None] + TC_LOCAL_UNITS[:, 0] * self.unit_cm,
                cy[..., None] + TC_LOCAL_UNITS[:, 1] * self.unit_cm)


def tc_at_local(lx, ly) -> np.ndarray:
    """TC index at local wafer coordinates (TC-lattice units, wafer centre at 0)."""
    ix = np.floor((np.asarray(lx) + _CIRCUM_UNITS + _RASTER_RES) / _RASTER_RES).astype(np.int64)
    iy = np.floor((np.asarray(ly) + _CIRCUM_UNITS + _RASTER_RES) / _RASTER_RES).astype(np.int64)
    np.clip(ix, 0, _RASTER_N - 1, out=ix)
    np.clip(iy, 0, _RASTER_N - 1, out=iy)
    return _RASTER[ix, iy].astype(np.int64)


def tc_areas(samples: int = 400) -> np.ndarray:
    """Relative area of each TC inside the wafer (1.0 = a full cell); for docs and tests."""
    det = Detector(wafer_size_cm=2.0 * WAFER_APOTHEM_UNITS)  # 1 cm = 1 unit
    g = (np.arange(samples) + 0.5) / samples * 2 * _CIRCUM_UNITS - _CIRCUM_UNITS
    xx, yy = np.meshgrid(g, g, indexing="ij")
    wu, wv = det.wafer_of(xx, yy)
    inside = (wu == 0) & (wv == 0)
    tc = tc_at_local(xx[inside], yy[inside])
    cell = (2 * _CIRCUM_UNITS / samples) ** 2
    return np.bincount(tc, minlength=N_TC) * cell / (2.0 * SQRT3)


# ------------------------------------------------------------- the generator
@dataclass
class GenStats:
    """Counters of one generation (all integers or sums, merged over chunks)."""

    events: int = 0
    showers: int = 0
    shower_spots: int = 0
    shower_mip_total: float = 0.0
    shower_mip_written: float = 0.0
    pileup_clusters: int = 0
    pileup_spots: int = 0
    candidate_wafers: int = 0
    outside_acceptance: int = 0
    duplicate_pileup_wafers: int = 0
    not_read_out: int = 0
    wafers_written: int = 0
    tc_entries: int = 0
    tc_above_zs: int = 0

    def add(self, other: GenStats) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict:
        d = dict(vars(self))
        d["shower_containment"] = (self.shower_mip_written / self.shower_mip_total
                                   if self.shower_mip_total > 0 else None)
        for k in ("shower_mip_total", "shower_mip_written"):
            d[k] = round(d[k], 3)
        return d


def detector_from(settings) -> Detector:
    s = settings.synth
    return Detector(wafer_size_cm=s.wafer_size_cm, z_first_cm=s.z_first_cm,
                    layer_pitch_cm=s.layer_pitch_cm, acceptance_eta=tuple(s.acceptance_eta))


def _radial(rng: np.random.Generator, radius: np.ndarray) -> np.ndarray:
    """Radii drawn from ``2 r R^2 / (r^2 + R^2)^2`` (CDF ``r^2 / (r^2 + R^2)``), tail cut at 30 R."""
    u = rng.random(radius.shape) * (900.0 / 901.0)
    return radius * np.sqrt(u / (1.0 - u))


def _uniform_in_hexagon(rng: np.random.Generator, n: int, circumradius: float):
    """Uniform points in a hexagon with vertices at 0, 60, ... degrees (three rhombi)."""
    k = rng.integers(0, 3, n)
    a, b = rng.random(n), rng.random(n)
    ang1 = np.deg2rad(120.0 * k)
    ang2 = ang1 + np.deg2rad(120.0)
    x = circumradius * (a * np.cos(ang1) + b * np.cos(ang2))
    y = circumradius * (a * np.sin(ang1) + b * np.sin(ang2))
    return x, y


def _gamma_slice(a: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray) -> np.ndarray:
    """Fraction of a gamma(a, b) longitudinal profile between depths t_lo and t_hi."""
    return gammainc(a, PROFILE_B * t_hi) - gammainc(a, PROFILE_B * np.maximum(t_lo, 0.0))


def generate_chunk(settings, seed: int, chunk_index: int, first_event: int,
                   n_events: int) -> tuple[dict, dict, GenStats]:
    """Generate ``n_events`` events.

    Returns ``(events, wafers, stats)``: ``events`` per-event arrays
    (``event``, ``pt``, ``eta`` signed, ``phi``, ``energy``); ``wafers`` one row
    per read-out wafer sorted by (event, zside, layer, waferu, waferv) (``ev`` index within the chunk,
    ``zside``, ``layer``, ``waferu``, ``waferv``, ``data`` (n, 48) uint32,
    ``simenergy`` (n, 48) float32 GeV, ``eta`` (n, 48) float32 signed TC eta).
    """
    s = settings.synth
    pu = s.pileup
    det = detector_from(settings)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, chunk_index])))
    st = GenStats(events=n_events, showers=n_events)
    n = n_events

    zside = np.where(rng.random(n) < 0.5, -1, 1).astype(np.int64)
    abseta = rng.uniform(s.eta_range[0], s.eta_range[1], n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = rng.uniform(s.pt_range[0], s.pt_range[1], n)
    energy = pt * np.cosh(abseta)
    e_mip = energy * 1000.0 / s.mip_mev
    tmax = np.log(energy * 1000.0 / s.critical_energy_mev) - 0.5
    tmax = np.maximum(tmax + rng.normal(0.0, s.tmax_sigma_x0, n), 0.5) if s.tmax_sigma_x0 > 0 \
        else np.maximum(tmax, 0.5)
    a_par = PROFILE_B * tmax + 1.0
    costh = np.tanh(abseta)
    # pileup depth profile, normalised to 1 at its maximum over the depth axis
    a_pu = PROFILE_B * pu.depth_x0 + 1.0
    pu_peak = (pu.depth_x0 ** (a_pu - 1.0)) * np.exp(-PROFILE_B * pu.depth_x0)

    rings = _ring_offsets(s.shower_rings)
    n_ring = len(rings)
    n_slot = n_ring + pu.wafers_per_layer
    lut_n = 2 * s.shower_rings + 1
    ring_lut = np.full((lut_n, lut_n), -1, dtype=np.int64)
    ring_lut[rings[:, 0] + s.shower_rings, rings[:, 1] + s.shower_rings] = np.arange(n_ring)
    acc_lo, acc_hi = det.acceptance_eta
    circ_cm = _CIRCUM_UNITS * det.unit_cm

    layers = sorted(set(settings.layers))
    parts: list[dict] = []
    for layer in layers:
        z = float(det.z(layer))
        # ---- wafers of this layer: the shower's rings, then pileup-only ones
        rho_axis = z / np.sinh(abseta)
        xa, ya = rho_axis * np.cos(phi), rho_axis * np.sin(phi)
        u0, v0 = det.wafer_of(xa, ya)
        wu = np.empty((n, n_slot), dtype=np.int64)
        wv = np.empty((n, n_slot), dtype=np.int64)
        wz = np.empty((n, n_slot), dtype=np.int64)
        wu[:, :n_ring] = u0[:, None] + rings[:, 0]
        wv[:, :n_ring] = v0[:, None] + rings[:, 1]
        wz[:, :n_ring] = zside[:, None]
        if pu.wafers_per_layer:
            rho_lo, rho_hi = z / np.sinh(acc_hi), z / np.sinh(acc_lo)
            m = (n, pu.wafers_per_layer)
            rho = np.sqrt(rng.uniform(rho_lo ** 2, rho_hi ** 2, m))
            ph = rng.uniform(-np.pi, np.pi, m)
            pu_u, pu_v = det.wafer_of(rho * np.cos(ph), rho * np.sin(ph))
            wu[:, n_ring:], wv[:, n_ring:] = pu_u, pu_v
            wz[:, n_ring:] = -zside[:, None]
        cx, cy = det.centre(wu, wv)
        weta = det.eta(cx, cy, z)
        valid = (weta >= acc_lo) & (weta <= acc_hi)
        st.candidate_wafers += n * n_slot
        st.outside_acceptance += int((~valid).sum())
        if pu.wafers_per_layer > 1:
            key = (wu[:, n_ring:] + 4096) * 8192 + (wv[:, n_ring:] + 4096)
            order = np.argsort(key, axis=1, kind="stable")
            sk = np.take_along_axis(key, order, axis=1)
            dup_sorted = np.zeros_like(sk, dtype=bool)
            dup_sorted[:, 1:] = sk[:, 1:] == sk[:, :-1]
            dup = np.zeros_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            dup &= valid[:, n_ring:]
            st.duplicate_pileup_wafers += int(dup.sum())
            valid[:, n_ring:] &= ~dup

        # ---- shower spots
        t_hi = (s.x0_upstream + layer * s.x0_per_layer) / costh
        t_lo = t_hi - s.x0_per_layer / costh
        e_layer = e_mip * _gamma_slice(a_par, t_hi, t_lo)
        nsp = rng.poisson(e_layer / s.spot_mip)
        ev = np.repeat(np.arange(n), nsp)
        e_spot = rng.exponential(s.spot_mip, ev.size)
        tau = np.clip(0.5 * (t_hi + t_lo) / tmax, 0.0, 3.0)
        grow = 0.7 + 0.3 * tau
        r_core = s.moliere_radius_cm * s.core_radius_rm * grow
        r_halo = s.moliere_radius_cm * s.halo_radius_rm * grow
        p_core = np.clip(s.core_fraction - 0.15 * np.maximum(tau - 1.0, 0.0), 0.3, 1.0)
        is_core = rng.random(ev.size) < p_core[ev]
        r = _radial(rng, np.where(is_core, r_core[ev], r_halo[ev]))
        ang = rng.uniform(0.0, 2.0 * np.pi, ev.size)
        sx, sy = xa[ev] + r * np.cos(ang), ya[ev] + r * np.sin(ang)
        su, sv, stc = det.locate(sx, sy)
        du, dv = su - u0[ev], sv - v0[ev]
        near = (np.abs(du) <= s.shower_rings) & (np.abs(dv) <= s.shower_rings)
        slot = np.full(ev.size, -1, dtype=np.int64)
        slot[near] = ring_lut[du[near] + s.shower_rings, dv[near] + s.shower_rings]
        ok = slot >= 0
        ok[ok] = valid[ev[ok], slot[ok]]
        idx = (ev[ok] * n_slot + slot[ok]) * N_TC + stc[ok]
        shower = np.bincount(idx, weights=e_spot[ok], minlength=n * n_slot * N_TC)
        shower = shower.reshape(n, n_slot, N_TC)
        st.shower_spots += int(ev.size)
        st.shower_mip_total += float(e_spot.sum())
        st.shower_mip_written += float(e_spot[ok].sum())

        # ---- pileup deposits in every written wafer (periodic in the wafer)
        t_pu = s.x0_upstream + layer * s.x0_per_layer
        depth = (t_pu ** (a_pu - 1.0)) * np.exp(-PROFILE_B * t_pu) / pu_peak
        depth = max(depth, pu.depth_floor)
        lam = np.where(valid, pu.clusters_per_wafer * depth * np.exp(pu.eta_slope * (weta - 2.0)), 0.0)
        ncl = rng.poisson(lam).ravel()
        cl_w = np.repeat(np.arange(n * n_slot), ncl)
        cl_e = rng.exponential(pu.cluster_mipt, cl_w.size) * np.cosh(weta.ravel()[cl_w])
        cl_x, cl_y = _uniform_in_hexagon(rng, cl_w.size, circ_cm)
        nps = rng.poisson(cl_e / s.spot_mip)
        sp_c = np.repeat(np.arange(cl_w.size), nps)
        sp_e = rng.exponential(s.spot_mip, sp_c.size)
        rr = _radial(rng, np.full(sp_c.size, pu.cluster_radius_cm))
        ang = rng.uniform(0.0, 2.0 * np.pi, sp_c.size)
        px, py = cl_x[sp_c] + rr * np.cos(ang), cl_y[sp_c] + rr * np.sin(ang)
        pu_wu, pu_wv = det.wafer_of(px, py)          # wrap into the wafer (periodic lattice)
        ox, oy = det.centre(pu_wu, pu_wv)
        ptc = tc_at_local((px - ox) / det.unit_cm, (py - oy) / det.unit_cm)
        pileup = np.bincount(cl_w[sp_c] * N_TC + ptc, weights=sp_e, minlength=n * n_slot * N_TC)
        pileup = pileup.reshape(n, n_slot, N_TC)
        st.pileup_clusters += int(cl_w.size)
        st.pileup_spots += int(sp_c.size)

        # ---- electronics: noise, zero suppression, ROC charge
        total = shower + pileup
        if s.noise_mip > 0:
            total += rng.normal(0.0, s.noise_mip, total.shape)
        above = total >= s.zs_threshold_mip
        above &= valid[..., None]
        read = above.any(axis=-1)
        st.not_read_out += int((valid & ~read).sum())
        gain = MIPT_CALQ * 2048.0 / max(settings.calvalue, 1)
        data = np.where(above, np.floor(np.maximum(total, 0.0) * gain), 0.0)
        data = np.minimum(data, np.iinfo(np.uint32).max).astype(np.uint32)
        ei, si = np.nonzero(read)
        tx, ty = det.tc_positions(wu[ei, si], wv[ei, si])
        tc_eta = det.eta(tx, ty, z) * wz[ei, si][:, None]
        parts.append({
            "ev": ei, "zside": wz[ei, si], "layer": np.full(ei.size, layer, dtype=np.int64),
            "waferu": wu[ei, si], "waferv": wv[ei, si],
            "data": data[ei, si],
            "simenergy": (shower[ei, si] * (s.mip_mev / 1000.0)).astype(np.float32),
            "eta": tc_eta.astype(np.float32),
        })
        st.tc_above_zs += int(above[ei, si].sum())

    wafers = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # reader order: (event, zside, layer, waferu, waferv) - lets the reader skip its sort
    order = np.lexsort((wafers["waferv"], wafers["waferu"], wafers["layer"], wafers["zside"],
                        wafers["ev"]))
    wafers = {k: v[order] for k, v in wafers.items()}
    st.wafers_written = int(wafers["ev"].size)
    st.tc_entries = st.wafers_written * N_TC
    events = {"event": first_event + np.arange(n, dtype=np.int64), "pt": pt,
              "eta": zside * abseta, "phi": phi, "energy": energy}
    return events, wafers, st


# -------------------------------------------------------------- ROOT writer
@contextlib.contextmanager
def _fixed_root_datime():
    """Write a fixed fDatime into ROOT headers and keys (byte-identical reruns)."""
    import uproot._util as uutil

    orig = getattr(uutil, "datetime_to_code", None)
    if orig is None:  # pragma: no cover - a future uproot: files just carry the time
        yield
        return
    uutil.datetime_to_code = lambda dt: _FIXED_DATIME
    try:
        yield
    finally:
        uutil.datetime_to_code = orig


def _counter_name(branch: str) -> str:
    """One shared counter per collection, CMSSW-style: ``tc_n``, ``gen_n``."""
    return branch.split("_", 1)[0] + "_n"


def _to_branches(events: dict, wafers: dict) -> dict:
    """Per-event jagged branches (CMSSW-like names) from one chunk."""
    import awkward as ak

    n = events["event"].size
    per_event = np.bincount(wafers["ev"], minlength=n) * N_TC
    rep = lambda a: np.repeat(a, N_TC)  # noqa: E731 - one value per wafer -> per TC
    nw = wafers["ev"].size
    flat = {
        "tc_zside": rep(wafers["zside"]).astype(np.int8),
        "tc_layer": rep(wafers["layer"]).astype(np.int16),
        "tc_waferu": rep(wafers["waferu"]).astype(np.int16),
        "tc_waferv": rep(wafers["waferv"]).astype(np.int16),
        "tc_cellu": np.tile(TC_UV[:, 0], nw).astype(np.int8),
        "tc_cellv": np.tile(TC_UV[:, 1], nw).astype(np.int8),
        "tc_data": wafers["data"].reshape(-1),
        "tc_simenergy": wafers["simenergy"].reshape(-1),
        "tc_eta": wafers["eta"].reshape(-1),
    }
    out = {k: ak.unflatten(v, per_event) for k, v in flat.items()}
    one = np.ones(n, dtype=np.int64)
    out["gen_pt"] = ak.unflatten(events["pt"].astype(np.float32), one)
    out["gen_eta"] = ak.unflatten(events["eta"].astype(np.float32), one)
    out["gen_phi"] = ak.unflatten(events["phi"].astype(np.float32), one)
    out["gen_energy"] = ak.unflatten(events["energy"].astype(np.float32), one)
    out["gen_pdgid"] = ak.unflatten((-11 * np.sign(events["eta"])).astype(np.int32), one)
    out["event"] = events["event"]
    return out


def write_ntuples(settings, out_dir: Path, seed: int, *, progress: bool = True,
                  n_events: int | None = None) -> tuple[list[Path], GenStats]:
    """Generate ``settings.n_events`` events into ``settings.n_files`` ROOT files.

    Files ``synthetic_NNN.root`` in ``out_dir``, the tree at ``settings.tree``.
    Events are numbered globally (branch ``event``) and split evenly over the
    files; generation runs in chunks of ``settings.chunk_size`` events, each
    with its own seeded generator.
    """
    import uproot
    from tqdm import tqdm

    n_total = settings.n_events if n_events is None else n_events
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n_total, settings.n_files + 1).round().astype(int)
    stats = GenStats()
    paths = []
    chunk_index = 0
    bar = tqdm(total=n_total, unit="ev", desc="generate", disable=None if progress else True,
               leave=False)
    with _fixed_root_datime():
        for f in range(settings.n_files):
            path = out_dir / f"synthetic_{f:03d}.root"
            paths.append(path)
            file_uuid = uuid.UUID(int=(seed << 32) | f)
            with uproot.recreate(path, uuid_function=lambda u=file_uuid: u,
                                 compression=uproot.ZSTD(ROOT_ZSTD_LEVEL)) as rf:
                tree = None
                for e0 in range(int(bounds[f]), int(bounds[f + 1]), settings.chunk_size):
                    n = min(settings.chunk_size, int(bounds[f + 1]) - e0)
                    ev, wf, st = generate_chunk(settings, seed, chunk_index, e0, n)
                    chunk_index += 1
                    stats.add(st)
                    branches = _to_branches(ev, wf)
                    if tree is None:  # a TTree (uproot >= 5.7 assignment would make an RNTuple)
                        tree = rf.mktree(settings.tree, branches, counter_name=_counter_name)
                    else:
                        tree.extend(branches)
                    bar.update(n)
    bar.close()
    return paths, stats
