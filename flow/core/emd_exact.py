"""Exact Earth Mover's Distance between wafers (``docs/reference.md`` section 2).

``EMD(x, y) = ot.emd2(x / sum(x), y / sum(y), M)`` with ``M`` the 48x48
Euclidean distance between trigger-cell centres
(:func:`flow.core.geometry.ground_distance`; neighbouring TCs of ROC 0/1 are 2.0
apart).  Both wafers are normalised to unit sum, so the EMD is invariant to
the scale of either wafer and is a number between 0 and 13.76 (the largest
ground distance).

Empty wafers
------------
An all-zero wafer has no distribution, so its EMD is undefined.  Policy:

* the library functions raise :class:`EmptyWaferError`, which names the
  wafer (``a`` / ``b`` and its index in the batch);
* batch evaluation can opt in to ``empty="nan"``: the pairs with an empty
  wafer get ``NaN`` (never a sentinel such as the reference code's -1 /
  -0.5, which would silently enter means and histograms).

The pair samplers of the ``emd`` stage skip empty wafers altogether.

Solver
------
The labels come from POT's network-simplex solver.  :func:`emd` calls it
through the low-level entry point ``ot.lp.emd_wrap.emd_c`` with exactly the
preprocessing ``ot.emd2`` does (float64, ``b`` rescaled to the mass of ``a``,
the same iteration limit, the result code checked): ``ot.emd2`` itself spends
~15x more time in its backend dispatch than in the solver for 48-bin
problems.  The two agree to ~1e-15 (tested); ``solver="emd2"`` calls
``ot.emd2`` itself.

Scale-out
---------
:func:`emd_pairs` labels a batch serially; :func:`label_pairs` splits it into
chunks of ``chunk_pairs`` pairs, one Ray task per chunk (the arrays go once
into the object store, tasks get zero-copy views), with a progress bar.
Chunking keeps the per-task overhead (~1 ms) negligible against the
~10 us per pair of the solver.  Ray and serial labelling give bit-identical
labels (same solver, same inputs, same order).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from flow.core.geometry import N_TC, ground_distance
from flow.runner.errors import ArgumentError, EmptyWaferError, InputRangeError, ShapeError, SolverError
from flow.runner.host import worker_env

# POT imports TensorFlow as a backend unless told not to (slow, and it would
# initialise TF's thread pools before the EMD CNN can configure them).
os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

EmptyPolicy = Literal["raise", "nan"]
Solver = Literal["core", "emd2"]

#: iteration limit of the network simplex (ot.emd2's default).
MAX_ITER = 100_000


#: environment for Ray workers (local cluster or job on a remote cluster); the oneDNN
#: settings of :mod:`flow.runner.host` are added when Ray starts (the grid trials train in workers).
WORKER_ENV = {
    "POT_BACKEND_DISABLE_TENSORFLOW": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}


def _as_batch(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != N_TC:
        raise ShapeError(f"{what}: expected wafers of shape (48,) or (N, 48) in TC order, got {x.shape}")
    if x.dtype.kind not in "uif":
        raise ShapeError(f"{what}: expected numeric wafers, got dtype {x.dtype}")
    return x


def normalise(x, *, what: str = "wafer", empty: EmptyPolicy = "raise") -> np.ndarray:
    """Wafers (``(48,)`` or ``(N, 48)``, any numeric dtype) -> float64, each row summing to 1.

    Negative or non-finite values are an error (a charge distribution).  An
    all-zero row raises :class:`EmptyWaferError` naming it, or with
    ``empty="nan"`` becomes a row of NaN.
    """
    arr = np.asarray(x)
    single = arr.ndim == 1
    b = _as_batch(arr, what).astype(np.float64)
    if not np.all(np.isfinite(b)):
        bad = np.flatnonzero(~np.isfinite(b).all(1))
        raise InputRangeError(f"{what}: expected finite charges, got non-finite values in wafer(s) "
                              f"{bad[:5].tolist()}")
    if np.any(b < 0):
        bad = np.flatnonzero((b < 0).any(1))
        raise InputRangeError(f"{what}: expected non-negative charges (the EMD compares charge "
                              f"distributions), got negative values in wafer(s) {bad[:5].tolist()}")
    s = b.sum(1, keepdims=True)
    zero = s[:, 0] == 0
    if zero.any():
        if empty == "raise":
            idx = np.flatnonzero(zero)
            where = "" if single else f" at batch index {idx[:5].tolist()}" + \
                (f" ({idx.size} in all)" if idx.size > 5 else "")
            raise EmptyWaferError(f"{what}{where} is all-zero: the EMD of an empty wafer is "
                                  "undefined (use empty='nan' to get NaN for such pairs)")
        if empty != "nan":
            raise ArgumentError(f"empty: expected 'raise' or 'nan', got {empty!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = b / s
    return out[0] if single else out


def _emd_core(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    """EMD of two unit-sum float64 wafers (ot.emd2's dense path, without its dispatch)."""
    from ot.lp.emd_wrap import emd_c

    b = b * (a.sum() / b.sum())
    _, cost, _, _, code = emd_c(a, b, m, MAX_ITER, 1)
    if code != 1:
        raise SolverError(f"POT network simplex returned result code {code} (1 = optimal); "
                          "see ot.utils.check_result")
    return float(cost)


def _emd_pot(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    import ot

    return float(ot.emd2(a, b, m))


def _emd_normalised(a: np.ndarray, b: np.ndarray, solver: Solver = "core") -> np.ndarray:
    """Labels for already-normalised float64 batches; NaN rows give NaN."""
    m = np.ascontiguousarray(ground_distance(), dtype=np.float64)
    fn = _emd_core if solver == "core" else _emd_pot
    out = np.empty(len(a), dtype=np.float64)
    for i in range(len(a)):
        ai, bi = a[i], b[i]
        if np.isnan(ai[0]) or np.isnan(bi[0]):
            out[i] = np.nan
        else:
            out[i] = fn(ai, bi, m)
    return out


def emd(a, b, *, solver: Solver = "core") -> float:
    """Exact EMD between two wafers (48 values in TC order, any scale).

    Raises :class:`EmptyWaferError` if either wafer is all-zero.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != (N_TC,) or b.shape != (N_TC,):
        raise ShapeError(f"emd: expected two wafers of shape (48,), got {a.shape} and {b.shape}")
    na = normalise(a, what="wafer a")
    nb = normalise(b, what="wafer b")
    return float(_emd_normalised(na[None], nb[None], solver)[0])


def _normalised_pairs(a, b, who: str, empty: EmptyPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Validate two equal-shape batches of wafers and normalise each to unit sum."""
    a = _as_batch(a, f"{who} a")
    b = _as_batch(b, f"{who} b")
    if a.shape != b.shape:
        raise ShapeError(f"{who}: a and b must have the same shape, got {a.shape} and {b.shape}")
    return normalise(a, what="wafer a", empty=empty), normalise(b, what="wafer b", empty=empty)


def emd_pairs(a, b, *, empty: EmptyPolicy = "raise", solver: Solver = "core") -> np.ndarray:
    """Exact EMD of each pair ``(a[i], b[i])``, serially: ``(N, 48), (N, 48) -> (N,)`` float64.

    ``empty="raise"`` (default): an all-zero wafer is an :class:`EmptyWaferError`
    naming it; ``empty="nan"``: such pairs get NaN.
    """
    na, nb = _normalised_pairs(a, b, "emd_pairs", empty)
    return _emd_normalised(na, nb, solver)


# ---------------------------------------------------------------- Ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[int]:
    """Make sure Ray is up; yield the number of CPUs it offers.

    Reuses an already initialised Ray (and leaves it running); otherwise
    connects to ``address`` (a cluster: ``"auto"``, ``"ray://host:10001"``)
    or starts a local instance with ``num_cpus`` CPUs (None: all cores), and
    shuts it down on exit.
    """
    import ray

    started = False
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                  runtime_env={"env_vars": {**WORKER_ENV, **worker_env()}}, configure_logging=True)
        if address:
            # a cluster's nodes get this package's code from the driver (they need the
            # pinned stack installed: `pip install` of this project on every node)
            import flow
            kw["runtime_env"] = {**kw["runtime_env"], "py_modules": [str(Path(flow.__file__).parent)]}
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=num_cpus, **kw)
        started = True
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        if started:
            ray.shutdown()


def _label_chunk(a: np.ndarray, b: np.ndarray, lo: int, hi: int, solver: str) -> tuple[int, np.ndarray]:
    return lo, _emd_normalised(a[lo:hi], b[lo:hi], solver)  # type: ignore[arg-type]


def label_pairs(a, b, *, empty: EmptyPolicy = "raise", use_ray: bool = True,
                chunk_pairs: int = 5000, progress: bool = True, solver: Solver = "core",
                desc: str = "EMD labels") -> np.ndarray:
    """Exact EMD of each pair, in parallel on Ray (see :func:`ray_session`).

    Same contract and bit-identical results as :func:`emd_pairs`.  With
    ``use_ray`` it uses the initialised Ray (wrap several calls in
    :func:`ray_session` to start it once), or starts a local one for the call
    (all cores) and stops it afterwards; without Ray it runs serially in
    chunks with the same progress bar.
    """
    from tqdm.auto import tqdm

    na, nb = _normalised_pairs(a, b, "label_pairs", empty)
    n = len(na)
    out = np.empty(n, dtype=np.float64)
    bounds = [(lo, min(lo + chunk_pairs, n)) for lo in range(0, n, max(1, chunk_pairs))]
    bar = tqdm(total=n, desc=desc, unit="pair", disable=not progress, leave=False, mininterval=1.0)
    try:
        if use_ray and n > 0:
            import ray

            with contextlib.nullcontext() if ray.is_initialized() else ray_session():
                task = ray.remote(num_cpus=1)(_label_chunk)
                ra, rb = ray.put(na), ray.put(nb)
                pending = [task.remote(ra, rb, lo, hi, solver) for lo, hi in bounds]
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    lo, vals = ray.get(done[0])
                    out[lo:lo + len(vals)] = vals
                    bar.update(len(vals))
        else:
            for lo, hi in bounds:
                out[lo:hi] = _label_chunk(na, nb, lo, hi, solver)[1]
                bar.update(hi - lo)
    finally:
        bar.close()
    return out


def throughput(a, b, *, use_ray: bool, chunk_pairs: int = 5000, solver: Solver = "core") -> float:
    """Pairs per second of :func:`label_pairs` on these pairs (Ray must be up if ``use_ray``)."""
    t0 = time.perf_counter()
    label_pairs(a, b, use_ray=use_ray, chunk_pairs=chunk_pairs, progress=False, solver=solver)
    return len(np.atleast_2d(a)) / (time.perf_counter() - t0)
