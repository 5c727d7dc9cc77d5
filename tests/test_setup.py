"""The README's two commands set the machine up themselves (issue 17 part 5): the Makefile's
system-package checks, driven with stand-ins for apt-get and for a machine without root."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(*args: str, ci: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", *args, f"CI={ci}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_missing_chromium_is_installed_with_apt_when_allowed():
    r = make("sysdeps-chromium", "CHROMIUM_EXE=", "APT_GET=echo APT")
    assert r.returncode == 0, r.stderr
    assert "APT update -qq" in r.stdout
    assert "APT install -y -qq --no-install-recommends chromium" in r.stdout


def test_missing_chromium_without_root_warns_and_goes_on():
    r = make("sysdeps-chromium", "CHROMIUM_EXE=", "APT_GET=")
    assert r.returncode == 0, r.stderr
    assert "test will be skipped" in r.stdout
    assert "sudo apt-get install chromium" in r.stdout


def test_missing_chromium_without_root_fails_in_ci():
    r = make("sysdeps-chromium", "CHROMIUM_EXE=", "APT_GET=", ci="true")
    assert r.returncode != 0
    assert "CI=true requires chromium" in r.stderr


def test_present_chromium_installs_nothing():
    r = make("sysdeps-chromium", "CHROMIUM_EXE=/usr/bin/chromium", "APT_GET=echo APT")
    assert r.returncode == 0 and "APT" not in r.stdout


def test_missing_python_without_root_stops_with_the_command():
    r = make("sysdeps-python", "PYTHON=python3.99", "APT_GET=")
    assert r.returncode != 0
    assert "missing Debian packages: python3.99 python3.99-venv" in r.stderr
    assert "sudo apt-get install python3.99 python3.99-venv" in r.stderr


def test_missing_python_is_installed_with_apt_when_allowed():
    r = make("sysdeps-python", "PYTHON=python3.99", "APT_GET=echo APT")
    assert "APT install -y -qq --no-install-recommends python3.99 python3.99-venv" in r.stdout


def test_the_readme_commands_run_the_setup():
    """make all installs (the install runs the required checks); make test also the optional one."""
    mk = (ROOT / "Makefile").read_text()
    install_rule = mk.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n")[0]
    assert "$(MAKE) --no-print-directory sysdeps-python" in install_rule
    assert "\ntest: $(STAMP) sysdeps-chromium\n" in mk
    assert "\nall: $(STAMP) " in mk
