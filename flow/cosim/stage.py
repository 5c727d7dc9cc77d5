"""``cosim`` stage: cocotb/Verilator cosimulation of the RTL and Yosys resources.

For every flavour the ``rtl`` stage generated (and ``cosim.flavours`` asks
for): build the Verilator model, run the cocotb testbench
(the handoff archive's ``tb/``: ``flow/resources/handoff/``, through
:mod:`flow.core.tb_run`) on vector sets in the archive's format
(:mod:`flow.core.tb_sets`: the ``convert`` stage's golden vectors plus corner,
random, reload, other-register and default-register sets), and compare every
output bit (``docs/rtl_cosim.md`` lists the tests).  The expected outputs come from the
golden model (``flow.core.frontend`` + ``flow.core.encoder``), never from the RTL
generator; the reference weights and latent width are the autoencoder's
``weights.bin`` and ``encoder.json`` (:mod:`flow.core.encoder_file`).

Any mismatch raises :class:`~flow.runner.errors.MismatchError` (the runner keeps the
failed run's directory, with ``report.json``, in ``build/<run>/cosim.failed/``);
on success the stage runs Yosys and writes::

    cosim/report.json, cosim/report.md     per flavour: mismatches, latency, II, throughput, resources
    cosim/<flavour>/<flavour>_<phase>.npz  words, expected and captured outputs of every phase
    cosim/<flavour>/<flavour>_results.json the testbench's own results
    cosim/seu.json                         the RTL SEU campaign (``cosim.seu_upsets``, flow/cosim/seu.py)
    cosim/seu/                             per-upset rows; weight-bit sensitivity (flow/cosim/sensitivity.py)
    cosim/elinks/<n>/<flavour>/            the same phases for each other eLink budget's encoder and RTL
                                           (report.json "elinks", metrics ``<flavour>@<n>elinks``)
    cosim/logs/                            Verilator build, simulation and Yosys logs
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from flow.core.encoder import EncoderArch, EncoderWeights
from flow.core.encoder_file import ELINK_DIR, budget_encoders, budget_table, load_encoder
from flow.core.tb_vectors import cal_from_hex as _cal_from_hex
from flow.core.tb_vectors import check_address_map
from flow.core.vectors import read_vectors
from flow.hdl import flavours as RF
from flow.hdl.build import sources
from flow.hdl.verify import resource_line, resources, simulate, timing, yosys_kinds
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import MismatchError, StageInputError


def resource_metrics(report: dict) -> dict:
    """The manifest metrics of the resource runs: ``yosys_version`` and ``area_um2_sky130``
    (flavour -> um^2, area only, no timing)."""
    out: dict = {}
    if report.get("yosys_version"):
        out["yosys_version"] = report["yosys_version"]
    areas = {fl: r["yosys"]["sky130"]["area_um2"] for fl, r in report["flavours"].items()
             if "sky130" in r.get("yosys", {})}
    if areas:
        out["area_um2_sky130"] = areas
    if report.get("tmr_overhead"):
        out["tmr_overhead_sky130"] = {t: {k: o[k] for k in ("plain", "delta_um2", "total_ratio",
                                                             "protected_ratio", "sequential_ratio")}
                                      for t, o in report["tmr_overhead"].items()}
    return out


def _area(a: dict) -> str:
    return f"{a['area_um2']:,.0f}" if a else "-"


def _tmr_markdown(report: dict) -> list[str]:
    """The TMR overhead and the ECON-T comparison of the sky130 areas (Markdown lines)."""
    from flow.hdl.area import AREA_LABEL

    lines = []
    for t, o in report.get("tmr_overhead", {}).items():
        lines += [f"TMR overhead, {AREA_LABEL}: {t} {o['area_tmr_um2']:,.0f} um^2 against {o['plain']} "
                  f"{o['area_plain_um2']:,.0f} um^2 = {o['total_ratio']:.2f}x the block; the protected "
                  f"registers {o['registers_tmr_um2']:,.0f} um^2 (three copies, voters, refresh, "
                  f"seu_count) against {o['registers_plain_um2']:,.0f} um^2 of plain flip-flops = "
                  f"**{o['protected_ratio']:.2f}x** (flip-flop area alone {o['sequential_ratio']:.2f}x; "
                  f"{o['ff_tmr']} against {o['ff_plain']} flip-flops).  The plain registers' load logic "
                  "(in both flavours) is not in the denominator: with it the weight image alone "
                  "measured 2.93x (docs/rtl_cosim.md).", ""]
    cmp = report.get("econt_comparison", {})
    if cmp:
        c0 = next(iter(cmp.values()))
        lines += [f"Published ECON-T (whole ASIC, {c0['published_nm']} nm): {c0['published_mm2']:g} mm^2; "
                  f"scaled to 130 nm with {c0['assumption']}: "
                  + ", ".join(f"{fl} {c['block_mm2']:.3f} mm^2 = {100 * c['fraction_of_scaled']:.0f} %"
                              for fl, c in cmp.items()) + " of it.", ""]
    return lines


def _failures(res: dict) -> list[str]:
    return [f"{name}: {t['message'].splitlines()[0] if t['message'] else 'failed'}"
            for name, t in res.get("tests", {}).items() if not t["passed"]]


def _markdown(report: dict) -> str:
    lines = ["# cosim report", "",
             f"Clock {report['clock_ns']:g} ns; latency budget 2 BX = 50 ns.", ""]
    cols = ["flavour", "wafers", "mismatches", "latency", "II", "sim wafers/s", "build s",
            "LUT", "FF", "CARRY4", "gates", "transistors", "depth (gates)",
            "sky130 um^2 (area only, no timing)"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for fl, r in report["flavours"].items():
        x, g = r.get("yosys", {}).get("xilinx", {}), r.get("yosys", {}).get("generic", {})
        a = r.get("yosys", {}).get("sky130", {})
        lat = r.get("latency_cycles")
        row = [fl, r["n_total"], r["n_mismatch"],
               f"{lat} clk = {lat * report['clock_ns']:g} ns" if lat else "-",
               r.get("ii_cycles") or "-", r.get("stream_wafers_per_s") or "-", r["build_s"],
               x.get("LUT", "-"), x.get("FF", "-"), x.get("CARRY4", "-"), g.get("gates", "-"),
               g.get("transistors", "-"), g.get("logic_depth_gates", "-"), _area(a)]
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    if report.get("frontend"):
        x, g = report["frontend"].get("xilinx", {}), report["frontend"].get("generic", {})
        a = report["frontend"].get("sky130", {})
        row = ["(front end alone)", "", "", "", "", "", "", x.get("LUT", "-"), x.get("FF", "-"),
               x.get("CARRY4", "-"), g.get("gates", "-"), g.get("transistors", "-"),
               g.get("logic_depth_gates", "-"), _area(a)]
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    for n, per in report.get("elinks", {}).items():
        for fl, r in per["flavours"].items():
            lat = r.get("latency_cycles")
            row = [budget_key(fl, n), r["n_total"], r["n_mismatch"],
                   f"{lat} clk = {lat * report['clock_ns']:g} ns" if lat else "-",
                   r.get("ii_cycles") or "-", r.get("stream_wafers_per_s") or "-", r["build_s"],
                   *["(main build only)"] * (len(cols) - 7)]
            lines.append("| " + " | ".join(str(v) for v in row) + " |")
    lines.append("")
    if report.get("yosys_version"):
        lines += [f"Resources: {report['yosys_version']} (pyosys)."
                  + (" sky130: SkyWater 130 nm sky130_fd_sc_hd cells, area-only Liberty "
                     f"`{report['sky130_liberty']}` (cell area from LEF, no timing, one drive strength "
                     "per cell, no buffering, clock tree or routing)."
                     if report.get("sky130_liberty") else ""),
                  ""]
    lines += _tmr_markdown(report)
    for fl, r in report["flavours"].items():
        lines += [f"## {fl} ({r['top']})", "", "| phase | wafers | mismatches | wafers/s |",
                  "|---|---|---|---|"]
        for name, p in r["phases"].items():
            lines.append(f"| {name} | {p['n_total']} | {p['n_mismatch']} | {p.get('wafers_per_s', '-')} |")
        bk = r["phases"].get("stream", {}).get("by_kind", {})
        if bk:
            lines += ["", "stream by kind: " + ", ".join(f"{k} {v['n']} ({v['n_mismatch']} bad)"
                                                      for k, v in bk.items())]
        for name, t in r.get("tests", {}).items():
            if not t["passed"]:
                lines.append(f"- test `{name}` FAILED: {t['message'][:300]}")
        lines.append("")
    return "\n".join(lines)


def _mismatch_message(report: dict, where: Path) -> str:
    parts = []
    for fl, r in every_result(report).items():
        for name, p in r.get("phases", {}).items():
            if p["n_mismatch"]:
                first = "; ".join(f"#{m['index']} {m['field']} expected {m['expected']} got {m['got']}"
                                  for m in p["first_mismatches"][:5])
                parts.append(f"{fl}/{name}: {p['n_mismatch']} of {p['n_total']} wafers differ ({first})")
    return ("RTL cosimulation found mismatches against the golden model:\n  " + "\n  ".join(parts)
            + f"\nfull report: {where}")


def budget_key(flavour: str, n: int | str) -> str:
    """The name of a flavour's result for the encoder of ``n`` eLinks (report rows, metrics)."""
    return f"{flavour}@{n}elinks"


def every_result(report: dict) -> dict:
    """Every simulated design of the report: the flavours, then each flavour per other eLink
    budget under :func:`budget_key`."""
    out = dict(report["flavours"])
    for n, per in report.get("elinks", {}).items():
        out.update({budget_key(fl, n): r for fl, r in per["flavours"].items()})
    return out


def simulate_budgets(ctx, s, rtl_dir: Path, build_root: Path, *, default_cal, default_drop: int,
                     echo=print) -> dict:
    """Every flavour of ``cosim.flavours`` for the encoder of each other eLink budget the
    autoencoder exported: the rtl stage's ``elinks/<n>/<flavour>/`` on ``cosim.elinks_vectors``
    of convert's ``elinks/<n>/vectors.npz`` (spread over the kinds), the testbench's corner
    wafers, a reload and the default registers, expectations from that budget's
    ``encoder.json`` + ``weights.bin``.  No SEU campaign and no Yosys (the main build's).
    Returns ``{n: {latent_bits, n_vectors, flavours: {flavour: result}}}``; outputs in
    ``elinks/<n>/<flavour>/`` and ``elinks/<n>/logs/``."""
    from flow.core.vectors import select_spread, subset, write_vectors

    encs = budget_encoders(ctx.upstream["autoencoder"])
    if not encs:
        return {}
    rtl_b = budget_table(ctx.upstream["rtl"])
    conv_b = budget_table(ctx.upstream["convert"])
    quick = s.model_copy(update={"max_vectors": 0, "min_wafers": 0, "bubbles": min(s.bubbles, 500),
                                 "reload": min(s.reload, 500)})
    out = {}
    for n, enc in encs.items():
        key = str(n)
        for stage, table in (("rtl", rtl_b), ("convert", conv_b)):
            if table.get(key, {}).get("latent_bits") != enc.latent_bits:
                got = f"{table[key]['latent_bits']}-bit latents" if key in table else "nothing"
                raise StageInputError(f"the autoencoder exported a {enc.latent_bits}-bit encoder for {n} "
                                      f"eLinks, the {stage} stage has {got} for that budget; "
                                      f"rerun `make {stage}`")
        d = ELINK_DIR.format(n=n)
        bmeta = json.loads(ctx.upstream["rtl"].path(f"{d}/rtl.json").read_text())
        missing = [fl for fl in s.flavours if fl not in bmeta["flavours"]]
        if missing:
            raise StageInputError(f"rtl/{d}: no {missing} for the {n}-eLink encoder (it has "
                                  f"{sorted(bmeta['flavours'])}); rerun `make rtl`")
        v = read_vectors(ctx.upstream["convert"].path(conv_b[key]["vectors"]))
        work = build_root / f"elinks_{n}"
        work.mkdir(parents=True, exist_ok=True)
        vec = work / "vectors.npz"
        write_vectors(vec, subset(v, select_spread(v["kind"], s.elinks_vectors)))
        logs = ctx.out / d / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        per = {}
        for fl in s.flavours:
            for rel in ("filelist.f", *bmeta["flavours"][fl]["files"]):
                ctx.upstream["rtl"].path(f"{d}/{fl}/{rel}")         # declared outputs of the rtl stage
            res = simulate(fl, rtl_dir / d, ctx.out / d / fl, work / fl, logs, weights=enc.weights,
                           latent_bits=enc.latent_bits, calvalues=v["calvalues"], drop=int(v["drop"]),
                           default_calvalues=default_cal, default_drop=default_drop, vectors=vec,
                           settings=quick, seed=ctx.seed,
                           latency_cycles=int(bmeta["interface"]["latency_cycles"]),
                           clock_ns=float(bmeta["interface"]["clock_ns"]), echo=echo)
            per[fl] = timing(res)
            shutil.rmtree(work / fl, ignore_errors=True)               # the Verilator model
        out[key] = {"latent_bits": enc.latent_bits, "n_vectors": int(len(v["words"])), "flavours": per}
    return out


def run(ctx) -> None:
    s = ctx.settings
    rtl_dir = ctx.upstream["rtl"].dir
    meta = json.loads(ctx.upstream["rtl"].path("rtl.json").read_text())
    missing = [fl for fl in s.flavours if fl not in meta["flavours"]]
    if missing:
        raise StageInputError(f"cosim.flavours asks for {missing}, but the rtl stage generated only "
                              f"{sorted(meta['flavours'])}; add them to rtl.flavours and rerun `make rtl`")
    for fl in s.flavours:
        ctx.upstream["rtl"].path(f"{fl}/filelist.f")
    # the reference weights and latent width: the autoencoder's encoder.json + weights.bin
    enc = load_encoder(ctx.upstream["autoencoder"])
    latent_bits = enc.latent_bits
    if int(meta["latent_bits"]) != latent_bits:
        raise StageInputError(f"the rtl stage was generated for latent_bits {meta['latent_bits']}, but "
                              f"autoencoder/encoder.json says {latent_bits}; rerun `make rtl`")
    # (the weights are not compared with rtl.json's: RTL from other weights must fail by simulation)
    weights = enc.weights
    vec_path = ctx.upstream["convert"].path("vectors.npz")
    # vectors with other CALVALUEs / drop (convert.n_alt_registers)
    extra = [ctx.upstream["convert"].path(rel) for rel in sorted(ctx.upstream["convert"].manifest["outputs"])
             if rel.startswith("vectors_regs") and rel.endswith(".npz")] if s.alt_vectors else []
    v = read_vectors(vec_path)             # checks the vector-file contract
    calvalues = [int(c) for c in v["calvalues"]]
    drop = int(v["drop"])
    n_vectors = len(v["words"])
    del v
    default_cal = _cal_from_hex(meta["defaults"]["calvalue_image_hex"])
    default_drop = int(meta["defaults"]["drop"])
    clock_ns = float(meta["interface"]["clock_ns"])
    check_address_map(meta["interface"]["cfg_port"], weights.arch)

    logs = ctx.out / "logs"
    logs.mkdir()
    ctx.external_tools.append("verilator")
    report: dict = {"clock_ns": clock_ns, "latent_bits": latent_bits, "n_vectors": n_vectors,
                    "flavours": {}}
    build_root = ctx.checkpoint_dir / "sim_build"
    for fl in s.flavours:
        res = simulate(fl, rtl_dir, ctx.out / fl, build_root / fl, logs, weights=weights,
                       latent_bits=latent_bits, calvalues=calvalues, drop=drop,
                       default_calvalues=default_cal, default_drop=default_drop, vectors=vec_path,
                       settings=s, seed=ctx.seed, extra_vectors=extra,
                       latency_cycles=int(meta["interface"]["latency_cycles"]), clock_ns=clock_ns)
        report["flavours"][fl] = timing(res)

    # ---- the encoder of every other eLink budget: that budget's RTL on its vectors
    budgets = simulate_budgets(ctx, s, rtl_dir, build_root, default_cal=default_cal,
                               default_drop=default_drop)
    if budgets:
        report["elinks"] = budgets
    checked = every_result(report)
    bad = any(r["n_mismatch"] for r in checked.values())
    failed = {fl: _failures(r) for fl, r in checked.items() if _failures(r)}
    # the measured timing must be what the rtl stage documents
    want_lat = meta["interface"]["latency_cycles"]
    for fl, r in checked.items():
        if r["latency_cycles"] != want_lat or r["ii_cycles"] != 1:
            failed.setdefault(fl, []).append(
                f"measured latency {r['latency_cycles']} clk / II {r['ii_cycles']}, but rtl.json "
                f"documents latency {want_lat} clk / II 1")
    if bad or failed:  # the runner keeps ctx.out in build/<run>/cosim.failed/
        atomic_write_json(ctx.out / "report.json", report)
        (ctx.out / "report.md").write_text(_markdown(report))
        if bad:
            raise MismatchError(_mismatch_message(report, ctx.out / "report.json"))
        raise MismatchError("RTL testbench checks failed (no output mismatch): "
                            + "; ".join(f"{fl}: {', '.join(f)}" for fl, f in failed.items())
                            + f"; full report: {ctx.out / 'report.json'}")

    # ---- RTL SEU campaign on the programmable flavours (cosim/seu.json; fails if TMR misses one)
    from flow.cosim.seu import run_in_stage as seu_campaign

    try:
        seu_campaign(ctx, rtl_dir=rtl_dir, meta=meta, vec_path=vec_path,
                     weights_image=enc.weights_path, latent_bits=latent_bits)
    except MismatchError:
        atomic_write_json(ctx.out / "report.json", report)
        (ctx.out / "report.md").write_text(_markdown(report))
        raise

    # ---- resources (Yosys from the pyosys wheel, one child process per run)
    if any(yosys_kinds(s, d) for d in ("frontend", *s.flavours)):
        # the shared front end on its own (part of both flavours' figures), then each flavour
        fe_dir = rtl_dir / s.flavours[0]
        designs = [("frontend", [fe_dir / n for n in ("econt_tc_calq.v", "econt_adder_tree.v",
                                                        "econt_frontend.v")], "econt_frontend")]
        designs += [(fl, sources(rtl_dir / fl), RF.get(fl).top) for fl in s.flavours]
        resources(report, designs, s, logs, ctx.out)
    atomic_write_json(ctx.out / "report.json", report)
    (ctx.out / "report.md").write_text(_markdown(report))

    # ---- metrics and summary
    for fl, r in report["flavours"].items():
        lat = r["latency_cycles"]
        ctx.metrics[fl] = {
            "n_total": r["n_total"], "n_mismatch": r["n_mismatch"], "latency_cycles": lat,
            "latency_ns": lat * clock_ns if lat else None, "ii_cycles": r["ii_cycles"],
            "sim_wafers_per_s": r["stream_wafers_per_s"], "build_s": r["build_s"],
            "run_s": r["run_wall_s"],
            **{f"{kind}_{k}": v for kind, d in r.get("yosys", {}).items() for k, v in d.items()
               if k not in ("cells_by_type", "yosys_version", "steps", "run")},
        }
        ctx.add_summary(f"{fl}: wafers / mismatches", f"{r['n_total']} / {r['n_mismatch']}")
        ctx.add_summary(f"{fl}: latency, II", f"{lat} clk = {lat * clock_ns:g} ns, II = {r['ii_cycles']}")
        ctx.add_summary(f"{fl}: sim throughput", f"{r['stream_wafers_per_s']:.0f} wafers/s "
                                                 f"(build {r['build_s']:.0f} s)")
        x, g = r.get("yosys", {}).get("xilinx"), r.get("yosys", {}).get("generic")
        if x:
            ctx.add_summary(f"{fl}: synth_xilinx", f"{x['LUT']} LUT, {x['FF']} FF, {x['CARRY4']} CARRY4"
                                                   + (f", {x['DSP48']} DSP" if x["DSP48"] else ""))
        if g:
            ctx.add_summary(f"{fl}: synth (generic)", f"{g['gates']} gates, {g.get('transistors', '?')} "
                                                      f"transistors, depth {g.get('logic_depth_gates', '?')}")
        a = r.get("yosys", {}).get("sky130")
        if a:
            ctx.add_summary(f"{fl}: sky130 area (area only, no timing)", resource_line("sky130", a))
    for n, per in report.get("elinks", {}).items():
        for fl, r in per["flavours"].items():
            lat = r["latency_cycles"]
            ctx.metrics[budget_key(fl, n)] = {
                "latent_bits": per["latent_bits"], "n_total": r["n_total"], "n_mismatch": r["n_mismatch"],
                "latency_cycles": lat, "latency_ns": lat * clock_ns if lat else None,
                "ii_cycles": r["ii_cycles"], "sim_wafers_per_s": r["stream_wafers_per_s"],
                "build_s": r["build_s"], "run_s": r.get("run_wall_s")}
            ctx.add_summary(f"{budget_key(fl, n)}: wafers / mismatches",
                            f"{r['n_total']} / {r['n_mismatch']} ({per['latent_bits']}-bit latents)")
    ctx.metrics.update(resource_metrics(report))
    for t, o in report.get("tmr_overhead", {}).items():
        ctx.add_summary(f"{t}: TMR area overhead (sky130, area only, no timing)",
                        f"{o['total_ratio']:.2f}x the {o['plain']} block, {o['protected_ratio']:.2f}x its "
                        f"flip-flops ({o['delta_um2'] / 1e6:.3f} mm^2 more)")

    # ---- weight-bit SEU sensitivity + selective TMR (golden model, no RTL): cosim/seu/
    from flow.cosim.sensitivity import run_in_stage as seu_sensitivity

    seu_sensitivity(ctx)


def bench(cfg, workdir) -> dict[str, float]:
    """Verilator build time and testbench throughput of each flavour (the run's ``rtl``
    artifact and weights, 20k random wafers, the configured optimisation level)."""
    from flow.runner.manifest import verify

    rtl = verify(cfg, "rtl")
    meta = json.loads(rtl.path("rtl.json").read_text())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        logs = tmp / "logs"
        logs.mkdir()
        settings = cfg.cosim.model_copy(update={"min_wafers": 20000, "bubbles": 0, "reload": 0})
        cal = _cal_from_hex(meta["defaults"]["calvalue_image_hex"])
        drop = int(meta["defaults"]["drop"])
        for fl in cfg.cosim.flavours:
            t0 = time.perf_counter()
            res = simulate(fl, rtl.dir, tmp / "out" / fl, tmp / "build" / fl, logs,
                           weights=EncoderWeights.from_image(rtl.path("weights.bin").read_bytes(),
                                                             EncoderArch.from_dict(meta.get("arch", {}))),
                           latent_bits=int(meta["latent_bits"]),
                           calvalues=cal, drop=drop, default_calvalues=cal, default_drop=drop,
                           vectors=None, settings=settings, seed=1, echo=lambda *a: None,
                           latency_cycles=int(meta["interface"]["latency_cycles"]),
                           clock_ns=float(meta["interface"]["clock_ns"]))
            if res["n_mismatch"] or _failures(res):
                raise MismatchError(f"bench cosim of {fl} failed: {_failures(res)}")
            out[f"cosim_{fl}_build_s"] = float(res["build_s"])
            out[f"cosim_{fl}_wafers_per_s"] = float(res["phases"]["stream"]["wafers_per_s"])
            out[f"cosim_{fl}_total_s"] = time.perf_counter() - t0
    return out
