"""Scale-out: exact labelling on a Ray *cluster* given by address (``emd.ray.address``).

Starts a one-node cluster with ``ray start --head --block`` (token authentication,
loopback only, its own temp dir), runs the labelling from a separate driver process
through ``ray_session(address)`` -- which ships the ``flow`` package to the cluster
with ``py_modules`` -- and checks the labels equal the serial ones bit for bit.  The
head is stopped by killing its process group (never ``ray stop``, which would stop
every Ray on the machine).
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import sys, numpy as np
from flow.core.emd_exact import label_pairs, ray_session
rng = np.random.default_rng(3)
a, b = rng.random((6000, 48)), rng.random((6000, 48))
a[:, ::3] = 0
with ray_session(sys.argv[1]) as n_cpus:
    lab = label_pairs(a, b, use_ray=True, chunk_pairs=1000, progress=False)
serial = label_pairs(a, b, use_ray=False, progress=False)
assert n_cpus == 2, n_cpus
assert np.array_equal(lab, serial), "cluster labels differ from serial"
print("CLUSTER-OK", len(lab))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_labelling_on_a_ray_cluster_by_address():
    ray_bin = Path(sys.executable).with_name("ray")
    assert ray_bin.exists(), f"expected the ray CLI next to {sys.executable}"
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               POT_BACKEND_DISABLE_TENSORFLOW="1", TF_CPP_MIN_LOG_LEVEL="2")
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--temp-dir", tmp,
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        r = None
        for _ in range(3):  # the head takes a few seconds to accept drivers
            time.sleep(4)
            r = subprocess.run([sys.executable, "-c", DRIVER, f"127.0.0.1:{port}"], env=env,
                               cwd=tmp, capture_output=True, text=True, timeout=240)
            if r.returncode == 0 or "ConnectionError" not in r.stderr:
                break
        assert r.returncode == 0 and "CLUSTER-OK 6000" in r.stdout, r.stderr[-3000:]
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=60)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGTERM ignored
                continue
        shutil.rmtree(tmp, ignore_errors=True)
