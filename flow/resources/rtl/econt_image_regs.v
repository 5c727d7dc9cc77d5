// A register image written through the configuration port, plain (TMR = 0)
// or triplicated (TMR = 1, the prog_tmr flavour: the bits held in an
// econt_reg with three copies, majority vote and refresh; err is high while
// the copies disagree; TMR = 0: err is 0).
//
// N_BITS register bits, written DATA_BITS at a time: a write with
// cfg_addr == BASE + j sets bits [DATA_BITS*j +: DATA_BITS] of the image
// (the last word may be partial; its extra data bits are ignored).
// cfg_rst (synchronous) loads DEFAULT.  Used for the CALVALUE registers, the
// drop setting and the encoder weight image (12864 bits for the ECON-T).
//
// Read-back: rdata is word cfg_addr - BASE of the image (combinational; the
// missing bits of a partial last word read 0), or 0 when cfg_addr is not one
// of this image's words.  The shell registers it on cfg_re.
//
// SEU injection hook (test builds, `define ECONT_SEU_INJECT): inj as in
// econt_reg, the image owning the global bit indices [OFFSET, OFFSET + N_BITS);
// it reaches the TMR copies only (TMR = 0 leaves inj unused: a plain image is
// upset through the configuration port, docs/rtl_cosim.md).
`timescale 1ns / 1ps
`default_nettype none

module econt_image_regs #(
    parameter integer        N_BITS    = 576,
    parameter integer        ADDR_BITS = 10,
    parameter integer        DATA_BITS = 32,
    parameter integer        BASE      = 0,
    parameter [N_BITS-1:0]   DEFAULT   = {N_BITS{1'b0}},
    parameter integer        TMR       = 0,
    /* verilator lint_off UNUSEDPARAM */
    parameter integer        OFFSET    = 0,      // global bit index of bit 0 (injection hook)
    parameter integer        INJ_BITS  = 16
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire                 clk,
`ifdef ECONT_SEU_INJECT
    /* verilator lint_off UNUSEDSIGNAL */        // TMR = 0: no hook
    input  wire [INJ_BITS+2:0]  inj,
    /* verilator lint_on UNUSEDSIGNAL */
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

    /* verilator lint_off UNUSEDSIGNAL */        // TMR = 0: the registers below decode their own
    wire [N_BITS-1:0] load, d;
    /* verilator lint_on UNUSEDSIGNAL */
    genvar j;
    generate
        for (j = 0; j < N_WORDS; j = j + 1) begin : word
            localparam integer LO = j * DATA_BITS;
            localparam integer W  = (N_BITS - LO < DATA_BITS) ? N_BITS - LO : DATA_BITS;
            localparam [ADDR_BITS-1:0] ADDR = ADDR_BITS'(BASE + j);
            wire we = cfg_we && (cfg_addr == ADDR);
            assign load[LO +: W] = {W{cfg_rst | we}};
            assign d[LO +: W]    = cfg_rst ? DEFAULT[LO +: W] : cfg_wdata[W-1:0];
            if (TMR == 0) begin : g_plain
                reg [W-1:0] r;
                always @(posedge clk) begin
                    if (cfg_rst)
                        r <= DEFAULT[LO +: W];
                    else if (we)
                        r <= cfg_wdata[W-1:0];
                end
                assign q[LO +: W] = r;
            end
        end
        if (TMR != 0) begin : g_tmr
            econt_reg #(.W(N_BITS), .TMR(1), .OFFSET(OFFSET), .INJ_BITS(INJ_BITS)) u_tmr (
                .clk(clk),
`ifdef ECONT_SEU_INJECT
                .inj(inj),
`endif
                .clr(1'b0), .load(load), .d(d), .q(q), .err(err));
        end else begin : g_noerr
            assign err = 1'b0;
        end
    endgenerate

    econt_image_read #(.N_BITS(N_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS), .BASE(BASE))
        u_read (.image(q), .addr(cfg_addr), .rdata(rdata));
endmodule

`default_nettype wire
