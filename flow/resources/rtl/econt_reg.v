// econt_reg: a W-bit register of the block, plain (TMR = 0) or triplicated
// (TMR = 1, the prog_tmr flavour).  One module for both, so that the shell
// and the register images are written once.
//
// Every clock the register takes, bit by bit, d where load is high and keeps
// its value otherwise; clr (synchronous) clears it to 0 and wins over load.
//
// TMR = 1: three copies (econt_tmr_copy, kept in the hierarchy so that
// synthesis cannot merge them) with a bitwise majority voter; q is the voted
// value.  Each copy loads the next value computed from the voted one
// ("refresh"), so an upset in one copy is outvoted at once and overwritten at
// the next rising edge: upsets do not accumulate.  err is high while the
// copies disagree (a single upset: for one clock).  TMR = 0: one register,
// err is 0.
//
// SEU injection hook (test builds only, `define ECONT_SEU_INJECT): inj is
// {enable, copy (0..2), global bit index}.  At a rising edge with the enable
// high, the register bit with that global index (this register owns
// [OFFSET, OFFSET + W)) is stored inverted: in copy `copy` when TMR = 1; when
// TMR = 0 the copy field is ignored and an edge where clr is high flips
// nothing (a cleared register stays clear).  docs/rtl_cosim.md lists the map.
`timescale 1ns / 1ps
`default_nettype none

module econt_reg #(
    parameter integer W        = 1,
    parameter integer TMR      = 0,
    /* verilator lint_off UNUSEDPARAM */
    parameter integer OFFSET   = 0,     // first global bit index (injection hook)
    parameter integer INJ_BITS = 16
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire                clk,
`ifdef ECONT_SEU_INJECT
    /* verilator lint_off UNUSEDSIGNAL */   // TMR = 0: the copy field
    input  wire [INJ_BITS+2:0] inj,
    /* verilator lint_on UNUSEDSIGNAL */
`endif
    input  wire                clr,     // synchronous clear to 0 (over load)
    input  wire [W-1:0]        load,    // per bit: take d (else keep)
    input  wire [W-1:0]        d,
    output wire [W-1:0]        q,
    output wire                err      // TMR: the copies disagree (an upset being corrected)
);
    generate
        if (TMR != 0) begin : g_tmr
            wire [W-1:0] c0, c1, c2;
            wire [W-1:0] nxt = clr ? W'(1'b0) : (load & d) | (~load & q);
`ifdef ECONT_SEU_INJECT
    `define ECONT_REG_INJ .inj(inj),
`else
    `define ECONT_REG_INJ
`endif
            econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(0), .INJ_BITS(INJ_BITS)) u_c0 (
                .clk(clk), `ECONT_REG_INJ .d(nxt), .q(c0));
            econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(1), .INJ_BITS(INJ_BITS)) u_c1 (
                .clk(clk), `ECONT_REG_INJ .d(nxt), .q(c1));
            econt_tmr_copy #(.W(W), .OFFSET(OFFSET), .COPY(2), .INJ_BITS(INJ_BITS)) u_c2 (
                .clk(clk), `ECONT_REG_INJ .d(nxt), .q(c2));
`undef ECONT_REG_INJ
            assign q   = (c0 & c1) | (c0 & c2) | (c1 & c2);
            assign err = |((c0 ^ c1) | (c0 ^ c2));
        end else begin : g_plain
            reg [W-1:0] r;
`ifdef ECONT_SEU_INJECT
            // below OFFSET the difference wraps to >= 2^INJ_BITS > W: no bit of this register
            wire [INJ_BITS:0] rel  = {1'b0, inj[INJ_BITS-1:0]} - (INJ_BITS + 1)'(OFFSET);
            wire              hit  = inj[INJ_BITS+2] && !clr && (rel < (INJ_BITS + 1)'(W));
            wire [W-1:0]      flip = W'(hit) << rel;
            always @(posedge clk)
                if (clr) r <= W'(1'b0);
                else r <= ((load & d) | (~load & r)) ^ flip;
`else
            integer i;
            always @(posedge clk)
                if (clr) r <= W'(1'b0);
                else for (i = 0; i < W; i = i + 1)
                    if (load[i]) r[i] <= d[i];
`endif
            assign q   = r;
            assign err = 1'b0;
        end
    endgenerate
endmodule

`default_nettype wire
