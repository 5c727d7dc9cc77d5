"""What the report reads: the verified upstream artifacts (:class:`Upstream`)
and their figures, copied into ``report/figures/`` with their captions
(:class:`Figures`)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from .report_doc import NA, Figure

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


def to_float(s) -> float | None:
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

