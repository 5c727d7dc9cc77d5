// The read-back multiplexer of a register image (econt_image_regs, plain or
// TMR): rdata = word addr - BASE of the image (a partial last word padded with
// zeros), 0 when addr is not one of its words.
`timescale 1ns / 1ps
`default_nettype none

module econt_image_read #(
    parameter integer N_BITS    = 576,
    parameter integer ADDR_BITS = 10,
    parameter integer DATA_BITS = 32,
    parameter integer BASE      = 0
) (
    input  wire [N_BITS-1:0]    image,
    input  wire [ADDR_BITS-1:0] addr,
    output wire [DATA_BITS-1:0] rdata
);
    localparam integer N_WORDS = (N_BITS + DATA_BITS - 1) / DATA_BITS;
    localparam integer PAD     = N_WORDS * DATA_BITS - N_BITS;

    wire [N_WORDS*DATA_BITS-1:0] padded;
    generate
        if (PAD > 0) begin : g_pad
            assign padded = {{PAD{1'b0}}, image};
        end else begin : g_nopad
            assign padded = image;
        end
    endgenerate
    // the offset wraps below BASE (unsigned): addresses outside the image match no word
    wire [ADDR_BITS-1:0] off = addr - ADDR_BITS'(BASE);
    // word select: an indexed part-select, a mux tree of depth log2(N_WORDS) (a sequential
    // OR over the words stayed an N_WORDS-long chain after synthesis)
    localparam integer SEL_BITS = $clog2(N_WORDS * DATA_BITS);     // a bit index of padded
    wire                 in_image = off < ADDR_BITS'(N_WORDS);
    wire [SEL_BITS-1:0]  lsb      = SEL_BITS'(off) * SEL_BITS'(DATA_BITS);
    wire [DATA_BITS-1:0] word     = padded[lsb +: DATA_BITS];
    assign rdata = in_image ? word : {DATA_BITS{1'b0}};
endmodule

`default_nettype wire
