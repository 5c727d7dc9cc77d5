"""The stages of the flow and the runner that executes one.

A stage is a module ``flow.<name>.stage`` with a function ``run(ctx) -> None``
(FINN style: it reads its inputs through ``ctx.upstream``, writes its
artifact into ``ctx.out`` and fills ``ctx.metrics`` / ``ctx.summary``).  The
runner verifies the inputs, takes the hash of the stage's code
(:mod:`flow.runner.codehash`), gives the stage a fresh temporary directory, writes
the manifest last and swaps the directory into place atomically.

The runner also owns what happens when a stage fails: the stage's directory
(its logs, reports and partial outputs) is kept as ``build/<run>/<stage>.failed/``
(:func:`keep_failed`), the paths in the error message are rewritten to point
there, and the previous artifact stays untouched.  A stage therefore just
writes its logs and reports into ``ctx.out`` and raises.

One name per stage everywhere: make target, CLI subcommand, module and output
directory (``train`` is the make/CLI name for ``emd`` followed by
``autoencoder``).
"""
from __future__ import annotations

import datetime as _dt
import importlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from flow.runner.atomic import replace_dir
from flow.runner.codehash import stage_code
from flow.runner.errors import FlowError, StageInputError
from flow.runner.host import pin_numerics
from flow.runner.manifest import MANIFEST, StageContext, finish, load_manifest, verify


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    summary: str

    @property
    def make_target(self) -> str:
        return self.name

    @property
    def config_section(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return f"flow.{self.name}.stage"


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("data", (), "wafers from ROOT ntuples (synthetic by default) -> dataset splits"),
    Stage("emd", ("data",), "exact EMD labels (POT) and the EMD CNN"),
    Stage("autoencoder", ("data", "emd"), "quantized encoder trained with the EMD-CNN loss"),
    Stage("convert", ("data", "autoencoder"), "hls4ml projects and golden test vectors"),
    Stage("csim", ("convert",), "hls4ml C simulation vs golden model"),
    Stage("rtl", ("autoencoder",), "Verilog of the ECON-T block"),
    Stage("cosim", ("autoencoder", "rtl", "convert"),
          "cocotb/Verilator cosimulation and Yosys resources"),
    # physics also reads "autoencoder" when physics.autoencoder is true (flow.physics.stage.run
    # verifies it and records it as an upstream, so staleness still propagates)
    Stage("physics", ("data",),
          "electron trigger resolution per output algorithm and eLink budget"),
    Stage("sweep", ("data", "emd"),
          "co-design map: encoder designs' EMD and resolution against area and latency"),
    Stage("report", ("data", "emd", "autoencoder", "convert", "csim", "rtl", "cosim"),
          "HTML/Markdown report of the run"),
    Stage("handoff", ("autoencoder", "convert", "rtl", "cosim"),
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


def fresh_reason(cfg, name: str) -> str | None:
    """Why stage ``name``'s artifact must be rebuilt, or ``None`` when it is fresh: missing,
    incomplete or modified, built with another config section or seed, other flow code, an
    upstream artifact rebuilt since (all :func:`~flow.runner.manifest.verify`), or other
    versions of Python or the pinned distributions (``TOOL_DISTRIBUTIONS``) than installed."""
    from flow.runner.manifest import TOOL_DISTRIBUTIONS, tool_versions

    try:
        man = verify(cfg, name).manifest
    except StageInputError as err:
        return str(err).split("; rerun")[0]
    tools, now = man.get("tools") or {}, tool_versions()
    changed = [f"{k} {tools[k]} -> {now[k]}" for k in ("python", *TOOL_DISTRIBUTIONS)
               if k in tools and tools[k] != now[k]]
    if changed:
        return f"stage '{name}' was built with other tool versions ({', '.join(changed)})"
    return None


def run_stage_if_stale(cfg, name: str, *, echo=print) -> dict:
    """``make``'s entry (``python -m flow <stage> --if-stale``): run the stage only when
    :func:`fresh_reason` gives a reason; a fresh artifact is kept and its manifest's mtime set
    to now, so that make, which compares file times, counts it as up to date.  make alone
    would rebuild every stage after any edit of the config file; the manifest check compares
    only the stage's own section, its code and its inputs."""
    why = fresh_reason(cfg, name)
    if why is None:
        path = cfg.stage_dir(name) / MANIFEST
        os.utime(path)
        echo(f"stage {name}: up to date (its config section, code, inputs and tools are unchanged: "
             f"`python -m flow status`), kept {path}")
        return load_manifest(cfg.stage_dir(name))
    echo(f"stage {name}: rebuilding: {why}")
    return run_stage(cfg, name, echo=echo)


def run_stage(cfg, name: str, *, echo=print) -> dict:
    """Run one stage and return its manifest."""
    stage = STAGES[name]
    pin_numerics()  # before a stage module imports TensorFlow (the CLI has done it already)
    upstream = {up: verify(cfg, up) for up in stage.upstream}
    code = stage_code(name)  # the code as the stage imports it (before it can change under us)
    module = importlib.import_module(stage.module)
    final = cfg.stage_dir(name)
    tmp = final.with_name(f".{name}.tmp")
    failed = failed_dir(cfg, name)
    for d in (tmp, failed):  # a rerun replaces the previous failure's directory
        if d.exists():
            shutil.rmtree(d)
    tmp.mkdir(parents=True)
    ckpt = cfg.run_dir / ".checkpoints" / name
    ckpt.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(cfg=cfg, stage=name, out=tmp, upstream=upstream, checkpoint_dir=ckpt, code=code)
    started = time.time()
    started_utc = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    try:
        module.run(ctx)
        manifest = finish(ctx, started, started_utc)
    except Exception as err:
        keep_failed(tmp, failed, err)
        raise
    except BaseException:  # interrupted (Ctrl-C): nothing worth keeping
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)
    # the manifest's mtime is the stage's start: an input edited while the stage ran (a shared
    # core, the config, an upstream artifact) is newer than it, so make reruns the stage, as the
    # manifest check (which compares hashes) would demand anyway
    os.utime(final / MANIFEST, (started, started))
    _print_summary(name, manifest, ctx.summary, echo)
    return manifest


def failed_dir(cfg, name: str) -> Path:
    """Where the runner keeps the directory of a failed run of stage ``name``."""
    return cfg.run_dir / f"{name}.failed"


def keep_failed(tmp: Path, failed: Path, err: BaseException) -> None:
    """Keep the directory of a failed stage run (logs, reports, partial outputs) as
    ``failed`` -- the one place every stage's failure evidence goes -- and make the
    error's message point there instead of at the temporary directory, which is gone.
    An empty directory is not kept."""
    if not tmp.is_dir() or not any(p.is_file() for p in tmp.rglob("*")):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, failed)
    if isinstance(err, FlowError) and len(err.args) == 1 and isinstance(err.args[0], str):
        msg = err.args[0].replace(str(tmp), str(failed))
        if str(failed) not in msg:
            msg += f" (the failed run's files are kept in {failed})"
        err.args = (msg,)
    else:
        err.add_note(f"the failed run's files are kept in {failed}")


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
