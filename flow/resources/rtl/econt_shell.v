// ECON-T autoencoder block shell: everything except the encoder itself, plain
// (TMR = 0) or with triple modular redundancy (TMR = 1, the prog_tmr flavour).
//
// * configuration registers (CALVALUE x 48, drop) behind the address/data
//   configuration port (see docs/rtl_cosim.md for the address map);
// * the front end (econt_frontend);
// * the pipeline: valid_in and the wafer are sampled at a rising edge;
//   with FE_REG = 1 the front-end result is registered (stage 1) and the
//   encoder output is registered one clock later (stage 2): latency 2
//   clocks, one new wafer every clock (II = 1).  FE_REG = 0 leaves only the
//   output register (latency 1).
// * rst (synchronous, active high) clears the valid pipeline and the output
//   registers; it does not touch the configuration registers.  cfg_rst
//   (synchronous, active high) loads the configuration defaults.
// * configuration read-back: at a rising edge where cfg_re is sampled high,
//   cfg_rdata takes the word at cfg_addr (CALVALUE image, drop, or ext_rdata,
//   the flavour's own registers, e.g. the weight image; 0 at unmapped
//   addresses) and holds it until the next read; rst clears it.
//
// Every register of the configuration and of the pipeline is an econt_reg
// (or an econt_image_regs): with TMR = 1 three copies, majority vote, refresh
// with the voted value every clock.  seu_count (TMR = 1) counts the clocks in
// which some copy of a TMR register (these, and the flavour's own, reported on
// ext_err) disagreed with the others, i.e. the corrected upsets (a single
// upset is corrected in one clock and counts once); saturates at all ones; rst
// clears it.  The counter and the read-back register cfg_rdata are not
// triplicated.  After power-up hold rst for two clocks: the first clock makes
// the copies agree, the second clears the count.  TMR = 0: seu_count is 0 and
// ext_err is unused.
//
// The encoder sits between enc_aein (this shell's output) and enc_latent
// (its input) and must be combinational.
//
// SEU injection hook (test builds only, `define ECONT_SEU_INJECT): inj is
// {enable, copy (0..2), global bit index} (econt_reg).  Global bit indices from
// INJ_BASE on: CALVALUE image, drop, stage-1 valid, stage-1 data
// {module sum, AEin}, valid_out, {module_sum, latent} (docs/rtl_cosim.md).
// With TMR = 1 the hook reaches one copy of any of them; with TMR = 0 the
// pipeline registers only (the configuration registers are upset through the
// configuration port) and not while rst clears them.
`timescale 1ns / 1ps
`default_nettype none

module econt_shell #(
    parameter integer N_TC          = 48,
    parameter integer WORD_BITS     = 7,
    parameter integer CAL_BITS      = 12,
    parameter integer DROP_BITS     = 2,
    parameter integer AEIN_BITS     = 8,
    parameter integer SUM_BITS      = 9,
    parameter integer N_LATENT      = 16,
    parameter integer LATENT_BITS   = 9,
    parameter integer ADDR_BITS     = 10,
    parameter integer DATA_BITS     = 32,
    parameter integer CAL_BASE      = 512,
    parameter integer DROP_ADDR     = 544,
    parameter integer FE_REG        = 1,
    parameter integer TMR           = 0,
    parameter integer SEU_BITS      = 16,
    parameter integer INJ_BASE      = 12864,   // hook: global index of CALVALUE bit 0
    parameter integer INJ_BITS      = 16,
    parameter [N_TC*CAL_BITS-1:0] CAL_DEFAULT  = {N_TC{12'd2048}},
    parameter [DROP_BITS-1:0]     DROP_DEFAULT = 2'd3
) (
    input  wire                          clk,
    input  wire                          rst,
`ifdef ECONT_SEU_INJECT
    input  wire [INJ_BITS+2:0]           inj,         // {enable, copy, global bit index}
`endif
    // configuration port
    input  wire                          cfg_rst,
    input  wire                          cfg_we,
    input  wire [ADDR_BITS-1:0]          cfg_addr,
    input  wire [DATA_BITS-1:0]          cfg_wdata,
    input  wire                          cfg_re,
    input  wire [DATA_BITS-1:0]          ext_rdata,   // the flavour's registers at cfg_addr (or 0)
    output reg  [DATA_BITS-1:0]          cfg_rdata,
    /* verilator lint_off UNUSEDSIGNAL */           // TMR = 0
    input  wire                          ext_err,     // the flavour's TMR registers disagree
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [SEU_BITS-1:0]           seu_count,
    // data in: one wafer per clock
    input  wire                          valid_in,
    input  wire [N_TC*WORD_BITS-1:0]     tc_words,
    // data out
    output wire                          valid_out,
    output wire [N_LATENT*LATENT_BITS-1:0] latent,
    output wire [SUM_BITS-1:0]           module_sum,
    // to / from the encoder (combinational)
    output wire [N_TC*AEIN_BITS-1:0]     enc_aein,
    input  wire [N_LATENT*LATENT_BITS-1:0] enc_latent
);
    localparam integer CAL_N   = N_TC * CAL_BITS;
    localparam integer S1_W    = N_TC * AEIN_BITS + SUM_BITS;
    localparam integer OUT_W   = N_LATENT * LATENT_BITS + SUM_BITS;
    localparam integer OFF_CAL = INJ_BASE;
    localparam integer OFF_DRP = OFF_CAL + CAL_N;
    localparam integer OFF_S1V = OFF_DRP + DROP_BITS;
    localparam integer OFF_S1D = OFF_S1V + 1;
    localparam integer OFF_OV  = OFF_S1D + S1_W;
    localparam integer OFF_OD  = OFF_OV + 1;
`ifdef ECONT_SEU_INJECT
    `define ECONT_SHELL_INJ .inj(inj),
`else
    `define ECONT_SHELL_INJ
`endif

    // ---- configuration registers
    wire [CAL_N-1:0]     calvalues;
    wire [DROP_BITS-1:0] drop;
    wire [DATA_BITS-1:0] cal_rdata, drop_rdata;
    /* verilator lint_off UNUSEDSIGNAL */           // the TMR copies disagree (TMR = 0: unused)
    wire                 cal_err, drop_err, s1_err, ov_err, od_err;
    /* verilator lint_on UNUSEDSIGNAL */
    econt_image_regs #(
        .N_BITS(CAL_N), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS), .BASE(CAL_BASE),
        .DEFAULT(CAL_DEFAULT), .TMR(TMR), .OFFSET(OFF_CAL), .INJ_BITS(INJ_BITS)
    ) u_cal (
        .clk(clk), `ECONT_SHELL_INJ .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(calvalues), .rdata(cal_rdata), .err(cal_err)
    );
    econt_image_regs #(
        .N_BITS(DROP_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS), .BASE(DROP_ADDR),
        .DEFAULT(DROP_DEFAULT), .TMR(TMR), .OFFSET(OFF_DRP), .INJ_BITS(INJ_BITS)
    ) u_drop (
        .clk(clk), `ECONT_SHELL_INJ .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(drop), .rdata(drop_rdata), .err(drop_err)
    );
    always @(posedge clk) begin
        if (rst)
            cfg_rdata <= {DATA_BITS{1'b0}};
        else if (cfg_re)
            cfg_rdata <= cal_rdata | drop_rdata | ext_rdata;
    end

    // ---- front end
    wire [N_TC*AEIN_BITS-1:0] fe_aein;
    wire [SUM_BITS-1:0]       fe_sum;
    econt_frontend #(.N_TC(N_TC), .CAL_BITS(CAL_BITS), .DROP_BITS(DROP_BITS),
                     .AEIN_BITS(AEIN_BITS)) u_fe (
        .tc_words(tc_words), .calvalues(calvalues), .drop(drop),
        .aein(fe_aein), .module_sum(fe_sum)
    );

    // ---- stage 1 (optional): front-end result
    wire                s1_valid;
    wire [SUM_BITS-1:0] s1_sum;
    generate
        if (FE_REG != 0) begin : g_s1
            wire            v_err, d_err;
            wire [S1_W-1:0] s1_q;
            // valid: cleared by rst, else valid_in
            econt_reg #(.W(1), .TMR(TMR), .OFFSET(OFF_S1V), .INJ_BITS(INJ_BITS)) u_v (
                .clk(clk), `ECONT_SHELL_INJ .clr(rst), .load(1'b1), .d(valid_in), .q(s1_valid),
                .err(v_err));
            // data: loaded with a wafer, held otherwise (not cleared by rst)
            econt_reg #(.W(S1_W), .TMR(TMR), .OFFSET(OFF_S1D), .INJ_BITS(INJ_BITS)) u_d (
                .clk(clk), `ECONT_SHELL_INJ .clr(1'b0), .load({S1_W{valid_in}}), .d({fe_sum, fe_aein}),
                .q(s1_q), .err(d_err));
            assign enc_aein = s1_q[N_TC*AEIN_BITS-1:0];
            assign s1_sum   = s1_q[S1_W-1:N_TC*AEIN_BITS];
            assign s1_err   = v_err | d_err;
        end else begin : g_s0
            assign s1_valid = valid_in;
            assign enc_aein = fe_aein;
            assign s1_sum   = fe_sum;
            assign s1_err   = 1'b0;
        end
    endgenerate

    // ---- stage 2: encoder output (cleared by rst)
    wire [OUT_W-1:0] out_q;
    econt_reg #(.W(1), .TMR(TMR), .OFFSET(OFF_OV), .INJ_BITS(INJ_BITS)) u_ov (
        .clk(clk), `ECONT_SHELL_INJ .clr(rst), .load(1'b1), .d(s1_valid), .q(valid_out), .err(ov_err));
    econt_reg #(.W(OUT_W), .TMR(TMR), .OFFSET(OFF_OD), .INJ_BITS(INJ_BITS)) u_od (
        .clk(clk), `ECONT_SHELL_INJ .clr(rst), .load({OUT_W{s1_valid}}), .d({s1_sum, enc_latent}),
        .q(out_q), .err(od_err));
    assign latent     = out_q[N_LATENT*LATENT_BITS-1:0];
    assign module_sum = out_q[OUT_W-1:N_LATENT*LATENT_BITS];
`undef ECONT_SHELL_INJ

    // ---- corrected-upset counter (TMR only; not triplicated)
    generate
        if (TMR != 0) begin : g_count
            wire any_err = cal_err | drop_err | s1_err | ov_err | od_err | ext_err;
            reg [SEU_BITS-1:0] count;
            always @(posedge clk) begin
                if (rst)
                    count <= {SEU_BITS{1'b0}};
                else if (any_err && count != {SEU_BITS{1'b1}})
                    count <= count + 1'b1;
            end
            assign seu_count = count;
        end else begin : g_nocount
            assign seu_count = {SEU_BITS{1'b0}};
        end
    endgenerate
endmodule

`default_nettype wire
