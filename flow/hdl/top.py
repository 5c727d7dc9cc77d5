"""The top-level wrapper every RTL flavour shares: the ASIC ports, the configuration
address map and the weight-image registers of the programmable flavours.

Used by the flavour generators (``flow/rtl_<flavour>.py``, registry
``flow/hdl/flavours.py``) and by the ``rtl`` stage (``rtl.json``), so that a
generator never imports the stage module.  Interface and address map:
``docs/rtl_cosim.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

from flow.core.encoder import ECONT_ARCH, IMAGE_BITS, N_LATENT, EncoderArch
from flow.core.frontend import CAL_BITS, SUM_BITS, TC_WORD_BITS
from flow.core.geometry import N_TC
from flow.hdl import flavours as RF
from flow.hdl.datapath import AEIN_BITS

# ------------------------------------------------------------ the interface
#: configuration port: address and data width (32-bit words)
CFG_ADDR_BITS, CFG_DATA_BITS = 10, 32
#: word address of the weight image: word a holds image bits [32a +: 32] (programmable flavours only)
WEIGHT_BASE = 0x000
WEIGHT_WORDS = IMAGE_BITS // CFG_DATA_BITS            # 402
#: word address of the CALVALUE image: CALVALUE t at bits [12t +: 12] of the 576-bit image
CAL_BASE = 0x200
CAL_WORDS = -(-N_TC * CAL_BITS // CFG_DATA_BITS)      # 18
#: word address of the drop register (bits [1:0])
DROP_ADDR = 0x220
DROP_BITS = 2
#: width of the corrected-upset counter ``seu_count`` (0 in flavours without TMR)
SEU_COUNT_BITS = 16
#: width of the global register-bit index of the TMR injection hook (test builds only)
INJ_BITS = 16


@dataclass(frozen=True)
class AddressMap:
    """The configuration address map of an encoder architecture (:func:`address_map`)."""

    image_bits: int
    """Bits of the weight image (``EncoderArch.image_bits``)."""
    weight_words: int
    cal_base: int
    drop_addr: int
    addr_bits: int
    weight_base: int = WEIGHT_BASE
    cal_words: int = CAL_WORDS
    data_bits: int = CFG_DATA_BITS
    inj_bits: int = INJ_BITS
    """Width of the SEU hook's global register-bit index (test builds): 16, more for a weight
    image that leaves fewer than 4096 indices for the shell's registers."""


def address_map(arch: EncoderArch = ECONT_ARCH) -> AddressMap:
    """The address map for ``arch``: the weight image from address 0 (the last word partial
    when ``image_bits`` is not a multiple of 32), the CALVALUE image at 0x200 or, for a
    larger weight image, at the next power of two above it, the drop register 0x20 after
    the CALVALUEs, and just enough address bits (at least 10).  For the ECON-T's encoder this
    is the ASIC's map: 402 weight words, CALVALUEs at 0x200, drop at 0x220, 10 bits (and a
    16-bit SEU-hook index)."""
    words = -(-arch.image_bits // CFG_DATA_BITS)
    cal = max(CAL_BASE, 1 << max(0, (words - 1).bit_length()))
    drop = cal + 0x20
    assert CAL_WORDS <= 0x20
    return AddressMap(image_bits=arch.image_bits, weight_words=words, cal_base=cal, drop_addr=drop,
                      addr_bits=max(CFG_ADDR_BITS, drop.bit_length()),
                      inj_bits=max(INJ_BITS, (arch.image_bits + 4096).bit_length()))


assert address_map() == AddressMap(IMAGE_BITS, WEIGHT_WORDS, CAL_BASE, DROP_ADDR, CFG_ADDR_BITS)
#: the registers of a flavour without weight registers: weight addresses read back 0
NO_WEIGHT_REGISTERS = f"""
    // no weight registers: weight-image addresses read back 0
    assign weights_rdata = {CFG_DATA_BITS}'d0;
    assign weights_err = 1'b0;
"""


def _hex(value: int, bits: int) -> str:
    return f"{bits}'h{value:0{-(-bits // 4)}x}"


def weight_registers(image: int, amap: AddressMap | None = None, *, tmr: bool = False,
                     inj_offset: int = 0) -> str:
    """The weight image registers of a programmable top (``weights`` bus, reset to ``image``;
    read-back on ``weights_rdata``); ``amap``: default the ECON-T's.  ``tmr``: triplicated with
    voters and refresh (``econt_image_regs`` with ``TMR = 1``), the copies disagreeing on
    ``weights_err``, the image owning the injection hook's global bit indices from
    ``inj_offset`` on."""
    m = amap or address_map()
    what = "triplicated with voters and refresh: " if tmr else ""
    return f"""
    // weight image registers, {what}word a of the image at address {m.weight_base} + a; cfg_rst
    // loads the trained image
    wire [{m.image_bits - 1}:0] weights;
    econt_image_regs #(
        .N_BITS({m.image_bits}), .ADDR_BITS({m.addr_bits}), .DATA_BITS({m.data_bits}), .BASE({m.weight_base}),
        .DEFAULT({_hex(image, m.image_bits)}),
        .TMR({int(tmr)}), .OFFSET({inj_offset}), .INJ_BITS({m.inj_bits})
    ) u_weights (
        .clk(clk),
`ifdef ECONT_SEU_INJECT
        .inj({{seu_inj_en, seu_inj_copy, seu_inj_bit}}),
`endif
        .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(weights), .rdata(weights_rdata), .err(weights_err)
    );
"""


def top_source(g: RF.GeneratorInputs, encoder_inst: str, registers: str = NO_WEIGHT_REGISTERS, *,
               tmr: bool = False) -> str:
    """The top module ``g.flavour.top``: the ASIC ports, the shared shell ``econt_shell``
    (front end, CALVALUE/drop registers, pipeline, read-back), then the flavour's
    ``registers`` (Verilog text driving ``weights_rdata``, the read-back of the flavour's own
    registers at ``cfg_addr``, and ``weights_err``, its TMR copies disagree, e.g.
    :func:`weight_registers`; default: none, reads 0) and its encoder instance
    ``encoder_inst`` (a line connecting ``enc_aein`` to ``enc_latent``).

    ``tmr``: the shell with ``TMR = 1`` (its configuration and pipeline registers
    triplicated, ``seu_count`` counting corrected upsets, the flavour's ``weights_err``
    included); ``registers`` may use the injection hook ``seu_inj_*``.  Otherwise
    ``seu_count`` is 0 and the hook reaches the shell's pipeline registers only
    (``seu_inj_copy`` unused: one copy).

    Every top declares the injection hook ``seu_inj_en``, ``seu_inj_copy``,
    ``seu_inj_bit`` in test builds (``ECONT_SEU_INJECT``): top-level signals, not ports,
    written by the SEU testbench; the registry's ``seu_hook`` says which registers it
    reaches."""
    top, latent_bits, fe_reg = g.flavour.top, g.latent_bits, g.fe_reg
    m = address_map(g.weights.arch)
    cal_default, drop_default = g.cal_image, g.drop_default
    lb = N_LATENT * latent_bits
    what = g.flavour.description
    params = (f"""        .N_LATENT({N_LATENT}), .LATENT_BITS({latent_bits}),
        .ADDR_BITS({m.addr_bits}), .DATA_BITS({m.data_bits}),
        .CAL_BASE({m.cal_base}), .DROP_ADDR({m.drop_addr}), .FE_REG({int(fe_reg)}),
        .TMR({int(tmr)}), .SEU_BITS({SEU_COUNT_BITS}), .INJ_BASE({m.image_bits}), .INJ_BITS({m.inj_bits}),
""")
    conns = """`ifdef ECONT_SEU_INJECT
        .inj({seu_inj_en, seu_inj_copy, seu_inj_bit}),
`endif
        .clk(clk), .rst(rst),
        .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr), .cfg_wdata(cfg_wdata),
        .cfg_re(cfg_re), .ext_rdata(weights_rdata), .cfg_rdata(cfg_rdata),
        .ext_err(weights_err), .seu_count(seu_count),
"""
    if tmr:
        what_hook = ("copy seu_inj_copy of register bit seu_inj_bit (global index, docs/rtl_cosim.md) "
                     "is stored inverted")
    else:
        what_hook = ("pipeline register bit seu_inj_bit (global index, docs/rtl_cosim.md) is stored "
                     "inverted; seu_inj_copy is unused (no copies)")
    decl = f"""`ifdef ECONT_SEU_INJECT
    // SEU injection hook, test builds only: written by the testbench (top-level signals,
    // not ports); at a rising edge with seu_inj_en high, {what_hook}
    /* verilator lint_off UNDRIVEN */
    /* verilator lint_off UNUSEDSIGNAL */
    reg                  seu_inj_en;
    reg  [1:0]           seu_inj_copy;
    reg  [{m.inj_bits - 1}:0]          seu_inj_bit;
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_on UNDRIVEN */
`endif
"""
    return f"""// ECON-T autoencoder block, {what}.
// Generated by flow/rtl/stage.py; interface and address map: docs/rtl_cosim.md.
// Latency {2 if fe_reg else 1} clock(s), one wafer per clock.
`timescale 1ns / 1ps
`default_nettype none

module {top} (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 cfg_rst,
    input  wire                 cfg_we,
    input  wire [{m.addr_bits - 1}:0]  cfg_addr,
    input  wire [{CFG_DATA_BITS - 1}:0]  cfg_wdata,
    input  wire                 cfg_re,
    output wire [{CFG_DATA_BITS - 1}:0]  cfg_rdata,
    input  wire                 valid_in,
    input  wire [{N_TC * TC_WORD_BITS - 1}:0] tc_words,
    output wire                 valid_out,
    output wire [{lb - 1}:0] latent,
    output wire [{SUM_BITS - 1}:0]   module_sum,
    output wire [{SEU_COUNT_BITS - 1}:0]  seu_count
);
    wire [{N_TC * AEIN_BITS - 1}:0] enc_aein;
    wire [{lb - 1}:0] enc_latent;
    wire [{CFG_DATA_BITS - 1}:0] weights_rdata;  // read-back of the flavour's registers at cfg_addr
    wire weights_err;     // the flavour's TMR copies disagree (0 without copies)
{decl}
    econt_shell #(
{params}        .CAL_DEFAULT({_hex(cal_default, N_TC * CAL_BITS)}),
        .DROP_DEFAULT({DROP_BITS}'d{drop_default})
    ) u_shell (
{conns}        .valid_in(valid_in), .tc_words(tc_words),
        .valid_out(valid_out), .latent(latent), .module_sum(module_sum),
        .enc_aein(enc_aein), .enc_latent(enc_latent)
    );
{registers}
{encoder_inst}endmodule

`default_nettype wire
"""
