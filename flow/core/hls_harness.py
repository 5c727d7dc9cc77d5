"""The C simulation harness of an hls4ml project: the contract between ``convert``, which
writes it into every project (our C++ from ``flow/resources/hls/``, ``build_econt_csim.sh``,
``econt_project.json``), and ``csim``, which compiles and runs it.

Holds the translation units, the compiler flags per backend and :func:`run_logged`, the
child-process runner both use (a failure is a :class:`~flow.runner.errors.FlowError` naming what
failed, the log file and the last lines of output).
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from flow.runner.errors import FlowError

TAIL_LINES = 25


# ------------------------------------------------------------- subprocesses
def _tail(text: str, n: int = TAIL_LINES) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join("    " + ln for ln in lines[-n:]) or "    (no output)"


def run_logged(cmd: list[str], log: Path, what: str, *, cwd: Path | None = None,
               timeout: float | None = None, env: dict | None = None) -> str:
    """Run ``cmd``, write its combined output to ``log``, return the output.

    Raises :class:`FlowError` (what failed, exit status or signal, the log
    path and the last lines of output) on a non-zero exit, a signal (a C++
    ``assert`` aborts with SIGABRT) or a timeout.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    header = f"$ (cd {cwd or os.getcwd()} && {shlex.join(str(c) for c in cmd)})\n"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        log.write_text(header + out + f"\n[timed out after {timeout} s]\n")
        raise FlowError(f"{what} timed out after {timeout:.0f} s; log: {log}; last lines:\n"
                        f"{_tail(out)}") from None
    except OSError as err:
        log.write_text(header + f"[could not start: {err}]\n")
        raise FlowError(f"{what} could not start ({err}); log: {log}") from None
    out = proc.stdout or ""
    log.write_text(header + out + f"\n[exit status {proc.returncode}, "
                                  f"{time.perf_counter() - t0:.1f} s]\n")
    if proc.returncode != 0:
        if proc.returncode < 0:
            try:
                status = f"was killed by {signal.Signals(-proc.returncode).name}"
            except ValueError:
                status = f"was killed by signal {-proc.returncode}"
            if proc.returncode == -signal.SIGABRT:
                status += " (an assert or abort in C++ code)"
        else:
            status = f"exited with status {proc.returncode}"
        raise FlowError(f"{what} failed: the process {status}; log: {log}; last lines:\n{_tail(out)}")
    return out


# ------------------------------------------------------------ compile recipe
def include_flags(backend: str) -> list[str]:
    """Compiler flags (include paths, defines) of a project's C++, relative to the project."""
    if backend == "Vitis":
        return ["-Ifirmware", "-Ifirmware/ap_types"]
    return ["-DECONT_AC_TYPES", "-Ifirmware", "-Ifirmware/ac_types/include",
            "-Ifirmware/ac_math/include", "-Ifirmware/ac_simutils/include", "-Ifirmware/nnet_utils"]


#: translation units of the csim harness, relative to the project
HARNESS_SOURCES = ("firmware/myproject.cpp", "firmware/econt_top.cpp", "econt_csim_tb.cpp")
CXX_STD = "-std=c++14"
CXX_WARN = ["-Wno-unknown-pragmas", "-Wno-pragmas"]


def build_script(backend: str, opt: str) -> str:
    flags = " ".join([CXX_STD, *CXX_WARN, *include_flags(backend)])
    objs = " ".join(f"build/{Path(s).stem}.o" for s in HARNESS_SOURCES)
    lines = ["#!/bin/bash",
             "# Build the C simulation harness of econt_top (written by the econt-flow `convert` stage).",
             "# Usage: ./build_econt_csim.sh && build/econt_csim <vectors.bin> <results.bin>",
             "set -e", 'cd "$(dirname "$0")"', "CXX=${CXX:-g++}", f"OPT=${{OPT:-{opt}}}", "mkdir -p build"]
    lines += [f"$CXX $OPT {flags} -c {s} -o build/{Path(s).stem}.o" for s in HARNESS_SOURCES]
    lines += [f"$CXX $OPT {objs} -o build/econt_csim", 'echo "built build/econt_csim"']
    return "\n".join(lines) + "\n"
