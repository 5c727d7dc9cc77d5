// One trigger cell of the ECON-T front end (see econt_frontend.v):
// float-to-fix decode with the drop shift and the half-LSB, then calibration.
//
//   d    = m                  if e == 0,   (8 + m) << (e - 1) otherwise
//   d    = (d << drop) + (1 << (sh - 1))   if sh = drop + max(e - 1, 0) > 0
//   CALQ = floor(d * CALVALUE / 2^CAL_FRAC)
//
// d only ever has five significant bits: with mant = {e != 0, m},
//   sh == 0:  d = mant
//   sh >= 1:  d = {mant, 1} << (sh - 1)
// so d * CALVALUE is a 5 x 12-bit product shifted left by sh - 1, not a
// 21 x 12-bit multiplication (the synthesizer cannot see that by itself).
`timescale 1ns / 1ps
`default_nettype none

module econt_tc_calq #(
    parameter integer EXP_BITS  = 4,
    parameter integer MANT_BITS = 3,
    parameter integer DROP_BITS = 2,
    parameter integer CAL_BITS  = 12,
    parameter integer CAL_FRAC  = 11,
    parameter integer CALQ_BITS = 22
) (
    input  wire [EXP_BITS+MANT_BITS-1:0] word,
    input  wire [CAL_BITS-1:0]           cal,
    input  wire [DROP_BITS-1:0]          drop,
    output wire [CALQ_BITS-1:0]          calq
);
    localparam integer MAX_SH  = (1 << EXP_BITS) - 2 + (1 << DROP_BITS) - 1;  // 17
    localparam integer SH_BITS = $clog2(MAX_SH + 1);                           // 5
    localparam integer M_BITS  = MANT_BITS + 2;                                // 5: {mant, 1}
    localparam integer Q_BITS  = M_BITS + CAL_BITS;                            // 17: significand x CALVALUE
    localparam integer P_BITS  = Q_BITS + MAX_SH - 1;                          // 33: d x CALVALUE

    wire [EXP_BITS-1:0]  e    = word[EXP_BITS+MANT_BITS-1:MANT_BITS];
    wire [MANT_BITS-1:0] m    = word[MANT_BITS-1:0];
    wire                 e_nz = |e;
    wire [SH_BITS-1:0]   s    = e_nz ? SH_BITS'(e - 1'b1) : {SH_BITS{1'b0}};
    wire [SH_BITS-1:0]   sh   = s + SH_BITS'(drop);
    wire                 sh_nz = |sh;

    // significand and its shift: {mant, 1} << (sh - 1), or mant when sh == 0
    wire [M_BITS-1:0]    sig  = sh_nz ? {e_nz, m, 1'b1} : {1'b0, e_nz, m};
    wire [SH_BITS-1:0]   sh1  = sh_nz ? sh - 1'b1 : {SH_BITS{1'b0}};
    wire [Q_BITS-1:0]    q    = Q_BITS'(sig) * Q_BITS'(cal);
    // the low CAL_FRAC bits of d * CALVALUE are the discarded fraction; the
    // product has exactly CAL_FRAC + CALQ_BITS bits (d * cal < 2^33)
    /* verilator lint_off UNUSEDSIGNAL */
    wire [P_BITS-1:0]    p    = P_BITS'(q) << sh1;
    /* verilator lint_on UNUSEDSIGNAL */

    assign calq = p[CAL_FRAC +: CALQ_BITS];
endmodule

`default_nettype wire
