"""The C-simulation chain shared by the ``csim`` stage and the ``sweep``: the harness's
binary file formats (``econt_csim_tb.cpp``), its compile (g++, the recipe of
:mod:`flow.core.hls_harness`), one run streaming a golden vector file through ``econt_top``,
and the comparison of the outputs (latent codes, module sum, AEin) with the expected integer
codes, never floats (:func:`check_project`: ``n_total``, ``n_mismatch``, per field / file /
kind counts, the first mismatches).
"""
from __future__ import annotations

import json
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flow.core.encoder import N_LATENT
from flow.core.geometry import N_TC
from flow.core.hls_harness import CXX_STD, CXX_WARN, HARNESS_SOURCES, include_flags, run_logged
from flow.core.vectors import KIND_NAMES, read_vectors
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import FlowError

VEC_MAGIC, OUT_MAGIC = b"ECONTVEC", b"ECONTOUT"
VEC_HEADER, OUT_HEADER = 128, 32
FIELDS = ("latent", "sum_code", "aein")
RESULT_DTYPE = np.dtype([("aein", "u1", (N_TC,)), ("latent", "<u2", (N_LATENT,)), ("sum_code", "<u2")])


# ---------------------------------------------------------------- file I/O
def write_vector_bin(v: dict[str, np.ndarray], path: Path, n: int | None = None) -> int:
    """The harness's input file (format in ``econt_csim_tb.cpp``) for the first ``n`` vectors."""
    words = v["words"] if n is None else v["words"][:n]
    hdr = VEC_MAGIC + struct.pack("<4I", 1, len(words), int(v["drop"]), N_TC)
    hdr += np.asarray(v["calvalues"], dtype="<u2").tobytes()
    with open(path, "wb") as f:
        f.write(hdr.ljust(VEC_HEADER, b"\0"))
        f.write(np.ascontiguousarray(words, dtype=np.uint8).tobytes())
    return len(words)


def read_result_bin(path: Path, n: int, latent_bits: int) -> np.ndarray:
    raw = Path(path).read_bytes()
    if raw[:8] != OUT_MAGIC:
        raise FlowError(f"{path}: not a result file of econt_csim (magic {raw[:8]!r})")
    version, got_n, bits, rec = struct.unpack("<4I", raw[8:24])
    if (version, got_n, bits, rec) != (1, n, latent_bits, RESULT_DTYPE.itemsize):
        raise FlowError(f"{path}: expected version 1, {n} records of {RESULT_DTYPE.itemsize} bytes, "
                        f"latent_bits {latent_bits}; got version {version}, {got_n} records of {rec} "
                        f"bytes, latent_bits {bits}")
    body = raw[OUT_HEADER:]
    if len(body) != n * rec:
        raise FlowError(f"{path}: expected {n * rec} bytes of records, got {len(body)}")
    return np.frombuffer(body, dtype=RESULT_DTYPE)


# ------------------------------------------------------------- the harness
def compiler_version(cxx: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0] if out.stdout else None


def compile_harness(prj: Path, backend: str, build: Path, settings) -> dict:
    """Compile the project's harness into ``build/econt_csim``; returns timing and flags.

    Only reads the project; objects, the binary and the logs
    (``compile_<source>.log``, ``link.log``) go to ``build``.
    """
    prj, build = Path(prj).resolve(), Path(build)
    build.mkdir(parents=True, exist_ok=True)
    flags = [settings.opt, CXX_STD, *CXX_WARN, *include_flags(backend)]
    missing = [s for s in HARNESS_SOURCES if not (prj / s).is_file()]
    if missing:
        raise FlowError(f"project {prj} lacks the harness sources {missing}; rerun `make convert`")
    t0 = time.perf_counter()

    def one(src: str) -> Path:
        obj = (build / f"{Path(src).stem}.o").resolve()
        run_logged([settings.cxx, *flags, "-c", src, "-o", obj], build / f"compile_{Path(src).stem}.log",
                   f"compiling {src} of the {backend} project", cwd=prj,
                   timeout=settings.compile_timeout_s)
        return obj

    with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        objs = list(pool.map(one, HARNESS_SOURCES))
    binary = (build / "econt_csim").resolve()
    run_logged([settings.cxx, settings.opt, *objs, "-o", binary], build / "link.log",
               f"linking the csim harness of the {backend} project", cwd=prj,
               timeout=settings.compile_timeout_s)
    for obj in objs:
        obj.unlink()
    return {"compile_s": round(time.perf_counter() - t0, 3), "binary": binary,
            "flags": flags, "compiler": compiler_version(settings.cxx)}


def simulate(binary: Path, v: dict[str, np.ndarray], *, latent_bits: int, n: int | None,
             log: Path, timeout: float, scratch: Path) -> tuple[np.ndarray, dict]:
    """Run the harness on the first ``n`` vectors of ``v``; returns (results, timing)."""
    vin, vout = scratch / "vectors.bin", scratch / "results.bin"
    n = write_vector_bin(v, vin, n)
    t0 = time.perf_counter()
    out = run_logged([binary, vin, vout], log, f"the csim harness {binary}", timeout=timeout)
    wall = time.perf_counter() - t0
    res = read_result_bin(vout, n, latent_bits)
    vin.unlink()
    vout.unlink()
    timing = {"n": n, "wall_s": round(wall, 3)}
    for line in out.splitlines():
        if line.startswith("{"):
            t = json.loads(line)["econt_top_seconds"]
            timing.update(econt_top_s=round(t, 4), vectors_per_s=round(n / t, 1) if t > 0 else None)
    return res, timing


def compare(v: dict[str, np.ndarray], res: np.ndarray, *, file: str, limit: int) -> dict:
    """Integer comparison of harness results with the expected codes of a vector file."""
    n = len(res)
    kind = v["kind"][:n]
    bad_any = np.zeros(n, dtype=bool)
    fields, first = {}, []
    for f in FIELDS:
        exp = v[f][:n].astype(np.int64)
        got = res[f].astype(np.int64)
        bad = exp != got
        rows = bad if bad.ndim == 1 else bad.any(axis=1)
        fields[f] = int(rows.sum())
        bad_any |= rows
    for i in np.flatnonzero(bad_any)[:limit]:
        for f in FIELDS:
            exp, got = v[f][i], res[f][i]
            if np.ndim(exp) == 0:
                if int(exp) != int(got):
                    first.append({"file": file, "index": int(i), "kind": KIND_NAMES[kind[i]], "field": f,
                                  "position": None, "expected": int(exp), "got": int(got)})
                continue
            for p in np.flatnonzero(np.asarray(exp) != np.asarray(got))[:4]:
                first.append({"file": file, "index": int(i), "kind": KIND_NAMES[kind[i]], "field": f,
                              "position": int(p), "expected": int(exp[p]), "got": int(got[p])})
    per_kind = {}
    for k, name in enumerate(KIND_NAMES):
        sel = kind == k
        if sel.any():
            per_kind[name] = {"n": int(sel.sum()), "n_mismatch": int(bad_any[sel].sum())}
    return {"n": n, "n_mismatch": int(bad_any.sum()), "fields": fields, "per_kind": per_kind,
            "first_mismatches": first[:limit]}


def check_project(prj: Path, vector_files: dict[str, Path], out_dir: Path, settings,
                  backend: str | None = None) -> dict:
    """Compile one project's harness, simulate every vector file, compare; returns the report
    (also written to ``out_dir/report.json``).  Does not raise on mismatches."""
    prj, out_dir = Path(prj), Path(out_dir)
    meta = json.loads((prj / "econt_project.json").read_text())
    backend = backend or meta["backend"]
    latent_bits = int(meta["latent_bits"])
    out_dir.mkdir(parents=True, exist_ok=True)
    comp = compile_harness(prj, backend, out_dir, settings)
    report = {"backend": backend, "project": str(prj), "latent_bits": latent_bits,
              "compiler": comp["compiler"], "flags": comp["flags"], "compile_s": comp["compile_s"],
              "n_total": 0, "n_mismatch": 0, "fields": dict.fromkeys(FIELDS, 0), "per_file": {},
              "per_kind": {}, "first_mismatches": []}
    top_s = 0.0
    with tempfile.TemporaryDirectory(prefix="econt_csim_") as tmp:
        for name, path in vector_files.items():
            v = read_vectors(path)
            res, timing = simulate(comp["binary"], v, latent_bits=latent_bits,
                                   n=settings.max_vectors or None,
                                   log=out_dir / f"run_{Path(name).stem}.log",
                                   timeout=settings.run_timeout_s, scratch=Path(tmp))
            c = compare(v, res, file=name, limit=settings.report_mismatches)
            report["per_file"][name] = {"n": c["n"], "n_mismatch": c["n_mismatch"], "fields": c["fields"],
                                        "drop": int(v["drop"]), **timing}
            report["n_total"] += c["n"]
            report["n_mismatch"] += c["n_mismatch"]
            for f, k in c["fields"].items():
                report["fields"][f] += k
            for kname, d in c["per_kind"].items():
                agg = report["per_kind"].setdefault(kname, {"n": 0, "n_mismatch": 0})
                agg["n"] += d["n"]
                agg["n_mismatch"] += d["n_mismatch"]
            room = settings.report_mismatches - len(report["first_mismatches"])
            report["first_mismatches"] += c["first_mismatches"][:max(room, 0)]
            top_s += timing.get("econt_top_s") or 0.0
    report["csim_s"] = round(top_s, 3)
    report["vectors_per_s"] = round(report["n_total"] / top_s, 1) if top_s > 0 else None
    atomic_write_json(out_dir / "report.json", report)
    return report


def mismatch_message(reports: dict[str, dict], where: Path) -> str:
    parts = []
    for b, r in reports.items():
        if r["n_mismatch"]:
            ex = r["first_mismatches"][0] if r["first_mismatches"] else {}
            parts.append(f"{b}: {r['n_mismatch']} of {r['n_total']} vectors differ "
                         f"(per field {r['fields']}; first: {ex.get('file')} vector {ex.get('index')} "
                         f"[{ex.get('kind')}] {ex.get('field')}[{ex.get('position')}] expected "
                         f"{ex.get('expected')}, got {ex.get('got')})")
    return ("hls4ml C simulation does not match the golden model on integer codes: "
            + "; ".join(parts) + f". Reports: {where}")


