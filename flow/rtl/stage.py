"""``rtl`` stage: synthesizable Verilog of the ECON-T autoencoder block.

Reads the trained encoder (``autoencoder/encoder.json`` for the latent width and
``autoencoder/weights.bin``, the 12864-bit register image, :mod:`flow.core.encoder_file`)
and writes, per flavour, a complete source set with a top-level module of the
ASIC interface.  The flavours and their facts (top module, generator,
programmable or not) are the registry ``flow/hdl/flavours.py``; today:

* ``const`` (``econt_ae_const``, ``flow/hdl/const.py``): the trained weights as
  constants, the encoder as da4ml distributed-arithmetic logic;
* ``prog`` (``econt_ae_prog``, ``flow/hdl/prog.py``): the weights in a 12864-bit
  register image loaded through the configuration port, reset to the trained image.

All share the hand-written front end, configuration registers and pipeline
shell (``flow/resources/rtl``) and the top-level wrapper :func:`top_source`.
Interface, address map and timing: ``docs/rtl_cosim.md``.  Every source set is linted with
``verilator --lint-only -Wall`` and elaborated by Yosys (no latches) before
the stage finishes.

Output layout::

    rtl/<flavour>/*.v, rtl/<flavour>/filelist.f    sources (filelist in compile order)
    rtl/rtl.json                                   interface, address map, latency, defaults
    rtl/weights.bin                                the default (trained) weight image
    rtl/logs/{lint,yosys_check}_<flavour>.log
    rtl/elinks/<n>/...                             the same for every other eLink budget's encoder
    rtl/elinks.json                                those budgets (latent bits, directory, flavours)
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from flow.core.encoder import EncoderWeights
from flow.core.encoder_file import ELINK_DIR, ELINKS_JSON, budget_encoders, load_encoder
from flow.core.geometry import N_TC
from flow.hdl.build import build_rtl, generate, lint, sources
from flow.runner.atomic import atomic_write_json

#: per-flavour facts of rtl.json that also become rtl metrics ``<flavour>_<key>``
METRIC_KEYS = ("verilog_lines", "da4ml_cost", "da4ml_trace_s", "lint_s", "yosys_check_s", "tmr_bits")


def run(ctx) -> None:
    s = ctx.settings
    enc = load_encoder(ctx.upstream["autoencoder"])      # encoder.json + weights.bin
    weights, latent_bits = enc.weights, enc.latent_bits
    calvalues = [ctx.cfg.data.calvalue] * N_TC
    meta = build_rtl(ctx.out, weights, s, latent_bits=latent_bits, calvalues=calvalues,
                     drop=ctx.cfg.data.drop, seed=ctx.seed, tools=ctx.external_tools)
    budgets = build_budgets(ctx.out, ctx.upstream["autoencoder"], s, calvalues=calvalues,
                            drop=ctx.cfg.data.drop, seed=ctx.seed)
    gen_s = meta["generate_s"]
    itf = meta["interface"]
    ctx.metrics.update({
        "latent_bits": latent_bits, "latency_cycles": itf["latency_cycles"],
        "latency_ns": itf["latency_ns"], "ii_cycles": 1, "generate_s": round(gen_s, 2),
    })
    for fl in s.flavours:
        info = meta["flavours"][fl]
        for k in METRIC_KEYS:
            if k in info:
                ctx.metrics[f"{fl}_{k}"] = info[k]
        ctx.add_summary(f"{fl}: top", info["top"])
        ctx.add_summary(f"{fl}: Verilog lines", info["verilog_lines"])
        ctx.add_summary(f"{fl}: lint / yosys",
                        f"{info.get('lint', '-')} / {info.get('yosys_check', 'skipped')}")
    for fl in s.flavours:
        if "da4ml_cost" in meta["flavours"][fl]:
            ctx.add_summary(f"{fl}: da4ml cost (adder bits)", meta["flavours"][fl]["da4ml_cost"])
    ctx.add_summary("latency", f"{itf['latency_cycles']} cycles = {itf['latency_ns']:g} ns at "
                               f"{s.clock_ns:g} ns clock (budget 2 BX = 50 ns)")
    ctx.add_summary("II", "1 wafer / clock")
    if budgets:
        ctx.metrics["elinks"] = budgets
    for n, b in budgets.items():
        ctx.add_summary(f"{n} eLinks ({b['latent_bits']}-bit latents)",
                        f"{', '.join(b['flavours'])} -> {b['dir']}/ (lint clean)")


def build_budgets(out: Path, ae, settings, *, calvalues, drop: int, seed: int = 0, echo=print) -> dict:
    """Every flavour again for the encoder of each other eLink budget the autoencoder exported
    (:func:`flow.core.encoder_file.budget_encoders`) into ``elinks/<n>/`` (the layout of the
    main build: ``<flavour>/``, ``rtl.json``, ``weights.bin``), linted like the main build; no
    Yosys elaboration (the main build's proves the shared structure, and ``make all`` stays
    within its budget).  Writes ``elinks.json`` and returns it: ``{n: latent_bits, dir,
    weights_sha256, flavours: {flavour: {top, verilog_lines}}}``."""
    table = {}
    quick = settings.model_copy(update={"yosys_check": False})
    for n, enc in budget_encoders(ae).items():
        d = ELINK_DIR.format(n=n)
        echo(f"[rtl] {n} eLinks: {enc.latent_bits}-bit latents -> {d}/")
        meta = build_rtl(Path(out) / d, enc.weights, quick, latent_bits=enc.latent_bits, calvalues=calvalues,
                         drop=drop, seed=seed, echo=echo)
        table[str(n)] = {"latent_bits": enc.latent_bits, "dir": d, "weights_sha256": enc.weights_sha256,
                         "flavours": {fl: {"top": f["top"], "verilog_lines": f["verilog_lines"]}
                                      for fl, f in meta["flavours"].items()}}
    if table:
        atomic_write_json(Path(out) / ELINKS_JSON, table)
    return table


def bench(cfg, workdir) -> dict[str, float]:
    """Generation and lint time of the configured flavours on random weights."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    res: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t0 = time.perf_counter()
        meta = generate(tmp, EncoderWeights.random(1), latent_bits=cfg.autoencoder.latent_bits,
                        flavours=cfg.rtl.flavours, fe_reg=cfg.rtl.frontend_register,
                        solver_options={"search_all_decompose_dc": cfg.rtl.da4ml_search_all,
                                        "hard_dc": cfg.rtl.da4ml_hard_dc})
        res["rtl_generate_s"] = time.perf_counter() - t0
        for fl, info in meta["flavours"].items():
            t1 = time.perf_counter()
            lint(sources(Path(tmp) / fl), info["top"])
            res[f"rtl_{fl}_lint_s"] = time.perf_counter() - t1
            if "da4ml_cost" in info:
                res[f"rtl_{fl}_da4ml_cost"] = float(info["da4ml_cost"])
    return res


def load_meta(rtl_dir: str | Path) -> dict:
    return json.loads((Path(rtl_dir) / "rtl.json").read_text())
