"""The machine a stage ran on, and the CPU-dependent numerics pinned for training.

TensorFlow's float32 training results depend on the CPU beyond the seed
(measured, ``docs/emd.md`` "Reproducibility"):

* **oneDNN kernel dispatch.** Even with TensorFlow's oneDNN custom ops off,
  Eigen's matrix contractions (MatMul, Conv2D and their gradients) call
  oneDNN's ``sgemm`` as their inner kernel, and oneDNN picks that kernel at
  run time by the CPU's instruction set (SSE4.1 / AVX / AVX2 / AVX-512 / AMX):
  different kernels sum in a different order, so the trained weights differ.
  ``ONEDNN_MAX_CPU_ISA=AVX2`` caps the dispatch at AVX2, which every x86-64
  server CPU since 2013 (Intel Haswell, AMD Zen) has.
* **oneDNN custom ops.** TensorFlow (since 2.9, per its release notes)
  switches its oneDNN graph rewrite (other Conv2D/MatMul/BatchNorm kernels)
  on by default only on CPUs with features such as AVX512_VNNI, AVX512_BF16
  or AMX (off on this project's AVX2 machine, measured), so two CPUs can run
  different kernels altogether; ``TF_ENABLE_ONEDNN_OPTS=0`` makes that the
  same everywhere.
* **thread count** (intra-op threads shard contractions): recorded here; the
  stages' configs pin it (``emd.tf_threads``, ``autoencoder.threads``).

:func:`pin_numerics` sets the two variables (a value the user set wins, and is
recorded) and must run before TensorFlow is imported: the CLI calls it first,
and the stage runner again (a no-op then).  :func:`host_info` is the ``host``
block of every stage manifest.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

#: environment pinned before TensorFlow is imported (``setdefault``: a user's value wins).
PINNED_ENV: dict[str, str] = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}

#: further variables that change TensorFlow's kernels or threads, recorded when set.
RECORDED_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                "TENSORFLOW_USE_CUSTOM_CONTRACTION_KERNEL", "ONEDNN_DEFAULT_FPMATH_MODE",
                "TF_DETERMINISTIC_OPS")

#: /proc/cpuinfo flags that decide which kernels oneDNN (and so TensorFlow) runs.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")

_state: dict[str, Any] = {"pinned": False, "tf_imported_before_pin": None}


def pin_numerics(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`PINNED_ENV` (unless already set) before TensorFlow is imported.

    Returns the values in effect.  If TensorFlow was imported before the first
    call, the values cannot take effect in this process any more; the host
    block records that (``pinned_before_tf_import: false``).
    """
    env = os.environ if environ is None else environ
    if environ is None and not _state["pinned"]:
        _state["pinned"] = True
        _state["tf_imported_before_pin"] = "tensorflow" in sys.modules
    for k, v in PINNED_ENV.items():
        env.setdefault(k, v)
    return {k: env[k] for k in PINNED_ENV}


def worker_env() -> dict[str, str]:
    """The pinned variables as in effect in this process (for Ray workers' ``env_vars``)."""
    return {k: os.environ.get(k, v) for k, v in PINNED_ENV.items()}


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def _caches() -> dict[str, str]:
    """Per-core cache sizes of CPU 0 (``L1d``, ``L2``, ...) from sysfs."""
    out = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        out[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    return out


def _tf_settings() -> dict[str, Any]:
    """TensorFlow's thread pools and op determinism, if TensorFlow is loaded (never imports it)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return {"loaded": False}
    out: dict[str, Any] = {"loaded": True}
    try:
        out["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        out["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    except Exception:  # noqa: BLE001 - a record, never a failure
        pass
    try:
        from tensorflow.python.framework import config as tf_config

        out["op_determinism"] = bool(tf_config.is_op_determinism_enabled())
    except Exception:  # noqa: BLE001
        pass
    return out


def host_info() -> dict[str, Any]:
    """CPU model, ISA flags that matter, cores, caches, and the numerics settings in effect."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu_model": info.get("model name") or platform.processor() or None,
        "cpu_vendor": info.get("vendor_id"),
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}" if info else None,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "caches": _caches(),
        "machine": platform.machine(),
        "env": {k: os.environ.get(k) for k in (*PINNED_ENV, *RECORDED_ENV) if k in os.environ},
        "pinned_before_tf_import": (None if not _state["pinned"]
                                    else not _state["tf_imported_before_pin"]),
        "tensorflow": _tf_settings(),
    }


def host_summary(host: dict[str, Any] | None) -> str:
    """One line for reports, e.g. ``AMD EPYC, 2 CPUs, best ISA avx2; oneDNN ops 0, oneDNN ISA
    cap AVX2, TF intra-op threads 2`` (``"not recorded"`` for a manifest without a host block)."""
    if not host:
        return "not recorded"
    env = host.get("env") or {}
    isa = host.get("isa") or []
    best = next((f for f in ("amx_tile", "avx512f", "avx2", "avx", "sse4_2") if f in isa), "?")
    tf = host.get("tensorflow") or {}
    thr = (f", TF intra-op threads {tf['intra_op_threads'] or 'default (all cores)'}"
           if "intra_op_threads" in tf else "")
    return (f"{host.get('cpu_model') or 'unknown CPU'}, {host.get('usable_cpus')} CPUs, best ISA {best}; "
            f"oneDNN ops {env.get('TF_ENABLE_ONEDNN_OPTS', 'TF default')}, "
            f"oneDNN ISA cap {env.get('ONEDNN_MAX_CPU_ISA', 'none')}{thr}")
