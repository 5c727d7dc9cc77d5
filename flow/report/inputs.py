"""What the report reads: the verified upstream artifacts (:class:`Upstream`)
and their figures, copied into ``report/figures/`` with the captions the stage
that drew them wrote beside them (``plots/captions.json``, :mod:`flow.core.captions`)
(:class:`Figures`)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from flow.core.captions import FILE as CAPTIONS_FILE
from flow.core.captions import read_captions
from flow.report.doc import NA, Figure

#: the stages the report reads, in flow order
UPSTREAM = ("data", "emd", "autoencoder", "convert", "csim", "rtl", "cosim")


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

    def captions(self, stage: str) -> dict[str, str]:
        """The captions the stage wrote beside its plots (``plots/captions.json``)."""
        rel = f"plots/{CAPTIONS_FILE}"
        return read_captions(self.path(stage, rel)) if self.has(stage, rel) else {}

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
        """Copy a stage's figure; without a caption, the file name stands in for one."""
        name = f"{stage}_{Path(rel).name}"
        shutil.copyfile(src, self.dir / name)
        fig = Figure(id=f"fig-{stage}-{Path(rel).stem}".replace("_", "-"),
                     caption=caption or Path(rel).stem,
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
        caps = up.captions(stage)
        return [self.add_file(stage, up.path(stage, r), r, caps.get(Path(r).name)) for r in rels]

