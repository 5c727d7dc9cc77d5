"""Yosys resource estimates of the generated RTL (part of the ``cosim`` stage).

Yosys is the PyPI ``pyosys`` wheel (a native libyosys with its own
``yosys-abc``), driven from Python.  Every run is a child process
(:func:`run_script`): a Yosys error ends the process that hit it,
a run can hold gigabytes, and the parent enforces the wall-time limit (the
child's whole process group, ABC included, is killed on timeout).

Kinds of run (``cosim.yosys``):

* ``xilinx``: ``synth_xilinx -flatten [-nodsp]`` -> LUT (LUT1..6), FF
  (FD*), CARRY4, MUXF7/8, DSP48 counts of a 7-series mapping.
* ``generic``: ``synth -flatten -noabc``, then one ABC run with
  :data:`GENERIC_ABC_SCRIPT` -> Yosys' internal gate library; the
  gate count and ``stat -tech cmos``'s transistor estimate, ``ltp -noff`` the
  longest combinational path in gates (a timing proxy; no cell library, no
  wire load).
* ``sky130``: the ``generic`` netlist, then ``dfflibmap`` + ``abc`` onto the
  area-only SkyWater 130 nm Liberty of :mod:`flow.hdl.area` -> area in
  um^2 (area only, no timing), cell counts per type.

Modules marked ``keep_hierarchy`` (the programmable encoder's 2728
multipliers, ``econt_mul_us``) stay unflattened: Yosys maps them once and
``stat -top`` counts them per instance -- minutes instead of most of an hour.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from flow.runner.errors import ArgumentError, SynthError
from flow.runner.tools import yosys_python

KINDS = ("xilinx", "generic", "sky130")
#: ``ltp -noff`` (logic depth) leaves out the instances of these kept modules: registers only
#: (the TMR copies), so a path ends at them as at a flip-flop.  Counted as cells, each copy
#: would join all its inputs to all its outputs: on prog_tmr's 12864-bit image that is a
#: loop through the voter per bit pair, 12864^2 warnings and > 20 GB (the run was OOM-killed)
LTP_REGISTER_MODULES = ("econt_tmr_copy",)
#: ABC script of the generic gate mapping (after ``synth -noabc``), see :func:`_script`
GENERIC_ABC_SCRIPT = "strash; dc2; &get -n; &nf; &put"


# ------------------------------------------------------------------ running pyosys
def run_script(script: str, log_path: Path, *, timeout_s: float, what: str) -> dict:
    """Run a Yosys script (commands separated by ``;``) with pyosys in a child process.

    The Yosys log goes to ``log_path`` (with the wall time of each command).  Returns
    ``{"wall_s", "cpu_s", "abc_cpu_s", "peak_rss_mb", "abc_peak_rss_mb", "yosys_version",
    "steps"}`` (CPU time and peak resident memory of the Yosys process and of its ABC
    children; the commands that took a second or more).  Raises :class:`SynthError` if Yosys
    fails or runs longer than ``timeout_s``.
    """
    log_path = Path(log_path)
    with tempfile.TemporaryDirectory(prefix="pyosys_") as tmp:
        stats = Path(tmp) / "stats.json"
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([yosys_python(), "-c", _CHILD, str(stats), script], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise SynthError(f"yosys (pyosys) {what} exceeded {timeout_s:.0f} s "
                                 f"(cosim.yosys_timeout_s); log: {log_path}") from None
        wall = time.perf_counter() - t0
        if rc != 0 or not stats.is_file():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise SynthError(f"yosys (pyosys) {what} failed (exit status {rc}):\n{tail}")
        out = json.loads(stats.read_text())
    out["wall_s"] = round(wall, 1)
    return out


# the child imports this very module (not whichever ``flow`` an editable install points to)
_CHILD = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
          "from flow.hdl.yosys import _child; sys.exit(_child(*sys.argv[1:]))")


def _child(stats_path: str, script: str) -> int:
    from pyosys import libyosys as ys

    d = ys.Design()
    steps = []
    for cmd in script.split("; "):
        t0 = time.perf_counter()
        ys.run_pass(cmd, d)     # a Yosys error prints ERROR: ... and exits the process (status 1)
        dt = time.perf_counter() - t0
        ys.log_flush()
        print(f"\n[pyosys] {dt:.1f} s: {cmd[:100]}", flush=True)
        if dt >= 1.0:
            steps.append({"cmd": cmd[:60], "s": round(dt, 1)})
    kb = 1024.0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n[pyosys] CPU: yosys {me.ru_utime + me.ru_stime:.1f} s, "
          f"abc {kids.ru_utime + kids.ru_stime:.1f} s; "
          f"peak RSS: yosys {me.ru_maxrss / kb:.0f} MB, abc {kids.ru_maxrss / kb:.0f} MB", flush=True)
    Path(stats_path).write_text(json.dumps({
        "steps": steps,
        "cpu_s": round(me.ru_utime + me.ru_stime, 1), "abc_cpu_s": round(kids.ru_utime + kids.ru_stime, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb, 1),
        "abc_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb, 1),
        "yosys_version": ys.yosys_maybe_version(),
    }))
    return 0


# ------------------------------------------------------------------ scripts and their results
def _read(files, top: str) -> str:
    return f"read_verilog -sv {' '.join(str(f) for f in files)}; hierarchy -check -top {top}"


def _stat(path: Path, top: str, extra: str = "") -> str:
    return f"tee -q -o {path} stat -json {extra}-top {top}"


def _script(kind: str, files, top: str, dsp: bool, work: Path, liberty: Path | None = None) -> str:
    read = _read(files, top)
    if kind == "xilinx":
        # Yosys 0.70's synth_xilinx maps LUTs with ABC9 only (0.23: plain abc).  ABC9's script ends
        # with &mfs (don't-care LUT resynthesis) and &verify (a check of its own mapping): on this
        # machine synth_xilinx ran > 10 min on the front end (> 6 min of it in &verify) and > 9 min
        # on the const flavour (killed in &mfs); without them const took 229 s (docs/rtl_cosim.md).
        return (f"scratchpad -set abc9.verify 0; scratchpad -set abc9.nomfs 1; {read}; "
                f"synth_xilinx -flatten {'' if dsp else '-nodsp '}-top {top}; "
                + _stat(work / "stat.json", top))
    # synth's own ABC run (Yosys 0.70's default gate script, once per clock-enable domain) took
    # > 14 min on the const flavour (0.23: 178 s for the whole run); synth -noabc + one light ABC
    # run onto the same gate library: 93 s (docs/rtl_cosim.md)
    gabc = work / "generic.abc"
    gabc.write_text(GENERIC_ABC_SCRIPT + "\n")
    generic = f"{read}; synth -flatten -noabc -top {top}; abc -script {gabc}; opt -fast; "
    # every cell but the register-only module instances (union of the types, inverted)
    ltp = ("ltp -noff " + " ".join(f"t:*{m}" for m in LTP_REGISTER_MODULES)
           + " %u" * (len(LTP_REGISTER_MODULES) - 1) + " %n")
    if kind == "generic":
        return generic + _stat(work / "stat.json", top, "-tech cmos ") + f"; {ltp}"
    if kind in ("sky130", "generic+sky130"):
        from flow.hdl.area import ABC_SCRIPT

        abc = work / "abc.script"
        abc.write_text(ABC_SCRIPT + "\n")
        # generic+sky130: the generic figures of the same synth run, then the cell mapping
        generic += (_stat(work / "generic.json", top, "-tech cmos ") + f"; {ltp}; " if kind != "sky130"
                    else _stat(work / "generic.json", top) + "; ")
        return (generic + f"dfflibmap -liberty {liberty}; abc -liberty {liberty} -script {abc}; opt_clean; "
                + _stat(work / "stat.json", top, f"-liberty {liberty} "))
    raise ArgumentError(f"kind: expected one of {KINDS} or 'generic+sky130', got {kind!r}")


def _design(path: Path) -> dict:
    """The ``design`` record of ``stat -json -top`` (the whole hierarchy, per instance)."""
    try:
        j = json.loads(Path(path).read_text())
        d = j["design"]
    except (OSError, ValueError, KeyError) as err:
        raise SynthError(f"expected Yosys statistics in {path}, got {err}") from None
    # the modules of the design: a kept module's instances are counted among the cells too
    return {**d, "module_types": sorted(j.get("modules", {}))}


def summarize(kind: str, stat: dict, log: str = "", top_name: str | None = None,
              generic: dict | None = None) -> dict[str, float]:
    """Summary of one run from its ``stat -json`` design record (and log, for ``ltp``)."""
    cells = {k: int(v) for k, v in stat.get("num_cells_by_type", {}).items()}
    # $scopeinfo: Yosys' record of a flattened instance's hierarchy, not a cell of the netlist;
    # instances of kept modules (econt_mul_us, econt_tmr_copy): Yosys 0.70 lists them by type
    # (not in num_cells), their cells are counted already
    cells.pop("$scopeinfo", 0)
    for t in stat.get("module_types", ()):
        cells.pop(t, 0)
        cells.pop(t.removeprefix("\\"), 0)
    total = sum(cells.values()) if cells else int(stat["num_cells"])
    if kind == "xilinx":
        pick = lambda pre: sum(v for k, v in cells.items() if k.startswith(pre))
        return {"LUT": pick("LUT"), "FF": pick("FD"), "CARRY4": cells.get("CARRY4", 0),
                "MUXF7": cells.get("MUXF7", 0), "MUXF8": cells.get("MUXF8", 0),
                "DSP48": pick("DSP48"), "BRAM": pick("RAMB")}
    if kind == "sky130":
        from flow.hdl.area import FF_CELLS

        ff = sum(v for k, v in cells.items() if k.rsplit("__", 1)[-1].rsplit("_", 1)[0] in FF_CELLS)
        unmapped = {k: v for k, v in cells.items() if not k.startswith("sky130_fd_sc_hd__")}
        if unmapped:
            raise SynthError(f"sky130 mapping left cells outside the library: {unmapped}")
        out = {"area_um2": round(float(stat["area"]), 4),
               "sequential_area_um2": round(float(stat.get("sequential_area", 0.0)), 4),
               "cells": total, "FF": ff, "cells_by_type": dict(sorted(cells.items()))}
        if generic is not None:
            out["generic_gates"] = summarize("generic", generic)["gates"]
        return out
    ff = sum(v for k, v in cells.items() if "DFF" in k or "SDFF" in k or "DLATCH" in k)
    out = {"gates": total - ff, "FF": ff, "cells": total}
    if "estimated_num_transistors" in stat:
        # "174+": a lower bound (cells without a transistor figure, e.g. flip-flops with enable)
        est = str(stat["estimated_num_transistors"])
        out["transistors"] = int(re.match(r"\d+", est).group())
        if est.endswith("+"):
            out["transistors_lower_bound"] = True
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
          timeout_s: float = 7200, liberty: Path | None = None) -> dict:
    """Run one Yosys flow; returns the summary plus ``yosys_s``, ``peak_rss_mb``,
    ``yosys_version``.  ``sky130`` needs ``liberty`` (:func:`flow.hdl.area.write_liberty`).
    ``generic+sky130`` is both from one run (one ``synth``), as ``{"generic": ..., "sky130": ...}``."""
    if kind not in KINDS + ("generic+sky130",):
        raise ArgumentError(f"kind: expected one of {KINDS} or 'generic+sky130', got {kind!r}")
    if "sky130" in kind and liberty is None:
        raise ArgumentError(f"kind {kind!r}: expected the area-only Liberty (liberty=...), got none")
    log_path = Path(log_path)
    work = log_path.with_suffix(".stat")
    work.mkdir(parents=True, exist_ok=True)
    script = _script(kind, files, top, dsp, work.resolve(), Path(liberty).resolve() if liberty else None)
    run = run_script(script, log_path, timeout_s=timeout_s, what=f"{kind} synthesis of {top}")
    log = log_path.read_text(errors="replace")
    extra = {"yosys_s": run["wall_s"], "yosys_cpu_s": round(run["cpu_s"] + run["abc_cpu_s"], 1),
             "peak_rss_mb": max(run["peak_rss_mb"], run["abc_peak_rss_mb"]),
             "yosys_version": run["yosys_version"], "steps": run["steps"]}
    if kind == "generic+sky130":
        g = summarize("generic", _design(work / "generic.json"), log, top)
        a = summarize("sky130", _design(work / "stat.json"), generic=_design(work / "generic.json"))
        shared = {**extra, "run": kind}
        return {"generic": {**g, **shared}, "sky130": {**a, **shared}}
    generic = _design(work / "generic.json") if kind == "sky130" else None
    return {**summarize(kind, _design(work / "stat.json"), log, top, generic), **extra}


def run_kinds(kinds) -> list[str]:
    """The Yosys runs that give ``kinds`` (``cosim.yosys``): ``generic`` and ``sky130`` share
    one run (and its ``synth``), ``generic+sky130``, when both are asked for."""
    both = {"generic", "sky130"} <= set(kinds)
    out: list[str] = []
    for kind in kinds:
        run = "generic+sky130" if both and kind in ("generic", "sky130") else kind
        if run not in out:
            out.append(run)
    return out


def synth_run(run: str, files, top: str, log_dir: Path, design: str, **kw) -> dict[str, dict]:
    """One run of :func:`run_kinds` on one design, as ``{kind: result}``.  Log:
    ``<log_dir>/yosys_<run>_<design>.log`` (e.g. ``yosys_generic+sky130_prog.log``)."""
    res = synth(run, files, top, Path(log_dir) / f"yosys_{run}_{design}.log", **kw)
    return res if run == "generic+sky130" else {run: res}
