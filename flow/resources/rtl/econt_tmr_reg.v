// Triple modular redundancy (TMR) for the prog_tmr flavour.
//
// econt_tmr_reg: a W-bit register held in three copies (econt_tmr_copy, three
// instances kept in the hierarchy, so synthesis cannot merge them) with a
// bitwise majority voter.  Every clock each copy loads, bit by bit, the new
// value d where load is high and otherwise the voted value q ("refresh"): an
// upset in one copy is outvoted at once and overwritten at the next rising
// edge, so upsets do not accumulate.  err is high while the copies disagree
// (a single upset: for one clock).
//
// SEU injection hook (test builds only, `define ECONT_SEU_INJECT): at a rising
// edge with inj_en high, copy inj_copy (0..2) of the register bit with global
// index inj_bit stores that bit inverted.  Each register owns the global
// indices [OFFSET, OFFSET + W); docs/rtl_cosim.md lists the map.
`timescale 1ns / 1ps
`default_nettype none

module econt_tmr_reg #(
    parameter integer W        = 1,
    parameter integer OFFSET   = 0,
    parameter integer INJ_BITS = 16
) (
    input  wire                clk,
`ifdef ECONT_SEU_INJECT
    input  wire                inj_en,
    input  wire [1:0]          inj_copy,
    input  wire [INJ_BITS-1:0] inj_bit,
`endif
    input  wire [W-1:0]        load,    // per bit: take d (else refresh with the voted value)
    input  wire [W-1:0]        d,
    output wire [W-1:0]        q,       // the voted value
    output wire                err      // the copies disagree (an upset being corrected)
);
    wire [W-1:0] c0, c1, c2;
    wire [W-1:0] nxt = (load & d) | (~load & q);
`ifdef ECONT_SEU_INJECT
    `define ECONT_TMR_INJ .inj_en(inj_en), .inj_copy(inj_copy), .inj_bit(inj_bit),
`else
    `define ECONT_TMR_INJ
`endif
    econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(0), .INJ_BITS(INJ_BITS)) u_c0 (
        .clk(clk), `ECONT_TMR_INJ .d(nxt), .q(c0));
    econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(1), .INJ_BITS(INJ_BITS)) u_c1 (
        .clk(clk), `ECONT_TMR_INJ .d(nxt), .q(c1));
    econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(2), .INJ_BITS(INJ_BITS)) u_c2 (
        .clk(clk), `ECONT_TMR_INJ .d(nxt), .q(c2));
`undef ECONT_TMR_INJ
    assign q   = (c0 & c1) | (c0 & c2) | (c1 & c2);
    assign err = |((c0 ^ c1) | (c0 ^ c2));
endmodule

`default_nettype wire
