// econt_image_regs with triple modular redundancy (prog_tmr flavour): the same
// write port, defaults and read-back (the voted image), the bits held in an
// econt_tmr_reg (three copies, majority vote, refreshed every clock); err is
// high while the copies disagree.
`timescale 1ns / 1ps
`default_nettype none

module econt_image_regs_tmr #(
    parameter integer        N_BITS    = 576,
    parameter integer        ADDR_BITS = 10,
    parameter integer        DATA_BITS = 32,
    parameter integer        BASE      = 0,
    parameter [N_BITS-1:0]   DEFAULT   = {N_BITS{1'b0}},
    parameter integer        OFFSET    = 0,      // global bit index of bit 0 (injection hook)
    parameter integer        INJ_BITS  = 16
) (
    input  wire                 clk,
`ifdef ECONT_SEU_INJECT
    input  wire                 inj_en,
    input  wire [1:0]           inj_copy,
    input  wire [INJ_BITS-1:0]  inj_bit,
`endif
    input  wire                 cfg_rst,
    input  wire                 cfg_we,
    input  wire [ADDR_BITS-1:0] cfg_addr,
    // a partial last word (or a register narrower than DATA_BITS) ignores the extra data bits
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [DATA_BITS-1:0] cfg_wdata,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [N_BITS-1:0]    q,
    output wire [DATA_BITS-1:0] rdata,
    output wire                 err
);
    localparam integer N_WORDS = (N_BITS + DATA_BITS - 1) / DATA_BITS;

    wire [N_BITS-1:0] load, d;
    genvar j;
    generate
        for (j = 0; j < N_WORDS; j = j + 1) begin : word
            localparam integer LO = j * DATA_BITS;
            localparam integer W  = (N_BITS - LO < DATA_BITS) ? N_BITS - LO : DATA_BITS;
            localparam [ADDR_BITS-1:0] ADDR = ADDR_BITS'(BASE + j);
            wire we = cfg_we && (cfg_addr == ADDR);
            assign load[LO +: W] = {W{cfg_rst | we}};
            assign d[LO +: W]    = cfg_rst ? DEFAULT[LO +: W] : cfg_wdata[W-1:0];
        end
    endgenerate

    econt_tmr_reg #(.W(N_BITS), .OFFSET(OFFSET), .INJ_BITS(INJ_BITS)) u_tmr (
        .clk(clk),
`ifdef ECONT_SEU_INJECT
        .inj_en(inj_en), .inj_copy(inj_copy), .inj_bit(inj_bit),
`endif
        .load(load), .d(d), .q(q), .err(err));

    econt_image_read #(.N_BITS(N_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS), .BASE(BASE))
        u_read (.image(q), .addr(cfg_addr), .rdata(rdata));
endmodule

`default_nettype wire
