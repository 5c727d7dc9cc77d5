"""The host block of the manifests and the pinned CPU numerics (flow.runner.host, docs/emd.md
"Reproducibility")."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import fake_stage

from flow.runner import config as C
from flow.runner import host as H
from flow.runner.stages import run_stage

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _write(ctx):
    (ctx.out / "a.txt").write_text("a\n")


def test_every_stage_manifest_carries_the_host_block(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "x")   # restored after the test ...
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")         # ... and unset during it: the runner pins it
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # a user's choice wins and is recorded
    fake_stage(monkeypatch, "data", _write)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path), "data": {"n_events": 4}})
    man = run_stage(cfg, "data", echo=lambda *a: None)
    host = man["host"]
    assert json.loads((tmp_path / "t" / "data" / "manifest.json").read_text())["host"] == host
    assert host["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert host["env"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert host["logical_cpus"] == os.cpu_count() and host["usable_cpus"] >= 1
    if Path("/proc/cpuinfo").is_file():
        model = next(x for x in Path("/proc/cpuinfo").read_text().splitlines()
                     if x.startswith("model name")).split(":", 1)[1].strip()
        assert host["cpu_model"] == model
        assert set(host["isa"]) == _cpuinfo_flags() & set(H.ISA_FLAGS)
        assert host["caches"].get("L1d")
    assert "AVX2" in H.host_summary(host) and str(host["usable_cpus"]) in H.host_summary(host)
    assert H.host_summary(None) == "not recorded"


def test_pin_keeps_a_users_value():
    env = {"ONEDNN_MAX_CPU_ISA": "ALL"}
    assert H.pin_numerics(env) == {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "ALL"}
    assert env == {"ONEDNN_MAX_CPU_ISA": "ALL", "TF_ENABLE_ONEDNN_OPTS": "0"}


def test_cli_pins_before_tensorflow_is_imported():
    env = {k: v for k, v in os.environ.items() if k not in H.PINNED_ENV}
    code = ("import os, sys; from flow.cli import main; "
            "main(['config', '--config', 'configs/smoke.yaml', '--get', 'seed']); "
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), os.environ.get('ONEDNN_MAX_CPU_ISA'), "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[-3:] == ["0", "AVX2", "False"]


def test_report_provenance_names_the_host():
    from flow.report.inputs import UPSTREAM
    from flow.report.sections import provenance as _provenance

    host = {"cpu_model": "Test CPU 9000", "isa": ["avx", "avx2"], "usable_cpus": 3,
            "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
            "tensorflow": {"loaded": True, "intra_op_threads": 2}}
    mans = {s: {"git": "abc", "finished_utc": "2026-01-01T00:00:00+00:00",
                **({"host": host} if s == "emd" else {})} for s in UPSTREAM}
    up = SimpleNamespace(man=lambda s: mans[s])
    ctx = SimpleNamespace(cfg=SimpleNamespace(name="r", run_dir=Path("/x"), seed=1))
    rows = _provenance(up, ctx, "2026-01-01", "0" * 64).blocks[0].rows
    text = {str(r[0]): str(r[1]) for r in rows}
    assert text["host (emd)"] == ("Test CPU 9000, 3 CPUs, best ISA avx2; oneDNN ops 0, "
                                  "oneDNN ISA cap AVX2, TF intra-op threads 2")
    assert any(k.startswith("host (data") for k in text)  # the others: not recorded


_TRAIN = """
import hashlib, sys
sys.path.insert(0, {root!r})
from flow.runner.host import pin_numerics
pin_numerics()
import numpy as np
import tensorflow as tf
from flow.core.emd_cnn import Arch, build_emd_cnn, enable_determinism, set_tf_threads
set_tf_threads(1)
enable_determinism()
rng = np.random.default_rng(0)
xa, xb = (rng.random((640, 4, 4, 3), dtype=np.float32) for _ in range(2))
y = rng.random(640, dtype=np.float32)
tf.keras.utils.set_random_seed(1)
m = build_emd_cnn(Arch(8, 3, 3, 32), output_scale=0.5)
m.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
m.fit([xa, xb], y, batch_size=32, epochs=1, shuffle=False, verbose=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
"""


def _train_hash(**env_over) -> str:
    env = {k: v for k, v in os.environ.items() if k not in H.PINNED_ENV}
    env.update(env_over, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", _TRAIN.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return out.stdout.split()[-1]


@pytest.mark.slow
@pytest.mark.skipif("avx2" not in _cpuinfo_flags(), reason="needs an AVX2 CPU")
def test_emd_cnn_training_follows_the_pinned_isa():
    """The EMD CNN's trained weights depend on the oneDNN ISA (an AVX cap gives other
    weights than AVX2), and the flow's pin runs the AVX2 kernels whatever the CPU offers
    above that: identical to an explicit ``ONEDNN_MAX_CPU_ISA=AVX2`` run.  (On an AVX2-only
    CPU the second comparison holds without the pin too; on an AVX-512 one it needs it.)"""
    pinned = _train_hash()
    assert len(pinned) == 64 and pinned == _train_hash()                 # rerun: identical
    assert pinned == _train_hash(ONEDNN_MAX_CPU_ISA="AVX2", TF_ENABLE_ONEDNN_OPTS="0")
    assert pinned != _train_hash(ONEDNN_MAX_CPU_ISA="AVX")
