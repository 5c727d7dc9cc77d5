"""``report`` stage: one self-contained HTML report and a Markdown summary of a run.

Every number in the report is read from the verified upstream artifacts (their
manifests' ``metrics`` and the files the manifests list); the stage computes
no physics.  It writes::

    report/report.html   self-contained: CSS inline, figures as base64 data URIs,
                         no external URL, script or font (nothing is fetched)
    report/report.md     the same tables in Markdown, figures linked from figures/
    report/figures/      the upstream PNGs (and any figure the report had to draw)

Content (``docs/report.md``): PASS/FAIL headline of the bit-exactness chain
(golden == QKeras, hls4ml csim, RTL cosim), provenance, dataset, EMD CNN,
loss comparison, KR-dual check, number formats, csim, RTL and cosim
(latency, II, resources), tool versions and every stage's manifest.  Content
an upstream stage did not produce is rendered as an explicit
"not available: <reason>" cell, never as a made-up number.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import re
import shutil
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .host import host_summary
from .manifest import git_revision

#: the stages the report reads, in flow order
UPSTREAM = ("data", "emd", "autoencoder", "convert", "csim", "rtl", "cosim")

FIGURE_CAPTIONS = {
    ("data", "occupancy.png"): "Wafer occupancy (TCs above 1 MIP_T) per split",
    ("data", "calq_sum.png"): "Wafer CALQ sum per split",
    ("data", "hottest_fraction.png"): "Hottest-TC fraction of the wafer CALQ sum",
    ("data", "eta.png"): "Wafer |eta| per split",
    ("data", "layer.png"): "Wafer layer per split",
    ("data", "occupancy_map.png"): "Average 8x8 (encoding A) maps: P(TC > 1 MIP_T) and mean AEin",
    ("data", "occupancy_vs_eta.png"): "Occupancy vs |eta|: electron-shower and pileup-only wafers",
    ("emd", "rel_diff.png"): "EMD CNN resolution: (EMD CNN - exact EMD) / exact EMD on the test pairs",
    ("emd", "pred_vs_true.png"): "EMD CNN vs exact EMD on the test pairs",
    ("emd", "resolution_vs_emd.png"): "Relative difference (mean, std) vs exact EMD",
    ("emd", "resolution_vs_occupancy.png"): "Relative difference (mean, std) vs pair occupancy",
    ("autoencoder", "emd_vs_occupancy.png"): "Median EMD(input, reconstruction) per model vs occupancy: "
                                              "median over seeds, bootstrap error bars, min-max band over "
                                              "seeds",
    ("autoencoder", "emd_vs_eta.png"): "Median EMD(input, reconstruction) per model vs |eta|: median over "
                                        "seeds, bootstrap error bars, min-max band over seeds",
    ("autoencoder", "emd_distribution.png"): "EMD(input, reconstruction) distribution per model (seed 0)",
}

# the physics stage's plots
FIGURE_CAPTIONS[("physics", "resolution_emd_vs_elinks.png")] = (
    "Electron resolution (integrated, generated pT above the cut) and median exact EMD vs eLink budget")
for _e in (2, 3, 4, 5):
    FIGURE_CAPTIONS[("physics", f"resolution_vs_eta_{_e}elinks.png")] = (
        f"Electron effective resolution vs |eta| at {_e} eLinks, and its ratio to uncompressed CALQ")


def _caption(stage: str, name: str) -> str:
    """A figure's caption: the table above, or the pattern of a per-model plot."""
    if (stage, name) in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[(stage, name)]
    if stage == "autoencoder" and name.startswith("cnn_on_reconstructions_"):
        model = name[len("cnn_on_reconstructions_"):-len(".png")]
        return (f"EMD CNN vs exact EMD on the {model} autoencoder's own (input, reconstruction) test pairs "
                "(seed 0)")
    return Path(name).stem


# ------------------------------------------------------------------ content model
@dataclass(frozen=True)
class NA:
    """An explicit "not available" cell."""

    reason: str

    def __str__(self) -> str:
        return f"not available: {self.reason}"


@dataclass(frozen=True)
class Status:
    """A PASS/FAIL cell."""

    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return ("PASS" if self.ok else "FAIL") + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Code:
    """A hash, path or revision: monospace in HTML, backticks in Markdown."""

    text: str

    def __str__(self) -> str:
        return self.text


Cell = Any  # str | int | float | NA | Status | Code | None


@dataclass
class Table:
    id: str
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass
class Figure:
    id: str
    caption: str
    file: str            # relative to the report directory: figures/<stage>_<name>.png
    source: str          # where it came from, e.g. data/plots/eta.png
    data: bytes


@dataclass
class Para:
    text: str
    na: bool = False


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self


# ------------------------------------------------------------------ formatting
def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def num(v, fmt: str = ",", reason: str = "not recorded", scale: float = 1.0, unit: str = "") -> Cell:
    """Format a number from an artifact; None (or a non-number) becomes an NA cell."""
    if isinstance(v, NA):
        return v
    if not _is_num(v) or v != v:  # None, str, NaN
        return NA(reason)
    if scale != 1.0:
        v = v * scale
    return f"{v:{fmt}}{unit}"


def pct(v, digits: int = 2, reason: str = "not recorded", signed: bool = True) -> Cell:
    """A fraction as percent (signed for biases, unsigned for spreads)."""
    return num(v, f"{'+' if signed else ''}.{digits}f", reason, scale=100.0, unit=" %")


def dig(d, *keys, default=None):
    """``d[k0][k1]...`` or ``default`` when any level is missing."""
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return default
    return d


def _bin(b: dict) -> str:
    lo, hi = b.get("lo"), b.get("hi")
    return f"[{lo:g}, {hi:g})" if _is_num(lo) and _is_num(hi) else "?"


# ------------------------------------------------------------------ upstream access
class Upstream:
    """Read-only access to the verified upstream artifacts."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.v = ctx.upstream

    def man(self, stage: str) -> dict:
        return self.v[stage].manifest

    def metrics(self, stage: str) -> dict:
        return self.man(stage).get("metrics") or {}

    def config(self, stage: str) -> dict:
        return (self.man(stage).get("config") or {}).get(stage) or {}

    def has(self, stage: str, rel: str) -> bool:
        return rel in self.man(stage).get("outputs", {})

    def path(self, stage: str, rel: str) -> Path:
        return self.v[stage].path(rel)   # raises StageInputError for an unlisted file

    def json(self, stage: str, rel: str) -> dict | NA:
        if not self.has(stage, rel):
            return NA(f"the {stage} stage wrote no {rel}")
        try:
            return json.loads(self.path(stage, rel).read_text())
        except json.JSONDecodeError as err:
            return NA(f"{stage}/{rel} is not valid JSON ({err})")

    def csv(self, stage: str, rel: str) -> list[dict] | NA:
        if not self.has(stage, rel):
            return NA(f"the {stage} stage wrote no {rel}")
        with open(self.path(stage, rel), newline="") as f:
            return list(csv.DictReader(f))

    def plots(self, stage: str) -> list[str]:
        return [r for r in self.man(stage).get("outputs", {})
                if r.startswith("plots/") and r.endswith(".png")]


def _float(s) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------ figures
class Figures:
    def __init__(self, out: Path):
        self.dir = out / "figures"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.items: list[Figure] = []

    def add_file(self, stage: str, src: Path, rel: str, caption: str | None = None) -> Figure:
        name = f"{stage}_{Path(rel).name}"
        shutil.copyfile(src, self.dir / name)
        fig = Figure(id=f"fig-{stage}-{Path(rel).stem}".replace("_", "-"),
                     caption=caption or _caption(stage, Path(rel).name),
                     file=f"figures/{name}", source=f"{stage}/{rel}", data=(self.dir / name).read_bytes())
        self.items.append(fig)
        return fig

    def add_drawn(self, path: Path, caption: str, source: str) -> Figure:
        """A figure the report drew itself into figures/."""
        fig = Figure(id=f"fig-report-{path.stem}".replace("_", "-"), caption=caption,
                     file=f"figures/{path.name}", source=source, data=path.read_bytes())
        self.items.append(fig)
        return fig

    def stage_plots(self, up: Upstream, stage: str, order: list[str] | None = None) -> list[Figure]:
        rels = up.plots(stage)
        if order:
            rank = {n: i for i, n in enumerate(order)}
            rels.sort(key=lambda r: (rank.get(Path(r).name, len(rank)), r))
        return [self.add_file(stage, up.path(stage, r), r) for r in rels]


def _eta_figure(evals: dict, out_png: Path) -> bool:
    """Median EMD vs |eta| per loss, drawn from the autoencoder's eval.json
    (used only when the autoencoder stage saved no such plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    series = {}
    for loss, r in evals.items():
        rows = [b for b in (r.get("vs_eta") or []) if b.get("median") is not None]
        if rows:
            series[loss] = rows
    if not series:
        return False
    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 7))
        for i, (loss, rows) in enumerate(series.items()):
            width = rows[0]["hi"] - rows[0]["lo"]
            x = [(b["lo"] + b["hi"]) / 2 + (i - len(series) / 2) * 0.04 * width for b in rows]
            med = [b["median"] for b in rows]
            err = [[b["median"] - (b.get("min") if b.get("min") is not None else b["median"]) for b in rows],
                   [(b.get("max") if b.get("max") is not None else b["median"]) - b["median"] for b in rows]]
            ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label=loss)
        ax.set_xlabel(r"wafer |$\eta$|")
        ax.set_ylabel("median EMD (min-max over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_png, dpi=80, metadata={"Software": None})
        plt.close(fig)
    return True


# ------------------------------------------------------------------ sections
def _checks(up: Upstream) -> tuple[Table, list[Status]]:
    """The bit-exactness chain and the testbench checks, one row each."""
    rows, statuses = [], []

    def row(name, what, n_total, n_mismatch, extra_ok=True, extra_detail=""):
        if not _is_num(n_total) or not _is_num(n_mismatch):
            st = Status(False, "not available")
            cells = [name, what, NA("not recorded") if not _is_num(n_total) else f"{n_total:,}",
                     NA("not recorded") if not _is_num(n_mismatch) else f"{n_mismatch:,}", st]
        else:
            ok = n_mismatch == 0 and n_total > 0 and extra_ok
            detail = extra_detail or ("nothing compared" if n_total == 0 else "")
            st = Status(ok, "" if ok else detail)
            cells = [name, what, f"{n_total:,}", f"{n_mismatch:,}", st]
        rows.append(cells)
        statuses.append(st)

    # golden == QKeras
    ae = up.metrics("autoencoder")
    gc = up.json("autoencoder", "golden_check.json")
    golden = dig(ae, "golden_mismatches") or {}
    if isinstance(gc, dict) and gc:
        for loss, r in gc.items():
            seeds = r if isinstance(r, list) else [r]
            tot = [x.get("n_total") for x in seeds]
            bad = [x.get("n_mismatch") for x in seeds]
            row(f"golden model == QKeras [{loss}]",
                f"test wafers, integer latent codes ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
                sum(tot) if all(_is_num(x) for x in tot) else None,
                sum(bad) if all(_is_num(x) for x in bad) else None)
    elif golden:
        for loss, n_bad in golden.items():
            row(f"golden model == QKeras [{loss}]", "test wafers, integer latent codes",
                ae.get("golden_n_total"), n_bad)
    else:
        row("golden model == QKeras", "autoencoder golden_check.json", None, None)

    # every compared model trained to convergence (early stopping before the epoch cap)
    conv, eps, cap = ae.get("converged"), ae.get("epochs_run") or {}, ae.get("epoch_cap")
    if isinstance(conv, dict) and conv:
        for name, ok in conv.items():
            runs = eps.get(name) or []
            st = Status(bool(ok), "" if ok else "not converged: reached the epoch cap "
                        f"({cap}) before the validation loss stopped improving")
            rows.append([f"training converged [{name}]", f"early stopping before the cap of {cap} epochs",
                         f"{len(runs)} seed{'s' if len(runs) != 1 else ''}",
                         "epochs run " + "/".join(str(x) for x in runs), st])
            statuses.append(st)
    else:
        st = Status(False, "not available")
        rows.append(["training converged", "autoencoder metrics.converged", NA("not recorded"),
                     NA("not recorded"), st])
        statuses.append(st)

    # hls4ml csim
    projects = dig(up.metrics("csim"), "projects") or {}
    if not projects:
        row("hls4ml C simulation == golden", "csim metrics.projects", None, None)
    for b, r in projects.items():
        fields = r.get("fields") or {}
        bad_fields = ", ".join(f"{k} {v}" for k, v in fields.items() if v)
        row(f"hls4ml C simulation [{b}] == golden", "golden vectors (test set + corners)",
            r.get("n_total"), r.get("n_mismatch"), extra_detail=bad_fields)

    # RTL cosim
    cos = up.metrics("cosim")
    rep = up.json("cosim", "report.json")
    flavours = [k for k, v in cos.items() if isinstance(v, dict) and "n_total" in v]
    rtl_lat = up.metrics("rtl").get("latency_cycles")
    if not flavours:
        row("RTL cosimulation == golden", "cosim metrics", None, None)
    for fl in flavours:
        r = cos[fl]
        tests = dig(rep, "flavours", fl, "tests") if isinstance(rep, dict) else None
        failed = [t for t, v in (tests or {}).items() if not v.get("passed")]
        detail = f"testbench tests failed: {', '.join(failed)}" if failed else ""
        row(f"RTL cosimulation [{fl}] == golden", "golden vectors + testbench corners",
            r.get("n_total"), r.get("n_mismatch"), extra_ok=not failed, extra_detail=detail)
        lat, ii = r.get("latency_cycles"), r.get("ii_cycles")
        if _is_num(lat) and _is_num(rtl_lat):
            ok = lat == rtl_lat and ii == 1
            st = Status(ok, "" if ok else
                        f"measured {lat} clk / II {ii}, rtl.json documents {rtl_lat} clk / II 1")
            rows.append([f"RTL latency/II [{fl}] == rtl.json", "measured in cosimulation",
                         f"{lat} clk, II {ii}", f"documented {rtl_lat} clk, II 1", st])
            statuses.append(st)
    t = Table("checks", "Bit-exactness chain, testbench and training-convergence checks",
              ["check", "compared on", "compared", "mismatches", "verdict"], rows,
              note="Every comparison is on integer codes against the golden model "
                   "(flow/encoder.py + flow/frontend.py); a check without a recorded count is a FAIL.")
    return t, statuses


def _spread(d, ae: dict | None = None) -> Cell | str:
    """``median (min-max over N seeds) +- bootstrap`` of an aggregated median; a bare
    number (older runs) as it is."""
    if _is_num(d):
        return f"{d:.4f}"
    if not isinstance(d, dict) or not _is_num(d.get("median")):
        return NA("not recorded")
    n = (ae or {}).get("n_seeds")
    txt = f"{d['median']:.4f} (seeds {d['min']:.4f}-{d['max']:.4f}"
    txt += f", {n} seeds)" if _is_num(n) else ")"
    if _is_num(d.get("boot_std")):
        txt += f" +- {d['boot_std']:.4f} (bootstrap)"
    return txt


def _ratio(ae: dict, key: str) -> Cell | str:
    r, lo, hi = (ae.get(f"{key}_{k}") for k in ("median", "min", "max"))
    if not _is_num(r):
        return NA("needs both losses in autoencoder.losses")
    return f"{r:.3f}" + (f" (seed envelope {lo:.3f}-{hi:.3f})" if _is_num(lo) and _is_num(hi) else "")


def _verdict(ae: dict) -> Cell | str:
    """Plain words on the measured comparison, whatever it says."""
    parts = []
    for key, other in (("emd_cnn_over_telescope", "telescope MSE"), ("emd_cnn_over_weighted_mse",
                                                                      "weighted MSE")):
        r, lo, hi = (ae.get(f"{key}_{k}") for k in ("median", "min", "max"))
        if not _is_num(r):
            continue
        if _is_num(hi) and hi < 1:
            parts.append(f"yes vs {other} (lower median EMD for every seed)")
        elif _is_num(lo) and lo > 1:
            parts.append(f"no: worse than {other} for every seed")
        else:
            parts.append(f"not resolved vs {other}: the seed spreads overlap (ratio {r:.3f})")
    conv = ae.get("converged") or {}
    if conv and not all(conv.values()):
        parts.append("not every model converged, so this comparison is not final")
    return "; ".join(parts) if parts else NA("needs emd_cnn and a baseline loss")


def _headline(up: Upstream) -> Table:
    ae, emd, cos = up.metrics("autoencoder"), up.metrics("emd"), up.metrics("cosim")
    exp = ae.get("export_loss")
    rows = [
        ["exported encoder trained with", exp or NA("not recorded")],
        ["median EMD(input, reconstruction), exported loss", _spread(dig(ae, "median_emd", exp), ae)
         if exp else NA("not recorded")],
        ["EMD-CNN / telescope-MSE median EMD", _ratio(ae, "emd_cnn_over_telescope")],
        *([["EMD-CNN / weighted-MSE median EMD", _ratio(ae, "emd_cnn_over_weighted_mse")]]
          if "weighted_mse" in (ae.get("median_emd") or {}) else []),
        ["is the EMD-CNN loss better?", _verdict(ae)],
        ["EMD CNN on the EMD-CNN autoencoder's own reconstructions (std of relative difference)",
         pct(dig(ae, "cnn_on_ae_pairs_rel_std", "emd_cnn"), signed=False,
             reason="not checked (autoencoder.cnn_check)")],
        ["EMD CNN chosen by the grid", dig(emd, "grid", "best") or NA("not recorded")],
        ["EMD CNN test resolution (std of relative difference)", pct(emd.get("test_rel_std"), signed=False)],
    ]
    for fl, r in cos.items():
        if isinstance(r, dict) and "n_total" in r:
            rows.append([f"RTL [{fl}] latency", num(r.get("latency_ns"), "g", "not measured", unit=" ns")])
            lut = r.get("xilinx_LUT")
            rows.append([f"RTL [{fl}] LUTs (Yosys synth_xilinx)", f"{lut:,}" if _is_num(lut)
                         else NA(f"not estimated (cosim.yosys = {up.config('cosim').get('yosys', '?')})")])
    return Table("key-results", "Key results", ["quantity", "value"], rows)


def _provenance(up: Upstream, ctx, date: str, run_hash: str) -> Section:
    sec = Section("provenance", "Run and provenance")
    gits = {}
    for s in UPSTREAM:
        gits.setdefault(up.man(s).get("git") or "unknown", []).append(s)
    rows = [["run name", ctx.cfg.name],
            ["run directory", Code(str(ctx.cfg.run_dir))],
            ["run completed (UTC, newest stage artifact)", date],
            ["run config hash", Code(run_hash)],
            ["seed", str(ctx.cfg.seed)],
            ["git revision (report)", Code(git_revision() or "unknown")]]
    for g, stages in gits.items():
        rows.append([f"git revision ({', '.join(stages)})", Code(g)])
    hosts: dict[str, list[str]] = {}  # trained weights depend on the CPU and its settings
    for s in UPSTREAM:
        hosts.setdefault(host_summary(up.man(s).get("host")), []).append(s)
    for h, stages in hosts.items():
        rows.append([f"host ({', '.join(stages)})", NA(h) if h == "not recorded" else h])
    rows.append(["last upstream stage finished (UTC)",
                 max((up.man(s).get("finished_utc") or "") for s in UPSTREAM) or NA("not recorded")])
    sec.add(Table("provenance", "Run", ["item", "value"], rows,
                  note="run config hash = sha256 of the per-stage config hashes (data ... cosim, report) "
                       "in the table 'Stage manifests'; a '-dirty' revision had uncommitted changes; "
                       "host = CPU and TensorFlow/oneDNN settings of the stage's manifest (trained "
                       "weights depend on them, docs/emd.md 'Reproducibility')."))
    return sec


def _dataset(up: Upstream, figs: Figures) -> Section:
    sec = Section("dataset", "Dataset (data stage)")
    m, c = up.metrics("data"), up.config("data")
    st = up.json("data", "stats.json")
    stj = st if isinstance(st, dict) else {}
    source = stj.get("source") or c.get("source")
    if source == "synthetic":
        src = (f"synthetic generator (flow.synth: electron showers + pileup), "
               f"{c.get('n_events', '?')} events in {c.get('n_files', '?')} ROOT files")
    elif source == "root":
        files = dig(stj, "reader", "files") or []
        src = f"user ROOT ntuples: {len(files)} files ({', '.join(str(f.get('path')) for f in files[:5])}" \
              f"{', ...' if len(files) > 5 else ''})"
    else:
        src = NA("source not recorded")
    gen = m.get("generated_wafers")
    rows = [["source", src],
            ["layout of the ntuples", stj.get("layout") or NA("stats.json not written")],
            ["events read", num(stj.get("events_read") or dig(stj, "reader", "events"))],
            ["wafers generated", num(gen) if gen is not None
             else NA("not a synthetic run" if source == "root" else "not recorded")],
            ["wafers read", num(m.get("wafers_read"))],
            ["wafers kept (selected)", num(m.get("wafers_kept"))],
            ["mean occupancy (TCs above 1 MIP_T)", num(m.get("occupancy_mean"), ".3f")],
            ["shower containment (generator)", num(m.get("shower_containment"), ".4f",
                                                   "not a synthetic run" if source == "root"
                                                   else "not recorded")]]
    for k, v in (m.get("drops") or {}).items():
        rows.append([f"dropped: {k.replace('_', ' ')}", num(v)])
    sec.add(Table("dataset", "Dataset", ["quantity", "value"], rows))
    sel = [["ECON-T drop setting", num(c.get("drop"), "d")],
           ["layers", ", ".join(str(x) for x in c["layers"]) if c.get("layers") else NA("not recorded")],
           ["min occupancy (TCs above 1 MIP_T)", num(c.get("min_occupancy"), "g")],
           ["min wafer sum (MIP_T)", num(c.get("min_sum_mipt"), "g")],
           ["CALVALUE", num(c.get("calvalue"), "d")],
           ["split fractions train/val/test", " / ".join(f"{x:g}" for x in c["split"])
            if c.get("split") else NA("not recorded")]]
    sec.add(Table("selection", "Selection (data config)", ["setting", "value"], sel))
    splits = stj.get("splits") or {}
    rows = []
    for name in ("train", "val", "test"):
        sp = splits.get(name, {})
        rows.append([name, num(dig(m, "events", name), reason="not recorded"),
                     num(dig(m, "wafers", name)), num(sp.get("shower_wafers"), reason="no stats.json"),
                     num(sp.get("occupancy_mean"), ".3f", "no stats.json"),
                     num(sp.get("occupancy_median"), "g", "no stats.json"),
                     num(sp.get("calq_sum_median"), "g", "no stats.json"),
                     num(sp.get("eta_mean"), ".3f", "no stats.json")])
    sec.add(Table("splits", "Splits", ["split", "events", "wafers", "shower wafers", "occupancy mean",
                                       "occupancy median", "CALQ sum median", "|eta| mean"], rows))
    order = stj.get("plots") if isinstance(stj.get("plots"), list) else None
    plots = figs.stage_plots(up, "data", order)
    sec.add(plots if plots else Para(str(NA("the data stage saved no plots")), na=True))
    return sec


def _binned_table(tid: str, caption: str, rows: list, first: str) -> Table:
    out = []
    for b in rows or []:
        n = b.get("n", 0)
        empty = NA("empty bin")
        vals = [pct(b.get(k), signed=k not in ("std", "rms")) if n else empty
                for k in ("mean", "std", "rms", "median", "q16", "q84")]
        out.append([_bin(b), num(n)] + vals)
    return Table(tid, caption, [first, "pairs", "mean", "std", "rms", "median", "q16", "q84"], out,
                 note="relative difference (EMD CNN - exact EMD) / exact EMD")


def _emd(up: Upstream, figs: Figures) -> Section:
    sec = Section("emd", "EMD CNN (emd stage)")
    m = up.metrics("emd")
    grid = up.json("emd", "grid.json")
    info = up.json("emd", "emd_cnn.json")
    ev = up.json("emd", "eval.json")
    arch = dig(info, "arch") if isinstance(info, dict) else None
    best = dig(m, "grid", "best") or (grid.get("best") if isinstance(grid, dict) else None)
    rows = [["chosen architecture", best or NA("not recorded")]]
    if arch:
        rows += [["conv filters", num(arch.get("filters"), "d")], ["kernel", num(arch.get("kernel"), "d")],
                 ["conv layers", num(arch.get("n_conv"), "d")], ["dense units", num(arch.get("dense"), "d")]]
    else:
        rows.append(["architecture details", NA("emd_cnn.json not written")])
    sel_on = grid.get("select_on") if isinstance(grid, dict) else None
    rows += [["grid trials", num(dig(m, "grid", "trials"), "d")],
             ["selected on (validation)", sel_on or NA("not recorded")],
             ["training pairs train/val/test", " / ".join(f"{dig(m, 'pairs', k):,}" for k in
                                                           ("train", "val", "test"))
              if all(_is_num(dig(m, "pairs", k)) for k in ("train", "val", "test")) else NA("not recorded")],
             ["final training epochs", num(dig(m, "final", "epochs"), "d")]]
    sec.add(Table("emd-model", "EMD CNN", ["item", "value"], rows))
    if isinstance(grid, dict) and grid.get("trials"):
        trows = []
        for t in grid["trials"]:
            trows.append([t.get("tag", "?") + (" (chosen)" if t.get("tag") == best else ""),
                          num(t.get("params")), pct(t.get("rel_mean")), pct(t.get("rel_std"), signed=False),
                          pct(t.get("rel_rms"), signed=False), num(t.get("epochs"), "d"),
                          num(t.get("s_per_epoch"), ".2f")])
        sec.add(Table("emd-grid", "Architecture grid (validation, short training)",
                      ["architecture", "parameters", "rel. mean", "rel. std", "rel. rms", "epochs",
                       "s/epoch"],
                      trows))
    else:
        sec.add(Para(str(NA("the emd stage wrote no grid.json")), na=True))
    if isinstance(ev, dict):
        rrows = []
        for split in ("test", "val"):
            r = dig(ev, split, "relative") or {}
            rrows.append([split, num(r.get("n")), pct(r.get("mean")), pct(r.get("std"), signed=False),
                          pct(r.get("rms"), signed=False),
                          pct(r.get("median")), pct(r.get("q16")), pct(r.get("q84")),
                          num(dig(ev, split, "true_emd", "mean"), ".3f")])
        sec.add(Table("emd-resolution", "Resolution: relative difference (EMD CNN - exact EMD) / exact EMD",
                      ["split", "pairs", "mean", "std", "rms", "median", "q16", "q84", "mean exact EMD"],
                      rrows, note=dig(ev, "test", "definition") or ""))
        sec.add(_binned_table("emd-by-emd", "Test resolution vs exact EMD",
                              dig(ev, "test", "by_true_emd"), "exact EMD"))
        sec.add(_binned_table("emd-by-occupancy", "Test resolution vs pair occupancy",
                              dig(ev, "test", "by_occupancy"), "pair occupancy"))
    else:
        sec.add(Para(str(ev), na=True))
    plots = figs.stage_plots(up, "emd", ["rel_diff.png", "pred_vs_true.png", "resolution_vs_emd.png",
                                         "resolution_vs_occupancy.png"])
    sec.add(plots if plots else Para(str(NA("the emd stage saved no plots")), na=True))
    return sec


def _losses(up: Upstream, figs: Figures, out: Path) -> tuple[Section, Section]:
    sec = Section("losses", "Loss comparison (autoencoder stage)")
    m = up.metrics("autoencoder")
    ev = up.json("autoencoder", "eval.json")
    evm = dig(ev, "models") if isinstance(ev, dict) else None
    agg = {name: v.get("aggregate") or {} for name, v in evm.items()} if isinstance(evm, dict) else None
    comp = up.csv("autoencoder", "comparison.csv")
    golden = m.get("golden_mismatches") or {}
    exp = m.get("export_loss")
    if isinstance(comp, list) and comp:
        rows = []
        for r in comp:
            name = r.get("model", "?")
            conv = r.get("converged")
            rows.append([name + (f" (exported, seed {m.get('export_seed', '?')})" if name == exp else ""),
                         num(_float(r.get("median_emd")), ".4f"),
                         f"{_float(r.get('min')):.4f} - {_float(r.get('max')):.4f}"
                         if _is_num(_float(r.get("min"))) else NA("not recorded"),
                         num(_float(r.get("boot_std")), ".4f", "no bootstrap"),
                         num(_float(r.get("n_seeds")), "g"),
                         Status(conv == "True", "" if conv == "True" else "reached the epoch cap"),
                         r.get("epochs_run") or NA("not recorded"),
                         r.get("learning_rate") or NA("not recorded"),
                         num(golden.get(name), "d")])
        sec.add(Table("loss-comparison", "Median EMD(input, reconstruction) on the test wafers per model",
                      ["model", "median EMD (median over seeds)", "min - max over seeds",
                       "bootstrap std of the median", "seeds", "converged", "epochs run per seed",
                       "learning rate", "golden != QKeras"], rows,
                      note=f"from autoencoder/comparison.csv on {m.get('n_test', '?')} test wafers "
                           f"({m.get('n_train', '?')} training wafers); EMD in ground-distance units "
                           "(2.0 = neighbouring cells); every model trains until early stopping (epoch cap "
                           f"{m.get('epoch_cap', '?')}); '+cond': conditional decoder (module sum, layer, "
                           "|eta|); training.csv has the per-seed details"))
    else:
        sec.add(Para(str(comp if isinstance(comp, NA) else NA("comparison.csv is empty")), na=True))
    ratios = dig(ev, "ratios_emd_cnn_over") if isinstance(ev, dict) else None
    if agg:
        names = list(agg)
        for key, label, tid in (("vs_occupancy", "occupancy (TCs > 1 MIP_T)", "loss-vs-occupancy"),
                                ("vs_eta", "|eta|", "loss-vs-eta")):
            base = next((agg[n].get(key) for n in names if agg[n].get(key)), None)
            if not base:
                sec.add(Para(str(NA(f"eval.json has no {key} bins")), na=True))
                continue
            rows = []
            for i, b in enumerate(base):
                cells = [_bin(b), num(b.get("n"))]
                for n in names:
                    cells.append(_spread(dig(agg, n, key, i)) if dig(agg, n, key, i, "median") is not None
                                 else NA("empty bin"))
                for other in ("telescope_mse", "weighted_mse"):
                    if isinstance(ratios, dict) and other in ratios:
                        rb = dig(ratios, other, key, i) or {}
                        cells.append(f"{rb['ratio']:.3f} ({rb['min']:.3f}-{rb['max']:.3f})"
                                     if _is_num(rb.get("ratio")) else NA("empty bin"))
                rows.append(cells)
            header = [label, "wafers"] + [f"median EMD [{n}]" for n in names]
            header += [f"EMD-CNN / {o}" for o in ("telescope_mse", "weighted_mse")
                       if isinstance(ratios, dict) and o in ratios]
            sec.add(Table(tid, f"Median EMD vs {label}: median over seeds (min-max) +- bootstrap", header,
                          rows))
    else:
        sec.add(Para(str(ev if isinstance(ev, NA) else NA("eval.json has no 'models'")), na=True))
    plots = figs.stage_plots(up, "autoencoder", ["emd_vs_occupancy.png", "emd_vs_eta.png",
                                                 "emd_distribution.png"])
    if not up.has("autoencoder", "plots/emd_vs_eta.png"):
        png = out / "figures" / "autoencoder_emd_vs_eta_report.png"
        if agg and _eta_figure(agg, png):
            plots.append(figs.add_drawn(png, "Median EMD(input, reconstruction) per model vs |eta| (median "
                                        "over seeds, min-max), drawn by the report stage from "
                                        "autoencoder/eval.json", "autoencoder/eval.json (vs_eta)"))
        else:
            plots.append(Para(str(NA("no eta plot: the autoencoder stage saved none and its eval.json "
                                     "has no vs_eta bins")), na=True))
    sec.add(plots if plots else Para(str(NA("the autoencoder stage saved no plots")), na=True))
    sec.add(*_cnn_check(up))

    kr_sec = Section("kr-check", "KR-dual (NEEMo-style) cross-check of exact EMD")
    kr = m.get("kr_dual_check") or (ev.get("kr_dual_check") if isinstance(ev, dict) else None)
    if kr:
        mx = kr.get("max_ratio")
        bound = (Status(mx <= 1.0, "" if mx <= 1.0 else "estimate exceeds exact EMD")
                 if _is_num(mx) else NA("not recorded"))
        rows = [["test wafers", num(kr.get("n"))],
                ["median KR estimate / exact EMD", num(kr.get("median_ratio_kr_over_exact"), ".3f")],
                ["16-84 % of the ratio", f"{kr['q16_ratio']:.3f} - {kr['q84_ratio']:.3f}"
                 if _is_num(kr.get("q16_ratio")) and _is_num(kr.get("q84_ratio")) else NA("not recorded")],
                ["max ratio", num(mx, ".3f")],
                ["lower bound holds (max ratio <= 1)", bound],
                ["Pearson r (estimate, exact)", num(kr.get("pearson_r"), ".3f")]]
        kr_sec.add(Table("kr-dual", "KR-dual estimate vs exact EMD on the exported model's reconstructions",
                         ["quantity", "value"], rows,
                         note="any 1-Lipschitz critic gives a lower bound of the EMD: the ratio must stay "
                              "<= 1; the median says how tight the estimate is (docs/autoencoder.md)"))
    else:
        kr_sec.add(Para(str(NA("the KR-dual check was not run (autoencoder.kr_check_pairs = 0)")), na=True))
    return sec, kr_sec


def _cnn_check(up: Upstream) -> list:
    """The EMD CNN on every model's own (input, reconstruction) test pairs."""
    cc = up.json("autoencoder", "cnn_check.json")
    if not isinstance(cc, dict) or not cc.get("models"):
        return [Para(str(NA("the EMD CNN was not checked on reconstructions (autoencoder.cnn_check "
                            "off or an older run)")), na=True)]
    rows = []
    for name, seeds in cc["models"].items():
        means = [x.get("rel_mean") for x in seeds if _is_num(x.get("rel_mean"))]
        stds = [x.get("rel_std") for x in seeds if _is_num(x.get("rel_std"))]
        by = {(b["lo"], b["hi"]): b for b in seeds[0].get("by_true_emd") or []}
        cells = [name, num(seeds[0].get("n")), pct(max(means, key=abs) if means else None),
                 pct(max(stds) if stds else None, signed=False)]
        cells += [pct(b.get("std"), signed=False, reason="empty bin") for b in by.values()]
        rows.append(cells)
    edges = [(b["lo"], b["hi"]) for b in next(iter(cc["models"].values()))[0].get("by_true_emd") or []]
    header = ["model", "pairs (seed 0)", "rel. mean (largest |.| over seeds)",
              "rel. std (largest over seeds)"]
    header += [f"std, true EMD {lo:g}-{hi:g} (seed 0)" for lo, hi in edges]
    return [Table("cnn-on-reconstructions", "EMD CNN vs exact EMD on each model's own (input, "
                  "reconstruction) test pairs", header, rows,
                  note="relative difference (CNN - exact) / exact over pairs with exact EMD >= "
                       f"{cc.get('min_emd')}; this is the regime the EMD-CNN loss is optimised in (the "
                       "random-pair resolution of the emd stage says little about it); per-occupancy bins in "
                       "autoencoder/cnn_check.json; scatter plots with the loss comparison's figures")]


def _quantization(up: Upstream) -> Section:
    sec = Section("quantization", "Quantization and number formats")
    ae_c, cv = up.config("autoencoder"), up.metrics("convert")
    meta = up.json("convert", "vectors_meta.json")
    fmts = dig(meta, "formats") if isinstance(meta, dict) else None
    names = {"word": "TC word (ECON-T input)", "calvalue": "CALVALUE", "aein": "AEin (encoder input)",
             "weights": "weights and biases", "conv_act": "conv activation", "latent": "latent output",
             "sum_code": "module sum"}
    if fmts:
        rows = [[names.get(k, k), Code(v)] for k, v in fmts.items()]
    else:
        rows = [["formats", meta if isinstance(meta, NA) else NA("vectors_meta.json has no formats")]]
    rows += [["latent bits (autoencoder config)", num(ae_c.get("latent_bits"), "d")],
             ["latent bits (convert)", num(cv.get("latent_bits"), "d")],
             ["latent bits (rtl)", num(up.metrics("rtl").get("latent_bits"), "d")]]
    sec.add(Table("formats", "Number formats (golden model = QKeras = hls4ml = RTL)", ["quantity", "format"],
                  rows, note="from convert/vectors_meta.json and the stages' latent_bits"))
    proj = up.json("convert", "projects.json")
    projects = dig(proj, "projects") if isinstance(proj, dict) else None
    if projects:
        layer_sets = {b: json.dumps(p.get("layers"), sort_keys=True) for b, p in projects.items()}
        groups: dict[str, list[str]] = {}
        for b, key in layer_sets.items():
            groups.setdefault(key, []).append(b)
        for key, backends in groups.items():
            layers = json.loads(key) or []
            rows = [[ly.get("name", "?"), ly.get("class", "?")]
                    + [Code(dig(ly, "precisions", k)) if dig(ly, "precisions", k) else "-"
                       for k in ("result", "weight", "bias", "accum")] for ly in layers]
            sec.add(Table(f"hls4ml-precisions-{'-'.join(backends).lower()}",
                          f"hls4ml layer precisions ({', '.join(backends)})",
                          ["layer", "class", "result", "weight", "bias", "accumulator"], rows))
    else:
        sec.add(Para(str(proj if isinstance(proj, NA) else NA("projects.json has no projects")), na=True))
    # golden == QKeras and the golden vectors
    ae = up.metrics("autoencoder")
    rows = [[loss, num(ae.get("golden_n_total")), num(n, "d")] for loss, n in
            (ae.get("golden_mismatches") or {}).items()]
    sec.add(Table("golden-qkeras", "Golden integer model vs QKeras encoder (every test wafer)",
                  ["loss", "wafers", "mismatching wafers"],
                  rows or [[NA("autoencoder metrics have no golden_mismatches"), "", ""]]))
    counts = cv.get("counts") or {}
    rows = [[k.replace("_", " "), num(v)] for k, v in counts.items()]
    rows += [[f"total in {f}", num(n)] for f, n in (cv.get("n_vectors") or {}).items()]
    sec.add(Table("golden-vectors", "Golden test vectors (convert stage)", ["kind", "vectors"],
                  rows or [[NA("convert metrics have no vector counts"), ""]]))
    return sec


def _csim(up: Upstream) -> Section:
    sec = Section("csim", "hls4ml C simulation (csim stage)")
    projects = dig(up.metrics("csim"), "projects") or {}
    fields = sorted({f for r in projects.values() for f in (r.get("fields") or {})})
    rows = []
    for b, r in projects.items():
        ok = r.get("n_mismatch") == 0 and (r.get("n_total") or 0) > 0
        rows.append([b, num(r.get("n_total")), num(r.get("n_mismatch"))]
                    + [num(dig(r, "fields", f)) for f in fields]
                    + [num(r.get("compile_s"), ".1f"), num(r.get("csim_s"), ".2f"),
                       num(r.get("vectors_per_s"), ",.0f"), Status(ok)])
    if not rows:
        rows = [[NA("the csim stage recorded no projects")] + [""] * (6 + len(fields))]
    sec.add(Table("csim", "C simulation of the hls4ml projects vs the golden model",
                  ["backend", "vectors", "mismatching vectors"] + [f"{f} mismatches" for f in fields]
                  + ["g++ compile s", "csim s", "vectors/s", "verdict"], rows))
    return sec


def _rtl_cosim(up: Upstream) -> Section:
    sec = Section("cosim", "RTL and cosimulation (rtl and cosim stages)")
    rtl = up.json("rtl", "rtl.json")
    rm = up.metrics("rtl")
    iface = dig(rtl, "interface") if isinstance(rtl, dict) else {}
    rows = [["clock period", num(dig(iface, "clock_ns"), "g", unit=" ns")],
            ["latency (documented)", num(rm.get("latency_cycles"), "d", unit=" clk")],
            ["latency (documented)", num(rm.get("latency_ns"), "g", unit=" ns")],
            ["initiation interval", num(rm.get("ii_cycles"), "d", unit=" clk")],
            ["latent bits", num(rm.get("latent_bits"), "d")]]
    for fl, f in (dig(rtl, "flavours") or {}).items():
        rows.append([f"{fl}: top / Verilog lines", f"{f.get('top', '?')} / {f.get('verilog_lines', '?')}"])
        rows.append([f"{fl}: lint", f.get("lint") or NA("not recorded")])
        if "da4ml_cost" in f:
            rows.append([f"{fl}: da4ml adder cost", num(f.get("da4ml_cost"), ",.0f")])
    sec.add(Table("rtl", "RTL of the ECON-T block (rtl stage)", ["item", "value"], rows))

    cm, cc = up.metrics("cosim"), up.config("cosim")
    rep = up.json("cosim", "report.json")
    repd = rep if isinstance(rep, dict) else {}
    flavours = [k for k, v in cm.items() if isinstance(v, dict) and "n_total" in v]
    rows = []
    for fl in flavours:
        r = cm[fl]
        tests = dig(repd, "flavours", fl, "tests") or {}
        n_pass = sum(1 for t in tests.values() if t.get("passed"))
        ok = r.get("n_mismatch") == 0 and (r.get("n_total") or 0) > 0 and n_pass == len(tests)
        rows.append([fl, num(r.get("n_total")), num(r.get("n_mismatch")),
                     f"{n_pass} / {len(tests)}" if tests else NA("cosim report.json not written"),
                     num(r.get("latency_cycles"), "d", "not measured"),
                     num(r.get("latency_ns"), "g", "not measured"),
                     num(r.get("ii_cycles"), "d", "not measured"),
                     num(r.get("sim_wafers_per_s"), ",.0f"), num(r.get("build_s"), ".1f"), Status(ok)])
    if not rows:
        rows = [[NA("the cosim stage recorded no flavours")] + [""] * 9]
    sec.add(Table("cosim", "Cosimulation (cocotb + Verilator) vs the golden model",
                  ["flavour", "wafers", "mismatching wafers", "testbench tests passed", "latency clk",
                   "latency ns", "II clk", "sim wafers/s", "Verilator build s", "verdict"], rows))

    # per phase
    prow = []
    for fl in flavours:
        for ph, p in (dig(repd, "flavours", fl, "phases") or {}).items():
            prow.append([fl, ph, num(p.get("n_total")), num(p.get("n_mismatch")),
                         num(p.get("n_field_mismatch"), reason="not recorded")])
    if prow:
        sec.add(Table("cosim-phases", "Cosimulation phases",
                      ["flavour", "phase", "wafers", "mismatching wafers", "mismatching fields"], prow))
    # resources
    kinds = cc.get("yosys")
    none_reason = f"not estimated (cosim.yosys = {json.dumps(kinds) if kinds is not None else '?'})"
    xcols = [("xilinx", "LUT"), ("xilinx", "FF"), ("xilinx", "CARRY4"), ("xilinx", "DSP48"),
             ("xilinx", "MUXF7"), ("xilinx", "MUXF8"), ("xilinx", "BRAM"),
             ("generic", "gates"), ("generic", "transistors"), ("generic", "logic_depth_gates"),
             ("sky130", "area_um2")]
    rows = []

    def res_row(label, getter):
        cells = [label]
        for kind, k in xcols:
            v = getter(kind, k)
            cells.append(num(v) if v is not None else
                         NA(none_reason if not kinds or kind not in kinds else f"no {kind} {k} figure"))
        return cells

    if not kinds:   # no Yosys run at all: one explicit cell per design instead of a row of blanks
        sec.add(Table("resources", "Resources (Yosys)", ["design", "resources"],
                      [[fl, NA(none_reason)] for fl in flavours] or [["-", NA(none_reason)]],
                      note="enable with cosim.yosys: [xilinx, generic] (takes minutes)"))
        return sec
    for fl in flavours:
        rows.append(res_row(fl, lambda kind, k, fl=fl: cm[fl].get(f"{kind}_{k}")))
    fe = repd.get("frontend")
    if fe:
        rows.append(res_row("front end alone", lambda kind, k: dig(fe, kind, k)))
    if rows:
        dsp = "with DSP48" if cc.get("yosys_dsp") else "-nodsp"
        head = {"xilinx": "{k}", "generic": "{k} (generic)",
                "sky130": "sky130 area um^2 (area only, no timing)"}
        sec.add(Table("resources", f"Resources (Yosys: synth_xilinx {dsp}, generic gates, sky130 area)",
                      ["design"] + [head[kind].format(k=k.replace("_", " ")) for kind, k in xcols], rows,
                      note="estimates from Yosys, no place and route; generic gates = yosys 'synth' "
                           "cells without a cell library; sky130 = SkyWater 130 nm sky130_fd_sc_hd cells "
                           "mapped with an area-only Liberty (cell area from LEF, no timing, no buffering, "
                           "clock tree or routing)"))
    return sec


def _physics(ctx, up: Upstream, figs: Figures) -> Section:
    """The physics stage's results, if its artifact exists and is fresh (an optional input:
    it is verified here and then recorded in the report's manifest like the others)."""
    from .errors import StageInputError
    from .manifest import load_manifest, verify

    sec = Section("physics", "Electron trigger resolution (physics stage)")
    if load_manifest(ctx.cfg.stage_dir("physics")) is None:
        return sec.add(Para(str(NA("the physics stage has not run (`make physics`)")), na=True))
    try:
        ctx.upstream["physics"] = verify(ctx.cfg, "physics")
    except StageInputError as err:
        return sec.add(Para(str(NA(f"the physics artifact is not usable: {err}")), na=True))
    m = up.metrics("physics")
    unavailable = m.get("unavailable") or {}
    rows = []
    for a in m.get("algorithms", []):
        for e in m.get("elinks", []):
            r = dig(m, "resolution", a, str(e))
            why = dig(unavailable, a, str(e))
            q = dig(m, "resolution_over_uncompressed", a, str(e))
            ratio = (f"{q['value']:.3f} +- {q['err']:.3f}"
                     if isinstance(q, dict) and _is_num(q.get("value")) and _is_num(q.get("err"))
                     else NA("not recorded"))
            rows.append([a, num(e, "d"), num(dig(m, "bits_per_bx", a, str(e)), "d"),
                         NA(why or "not measured") if r is None else pct(r.get("value"), signed=False),
                         "" if r is None else pct(r.get("err"), signed=False),
                         "" if r is None else ratio,
                         "" if r is None else pct(dig(m, "efficiency", a, str(e)), 1, signed=False),
                         "" if r is None else num(dig(m, "median_emd", a, str(e)), ".3f")])
    sec.add(Table("physics-summary", "Effective pT resolution of matched L1 electron clusters per "
                  "output algorithm and eLink budget (test split)",
                  ["algorithm", "eLinks", "bits per BX", "resolution", "bootstrap err.",
                   "/ uncompressed (paired)", "efficiency", "median EMD"], rows,
                  note=f"generated pT >= {m.get('min_gen_pt')} GeV, {m.get('n_electrons')} electrons; "
                       "bits per BX: worst-case frame (uncompressed: 48 x 22-bit CALQ, the lossless "
                       "reference, exempt from the budget); docs/physics.md"))
    order = [f"resolution_vs_eta_{e}elinks.png" for e in (2, 3, 4, 5)] + ["resolution_emd_vs_elinks.png"]
    plots = figs.stage_plots(up, "physics", order)
    sec.add(plots if plots else Para(str(NA("the physics stage saved no plots")), na=True))
    return sec


def _tools(up: Upstream) -> Section:
    sec = Section("tools", "Tool versions")
    seen: dict[str, dict[str, list[str]]] = {}
    for s in UPSTREAM:
        for tool, ver in (up.man(s).get("tools") or {}).items():
            seen.setdefault(tool, {}).setdefault(str(ver) if ver is not None else "", []).append(s)
    rows = []
    for tool in sorted(seen, key=str.lower):
        for ver, stages in seen[tool].items():
            where = "all stages" if len(stages) == len(UPSTREAM) else ", ".join(stages)
            rows.append([tool, Code(ver) if ver else NA("no version recorded (not found when the stage ran)"),
                         where])
    sec.add(Table("tools", "Tool versions recorded in the stage manifests", ["tool", "version", "stages"],
                  rows))
    return sec


def _stages(up: Upstream) -> Section:
    sec = Section("stages", "Stage manifests")
    rows = []
    for s in [*UPSTREAM, *(x for x in ("physics",) if x in up.v)]:   # physics: optional input
        man = up.man(s)
        rows.append([s, Code(up.v[s].manifest_sha256), Code(man.get("config_hash") or "?"),
                     Code(man.get("git") or "unknown"), num(man.get("wall_s"), ",.1f"),
                     man.get("started_utc") or NA("not recorded"),
                     man.get("finished_utc") or NA("not recorded"),
                     num(len(man.get("outputs") or {}))])
    sec.add(Table("stages", "Every upstream stage's manifest", ["stage", "manifest sha256", "config hash",
                                                                 "git revision", "wall s", "started (UTC)",
                                                                 "finished (UTC)", "outputs"], rows,
                  note="the report verified every manifest and output hash before reading them"))
    return sec


# ------------------------------------------------------------------ rendering
def _cell_html(v: Cell, tag: str = "td") -> str:
    if isinstance(v, NA):
        return f'<{tag} class="na">{html.escape(str(v))}</{tag}>'
    if isinstance(v, Status):
        cls = "pass" if v.ok else "fail"
        return f'<{tag} class="status {cls}">{html.escape(str(v))}</{tag}>'
    if isinstance(v, Code):
        return f'<{tag} class="text"><code>{html.escape(v.text)}</code></{tag}>'
    s = "" if v is None else str(v)
    cls = "" if re.fullmatch(r"[-+]?[\d,.]+( ?(%|ns|clk))?", s) else ' class="text"'
    return f"<{tag}{cls}>{html.escape(s)}</{tag}>"


def _block_html(b) -> str:
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
        body = "\n".join("<tr>" + "".join(_cell_html(c) for c in row) + "</tr>" for row in b.rows)
        note = f'\n<p class="table-note">{html.escape(b.note)}</p>' if b.note else ""
        return (f'<table class="report-table" id="tbl-{b.id}">\n<caption>{html.escape(b.caption)}</caption>\n'
                f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{note}")
    if isinstance(b, Para):
        return f'<p class="{"na" if b.na else "note"}">{html.escape(b.text)}</p>'
    if isinstance(b, list):   # figures (and NA paragraphs among them)
        parts = []
        for f in b:
            if isinstance(f, Figure):
                uri = "data:image/png;base64," + base64.b64encode(f.data).decode("ascii")
                alt = html.escape(f.caption, quote=True)
                parts.append(f'<figure class="plot" id="{f.id}"><img alt="{alt}" src="{uri}">'
                             f'<figcaption>{html.escape(f.caption)} '
                             f'<code>{html.escape(f.source)}</code></figcaption></figure>')
            else:
                parts.append(_block_html(f))
        return '<div class="figures">\n' + "\n".join(parts) + "\n</div>"
    raise TypeError(type(b))


def _cell_md(v: Cell) -> str:
    if isinstance(v, NA):
        s = f"*{v}*"
    elif isinstance(v, Status):
        s = f"**{v}**"
    elif isinstance(v, Code):
        s = f"`{v.text}`"
    else:
        s = "" if v is None else str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def _block_md(b) -> str:
    if isinstance(b, Table):
        lines = [f"**{b.caption}**", "", "| " + " | ".join(_cell_md(h) for h in b.header) + " |",
                 "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in b.rows]
        if b.note:
            lines += ["", f"_{b.note}_"]
        return "\n".join(lines)
    if isinstance(b, Para):
        return f"*{b.text}*" if b.na else b.text
    if isinstance(b, list):
        return "\n\n".join(f"![{f.caption}]({f.file})  \n_{f.caption}_ (`{f.source}`)"
                           if isinstance(f, Figure) else _block_md(f) for f in b)
    raise TypeError(type(b))


def _template(name: str) -> str:
    return resources.files("flow").joinpath(f"resources/report/{name}").read_text()


def render_html(title: str, verdict: str, lead: str, notes: str, date: str, run: str,
                sections: list[Section]) -> str:
    body = "\n".join(f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_block_html(b) for b in s.blocks) + "\n</section>" for s in sections)
    toc = "\n".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    return string.Template(_template("report.html")).substitute(
        title=html.escape(title), verdict=verdict, verdict_class=verdict.lower(), lead=html.escape(lead),
        notes=f'<p class="notes">{html.escape(notes)}</p>' if notes else "", toc=toc, body=body,
        date=html.escape(date), run=html.escape(run, quote=True), style=_template("report.css"),
        script=_template("report.js"))


def render_md(title: str, verdict: str, lead: str, notes: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", f"**Verdict: {verdict}**", "", lead, ""]
    if notes:
        lines += [notes, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            lines += [_block_md(b), ""]
    return "\n".join(lines)


def _items(sections: list[Section]):
    """Every table, figure and paragraph of the report (a block may be a row of them)."""
    for s in sections:
        for b in s.blocks:
            yield from (b if isinstance(b, list) else [b])


def _count(sections: list[Section], kind) -> int:
    return sum(isinstance(x, kind) for x in _items(sections))


def _count_na(sections: list[Section]) -> int:
    return sum(sum(isinstance(c, NA) for row in x.rows for c in row) if isinstance(x, Table)
               else int(isinstance(x, Para) and x.na) for x in _items(sections))


# ------------------------------------------------------------------ stage
def run(ctx) -> None:
    s = ctx.settings
    up = Upstream(ctx)
    out = Path(ctx.out)
    figs = Figures(out)
    # deterministic: the newest upstream artifact's time, not the clock (a rerun on the
    # same artifacts gives the same page; the report's own manifest has its build time)
    date = max(str(up.man(st).get("finished_utc") or "") for st in UPSTREAM) or "unknown"
    hashes = {st: up.man(st).get("config_hash") for st in UPSTREAM}
    hashes["report"] = ctx.cfg.section_hash("report")
    run_hash = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()

    checks, statuses = _checks(up)
    n_fail = sum(not st.ok for st in statuses)
    verdict = "PASS" if statuses and n_fail == 0 else "FAIL"
    summary = Section("summary", "Verdict").add(
        Para(f"{verdict}: {len(statuses) - n_fail} of {len(statuses)} checks passed"
             + (f"; {n_fail} failed or not available." if n_fail else "."), na=False),
        checks, _headline(up))
    loss_sec, kr_sec = _losses(up, figs, out)
    sections = [summary, _provenance(up, ctx, date, run_hash), _dataset(up, figs), _emd(up, figs),
                loss_sec, kr_sec, _physics(ctx, up, figs), _quantization(up), _csim(up),
                _rtl_cosim(up), _tools(up), _stages(up)]

    title = f"{s.title}: run {ctx.cfg.name}"
    lead = (f"Run '{ctx.cfg.name}', config hash {run_hash[:16]}, git {git_revision() or 'unknown'}, "
            f"last stage built {date}.")
    page = render_html(title, verdict, lead, s.notes, date, ctx.cfg.name, sections)
    (out / "report.html").write_text(page)
    (out / "report.md").write_text(render_md(title, verdict, lead, s.notes, sections))

    n_tables, n_figs = _count(sections, Table), len(figs.items)
    n_na = _count_na(sections)
    ctx.metrics.update({"verdict": verdict, "n_checks": len(statuses), "n_checks_failed": n_fail,
                        "n_tables": n_tables, "n_figures": n_figs, "n_sections": len(sections),
                        "n_not_available": n_na, "html_bytes": len(page.encode()),
                        "run_config_hash": run_hash})
    ctx.add_summary("verdict", f"{verdict} ({len(statuses) - n_fail}/{len(statuses)} checks)")
    ctx.add_summary("report", f"{ctx.cfg.stage_dir('report') / 'report.html'} "
                              f"({len(page.encode()) / 1e6:.2f} MB)")
    ctx.add_summary("content", f"{len(sections)} sections, {n_tables} tables, {n_figs} figures, "
                               f"{n_na} 'not available' entries")
