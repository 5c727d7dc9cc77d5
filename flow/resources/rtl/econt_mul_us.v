// Unsigned x signed multiplier of the programmable encoder: p = x * w with x
// an unsigned activation code and w a two's complement weight code; p is
// two's complement, WX + WW + 1 bits (exact).  A module of its own, kept in
// the hierarchy (keep_hierarchy), so that synthesis maps the multiplier once
// and counts it per instance instead of optimising 2728 flattened copies.
`timescale 1ns / 1ps
`default_nettype none

(* keep_hierarchy *)
module econt_mul_us #(
    parameter integer WX = 8,
    parameter integer WW = 6
) (
    input  wire [WX-1:0]    x,
    input  wire [WW-1:0]    w,
    output wire [WX+WW:0]   p
);
    wire signed [WX+WW:0] ps = $signed({1'b0, x}) * $signed(w);
    assign p = ps;
endmodule

`default_nettype wire
