// ECON-T block shell with triple modular redundancy (prog_tmr flavour).
//
// The same function, ports and timing as econt_shell (configuration
// registers, front end, pipeline, read-back), with every register of the
// configuration (CALVALUE x 48, drop) and of the pipeline (valid bits,
// front-end result, outputs) an econt_tmr_reg: three copies, majority vote,
// refreshed with the voted value every clock.
//
// seu_count counts the clocks in which some copy of a TMR register (these,
// and the flavour's own, reported on ext_err) disagreed with the others, i.e.
// the corrected upsets (a single upset is corrected in one clock and counts
// once); saturates at all ones; rst clears it.  The counter and the read-back
// register cfg_rdata are not triplicated.  After power-up hold rst for two
// clocks: the first clock makes the copies agree, the second clears the count.
//
// Injection hook (test builds, `define ECONT_SEU_INJECT): global bit indices
// from INJ_BASE on: CALVALUE image, drop, stage-1 valid, stage-1 data
// {module sum, AEin}, valid_out, {module_sum, latent} (docs/rtl_cosim.md).
`timescale 1ns / 1ps
`default_nettype none

module econt_shell_tmr #(
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
    parameter integer SEU_BITS      = 16,
    parameter integer INJ_BASE      = 12864,
    parameter integer INJ_BITS      = 16,
    parameter [N_TC*CAL_BITS-1:0] CAL_DEFAULT  = {N_TC{12'd2048}},
    parameter [DROP_BITS-1:0]     DROP_DEFAULT = 2'd3
) (
    input  wire                          clk,
    input  wire                          rst,
`ifdef ECONT_SEU_INJECT
    input  wire                          inj_en,
    input  wire [1:0]                    inj_copy,
    input  wire [INJ_BITS-1:0]           inj_bit,
`endif
    // configuration port
    input  wire                          cfg_rst,
    input  wire                          cfg_we,
    input  wire [ADDR_BITS-1:0]          cfg_addr,
    input  wire [DATA_BITS-1:0]          cfg_wdata,
    input  wire                          cfg_re,
    input  wire [DATA_BITS-1:0]          ext_rdata,   // the flavour's registers at cfg_addr (or 0)
    output reg  [DATA_BITS-1:0]          cfg_rdata,
    input  wire                          ext_err,     // the flavour's TMR registers disagree
    output reg  [SEU_BITS-1:0]           seu_count,
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
    `define ECONT_SHELL_INJ .inj_en(inj_en), .inj_copy(inj_copy), .inj_bit(inj_bit),
`else
    `define ECONT_SHELL_INJ
`endif

    // ---- configuration registers
    wire [CAL_N-1:0]     calvalues;
    wire [DROP_BITS-1:0] drop;
    wire [DATA_BITS-1:0] cal_rdata, drop_rdata;
    wire                 cal_err, drop_err;
    econt_image_regs_tmr #(
        .N_BITS(CAL_N), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS),
        .BASE(CAL_BASE), .DEFAULT(CAL_DEFAULT), .OFFSET(OFF_CAL), .INJ_BITS(INJ_BITS)
    ) u_cal (
        .clk(clk), `ECONT_SHELL_INJ .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(calvalues), .rdata(cal_rdata), .err(cal_err)
    );
    econt_image_regs_tmr #(
        .N_BITS(DROP_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS),
        .BASE(DROP_ADDR), .DEFAULT(DROP_DEFAULT), .OFFSET(OFF_DRP), .INJ_BITS(INJ_BITS)
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
    wire                s1_err;
    generate
        if (FE_REG != 0) begin : g_s1
            wire       v_err, d_err;
            wire [S1_W-1:0] s1_q;
            // valid: cleared by rst, else valid_in (loaded every clock)
            econt_tmr_reg #(.W(1), .OFFSET(OFF_S1V), .INJ_BITS(INJ_BITS)) u_v (
                .clk(clk), `ECONT_SHELL_INJ .load(1'b1), .d(valid_in & ~rst), .q(s1_valid), .err(v_err));
            // data: loaded with a wafer, held (refreshed) otherwise
            econt_tmr_reg #(.W(S1_W), .OFFSET(OFF_S1D), .INJ_BITS(INJ_BITS)) u_d (
                .clk(clk), `ECONT_SHELL_INJ .load({S1_W{valid_in}}), .d({fe_sum, fe_aein}), .q(s1_q),
                .err(d_err));
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
    wire             ov_err, od_err;
    wire [OUT_W-1:0] out_q;
    econt_tmr_reg #(.W(1), .OFFSET(OFF_OV), .INJ_BITS(INJ_BITS)) u_ov (
        .clk(clk), `ECONT_SHELL_INJ .load(1'b1), .d(s1_valid & ~rst), .q(valid_out), .err(ov_err));
    econt_tmr_reg #(.W(OUT_W), .OFFSET(OFF_OD), .INJ_BITS(INJ_BITS)) u_od (
        .clk(clk), `ECONT_SHELL_INJ .load({OUT_W{rst | s1_valid}}),
        .d(rst ? {OUT_W{1'b0}} : {s1_sum, enc_latent}), .q(out_q), .err(od_err));
    assign latent     = out_q[N_LATENT*LATENT_BITS-1:0];
    assign module_sum = out_q[OUT_W-1:N_LATENT*LATENT_BITS];
`undef ECONT_SHELL_INJ

    // ---- corrected-upset counter (not triplicated)
    wire any_err = cal_err | drop_err | s1_err | ov_err | od_err | ext_err;
    always @(posedge clk) begin
        if (rst)
            seu_count <= {SEU_BITS{1'b0}};
        else if (any_err && seu_count != {SEU_BITS{1'b1}})
            seu_count <= seu_count + 1'b1;
    end
endmodule

`default_nettype wire
