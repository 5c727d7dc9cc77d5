"""The whole smoke run through the CLI, stage after stage (slow: `make test-slow`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flow.runner.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name in STAGES:
        r = subprocess.run([sys.executable, "-m", "flow", name, "--config", "configs/smoke.yaml",
                            "--set", f"workdir={tmp_path}"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, f"stage {name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        man = json.loads((tmp_path / "smoke" / name / "manifest.json").read_text())
        assert man["stage"] == name and man["outputs"]
    r = subprocess.run([sys.executable, "-m", "flow", "status", "--config", "configs/smoke.yaml",
                        "--set", f"workdir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0
    assert "STALE" not in r.stdout and r.stdout.count("fresh") == len(STAGES)
