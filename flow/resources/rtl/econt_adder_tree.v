// Balanced adder tree (ECON-T front end module sum).
`timescale 1ns / 1ps
`default_nettype none

// ------------------------------------------------------- balanced adder tree
// Sum of N unsigned W_IN-bit values, pairwise per level (depth ceil(log2 N)).
module econt_adder_tree #(
    parameter integer N     = 48,
    parameter integer W_IN  = 22,
    parameter integer W_OUT = 28
) (
    input  wire [N*W_IN-1:0] in,
    output wire [W_OUT-1:0]  sum
);
    function automatic integer count_at(input integer level);
        integer k, n;
        begin
            n = N;
            for (k = 0; k < level; k = k + 1) n = (n + 1) / 2;
            count_at = n;
        end
    endfunction

    localparam integer LEVELS = (N > 1) ? $clog2(N) : 0;

    genvar l, i;
    generate
        for (l = 0; l <= LEVELS; l = l + 1) begin : lvl
            wire [count_at(l)*W_OUT-1:0] v;
            for (i = 0; i < count_at(l); i = i + 1) begin : node
                if (l == 0) begin : leaf
                    assign v[i*W_OUT +: W_OUT] = W_OUT'(in[i*W_IN +: W_IN]);
                end else if (2 * i + 1 < count_at(l - 1)) begin : add
                    assign v[i*W_OUT +: W_OUT] = lvl[l-1].v[2*i*W_OUT +: W_OUT]
                                               + lvl[l-1].v[(2*i+1)*W_OUT +: W_OUT];
                end else begin : pass
                    assign v[i*W_OUT +: W_OUT] = lvl[l-1].v[2*i*W_OUT +: W_OUT];
                end
            end
        end
    endgenerate

    assign sum = lvl[LEVELS].v[W_OUT-1:0];
endmodule

`default_nettype wire
