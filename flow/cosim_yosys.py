"""Yosys resource estimates of the generated RTL (part of the ``cosim`` stage).

* ``xilinx``: ``synth_xilinx -flatten [-nodsp]`` -> LUT (LUT1..6), FF
  (FD*), CARRY4, MUXF7/8, DSP48 counts of a 7-series mapping.
* ``generic``: ``synth -flatten`` -> Yosys' internal gate library; the
  gate count and ``stat -tech cmos``'s transistor estimate are the ASIC-area
  proxy, ``ltp -noff`` the longest combinational path in gates (a timing
  proxy; no cell library, no wire load).

Modules marked ``keep_hierarchy`` (the programmable encoder's 2728
multipliers, ``econt_mul_us``) stay unflattened: Yosys maps them once and
``stat -top`` counts them per instance -- minutes instead of most of an hour.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from .errors import FlowError


class SynthError(FlowError):
    """Yosys failed on the generated RTL."""


def _script(kind: str, files, top: str, dsp: bool) -> str:
    read = f"read_verilog -sv {' '.join(str(f) for f in files)}; hierarchy -check -top {top}"
    if kind == "xilinx":
        return f"{read}; synth_xilinx -flatten {'' if dsp else '-nodsp '}-top {top}; stat -top {top}"
    if kind == "generic":
        return f"{read}; synth -flatten -top {top}; stat -tech cmos -top {top}; ltp -noff"
    raise ValueError(kind)


def _last_stat(text: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` block of a Yosys log."""
    blocks = text.split("Number of cells:")
    if len(blocks) < 2:
        raise SynthError("no statistics in the Yosys log")
    cells: dict[str, int] = {"_total": int(blocks[-1].split()[0])}
    for line in blocks[-1].splitlines()[1:]:
        m = re.match(r"^\s+(\S+)\s+(\d+)\s*$", line)
        if m:
            cells[m.group(1)] = int(m.group(2))
        elif line.strip() and not m and cells.keys() - {"_total"}:
            break
    return cells


def summarize(kind: str, log: str, top_name: str | None = None) -> dict[str, float]:
    cells = _last_stat(log)
    if kind == "xilinx":
        pick = lambda pre: sum(v for k, v in cells.items() if k.startswith(pre))
        return {"LUT": pick("LUT"), "FF": pick("FD"), "CARRY4": cells.get("CARRY4", 0),
                "MUXF7": cells.get("MUXF7", 0), "MUXF8": cells.get("MUXF8", 0),
                "DSP48": pick("DSP48"), "BRAM": pick("RAMB")}
    ff = sum(v for k, v in cells.items() if "DFF" in k or "SDFF" in k or "DLATCH" in k)
    gates = cells["_total"] - ff
    out = {"gates": gates, "FF": ff, "cells": cells["_total"]}
    # the last estimate is the whole design (stat -top sums the hierarchy)
    est = re.findall(r"Estimated number of transistors:\s+(\d+)", log)
    if est:
        out["transistors"] = int(est[-1])
    paths = {m.group(1).lstrip("\\"): int(m.group(2))
             for m in re.finditer(r"Longest topological path in (\S+) \(length=(\d+)\)", log)}
    if paths:
        top = paths.pop(top_name, None) if top_name else None
        if top is None:
            out["logic_depth_gates"] = max([*paths.values(), 0])
        else:
            # a module kept in the hierarchy (econt_mul_us) is one cell on the top-level
            # path: count it with its own depth instead (an estimate)
            out["logic_depth_gates"] = top - 1 + max(paths.values()) if paths else top
    return out


def synth(kind: str, files, top: str, log_path: Path, *, dsp: bool = False,
          timeout_s: float = 7200) -> dict[str, float]:
    """Run one Yosys flow; returns the summary (plus ``yosys_s``)."""
    exe = shutil.which("yosys")
    if exe is None:
        raise SynthError("yosys not found on PATH (`make sysdeps` installs it)")
    script = _script(kind, files, top, dsp)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([exe, "-q", "-l", str(log_path), "-p", script], capture_output=True, text=True,
                           timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys {kind} synthesis of {top} exceeded {timeout_s:.0f} s "
                         "(cosim.yosys_timeout_s)") from None
    wall = time.perf_counter() - t0
    log = log_path.read_text() if log_path.exists() else r.stdout + r.stderr
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr + log).splitlines()[-20:])
        raise SynthError(f"yosys {kind} synthesis of {top} failed:\n{tail}")
    res = summarize(kind, log, top)
    res["yosys_s"] = round(wall, 1)
    return res
