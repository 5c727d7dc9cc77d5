"""The verification chain shared by the ``cosim`` stage and the ``sweep``: one flavour's RTL
run through the shipped cocotb testbench and runner on vector sets in the handoff archive's
format (:func:`simulate`; the sets from :mod:`flow.core.tb_sets`, the run
:mod:`flow.core.tb_run`), and the Yosys (pyosys) resource runs of the configured kinds
(:func:`resources`: generic gates, sky130 cell area, Xilinx LUT/FF; the TMR overhead and the
comparison with the published ECON-T from the sky130 results).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from flow.core.encoder import EncoderWeights
from flow.hdl import flavours as RF


def simulate(flavour: str, rtl_dir: Path, out_dir: Path, build_dir: Path, logs: Path, *,
             weights: EncoderWeights, latent_bits: int, calvalues, drop: int, default_calvalues,
             default_drop: int, vectors: Path | None, settings, seed: int, extra_vectors=(),
             latency_cycles: int = 2, clock_ns: float = 25.0, defines=(), testcases=(), test_modules=(),
             echo=print) -> dict:
    """Write one flavour's vector sets in the handoff archive's format (:mod:`flow.core.tb_sets`),
    run the shipped testbench and runner on them (:mod:`flow.core.tb_run`) and return its result
    record with the testbench's records as the cosim's phases.  The top module and whether
    the weights are programmable come from the flavour registry."""
    from flow.core import tb_run, tb_sets

    spec = RF.get(flavour)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    sets = tb_sets.build_sets(programmable=spec.programmable, weights=weights, latent_bits=latent_bits,
                                 calvalues=calvalues, drop=drop, default_calvalues=default_calvalues,
                                 default_drop=default_drop, vectors=vectors, settings=settings, seed=seed,
                                 extra_vectors=extra_vectors)
    root = build_dir / "tb_root"
    tb_sets.write_root(root, flavour, spec.top, rtl_dir / flavour / "filelist.f", spec.programmable, sets,
                          latent_bits, latency_cycles=latency_cycles, clock_ns=clock_ns,
                          seu_inject="ECONT_SEU_INJECT" in defines)
    res = tb_run.run_testbench(root, flavour, build_dir, opt=settings.verilator_opt,
                                  jobs=settings.build_jobs, bubbles=settings.bubbles, seed=seed,
                                  first_mismatches=settings.first_mismatches, defines=defines,
                                  testcases=testcases, test_modules=test_modules, logs=logs)
    echo(f"[cosim] {flavour}: Verilator model built in {res['build_s']:.1f} s ({settings.verilator_opt})")
    tb_out = Path(res.pop("out_dir"))
    if (tb_out / f"{flavour}_results.json").is_file():
        shutil.copyfile(tb_out / f"{flavour}_results.json", out_dir / f"{flavour}_results.json")
    by_name = {vs["name"]: vs for vs in sets}
    phases = {}
    for rec, r in res.pop("sets", {}).items():
        name = tb_sets.phase_name(rec)
        vs = by_name.get(rec.split(":")[-1], sets[0])
        p = dict(r, sim_wall_s=r.get("wall_s"))
        if rec in by_name:
            p.update(vs.get("info", {}))
            if "ii_contiguous" in r:
                p["ii_cycles"] = 1 if r["ii_contiguous"] else None
            if rec.startswith("vectors_regs"):
                p.update({"drop": vs["drop"], "calvalue_min": int(vs["calvalues"].min()),
                          "calvalue_max": int(vs["calvalues"].max())})
        cap = tb_out / "captured" / f"{flavour}_{rec.replace(':', '_')}.hex"
        if cap.is_file():
            tb_sets.save_phase(out_dir / f"{flavour}_{name}.npz", vs, cap, latent_bits)
        phases[name] = p
    res["phases"] = phases
    res["run_wall_s"] = res.get("sim_s")
    res["top"] = spec.top
    res["n_total"] = sum(p["n_total"] for p in phases.values())
    res["n_mismatch"] = sum(p["n_mismatch"] for p in phases.values())
    st = phases.get("stream", {})
    echo(f"[cosim] {flavour}: {res['n_total']} wafers, {res['n_mismatch']} mismatching; stream "
         f"{st.get('n_total', 0)} wafers at {st.get('wafers_per_s') or 0:.0f} wafers/s")
    return res


def timing(res: dict) -> dict:
    """:func:`simulate`'s ``res`` with the latency (the testbench's latency test), the II (the
    contiguous valid_out of the stream) and the stream throughput at its top level."""
    st = res["phases"].get("stream", {})
    res["latency_cycles"] = res.get("checks", {}).get("latency", {}).get("latency_cycles")
    res["ii_cycles"] = st.get("ii_cycles")
    res["stream_wafers_per_s"] = st.get("wafers_per_s")
    return res


def resources(report: dict, designs, settings, logs: Path, out: Path, echo=print) -> None:
    """Yosys (pyosys) resource runs of ``settings.yosys`` (less ``settings.yosys_skip`` of the
    flavour) on each ``(name, files, top)`` of ``designs`` into ``report``:
    ``report["frontend"]`` for the design named ``frontend``, ``report["flavours"][name]["yosys"]``
    otherwise.  ``sky130`` writes the area-only Liberty to ``out``."""
    from concurrent.futures import ThreadPoolExecutor

    from flow.hdl.yosys import run_kinds, synth_run

    runs = [(name, files, top, yosys_kinds(settings, name)) for name, files, top in designs]
    runs = [r for r in runs if r[3]]
    liberty = None
    if any("sky130" in r[3] for r in runs):
        from flow.hdl.area import LIBERTY_NAME, write_liberty

        liberty = write_liberty(Path(out) / f"{LIBERTY_NAME}.lib")
    kw = dict(dsp=settings.yosys_dsp, timeout_s=settings.yosys_timeout_s, liberty=liberty)
    # every (design, run) is its own pyosys child process: ``yosys_jobs`` of them at a time,
    # the largest designs first (longest-processing-time order); results do not depend on it
    tasks = [(name, files, top, run) for name, files, top, kinds in runs for run in run_kinds(kinds)]
    tasks.sort(key=lambda x: -sum(Path(f).stat().st_size for f in x[1]))
    echo(f"[cosim] yosys: {len(tasks)} runs on {len(runs)} designs, {settings.yosys_jobs} at a time ...")
    pool = ThreadPoolExecutor(max_workers=settings.yosys_jobs)
    done: dict[tuple[str, str], dict] = {}
    try:
        futures = {(name, run): pool.submit(synth_run, run, files, top, logs, name, **kw)
                   for name, files, top, run in tasks}
        for name, _, _, run in tasks:            # wait in submission order; the first error raises
            done[(name, run)] = futures[(name, run)].result()
            for kind, r in done[(name, run)].items():
                echo(f"[cosim] {name}: yosys {kind}: {resource_line(kind, r)}")
    finally:                                     # on an error: no new runs, wait for the running ones
        pool.shutdown(wait=True, cancel_futures=True)
    for name, _, _, kinds in runs:               # in design order, whatever order the runs ended in
        merged = {k: v for run in run_kinds(kinds) for k, v in done[(name, run)].items()}
        res = {k: merged[k] for k in kinds}
        if name == "frontend":
            report["frontend"] = res
        else:
            report["flavours"][name]["yosys"] = res
        report["yosys_version"] = next(iter(res.values()))["yosys_version"]
    if liberty is not None:
        report["sky130_liberty"] = liberty.name
        tmr_figures(report)


def yosys_kinds(settings, design: str) -> list[str]:
    """The Yosys runs of one design: ``cosim.yosys`` less ``cosim.yosys_skip[design]``."""
    skip = set(settings.yosys_skip.get(design, ()))
    return [k for k in settings.yosys if k not in skip]


def tmr_figures(report: dict) -> None:
    """The TMR area overhead (``report["tmr_overhead"]``: TMR flavour -> figures, for each
    ``<x>_tmr`` whose ``<x>`` was mapped too) and the comparison of each flavour's sky130 area
    with the published ECON-T (``report["econt_comparison"]``), from the ``sky130`` results."""
    from flow.hdl.area import econt_comparison, tmr_overhead, tmr_pairs

    a = {fl: r["yosys"]["sky130"] for fl, r in report["flavours"].items() if "sky130" in r.get("yosys", {})}
    over = {t: {"plain": p, **tmr_overhead(a[p], a[t])} for t, p in tmr_pairs(a).items()}
    if over:
        report["tmr_overhead"] = over
    if a:
        report["econt_comparison"] = {fl: econt_comparison(r["area_um2"]) for fl, r in a.items()}


def resource_line(kind: str, r: dict) -> str:
    if kind == "xilinx":
        return (f"{r['LUT']} LUT, {r['FF']} FF, {r['CARRY4']} CARRY4"
                + (f", {r['DSP48']} DSP" if r["DSP48"] else "") + f" ({r['yosys_s']:.0f} s)")
    if kind == "generic":
        return (f"{r['gates']} gates, {r.get('transistors', '?')} transistors, depth "
                f"{r.get('logic_depth_gates', '?')} ({r['yosys_s']:.0f} s)")
    return (f"{r['area_um2'] / 1e6:.4f} mm^2 = {r['area_um2']:,.0f} um^2 in {r['cells']} cells "
            f"({r['FF']} flip-flops; {r['generic_gates']} generic gates before mapping) "
            f"({r['yosys_s']:.0f} s, {r['peak_rss_mb']:.0f} MB)")
