"""The RTL chain shared by the ``rtl`` stage and the ``sweep``: the source set of every
flavour (the registry ``flow/hdl/flavours.py``, the hand-written modules of
``flow/resources/rtl``), the interface record (ports, address map, timing) and the checks
(``verilator --lint-only -Wall`` of the build and of its SEU test build, Yosys elaboration
without latches).  :func:`build_rtl` writes one directory: ``<flavour>/*.v``,
``<flavour>/filelist.f``, ``rtl.json``, ``weights.bin``, ``logs/``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from flow.core import encoder as E
from flow.core.encoder import N_LATENT, EncoderWeights
from flow.core.frontend import CAL_BITS, SUM_BITS, TC_WORD_BITS
from flow.core.geometry import N_TC
from flow.hdl import flavours as RF
from flow.hdl.datapath import hand_written_dir
from flow.hdl.top import CFG_DATA_BITS, SEU_COUNT_BITS, address_map
from flow.runner.atomic import atomic_write_json
from flow.runner.errors import DataFormatError, ToolError
from flow.runner.tools import require, verilator_root

HAND_WRITTEN = ("econt_tc_calq.v", "econt_adder_tree.v", "econt_frontend.v", "econt_image_read.v",
                "econt_tmr_copy.v", "econt_reg.v", "econt_image_regs.v", "econt_shell.v")


def interface(latent_bits: int, fe_reg: bool, clock_ns: float, arch: E.EncoderArch = E.ECONT_ARCH) -> dict:
    """The documented top-level interface (also written to ``rtl.json``) of the block with an
    encoder of architecture ``arch`` (default the ECON-T's: the ASIC's address map)."""
    latency = 2 if fe_reg else 1
    m = address_map(arch)
    wb = arch.weight_bits
    partial = "" if m.image_bits % 32 == 0 else "; the last word partial, its other bits ignored and read 0"
    return {
        "ports": {
            "clk": "in 1: clock, rising edge",
            "rst": "in 1: synchronous active-high datapath reset (valid pipeline, output registers)",
            "cfg_rst": "in 1: synchronous active-high reset of the configuration registers to defaults",
            "cfg_we": "in 1: configuration write strobe (one 32-bit word per clock)",
            "cfg_addr": f"in {m.addr_bits}: configuration word address",
            "cfg_wdata": f"in {CFG_DATA_BITS}: configuration write data",
            "cfg_re": "in 1: configuration read strobe: cfg_rdata takes the word at cfg_addr "
                      "at the rising edge where cfg_re is sampled high",
            "cfg_rdata": f"out {CFG_DATA_BITS}: configuration read data, the word at cfg_addr one clock "
                         "after cfg_re (held until the next read; 0 at unmapped addresses; 0 after rst)",
            "valid_in": "in 1: a wafer is presented on tc_words",
            "tc_words": f"in {N_TC * TC_WORD_BITS}: 48 x 7-bit 4E3M TC words, TC t at [7t +: 7]",
            "valid_out": "out 1: latent/module_sum hold a wafer's result",
            "latent": f"out {N_LATENT * latent_bits}: 16 x {latent_bits}-bit ufixed<{latent_bits},1> "
                      f"codes, latent j at [{latent_bits}j +: {latent_bits}]",
            "module_sum": f"out {SUM_BITS}: 9-bit 5E4M module sum",
            "seu_count": f"out {SEU_COUNT_BITS}: corrected single-event upsets: clocks in which the "
                         "copies of a triplicated register disagreed (saturating, cleared by rst; "
                         "always 0 in flavours without TMR)",
        },
        "cfg_port": {
            "addr_bits": m.addr_bits, "data_bits": m.data_bits,
            "weight_base": m.weight_base, "weight_words": m.weight_words, "image_bits": m.image_bits,
            "weight_layout": f"word a = bits [32a +: 32] of the {m.image_bits}-bit image "
                             f"(EncoderWeights.to_image(), little-endian; value n at bits [{wb}n +: {wb}]"
                             f"{partial}); "
                             f"{'/'.join(RF.programmable_names())} flavour only "
                             f"(ignored by {'/'.join(RF.fixed_names())})",
            "cal_base": m.cal_base, "cal_words": m.cal_words,
            "cal_layout": "word a = bits [32a +: 32] of the 576-bit CALVALUE image, "
                          "CALVALUE t at bits [12t +: 12]",
            "drop_addr": m.drop_addr, "drop_layout": "bits [1:0] = drop (1 low density, 3 high density)",
            "write_timing": "a write takes effect at the rising edge where cfg_we is sampled high; "
                            "reprogram while no wafer is in flight",
            "read_timing": "cfg_rdata = the word at cfg_addr sampled at the rising edge where cfg_re is "
                           "high, on the port from then on (one clock later); a read in the same "
                           "clock as a write to that word returns the old word",
            "read_layout": "every writable word reads back what was written (the weight image, CALVALUE "
                           "image and drop, drop in bits [1:0], the other bits 0); weight addresses "
                           f"read 0 in {'/'.join(RF.fixed_names())}; unmapped addresses read 0",
        },
        "latency_cycles": latency,
        "latency_ns": latency * clock_ns,
        "clock_ns": clock_ns,
        "ii_cycles": 1,
        "latency_definition": "a wafer on valid_in/tc_words in clock cycle n (sampled by the rising edge "
                              f"ending it) is on valid_out/latent/module_sum in cycle n + {latency} "
                              f"({latency} register stages)",
    }


# ------------------------------------------------------------ generation
def cal_image(calvalues) -> int:
    cal = [int(c) for c in calvalues]
    if len(cal) != N_TC or any(not 0 <= c < (1 << CAL_BITS) for c in cal):
        raise DataFormatError(f"CALVALUE defaults: expected {N_TC} values in [0, 4095], got {cal!r}")
    return sum(c << (CAL_BITS * t) for t, c in enumerate(cal))


def generate(outdir: str | Path, weights: EncoderWeights, *, latent_bits: int = 9,
             flavours=None, fe_reg: bool = True, calvalue_default=None, drop_default: int = 3,
             solver_options: dict | None = None, check_trace: int = 4096, seed: int = 0,
             echo=None) -> dict:
    """Write the source sets of ``flavours`` (default: the registered flavours not opt-in) below
    ``outdir``; returns metadata.

    Each flavour's generator (``flow/hdl/flavours.py``) gets the same inputs;
    ``check_trace`` random AEin wafers are its self-check budget (the constant
    flavour runs them through the traced da4ml logic and compares with the golden
    model before any Verilog is written; the real proof is the cosimulation).
    """
    outdir = Path(outdir)
    specs = [RF.get(fl) for fl in (RF.default_names() if flavours is None else flavours)]
    cal = cal_image(calvalue_default if calvalue_default is not None else [2048] * N_TC)
    if drop_default not in (0, 1, 2, 3):
        raise DataFormatError(f"drop default: expected 0..3, got {drop_default!r}")
    image = int.from_bytes(weights.to_image(), "little")
    hw = hand_written_dir()
    meta: dict = {"flavours": {}}
    for spec in specs:
        fl = spec.name
        d = outdir / fl
        d.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {name: (hw / name).read_text() for name in HAND_WRITTEN}
        g = RF.GeneratorInputs(flavour=spec, weights=weights, latent_bits=latent_bits, fe_reg=fe_reg,
                               cal_image=cal, drop_default=drop_default, weight_image=image,
                               solver_options=solver_options, check_trace=check_trace, seed=seed)
        t0 = time.perf_counter()
        src = spec.load_generator()(g)
        info: dict = {"top": spec.top, **src.info}
        top_file = f"{spec.top}.v"
        if top_file in src.files:
            raise ToolError(f"{spec.generator}: expected the top module {top_file} in "
                            "FlavourSources.top only, got it in FlavourSources.files too")
        files.update(src.files)
        files[top_file] = src.top
        info["generate_s"] = round(time.perf_counter() - t0, 2)
        order = [n for n in files if n != top_file] + [top_file]
        for name in order:
            (d / name).write_text(files[name])
        (d / "filelist.f").write_text("".join(f"{n}\n" for n in order))
        info["files"] = order
        info["verilog_lines"] = sum(files[n].count("\n") for n in order)
        info["verilog_bytes"] = sum(len(files[n]) for n in order)
        meta["flavours"][fl] = info
        if echo:
            echo(f"[rtl] {fl}: {len(order)} files, {info['verilog_lines']} lines")
    meta.update({
        "latent_bits": latent_bits,
        "defaults": {"calvalue_image_hex": f"{cal:x}", "drop": drop_default,
                     "weights_sha256": hashlib.sha256(weights.to_image()).hexdigest()},
        "fe_reg": fe_reg,
    })
    return meta


def sources(flavour_dir: str | Path) -> list[Path]:
    """The source files of one flavour, in compile order."""
    d = Path(flavour_dir)
    return [d / n for n in (d / "filelist.f").read_text().split()]


# ---------------------------------------------------------------- checks
def verilator_env() -> dict[str, str]:
    env = os.environ.copy()
    root = verilator_root()
    if root is not None:
        env.setdefault("VERILATOR_ROOT", str(root))
    return env


def lint(files, top: str, log: Path | None = None, defines=(), params: dict | None = None) -> str:
    """``verilator --lint-only -Wall`` (with ``-D<name>`` for each of ``defines``, e.g. the
    test-build ``ECONT_SEU_INJECT``, and ``-G<name>=<value>`` for each of ``params``, the top's
    parameters); raises :class:`ToolError` on any warning."""
    cmd = [require("verilator"), "--lint-only", "-Wall", *(f"-D{d}" for d in defines),
           *(f"-G{k}={int(v)}" for k, v in (params or {}).items()),
           "--top-module", top, *map(str, files)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=verilator_env(), timeout=1800)
    out = (r.stdout + r.stderr)
    if log is not None:
        log.write_text(" ".join(cmd) + "\n" + out)
    if r.returncode != 0 or "%Warning" in out or "%Error" in out:
        first = "\n".join(out.splitlines()[:20])
        raise ToolError(f"verilator --lint-only -Wall rejected {top}:\n{first}")
    return out


def yosys_check(files, top: str, log: Path | None = None) -> str:
    """Yosys (``pyosys``) reads and elaborates the design; raises :class:`ToolError` on errors or
    latches.  Returns the Yosys log."""
    from flow.hdl.yosys import SynthError, run_script

    script = (f"read_verilog -sv {' '.join(str(f) for f in files)}; hierarchy -check -top {top}; "
              "proc; flatten; opt_clean; "
              "select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr; stat")
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(log) if log is not None else Path(tmp) / "yosys_check.log"
        try:
            run_script(script, log_path, timeout_s=3600, what=f"elaboration of {top}")
        except SynthError as err:
            raise ToolError(f"yosys could not elaborate {top} (or found latches): {err}") from None
        out = log_path.read_text(errors="replace")
    if log is not None:
        log_path.write_text(script + "\n" + out)
    return out


# ------------------------------------------------------------------ the chain
def build_rtl(out: Path, weights: EncoderWeights, settings, *, latent_bits: int, calvalues, drop: int,
              seed: int = 0, echo=print, tools: list | None = None) -> dict:
    """Generate, lint and elaborate every flavour of ``settings`` (an
    :class:`~flow.runner.config.RtlConfig`) into ``out``; writes ``rtl.json`` and
    ``weights.bin``; returns the metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.bin").write_bytes(weights.to_image())
    t0 = time.perf_counter()
    meta = generate(out, weights, latent_bits=latent_bits, flavours=settings.flavours,
                    fe_reg=settings.frontend_register, calvalue_default=calvalues, drop_default=drop,
                    solver_options={"search_all_decompose_dc": settings.da4ml_search_all,
                                    "hard_dc": settings.da4ml_hard_dc},
                    seed=seed, echo=echo)
    meta["generate_s"] = round(time.perf_counter() - t0, 2)
    meta["interface"] = interface(latent_bits, settings.frontend_register, settings.clock_ns, weights.arch)
    meta["arch"] = weights.arch.to_dict()
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    tools = tools if tools is not None else []
    tools.append("verilator")
    for fl in settings.flavours:
        info = meta["flavours"][fl]
        files = sources(out / fl)
        t1 = time.perf_counter()
        lint(files, info["top"], logs / f"lint_{fl}.log")
        info["lint"] = "clean (verilator --lint-only -Wall)"
        # its test build with the SEU injection hook (every top has one), too
        lint(files, info["top"], logs / f"lint_{fl}_seu_inject.log", defines=["ECONT_SEU_INJECT"])
        info["lint"] += "; test build (ECONT_SEU_INJECT) clean too"
        info["lint_s"] = round(time.perf_counter() - t1, 2)
        if settings.yosys_check:
            t1 = time.perf_counter()
            yosys_check(files, info["top"], logs / f"yosys_check_{fl}.log")
            info["yosys_check"] = "elaborated, no latches"
            info["yosys_check_s"] = round(time.perf_counter() - t1, 2)
    atomic_write_json(out / "rtl.json", meta)
    return meta


