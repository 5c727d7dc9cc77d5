"""Reader of HGCAL trigger ntuples (docs/reference.md section 7) -> wafers.

Two public layouts are understood, both with the tree at a configurable path
(usually inside a TDirectory):

* **per TC** (``per_tc``): one entry per event, jagged branches ``tc_zside``,
  ``tc_layer``, ``tc_waferu``, ``tc_waferv``, ``tc_cellu``, ``tc_cellv``,
  ``tc_data``, ``tc_eta`` (required) and ``tc_simenergy`` (optional).  Trigger
  cells are grouped into wafers by ``(zside, layer, waferu, waferv)``; the TC
  index comes from ``(cellu, cellv)`` (:func:`flow.core.geometry.uv_to_tc`); TCs
  absent from the ntuple are zero.  ``tc_data`` is the ROC's linearised TC
  charge before the ``drop`` shift and 4E3M compression (``docs/data.md``), so
  the 7-bit words and CALQ are obtained bit-exactly with the ECON-T front end::

      words = encode_charges(tc_data >> drop)
      CALQ  = calibrate(decode_words(words, drop), CALVALUE)

  The wafer |eta| is the mean |tc_eta| of the wafer's TCs present in the file.
* **per wafer** (``per_wafer``): branches ``wafer_layer``, ``wafer_eta``,
  ``wafer_waferu``, ``wafer_waferv`` and ``wafer_CALQ0`` .. ``wafer_CALQ47``
  (required; ``..63`` may exist, only the first 48 are used),
  ``wafer_simenergy`` and ``wafer_zside`` (optional), either jagged (one entry
  per event) or flat (one entry per wafer).  No 7-bit words exist in this
  layout: ``words`` is filled with 255, which is not a valid 7-bit word.

Both: ``gen_pt``/``gen_eta`` and ``gen_phi`` (optional, jagged or scalar; the
leading-pT particle is taken, NaN if absent; ``gen_phi`` NaN when only it is
absent).  Event ids: for one-entry-per-event trees a running counter over
all files in the given order (0, 1, ...); for flat per-wafer trees
``(file index << 40) | event`` (``event`` branch if present, else the entry
number).

Files are streamed in chunks of ``chunk_size`` entries (``TTree.iterate``),
so inputs larger than memory are fine; the result is independent of the chunk
size.  Every problem with an input is a :class:`~flow.runner.errors.DataFormatError`
naming the file, the tree or branch, what was expected and what was found.
"""
from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.core import frontend as frontend
from flow.core.geometry import N_TC, uv_to_tc
from flow.runner.errors import DataFormatError, FlowError

PER_TC_REQUIRED = ("tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu", "tc_cellv",
                   "tc_data", "tc_eta")
PER_TC_OPTIONAL = ("tc_simenergy",)
CALQ_BRANCHES = tuple(f"wafer_CALQ{i}" for i in range(N_TC))
PER_WAFER_REQUIRED = ("wafer_layer", "wafer_eta", "wafer_waferu", "wafer_waferv") + CALQ_BRANCHES
PER_WAFER_OPTIONAL = ("wafer_simenergy", "wafer_zside")
GEN_OPTIONAL = ("gen_pt", "gen_eta", "gen_phi")
LAYOUTS = ("per_tc", "per_wafer")
#: ``words`` value where the input has no 7-bit words (per-wafer layout).
NO_WORD = 255


@dataclass
class WaferChunk:
    """Wafers of one chunk (all arrays share the first axis)."""

    words: np.ndarray      # (n, 48) uint8, NO_WORD where not available
    calq: np.ndarray       # (n, 48) int64
    eta: np.ndarray        # |eta| of the wafer
    layer: np.ndarray
    waferu: np.ndarray
    waferv: np.ndarray
    zside: np.ndarray
    occupancy: np.ndarray  # TCs above 1 MIP_T
    simenergy: np.ndarray  # GeV (NaN if the input has none)
    event: np.ndarray      # global event id
    gen_pt: np.ndarray
    gen_eta: np.ndarray
    gen_phi: np.ndarray

    FIELDS = ("words", "calq", "eta", "layer", "waferu", "waferv", "zside", "occupancy",
              "simenergy", "event", "gen_pt", "gen_eta", "gen_phi")

    def __len__(self) -> int:
        return len(self.event)

    def select(self, mask: np.ndarray) -> WaferChunk:
        return WaferChunk(**{k: getattr(self, k)[mask] for k in self.FIELDS})

    @classmethod
    def concat(cls, chunks: list[WaferChunk]) -> WaferChunk:
        if not chunks:
            return cls.empty()
        return cls(**{k: np.concatenate([getattr(c, k) for c in chunks]) for k in cls.FIELDS})

    @classmethod
    def empty(cls) -> WaferChunk:
        z = np.zeros(0, dtype=np.int64)
        return cls(words=np.zeros((0, N_TC), np.uint8), calq=np.zeros((0, N_TC), np.int64),
                   eta=z.astype(float), layer=z, waferu=z, waferv=z, zside=z, occupancy=z,
                   simenergy=z.astype(float), event=z, gen_pt=z.astype(float),
                   gen_eta=z.astype(float), gen_phi=z.astype(float))


@dataclass
class ReadStats:
    """What the reader saw (for stats.json and the manifest metrics)."""

    files: list[dict] = field(default_factory=list)
    layout: str | None = None
    #: events read (entries of one-entry-per-event trees; flat per-wafer trees add 0)
    events: int = 0
    entries: int = 0
    tc_entries: int = 0
    wafers: int = 0
    wafers_not_in_layers: int = 0
    missing_optional: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"files": self.files, "layout": self.layout, "events": self.events,
                "entries": self.entries, "tc_entries": self.tc_entries, "wafers": self.wafers,
                "wafers_not_in_layers": self.wafers_not_in_layers,
                "missing_optional_branches": sorted(self.missing_optional),
                "words_available": self.layout == "per_tc"}


# ------------------------------------------------------------------- files
def expand_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """Files for a list of paths / glob patterns (each pattern's matches sorted)."""
    out: list[Path] = []
    for pat in patterns:
        pat = str(pat)
        if glob.has_magic(pat):
            hits = sorted(glob.glob(pat, recursive=True))
            if not hits:
                raise DataFormatError(f"ROOT input pattern {pat!r} matches no file "
                                      f"(expected at least one HGCAL trigger ntuple)")
            out.extend(Path(h) for h in hits)
        else:
            p = Path(pat)
            if not p.is_file():
                raise DataFormatError(f"ROOT input file {p} does not exist")
            out.append(p)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    if not uniq:
        raise DataFormatError("no ROOT input files given (data.root_files is empty)")
    return uniq


def open_tree(path: Path, tree_path: str):
    """The TTree at ``tree_path`` in ``path``; any failure is a DataFormatError."""
    import uproot

    try:
        f = uproot.open(path)
    except FlowError:
        raise
    except Exception as err:  # uproot raises many types for corrupt files
        raise DataFormatError(f"{path}: cannot open as a ROOT file ({type(err).__name__}: {err}); "
                              f"expected a complete ROOT file with a TTree at '{tree_path}' "
                              "(is the file truncated or not a ROOT file?)") from None
    try:
        obj = f[tree_path]
    except KeyError:
        try:
            keys = f.keys(recursive=True, cycle=False)
        except Exception:  # noqa: BLE001 - only for the message
            keys = ["<unreadable directory>"]
        raise DataFormatError(f"{path}: no object at tree path '{tree_path}' (data.tree); the file "
                              f"contains {_short(keys)}") from None
    except Exception as err:
        raise DataFormatError(f"{path}: cannot read '{tree_path}' ({type(err).__name__}: {err}); "
                              "the file may be truncated or corrupt") from None
    if not hasattr(obj, "iterate") or not hasattr(obj, "num_entries"):
        raise DataFormatError(f"{path}: '{tree_path}' is a {type(obj).__name__}, expected a TTree")
    return obj


def _short(names, limit: int = 12) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return "[" + ", ".join(names[:limit]) + more + "]"


def detect_layout(branches: set[str]) -> str | None:
    if {"tc_data", "tc_cellu", "tc_cellv"} <= branches:
        return "per_tc"
    if "wafer_CALQ0" in branches:
        return "per_wafer"
    return None


def _check_layout(path: Path, tree_path: str, branches: set[str], layout: str) -> str:
    found = detect_layout(branches)
    if layout == "auto":
        if found is None:
            raise DataFormatError(
                f"{path}:{tree_path}: unknown ntuple layout; expected the per-TC layout (branches "
                f"{', '.join(PER_TC_REQUIRED)}) or the per-wafer layout (branches "
                f"{', '.join(PER_WAFER_REQUIRED[:4])}, wafer_CALQ0..47); found branches "
                f"{_short(sorted(branches))}")
        layout = found
    required = PER_TC_REQUIRED if layout == "per_tc" else PER_WAFER_REQUIRED
    missing = [b for b in required if b not in branches]
    if missing:
        hint = f" (the tree looks like the {found} layout)" if found and found != layout else ""
        raise DataFormatError(
            f"{path}:{tree_path}: missing branch{'es' if len(missing) > 1 else ''} "
            f"{_short(missing)} required by the {layout} layout{hint}; found branches "
            f"{_short(sorted(branches))}")
    return layout


# ---------------------------------------------------------------- checks
def _where(path, tree_path, branch) -> str:
    return f"{path}:{tree_path}: branch {branch}"


def _numeric(a, path, tree_path, branch, *, integer=False, nonneg=False, entries=None) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iufb":
        raise DataFormatError(f"{_where(path, tree_path, branch)}: expected numbers, found dtype "
                              f"{a.dtype}")
    where = (lambda m: f" (first in entry {int(entries[np.flatnonzero(m)[0]])})"
             if entries is not None else "")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise DataFormatError(f"{_where(path, tree_path, branch)}: expected finite values, "
                                  f"found {int(bad.sum())} NaN/inf{where(bad)}")
        if integer:
            frac = a != np.floor(a)
            if frac.any():
                raise DataFormatError(f"{_where(path, tree_path, branch)}: expected integer "
                                      f"values, found {int(frac.sum())} fractional ones such as "
                                      f"{a[frac][0]!r}{where(frac)}")
    if nonneg:
        neg = a < 0
        if neg.any():
            raise DataFormatError(f"{_where(path, tree_path, branch)}: expected non-negative "
                                  f"values, found {int(neg.sum())} negative ones such as "
                                  f"{a[neg][0]!r}{where(neg)}")
    return a


def _jagged(arr, path, tree_path, branch):
    """(flat numpy content, counts) of a jagged branch; error if it is not jagged."""
    import awkward as ak

    if arr.ndim != 2:
        raise DataFormatError(f"{_where(path, tree_path, branch)}: expected a jagged branch (one "
                              f"list per event, e.g. std::vector), found type {arr.type}")
    try:
        flat = ak.to_numpy(ak.flatten(arr, axis=1))
    except Exception as err:
        raise DataFormatError(f"{_where(path, tree_path, branch)}: expected a list of numbers per "
                              f"event, found type {arr.type} ({err})") from None
    return flat, ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64)


def _leading_gen(arrays, names, n, path, tree_path):
    """(pt, eta, phi) of the leading-pT generator particle per entry (NaN if none;
    phi NaN when the tree has no ``gen_phi``)."""
    import awkward as ak

    nan = np.full(n, np.nan)
    if "gen_pt" not in names or "gen_eta" not in names:
        return nan, nan.copy(), nan.copy()
    has_phi = "gen_phi" in names
    pt, eta = arrays["gen_pt"], arrays["gen_eta"]
    phi = arrays["gen_phi"] if has_phi else None
    if pt.ndim == 1:
        return (_numeric(ak.to_numpy(pt), path, tree_path, "gen_pt").astype(np.float64),
                _numeric(ak.to_numpy(eta), path, tree_path, "gen_eta").astype(np.float64),
                _numeric(ak.to_numpy(phi), path, tree_path, "gen_phi").astype(np.float64)
                if has_phi else nan)
    for b, other in (("gen_eta", eta), ("gen_phi", phi)):
        if other is not None and not ak.all(ak.num(pt, axis=1) == ak.num(other, axis=1)):
            raise DataFormatError(f"{_where(path, tree_path, b)}: expected as many entries as "
                                  "gen_pt in every event")
    best = ak.argmax(pt, axis=1, keepdims=True)
    lead = lambda a: ak.to_numpy(ak.fill_none(ak.firsts(a[best]), np.nan)).astype(np.float64)  # noqa: E731
    return lead(pt), lead(eta), lead(phi) if has_phi else nan


# ------------------------------------------------------------ front end
def _frontend(data: np.ndarray, drop: int, calvalue: int) -> tuple[np.ndarray, np.ndarray]:
    """ROC charges -> (7-bit words, CALQ), bit-exact (flow.core.frontend)."""
    words = frontend.encode_charges(np.asarray(data, dtype=np.int64) >> drop)
    calq = frontend.calibrate(frontend.decode_words(words, drop), np.full(N_TC, calvalue))
    return words.astype(np.uint8), calq


# ------------------------------------------------------------- per-TC chunk
_KEY_U = 1024  # waferu/v offset and range: -512..511


def _same_counts(counts, c, path, tree_path, branch: str, first: str, entry0: int) -> np.ndarray:
    """The per-event list lengths of ``branch`` (``c``) must equal those of the first
    branch read (``counts``; None for the first branch itself)."""
    if counts is not None and not np.array_equal(c, counts):
        e = int(np.flatnonzero(c != counts)[0])
        raise DataFormatError(f"{_where(path, tree_path, branch)}: expected the same number of "
                              f"entries as {first} in every event; entry {entry0 + e} has "
                              f"{int(c[e])} vs {int(counts[e])}")
    return c


def _per_tc_chunk(arrays, names, path, tree_path, entry0, event0, layers, drop, calvalue,
                  stats: ReadStats) -> WaferChunk:
    n = len(arrays)
    flat, counts = {}, None
    for b in PER_TC_REQUIRED + tuple(x for x in PER_TC_OPTIONAL if x in names):
        flat[b], c = _jagged(arrays[b], path, tree_path, b)
        counts = _same_counts(counts, c, path, tree_path, b, PER_TC_REQUIRED[0], entry0)
    ev_local = np.repeat(np.arange(n, dtype=np.int64), counts)
    stats.tc_entries += int(ev_local.size)
    entries = entry0 + ev_local
    ints = {b: _numeric(flat[b], path, tree_path, b, integer=True, entries=entries).astype(np.int64)
            for b in ("tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu", "tc_cellv")}
    data = _numeric(flat["tc_data"], path, tree_path, "tc_data", integer=True, nonneg=True,
                    entries=entries)
    tc_eta = _numeric(flat["tc_eta"], path, tree_path, "tc_eta", entries=entries)
    sim = (_numeric(flat["tc_simenergy"], path, tree_path, "tc_simenergy", nonneg=True,
                    entries=entries).astype(np.float64)
           if "tc_simenergy" in flat else None)
    layer, u, v = ints["tc_layer"], ints["tc_waferu"], ints["tc_waferv"]
    for b, arr, lo, hi in (("tc_layer", layer, 0, 255), ("tc_waferu", u, -512, 511),
                           ("tc_waferv", v, -512, 511)):
        bad = (arr < lo) | (arr > hi)
        if bad.any():
            raise DataFormatError(f"{_where(path, tree_path, b)}: expected values in [{lo}, {hi}], "
                                  f"found {arr[bad][0]} (entry {int(entries[bad][0])})")
    key = ((((ev_local * 2 + (ints["tc_zside"] > 0)) * 256 + layer) * _KEY_U + (u + 512)) * _KEY_U
           + (v + 512))
    if layers:
        sel = np.isin(layer, np.asarray(sorted(layers)))
        if not sel.all():
            stats.wafers_not_in_layers += int(np.unique(key[~sel]).size)
            key, entries = key[sel], entries[sel]
            data, tc_eta = data[sel], tc_eta[sel]
            sim = sim[sel] if sim is not None else None
            cu, cv = ints["tc_cellu"][sel], ints["tc_cellv"][sel]
        else:
            cu, cv = ints["tc_cellu"], ints["tc_cellv"]
    else:
        cu, cv = ints["tc_cellu"], ints["tc_cellv"]
    tc = uv_to_tc(cu, cv)
    if (tc < 0).any():
        i = int(np.flatnonzero(tc < 0)[0])
        raise DataFormatError(f"{_where(path, tree_path, 'tc_cellu/tc_cellv')}: expected one of "
                              f"the 48 trigger-cell coordinates of a wafer (geometry.TC_UV), found "
                              f"(cellu, cellv) = ({int(cu[i])}, {int(cv[i])}) in entry "
                              f"{int(entries[i])} ({int((tc < 0).sum())} invalid in all)")
    if key.size and (key[1:] >= key[:-1]).all():  # already grouped in order: no sort needed
        first = np.empty(key.size, dtype=bool)
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        inv = np.cumsum(first) - 1
        wkeys = key[first]
    else:
        wkeys, inv = np.unique(key, return_inverse=True)
    nw = wkeys.size
    cell = inv * N_TC + tc
    hits = np.bincount(cell, minlength=nw * N_TC)
    if hits.max(initial=0) > 1:
        c = int(np.flatnonzero(hits > 1)[0])
        i = int(np.flatnonzero(cell == c)[0])
        raise DataFormatError(f"{path}:{tree_path}: trigger cell (cellu, cellv) = ({int(cu[i])}, "
                              f"{int(cv[i])}) appears {int(hits[c])} times in one wafer of entry "
                              f"{int(entries[i])}; expected each TC at most once per wafer")
    charge = np.zeros(nw * N_TC, dtype=np.int64)
    charge[cell] = data.astype(np.int64)
    words, calq = _frontend(charge.reshape(nw, N_TC), drop, calvalue)
    ntc = np.bincount(inv, minlength=nw)
    eta = np.bincount(inv, weights=np.abs(tc_eta.astype(np.float64)), minlength=nw) / ntc
    simw = (np.bincount(inv, weights=sim, minlength=nw) if sim is not None
            else np.full(nw, np.nan))
    vv = wkeys % _KEY_U - 512
    rest = wkeys // _KEY_U
    uu = rest % _KEY_U - 512
    rest //= _KEY_U
    ll = rest % 256
    rest //= 256
    zz = np.where(rest % 2 == 1, 1, -1)
    ev = rest // 2
    gpt, geta, gphi = _leading_gen(arrays, names, n, path, tree_path)
    stats.wafers += nw
    return WaferChunk(words=words, calq=calq, eta=eta, layer=ll, waferu=uu, waferv=vv, zside=zz,
                      occupancy=frontend.occupancy(calq, eta).astype(np.int64), simenergy=simw,
                      event=event0 + ev, gen_pt=gpt[ev], gen_eta=geta[ev], gen_phi=gphi[ev])


# ---------------------------------------------------------- per-wafer chunk
def _per_wafer_chunk(arrays, names, path, tree_path, entry0, event0, file_index, layers,
                     stats: ReadStats) -> tuple[WaferChunk, int]:
    """Returns the chunk and the number of events it consumed (for the running id)."""
    import awkward as ak

    n = len(arrays)
    jag = arrays["wafer_layer"].ndim == 2
    cols = list(PER_WAFER_REQUIRED) + [b for b in PER_WAFER_OPTIONAL if b in names]
    flat, counts = {}, None
    for b in cols:
        if jag:
            flat[b], c = _jagged(arrays[b], path, tree_path, b)
            counts = _same_counts(counts, c, path, tree_path, b, "wafer_layer", entry0)
        else:
            if arrays[b].ndim != 1:
                raise DataFormatError(f"{_where(path, tree_path, b)}: expected one number per "
                                      f"entry like wafer_layer, found type {arrays[b].type}")
            flat[b] = ak.to_numpy(arrays[b])
    if jag:
        idx = np.repeat(np.arange(n, dtype=np.int64), counts)
        entries = entry0 + idx
        event = event0 + idx
        used_events = n
        gpt, geta, gphi = _leading_gen(arrays, names, n, path, tree_path)
        gpt, geta, gphi = gpt[idx], geta[idx], gphi[idx]
    else:
        idx = np.arange(n, dtype=np.int64)
        entries = entry0 + idx
        if "event" in names:
            evb = _numeric(ak.to_numpy(arrays["event"]), path, tree_path, "event", integer=True,
                           nonneg=True).astype(np.int64)
        else:
            evb = entries
        if (evb >= (1 << 40)).any():
            raise DataFormatError(f"{_where(path, tree_path, 'event')}: expected event numbers "
                                  f"below 2^40, found {int(evb.max())}")
        event = (np.int64(file_index) << 40) | evb
        used_events = 0
        gpt, geta, gphi = _leading_gen(arrays, names, n, path, tree_path)
    calq = np.stack([_numeric(flat[b], path, tree_path, b, integer=True, nonneg=True,
                              entries=entries) for b in CALQ_BRANCHES], axis=1).astype(np.int64)
    big = calq >= (1 << frontend.CALQ_BITS)
    if big.any():
        w, t = np.argwhere(big)[0]
        raise DataFormatError(f"{_where(path, tree_path, f'wafer_CALQ{t}')}: expected CALQ below "
                              f"2^{frontend.CALQ_BITS}, found {int(calq[w, t])} (entry "
                              f"{int(entries[w])})")
    eta = np.abs(_numeric(flat["wafer_eta"], path, tree_path, "wafer_eta", entries=entries)
                 ).astype(np.float64)
    layer = _numeric(flat["wafer_layer"], path, tree_path, "wafer_layer", integer=True,
                     entries=entries).astype(np.int64)
    u = _numeric(flat["wafer_waferu"], path, tree_path, "wafer_waferu", integer=True,
                 entries=entries).astype(np.int64)
    v = _numeric(flat["wafer_waferv"], path, tree_path, "wafer_waferv", integer=True,
                 entries=entries).astype(np.int64)
    sim = (_numeric(flat["wafer_simenergy"], path, tree_path, "wafer_simenergy", nonneg=True,
                    entries=entries).astype(np.float64)
           if "wafer_simenergy" in flat else np.full(len(idx), np.nan))
    if "wafer_zside" in flat:
        zside = np.where(_numeric(flat["wafer_zside"], path, tree_path, "wafer_zside",
                                  entries=entries) < 0, -1, 1)
    else:
        zside = np.where(np.asarray(flat["wafer_eta"]) < 0, -1, 1)
    chunk = WaferChunk(words=np.full(calq.shape, NO_WORD, dtype=np.uint8), calq=calq, eta=eta,
                       layer=layer, waferu=u, waferv=v, zside=zside.astype(np.int64),
                       occupancy=frontend.occupancy(calq, eta).astype(np.int64), simenergy=sim,
                       event=event, gen_pt=gpt, gen_eta=geta, gen_phi=gphi)
    if layers:
        sel = np.isin(layer, np.asarray(sorted(layers)))
        stats.wafers_not_in_layers += int((~sel).sum())
        chunk = chunk.select(sel)
    if jag:  # order by (event, zside, layer, u, v) like the per-TC reader; flat: file order
        order = np.lexsort((chunk.waferv, chunk.waferu, chunk.layer, chunk.zside, chunk.event))
        chunk = chunk.select(order)
    stats.wafers += len(chunk)
    return chunk, used_events


# ------------------------------------------------------------------ driver
def iter_wafers(paths: list[Path], *, tree: str, layout: str = "auto", chunk_size: int = 500,
                layers: Iterable[int] = (), drop: int = frontend.DROP_HIGH_DENSITY,
                calvalue: int = frontend.CAL_UNITY, progress: bool = False,
                stats: ReadStats | None = None) -> Iterator[WaferChunk]:
    """Stream the wafers of ``paths`` (in order), ``chunk_size`` entries at a time."""
    from tqdm import tqdm

    stats = stats if stats is not None else ReadStats()
    layers = sorted(set(int(x) for x in layers))
    opened = []
    for path in paths:
        t = open_tree(Path(path), tree)
        names = set(t.keys())
        lay = _check_layout(path, tree, names, layout)
        if stats.layout is None:
            stats.layout = lay
        elif lay != stats.layout:
            raise DataFormatError(f"{path}:{tree}: {lay} layout, but earlier files have the "
                                  f"{stats.layout} layout; expected all inputs in one layout")
        opened.append((Path(path), t, names, lay))
    total = sum(int(t.num_entries) for _, t, _, _ in opened)
    bar = tqdm(total=total, unit="ev", desc="read", disable=None if progress else True, leave=False)
    event0 = stats.events
    try:
        for file_index, (path, t, names, lay) in enumerate(opened):
            if lay == "per_tc":
                want = list(PER_TC_REQUIRED) + [b for b in PER_TC_OPTIONAL + GEN_OPTIONAL
                                                if b in names]
                stats.missing_optional |= {b for b in PER_TC_OPTIONAL + GEN_OPTIONAL
                                           if b not in names}
            else:
                want = list(PER_WAFER_REQUIRED) + [b for b in PER_WAFER_OPTIONAL + GEN_OPTIONAL
                                                   + ("event",) if b in names]
                stats.missing_optional |= {b for b in PER_WAFER_OPTIONAL + GEN_OPTIONAL
                                           if b not in names}
            n_entries = int(t.num_entries)
            stats.files.append({"path": str(path), "entries": n_entries, "layout": lay})
            entry0 = 0
            it = t.iterate(want, step_size=chunk_size, library="ak")
            while True:
                try:
                    arrays = next(it)
                except StopIteration:
                    break
                except FlowError:
                    raise
                except Exception as err:
                    raise DataFormatError(
                        f"{path}:{tree}: cannot read entries from {entry0} on "
                        f"({type(err).__name__}: {err}); expected {n_entries} readable entries "
                        "(is the file truncated or corrupt?)") from None
                n = len(arrays)
                if lay == "per_tc":
                    chunk = _per_tc_chunk(arrays, names, path, tree, entry0, event0, layers, drop,
                                          calvalue, stats)
                    event0 += n
                    stats.events += n
                else:
                    chunk, used = _per_wafer_chunk(arrays, names, path, tree, entry0, event0,
                                                   file_index, layers, stats)
                    event0 += used
                    stats.events += used
                stats.entries += n
                entry0 += n
                bar.update(n)
                yield chunk
            if entry0 != n_entries:
                raise DataFormatError(f"{path}:{tree}: read {entry0} entries, expected "
                                      f"{n_entries}; the file may be truncated")
    finally:
        bar.close()


def read_wafers(paths: list[Path], **kwargs) -> tuple[WaferChunk, ReadStats]:
    """All wafers of ``paths`` in memory (see :func:`iter_wafers`)."""
    stats = kwargs.pop("stats", None) or ReadStats()
    chunks = list(iter_wafers(paths, stats=stats, **kwargs))
    return WaferChunk.concat(chunks), stats
