// ReLU, round to nearest with ties to even (QKeras/ap_fixed RND_CONV) and
// saturate: a signed accumulator with SHIFT more fraction bits than the
// unsigned W_OUT-bit result.  y = min(2^W_OUT - 1, rnd_conv(max(acc, 0) / 2^SHIFT)).
`timescale 1ns / 1ps
`default_nettype none

module econt_qrelu #(
    parameter integer W_IN  = 20,
    parameter integer SHIFT = 5,
    parameter integer W_OUT = 8
) (
    input  wire signed [W_IN-1:0] acc,
    output wire        [W_OUT-1:0] y
);
    localparam integer WQ = W_IN - SHIFT;            // integer part incl. the sign bit
    localparam [W_OUT-1:0] Y_MAX = {W_OUT{1'b1}};

    wire            neg = acc[W_IN-1];
    wire [WQ-1:0]   q   = acc[W_IN-1:SHIFT];         // floor(acc / 2^SHIFT), non-negative when !neg
    generate
        if (SHIFT > 0) begin : g_round
            wire [SHIFT-1:0] rem  = acc[SHIFT-1:0];
            wire [SHIFT-1:0] half = {1'b1, {(SHIFT - 1){1'b0}}};
            wire             up   = (rem > half) || (rem == half && q[0]);
            wire [WQ:0]      r    = {1'b0, q} + {{WQ{1'b0}}, up};   // rounded, >= 0 when !neg
            wire             over = |r[WQ:W_OUT];
            assign y = neg ? {W_OUT{1'b0}} : over ? Y_MAX : r[W_OUT-1:0];
        end else begin : g_exact
            wire over = |q[WQ-1:W_OUT];
            assign y = neg ? {W_OUT{1'b0}} : over ? Y_MAX : q[W_OUT-1:0];
        end
    endgenerate
endmodule

`default_nettype wire
