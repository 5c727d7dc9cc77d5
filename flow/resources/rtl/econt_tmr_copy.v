// One copy of a triplicated register (econt_reg with TMR = 1): W flip-flops
// loading d every clock.  Kept in the hierarchy (keep_hierarchy) so that
// synthesis keeps three separate copies instead of merging registers with the
// same input.
//
// SEU injection hook (test builds only, `define ECONT_SEU_INJECT): inj is
// {enable, copy, global bit index}; at a rising edge with the enable high and
// copy == COPY, the bit with that global index (this register owns
// [OFFSET, OFFSET + W)) is stored inverted.
`timescale 1ns / 1ps
`default_nettype none

(* keep_hierarchy *)
module econt_tmr_copy #(
    parameter integer W        = 1,
    /* verilator lint_off UNUSEDPARAM */
    parameter integer OFFSET   = 0,     // first global bit index (injection hook)
    parameter integer COPY     = 0,     // which of the three copies (injection hook)
    parameter integer INJ_BITS = 16
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire                clk,
`ifdef ECONT_SEU_INJECT
    input  wire [INJ_BITS+2:0] inj,
`endif
    input  wire [W-1:0]        d,
    output reg  [W-1:0]        q
);
`ifdef ECONT_SEU_INJECT
    // below OFFSET the difference wraps to >= 2^INJ_BITS > W: no bit of this register
    wire [INJ_BITS:0] rel  = {1'b0, inj[INJ_BITS-1:0]} - (INJ_BITS + 1)'(OFFSET);
    wire              hit  = inj[INJ_BITS+2] && (inj[INJ_BITS+1:INJ_BITS] == 2'(COPY))
                             && (rel < (INJ_BITS + 1)'(W));
    wire [W-1:0]      flip = W'(hit) << rel;
    always @(posedge clk)
        q <= d ^ flip;
`else
    always @(posedge clk)
        q <= d;
`endif
endmodule

`default_nettype wire
