"""Verilog generators of the ECON-T encoder (part of the ``rtl`` stage).

Two flavours of the same function ``AEin (48 x ufixed<8,1>, TC order) ->
16 latent codes`` (:func:`flow.core.encoder.golden_encode`), both purely
combinational (the shell registers around them):

* :func:`trace_const` / :func:`const_encoder_sources`: the trained weights
  as constants, traced with da4ml into distributed-arithmetic shift-add logic
  (one constant-matrix-vector multiply for the convolution, one for the dense
  layer).  da4ml rounds half up or truncates only, so QKeras' round half to
  even is written out explicitly: ``y = floor((r + half - 1 lsb_in + p) /
  2^s)`` where ``p`` is the parity bit of ``floor(r / 2^s)`` -- exact for
  every non-negative ``r``.
* :func:`prog_encoder_source`: weights from the 12864-bit register image
  (register order of :meth:`flow.core.encoder.EncoderWeights.to_vector`), one
  8 x 6-bit multiplier (``econt_mul_us``) per connection (680 conv taps that can see a live
  cell -- padding and the 16 dead 8x8 positions are left out -- and 2048
  dense), balanced adder trees, ``econt_qrelu`` for the ReLU,
  rounding and saturation.

The generators use only the encoder's architecture and the TC -> 8x8 map;
the testbench checks them against the golden model, which shares nothing
with this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from flow.core.encoder import (
    CONV_OUT,
    ECONT_ARCH,
    INPUT_FMT,
    KERNEL,
    N_LATENT,
    N_PARAMS,
    STRIDE,
    WEIGHT_FMT,
    EncoderArch,
    EncoderWeights,
)
from flow.core.geometry import N_TC, REMAP_8X8
from flow.runner.errors import GeneratorError, describe_values

AEIN_BITS = INPUT_FMT.width


@dataclass(frozen=True)
class Dims:
    """The datapath facts of an :class:`~flow.core.encoder.EncoderArch` the generators use."""

    arch: EncoderArch

    @property
    def conv_frac(self) -> int:
        """Fraction bits of the conv accumulator: AEin 7 + weight (5 for the ECON-T)."""
        return INPUT_FMT.frac_bits + self.arch.weight_fmt.frac_bits

    @property
    def dense_frac(self) -> int:
        """Fraction bits of the dense accumulator: conv activation (7) + weight (5)."""
        return self.arch.conv_act_fmt.frac_bits + self.arch.weight_fmt.frac_bits

    @property
    def offsets(self) -> tuple[int, int, int, int]:
        """Register-vector offsets of conv_w, conv_b, dense_w, dense_b."""
        f = self.arch.filters
        conv_b = KERNEL * KERNEL * f
        dense_w = conv_b + f
        dense_b = dense_w + self.arch.n_hidden * N_LATENT
        assert dense_b + N_LATENT == self.arch.n_params
        return 0, conv_b, dense_w, dense_b


#: the ECON-T's: fraction bits of the conv and dense accumulators (input/activation 7 + weight 5)
ACC_FRAC = Dims(ECONT_ARCH).conv_frac
assert ACC_FRAC == Dims(ECONT_ARCH).dense_frac
N_HIDDEN = ECONT_ARCH.n_hidden
W_BITS = WEIGHT_FMT.width
#: offsets of the parameter groups in the ECON-T register vector
CONV_W_OFF, CONV_B_OFF, DENSE_W_OFF, DENSE_B_OFF = Dims(ECONT_ARCH).offsets
assert DENSE_B_OFF + N_LATENT == N_PARAMS

#: da4ml's helper modules (renamed with this prefix so they cannot clash)
DA_PREFIX = "econt_da_"
DA_MODULES = ("shift_adder", "negative", "mux", "multiplier", "lookup_table")


def conv_taps() -> list[list[tuple[int, int, int]]]:
    """For each conv output position ``p = 4 r + c``: the ``(tc, di, dj)`` taps
    that see a live trigger cell (padding and dead 8x8 positions are zero)."""
    pos_to_tc = {int(p): t for t, p in enumerate(REMAP_8X8)}
    taps: list[list[tuple[int, int, int]]] = []
    for r in range(CONV_OUT):
        for c in range(CONV_OUT):
            row = []
            for di in range(KERNEL):
                for dj in range(KERNEL):
                    pr, pc = STRIDE * r + di, STRIDE * c + dj
                    t = pos_to_tc.get(pr * 8 + pc) if pr < 8 and pc < 8 else None
                    if t is not None:
                        row.append((t, di, dj))
            taps.append(row)
    return taps


def latent_shift(latent_bits: int, arch: EncoderArch = ECONT_ARCH) -> int:
    """Fraction bits dropped from the dense accumulator (12 for the ECON-T) to the latent
    (bits - 1)."""
    return Dims(arch).dense_frac - (latent_bits - 1)


# ======================================================================= da4ml
def conv_matrix(w: EncoderWeights) -> np.ndarray:
    """The convolution as a ``(48, n_hidden)`` matrix on AEin values (Keras flatten order;
    ``(48, 128)`` for the ECON-T)."""
    nf = w.arch.filters
    m = np.zeros((N_TC, w.arch.n_hidden))
    lsb = w.arch.weight_fmt.lsb
    for p, taps in enumerate(conv_taps()):
        for t, di, dj in taps:
            for f in range(nf):
                m[t, p * nf + f] += w.conv_w[di, dj, 0, f] * lsb
    return m


def _qrelu_rnd_conv(acc, frac_in: int, frac_out: int, int_bits: int = 1):
    """da4ml: ReLU, round half to even from ``frac_in`` to ``frac_out`` fraction
    bits, saturate to ufixed<int_bits + frac_out, int_bits>."""
    r = acc.relu()
    s = frac_in - frac_out
    if s > 0:
        parity = r.quantize(0, 1 - frac_out, frac_out)          # the bit of weight 2^-frac_out
        r = r + (2.0 ** (-frac_out - 1) - 2.0 ** -frac_in) + parity * 2.0 ** (frac_out - frac_in)
    return r.quantize(0, int_bits, frac_out, "SAT", "TRN")


def trace_const(w: EncoderWeights, latent_bits: int = 9, solver_options: dict | None = None):
    """Trace the constant-weight encoder with da4ml; returns its ``CombLogic``."""
    from da4ml.trace import FixedVariableArray, comb_trace

    opts = {"search_all_decompose_dc": False}
    opts.update(solver_options or {})
    x = FixedVariableArray.from_kif(np.zeros(N_TC, dtype=np.int64),
                                    np.full(N_TC, INPUT_FMT.int_bits, dtype=np.int64),
                                    np.full(N_TC, INPUT_FMT.frac_bits, dtype=np.int64),
                                    solver_options=opts)
    d, af = Dims(w.arch), w.arch.conv_act_fmt
    lsb = w.arch.weight_fmt.lsb
    acc = x @ conv_matrix(w) + np.tile(w.conv_b * lsb, CONV_OUT * CONV_OUT)
    h = _qrelu_rnd_conv(acc, d.conv_frac, af.frac_bits, af.int_bits)
    acc2 = h @ (w.dense_w * lsb) + w.dense_b * lsb
    y = _qrelu_rnd_conv(acc2, d.dense_frac, latent_bits - 1, 1)
    return comb_trace(x, y, keep_dead_inputs=True)


def comb_latent_codes(sol, aein_codes: np.ndarray, latent_bits: int) -> np.ndarray:
    """Run a traced encoder (da4ml's C++ interpreter) on AEin codes -> latent codes."""
    out = sol.predict(np.asarray(aein_codes, dtype=np.float64) * INPUT_FMT.lsb)
    codes = np.asarray(out, dtype=np.float64) * 2.0 ** (latent_bits - 1)
    if not np.all(codes == np.round(codes)):
        bad = codes[codes != np.round(codes)]
        raise GeneratorError(f"da4ml encoder: expected outputs on the latent grid (multiples of "
                             f"2^-{latent_bits - 1}), got codes {describe_values(bad)}")
    return codes.astype(np.int64)


def _minimal_kif(qint) -> tuple[int, int, int]:
    from da4ml.cmvm.types import _minimal_kif as mk

    k, i, f = mk(qint)
    return int(k), int(i), int(f)


def _rename_da(text: str) -> str:
    for m in DA_MODULES:
        text = re.sub(rf"\b{m}\b(?=\s*#|\s*\(|\s*$)", DA_PREFIX + m, text, flags=re.M)
    return text


def const_encoder_sources(sol, latent_bits: int) -> dict[str, str]:
    """Verilog files of the constant encoder: ``econt_encoder_const`` (the wrapper
    with the flow's port layout), da4ml's comb module and its helper modules."""
    from da4ml.codegen.rtl.verilog.comb import comb_logic_gen

    core = "econt_encoder_const_da"
    body = _rename_da(comb_logic_gen(sol, core, print_latency=False, timescale="`timescale 1ns / 1ps"))
    # inputs that no output depends on (possible for odd weights) stay in the
    # packed input port: tell lint that is intended
    body = body.replace("    input [", "    // verilator lint_off UNUSEDSIGNAL\n    input [", 1)
    body = body.replace(" model_inp,", " model_inp,\n    // verilator lint_on UNUSEDSIGNAL", 1)
    files = {f"{core}.v": body}

    used = [m for m in DA_MODULES if re.search(rf"\b{DA_PREFIX}{m}\b", body)]
    src_dir = resources.files("da4ml.codegen.rtl.verilog").joinpath("source")
    for m in used:
        text = _rename_da(src_dir.joinpath(f"{m}.v").read_text())
        files[f"{DA_PREFIX}{m}.v"] = text

    # ---- wrapper: AEin TC order in, latent codes out
    in_kifs = [_minimal_kif(q) for q in sol.inp_qint]
    out_kifs = [_minimal_kif(q) for q in sol.out_qint]
    in_parts, in_bits = [], 0
    for t, (k, i, f) in enumerate(in_kifs):
        w = k + i + f
        if w == 0:
            continue
        if (k, i, f) != (0, INPUT_FMT.int_bits, INPUT_FMT.frac_bits):
            raise GeneratorError(f"da4ml input {t}: expected format kif=(0,{INPUT_FMT.int_bits},"
                                 f"{INPUT_FMT.frac_bits}), got kif=({k},{i},{f})")
        in_parts.append(f"aein[{t * AEIN_BITS + AEIN_BITS - 1}:{t * AEIN_BITS}]")
        in_bits += w
    used_inputs = {t for t, kif in enumerate(in_kifs) if sum(kif)}
    lines = []
    out_bits = 0
    lf = latent_bits - 1
    for j, (k, i, f) in enumerate(out_kifs):
        w = k + i + f
        lo, hi = j * latent_bits, (j + 1) * latent_bits - 1
        if w == 0:
            lines.append(f"    assign latent[{hi}:{lo}] = {latent_bits}'d0;   // constant 0")
            continue
        if k or f > lf or i > 1:
            raise GeneratorError(f"da4ml output {j}: expected an unsigned format with at most 1 integer "
                                 f"and {lf} fractional bits, got kif=({k},{i},{f})")
        pad_lsb = lf - f
        pad_msb = latent_bits - w - pad_lsb
        field = f"model_out[{out_bits + w - 1}:{out_bits}]"
        parts = ([f"{pad_msb}'d0"] if pad_msb else []) + [field] + ([f"{pad_lsb}'d0"] if pad_lsb else [])
        lines.append(f"    assign latent[{hi}:{lo}] = {{{', '.join(parts)}}};")
        out_bits += w
    unused = sorted(set(range(N_TC)) - used_inputs)
    sink = ""
    if unused:
        bits = ", ".join(f"aein[{t * AEIN_BITS + AEIN_BITS - 1}:{t * AEIN_BITS}]" for t in unused)
        sink = ("    // inputs no output depends on\n    /* verilator lint_off UNUSEDSIGNAL */\n"
                f"    wire unused_inputs = |{{{bits}}};\n    /* verilator lint_on UNUSEDSIGNAL */\n")
    out_decl = (f"    wire [{out_bits - 1}:0] model_out;\n" if out_bits else "")
    inst = ""
    if out_bits:
        inst = (f"    {core} u_da (\n        .model_inp({{{', '.join(reversed(in_parts))}}}),\n"
                f"        .model_out(model_out)\n    );\n")
    wrapper = f"""// Constant-weight ECON-T encoder (generated by flow/hdl/datapath.py from the
// trained weights; da4ml distributed arithmetic).  Combinational.
//   aein:   48 x ufixed<8,1> codes, TC t at [8t +: 8]
//   latent: {N_LATENT} x ufixed<{latent_bits},1> codes, latent j at [{latent_bits}j +: {latent_bits}]
`timescale 1ns / 1ps
`default_nettype none

module econt_encoder_const (
    input  wire [{N_TC * AEIN_BITS - 1}:0] aein,
    output wire [{N_LATENT * latent_bits - 1}:0] latent
);
{out_decl}{inst}{chr(10).join(lines)}
{sink}endmodule

`default_nettype wire
"""
    if not out_bits:
        raise GeneratorError("da4ml encoder: expected at least one latent output that depends on the "
                             "input, got every output constant zero")
    if in_bits == 0:
        raise GeneratorError("da4ml encoder: expected at least one input in use, got none")
    files["econt_encoder_const.v"] = wrapper
    return files


# ================================================================ programmable
def _tree(terms: list[str]) -> str:
    """Balanced parenthesised sum of the terms (synthesis keeps the tree shape)."""
    if len(terms) == 1:
        return terms[0]
    mid = (len(terms) + 1) // 2
    return f"({_tree(terms[:mid])} + {_tree(terms[mid:])})"


def _mul(name: str, x: str, wsl: str, wx: int, ww: int) -> str:
    """An ``econt_mul_us`` instance (parameters only where they differ from its 8 x 6 defaults,
    so the ECON-T's Verilog is unchanged)."""
    params = "" if (wx, ww) == (8, 6) else f" #(.WX({wx}), .WW({ww}))"
    return f"    econt_mul_us{params} u_{name} (.x({x}), .w({wsl}), .p({name}));"


def _acc_bits(n_terms: int, x_max: int, w_bits: int, bias_shift: int) -> int:
    """Signed accumulator width (2 bits of margin) of ``n_terms`` products of an unsigned code
    <= ``x_max`` and a ``w_bits``-bit weight, plus a bias code shifted by ``bias_shift``."""
    wmag = 2 ** (w_bits - 1)
    return int(np.ceil(np.log2(n_terms * x_max * wmag + wmag * 2 ** bias_shift + 1))) + 2


def prog_encoder_source(latent_bits: int = 9, arch: EncoderArch = ECONT_ARCH) -> str:
    """Verilog of the programmable encoder ``econt_encoder_prog`` for ``arch`` (default: the
    ECON-T's)."""
    ab, wb, hb = AEIN_BITS, arch.weight_bits, arch.act_bits
    nf, n_hidden, n_params = arch.filters, arch.n_hidden, arch.n_params
    d = Dims(arch)
    cw_off, cb_off, dw_off, db_off = d.offsets
    pc = ab + wb + 1                  # conv product: 8-bit unsigned x 6-bit signed -> 15 bits
    pd = hb + wb + 1                  # dense product
    taps = conv_taps()
    max_taps = max(len(t) for t in taps)
    bsh_c = d.conv_frac - arch.weight_fmt.frac_bits     # 7: a conv bias code << 7 is on the acc grid
    bsh_d = d.dense_frac - arch.weight_fmt.frac_bits    # 7 for the ECON-T
    # conv accumulator: |sum| <= 9 * 255 * 32 + 32 * 128 -> 18 bits signed; keep 20
    cw = _acc_bits(max_taps, 2 ** ab - 1, wb, bsh_c)
    dw = _acc_bits(n_hidden, 2 ** hb - 1, wb, bsh_d)
    c_shift = d.conv_frac - arch.conv_act_fmt.frac_bits      # 5: conv accumulator -> ufixed<8,1>
    # latent bits beyond 13 (and conv activations beyond 13 bits) need more fraction bits than
    # the accumulator has: qrelu pads the accumulator with zeros (negative shift)
    lsh = latent_shift(latent_bits, arch)
    scale = 2 ** arch.weight_fmt.frac_bits
    out = []
    w = out.append
    w(f"""// Programmable ECON-T encoder (generated by flow/hdl/datapath.py).  Combinational.
//   aein:    48 x ufixed<8,1> codes, TC t at [8t +: 8]
//   weights: {n_params} x {wb}-bit two's complement (value = code / {scale}), register order
//            (conv_w[di][dj][0][f], conv_b[f], dense_w[i][j], dense_b[j]), value n at [{wb}n +: {wb}]
//   latent:  {N_LATENT} x ufixed<{latent_bits},1> codes, latent j at [{latent_bits}j +: {latent_bits}]
// Conv 3x3 stride 2 'same' (pad bottom/right), {nf} filters -> ReLU, round half to
// even, saturate to ufixed<{hb},1> -> Dense 16 -> ReLU, round, saturate.
`timescale 1ns / 1ps
`default_nettype none

module econt_encoder_prog (
    input  wire [{N_TC * ab - 1}:0] aein,
    input  wire [{n_params * wb - 1}:0] weights,
    output wire [{N_LATENT * latent_bits - 1}:0] latent
);
""")

    def wslice(n: int) -> str:
        return f"weights[{n * wb + wb - 1}:{n * wb}]"

    def sext(name: str, width: int, to: int) -> str:
        return f"{{{{{to - width}{{{name}[{width - 1}]}}}}, {name}}}"

    def qrelu(inst: str, acc: str, w_in: int, shift: int, w_out: int, y: str) -> str:
        pad = max(0, -shift)
        acc = acc if not pad else f"{{{acc}, {pad}'d0}}"
        return (f"    econt_qrelu #(.W_IN({w_in + pad}), .SHIFT({max(shift, 0)}), .W_OUT({w_out})) {inst} "
                f"(.acc({acc}), .y({y}));")

    # ---- convolution
    w("    // ---------------------------------------------------------------- conv")
    w(f"    wire [{n_hidden * hb - 1}:0] h;   // conv activations, Keras flatten order (row, col, filter)")
    for p, ptaps in enumerate(taps):
        for f in range(nf):
            n = p * nf + f
            terms = []
            for k, (t, di, dj) in enumerate(ptaps):
                widx = cw_off + (di * KERNEL + dj) * nf + f
                name = f"cp{n}_{k}"
                w(f"    wire [{pc - 1}:0] {name};")
                w(_mul(name, f"aein[{t * ab + ab - 1}:{t * ab}]", wslice(widx), ab, wb))
                terms.append(sext(name, pc, cw))
            bname = f"cb{n}"
            w(f"    wire [{wb + bsh_c - 1}:0] {bname} = {{{wslice(cb_off + f)}, {bsh_c}'d0}};   "
              f"// bias on the 2^-{d.conv_frac} grid")
            terms.append(sext(bname, wb + bsh_c, cw))
            w(f"    wire [{cw - 1}:0] cacc{n} = {_tree(terms)};")
            w(qrelu(f"u_cq{n}", f"cacc{n}", cw, c_shift, hb, f"h[{n * hb + hb - 1}:{n * hb}]"))

    # ---- dense
    w("    // --------------------------------------------------------------- dense")
    lb = latent_bits
    for j in range(N_LATENT):
        terms = []
        for i in range(n_hidden):
            widx = dw_off + i * N_LATENT + j
            name = f"dp{j}_{i}"
            w(f"    wire [{pd - 1}:0] {name};")
            w(_mul(name, f"h[{i * hb + hb - 1}:{i * hb}]", wslice(widx), hb, wb))
            terms.append(sext(name, pd, dw))
        bname = f"db{j}"
        w(f"    wire [{wb + bsh_d - 1}:0] {bname} = {{{wslice(db_off + j)}, {bsh_d}'d0}};")
        terms.append(sext(bname, wb + bsh_d, dw))
        w(f"    wire [{dw - 1}:0] dacc{j} = {_tree(terms)};")
        w(qrelu(f"u_dq{j}", f"dacc{j}", dw, lsh, lb, f"latent[{j * lb + lb - 1}:{j * lb}]"))
    w("endmodule\n\n`default_nettype wire\n")
    return "\n".join(out)


def hand_written_dir() -> Path:
    """Directory of the hand-written Verilog (``flow/resources/rtl``)."""
    return Path(str(resources.files("flow").joinpath("resources/rtl")))
