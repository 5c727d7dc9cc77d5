// A register image written through the configuration port.
//
// N_BITS register bits, written DATA_BITS at a time: a write with
// cfg_addr == BASE + j sets bits [DATA_BITS*j +: DATA_BITS] of the image
// (the last word may be partial; its extra data bits are ignored).
// cfg_rst (synchronous) loads DEFAULT.  Used for the CALVALUE registers, the
// drop setting and the 12864-bit encoder weight image.
//
// Read-back: rdata is word cfg_addr - BASE of the image (combinational; the
// missing bits of a partial last word read 0), or 0 when cfg_addr is not one
// of this image's words.  The shell registers it on cfg_re.
`timescale 1ns / 1ps
`default_nettype none

module econt_image_regs #(
    parameter integer        N_BITS    = 576,
    parameter integer        ADDR_BITS = 10,
    parameter integer        DATA_BITS = 32,
    parameter integer        BASE      = 0,
    parameter [N_BITS-1:0]   DEFAULT   = {N_BITS{1'b0}}
) (
    input  wire                 clk,
    input  wire                 cfg_rst,
    input  wire                 cfg_we,
    input  wire [ADDR_BITS-1:0] cfg_addr,
    // a partial last word (or a register narrower than DATA_BITS) ignores the extra data bits
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [DATA_BITS-1:0] cfg_wdata,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [N_BITS-1:0]    q,
    output wire [DATA_BITS-1:0] rdata
);
    localparam integer N_WORDS = (N_BITS + DATA_BITS - 1) / DATA_BITS;

    genvar j;
    generate
        for (j = 0; j < N_WORDS; j = j + 1) begin : word
            localparam integer LO = j * DATA_BITS;
            localparam integer W  = (N_BITS - LO < DATA_BITS) ? N_BITS - LO : DATA_BITS;
            localparam [ADDR_BITS-1:0] ADDR = ADDR_BITS'(BASE + j);
            reg [W-1:0] r;
            always @(posedge clk) begin
                if (cfg_rst)
                    r <= DEFAULT[LO +: W];
                else if (cfg_we && cfg_addr == ADDR)
                    r <= cfg_wdata[W-1:0];
            end
            assign q[LO +: W] = r;
        end
    endgenerate

    econt_image_read #(.N_BITS(N_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS), .BASE(BASE))
        u_read (.image(q), .addr(cfg_addr), .rdata(rdata));
endmodule

`default_nettype wire
