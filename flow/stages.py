"""The stages of the flow and the runner that executes one.

A stage is a module ``flow.<name>`` with a function ``run(ctx) -> None``
(FINN style: it reads its inputs through ``ctx.upstream``, writes its
artifact into ``ctx.out`` and fills ``ctx.metrics`` / ``ctx.summary``).  The
runner verifies the inputs, gives the stage a fresh temporary directory,
writes the manifest last and swaps the directory into place atomically.

One name per stage everywhere: make target, CLI subcommand, module and output
directory (``train`` is the make/CLI name for ``emd`` followed by
``autoencoder``).
"""
from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import shutil
import time
from dataclasses import dataclass

from .errors import NotBuiltError
from .host import pin_numerics
from .manifest import StageContext, finish, swap_into_place, verify


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    issue: int
    summary: str

    @property
    def make_target(self) -> str:
        return self.name

    @property
    def config_section(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return f"flow.{self.name}"

    @property
    def built(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("data", (), 4, "wafers from ROOT ntuples (synthetic by default) -> dataset splits"),
    Stage("emd", ("data",), 5, "exact EMD labels (POT) and the EMD CNN"),
    Stage("autoencoder", ("data", "emd"), 6, "quantized encoder trained with the EMD-CNN loss"),
    Stage("convert", ("data", "autoencoder"), 7, "hls4ml projects and golden test vectors"),
    Stage("csim", ("convert",), 7, "hls4ml C simulation vs golden model"),
    Stage("rtl", ("autoencoder",), 8, "Verilog of the ECON-T block"),
    Stage("cosim", ("autoencoder", "rtl", "convert"), 8,
          "cocotb/Verilator cosimulation and Yosys resources"),
    # physics also reads "autoencoder" when physics.autoencoder is true (flow.physics.run
    # verifies it and records it as an upstream, so staleness still propagates)
    Stage("physics", ("data",), 16,
          "electron trigger resolution per output algorithm and eLink budget"),
    Stage("report", ("data", "emd", "autoencoder", "convert", "csim", "rtl", "cosim"), 9,
          "HTML/Markdown report of the run"),
    Stage("handoff", ("autoencoder", "convert", "rtl", "cosim"), 9,
          "archive for ASIC engineers: RTL, register images, vectors, testbench"),
]}

#: CLI/make aliases that run several stages in order.
ALIASES: dict[str, tuple[str, ...]] = {"train": ("emd", "autoencoder")}


def resolve(name: str) -> tuple[str, ...]:
    if name in ALIASES:
        return ALIASES[name]
    if name in STAGES:
        return (name,)
    raise KeyError(name)


def run_stage(cfg, name: str, *, echo=print) -> dict:
    """Run one stage and return its manifest."""
    stage = STAGES[name]
    if not stage.built:
        raise NotBuiltError(f"stage '{name}' ({stage.summary}) is not built yet: there is no "
                            f"module {stage.module} (tracked in issue #{stage.issue}). "
                            "Nothing was run and nothing was written.")
    pin_numerics()  # before a stage module imports TensorFlow (the CLI has done it already)
    upstream = {up: verify(cfg, up) for up in stage.upstream}
    module = importlib.import_module(stage.module)
    final = cfg.stage_dir(name)
    tmp = final.with_name(f".{name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    ckpt = cfg.run_dir / ".checkpoints" / name
    ckpt.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(cfg=cfg, stage=name, out=tmp, upstream=upstream, checkpoint_dir=ckpt)
    started = time.time()
    started_utc = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    try:
        module.run(ctx)
        manifest = finish(ctx, started, started_utc)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, final)
    _print_summary(name, manifest, ctx.summary, echo)
    return manifest


def _print_summary(name: str, manifest: dict, rows: list[tuple[str, str]], echo) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        echo(f"[{name}] done in {manifest['wall_s']:.1f} s")
        for k, v in rows:
            echo(f"  {k}: {v}")
        return
    table = Table(title=f"stage {name}: done in {manifest['wall_s']:.1f} s", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    table.add_row("outputs", f"{len(manifest['outputs'])} files")
    Console(stderr=False).print(table)
