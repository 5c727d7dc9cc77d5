"""Benchmarks: ``make bench`` -> ``bench/<run>.json``.

Brings every built stage of the run up to date (a stage whose artifact is
missing or stale is run, exactly as ``make all`` would; with ``fresh`` every
stage is rerun), records each stage's wall time from its manifest, then
calls each stage module's optional ``bench(cfg, workdir)`` hook for its
throughput figures, plus the shared cores' own micro benchmarks.  Tests
check correctness only; every performance number of the project comes from
here.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import time
from pathlib import Path

import numpy as np

from flow.runner.atomic import atomic_write_json
from flow.runner.manifest import git_revision
from flow.runner.stages import STAGES, run_stage

#: end-to-end wall-time targets of `make all` (seconds), by run name
#: (default: 120 min since issue #14, which added seeds, convergence and the physics stage)
TARGETS_ALL_S = {"smoke": 300.0, "default": 7200.0}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "python": platform.python_version(), "platform": platform.platform()}


def bench_frontend(n: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Throughput of the integer front-end model (wafers/s)."""
    from flow.core.frontend import FrontEnd

    rng = np.random.default_rng(seed)
    words = rng.integers(0, 128, size=(n, 48)) * (rng.random((n, 48)) < 0.3)
    fe = FrontEnd()
    fe(words[:1000])
    t0 = time.perf_counter()
    fe(words)
    dt = time.perf_counter() - t0
    return {"frontend_wafers_per_s": n / dt}


def run_bench(cfg, config_path: str, output: str | None = None, echo=print, fresh: bool = False) -> int:
    from flow.runner.errors import StageInputError
    from flow.runner.manifest import verify

    res: dict = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config_path, "run": cfg.name, "git": git_revision(), "machine": machine(),
        "stages": {}, "throughput": {}, "targets": {},
    }
    total = 0.0
    for name, st in STAGES.items():
        try:
            if fresh:
                raise StageInputError("rerun requested")
            man = verify(cfg, name).manifest
            how = "reused (fresh artifact)"
        except StageInputError:
            echo(f"[bench] running stage {name} ...")
            man = run_stage(cfg, name)
            how = "run by bench"
        total += man["wall_s"]
        res["stages"][name] = {"status": "ok", "how": how, "wall_s": man["wall_s"],
                               "finished_utc": man.get("finished_utc"), "metrics": man["metrics"]}
        hook = getattr(importlib.import_module(st.module), "bench", None)
        if hook is not None:
            echo(f"[bench] {name} throughput ...")
            res["throughput"][name] = hook(cfg, cfg.run_dir / ".bench" / name)
    res["throughput"]["frontend"] = bench_frontend()
    limit = TARGETS_ALL_S.get(cfg.name)
    res["targets"]["all_wall_s"] = {
        "measured_s": round(total, 2), "limit_s": limit,
        "met": (total <= limit) if limit is not None else None,
    }
    out = Path(output or Path("bench") / f"{cfg.name}.json")
    atomic_write_json(out, res)
    _table(res, out, echo)
    return 0


def _table(res: dict, out: Path, echo) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"bench '{res['run']}' -> {out}", title_justify="left")
    t.add_column("what")
    t.add_column("value", justify="right")
    for name, s in res["stages"].items():
        t.add_row(f"stage {name}", f"{s['wall_s']:.1f} s" if "wall_s" in s else s["status"])
    for group, vals in res["throughput"].items():
        for k, v in vals.items():
            t.add_row(f"{group}: {k}", f"{v:,.4g}" if isinstance(v, float) else str(v))
    a = res["targets"]["all_wall_s"]
    t.add_row("make all (sum of stages)", f"{a['measured_s']:.1f} s / limit {a['limit_s']} s")
    Console().print(t)
