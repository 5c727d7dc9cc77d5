// ECON-T autoencoder block shell: everything except the encoder itself.
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
// The encoder sits between enc_aein (this shell's output) and enc_latent
// (its input) and must be combinational.
//
// SEU injection hook (test builds only, `define ECONT_SEU_INJECT): at a rising
// edge with inj_en high and rst low, the pipeline register bit with global
// index inj_bit is stored inverted.  The pipeline registers own the indices
// of the TMR shell's map from INJ_BASE on (docs/rtl_cosim.md): stage-1 valid,
// stage-1 data {module sum, AEin}, valid_out, {module_sum, latent}; the
// indices of the configuration registers below them flip nothing here (the
// SEU campaign reaches those through the configuration port).  Without the
// macro the registers are exactly the plain ones (the `else branches).
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
    /* verilator lint_off UNUSEDPARAM */
    parameter integer INJ_BASE      = 12864,   // hook: global index of CALVALUE bit 0
    parameter integer INJ_BITS      = 16,
    /* verilator lint_on UNUSEDPARAM */
    parameter [N_TC*CAL_BITS-1:0] CAL_DEFAULT  = {N_TC{12'd2048}},
    parameter [DROP_BITS-1:0]     DROP_DEFAULT = 2'd3
) (
    input  wire                          clk,
    input  wire                          rst,
`ifdef ECONT_SEU_INJECT
    input  wire                          inj_en,
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
    // data in: one wafer per clock
    input  wire                          valid_in,
    input  wire [N_TC*WORD_BITS-1:0]     tc_words,
    // data out
    output reg                           valid_out,
    output reg  [N_LATENT*LATENT_BITS-1:0] latent,
    output reg  [SUM_BITS-1:0]           module_sum,
    // to / from the encoder (combinational)
    output wire [N_TC*AEIN_BITS-1:0]     enc_aein,
    input  wire [N_LATENT*LATENT_BITS-1:0] enc_latent
);
`ifdef ECONT_SEU_INJECT
    // ---- SEU injection hook: the flip masks of the pipeline registers
    localparam integer S1_W    = N_TC * AEIN_BITS + SUM_BITS;
    localparam integer OUT_W   = N_LATENT * LATENT_BITS + SUM_BITS;
    localparam integer OFF_S1V = INJ_BASE + N_TC * CAL_BITS + DROP_BITS;
    localparam integer OFF_S1D = OFF_S1V + 1;
    localparam integer OFF_OV  = OFF_S1D + S1_W;
    localparam integer OFF_OD  = OFF_OV + 1;
    // index relative to a register's first bit (below it the difference wraps to >= 2^INJ_BITS)
    wire [INJ_BITS:0] rel_s1d  = {1'b0, inj_bit} - (INJ_BITS + 1)'(OFF_S1D);
    wire [INJ_BITS:0] rel_od   = {1'b0, inj_bit} - (INJ_BITS + 1)'(OFF_OD);
    wire              on       = inj_en && !rst;
    /* verilator lint_off UNUSEDSIGNAL */      // FE_REG = 0: no stage-1 registers
    wire              s1v_flip = on && ({1'b0, inj_bit} == (INJ_BITS + 1)'(OFF_S1V));
    wire [S1_W-1:0]   s1d_flip = S1_W'(on && (rel_s1d < (INJ_BITS + 1)'(S1_W))) << rel_s1d;
    /* verilator lint_on UNUSEDSIGNAL */
    wire              ov_flip  = on && ({1'b0, inj_bit} == (INJ_BITS + 1)'(OFF_OV));
    wire [OUT_W-1:0]  od_flip  = OUT_W'(on && (rel_od < (INJ_BITS + 1)'(OUT_W))) << rel_od;
`endif

    // ---- configuration registers
    wire [N_TC*CAL_BITS-1:0] calvalues;
    wire [DROP_BITS-1:0]     drop;
    wire [DATA_BITS-1:0]     cal_rdata, drop_rdata;
    econt_image_regs #(
        .N_BITS(N_TC * CAL_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS),
        .BASE(CAL_BASE), .DEFAULT(CAL_DEFAULT)
    ) u_cal (
        .clk(clk), .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(calvalues), .rdata(cal_rdata)
    );
    econt_image_regs #(
        .N_BITS(DROP_BITS), .ADDR_BITS(ADDR_BITS), .DATA_BITS(DATA_BITS),
        .BASE(DROP_ADDR), .DEFAULT(DROP_DEFAULT)
    ) u_drop (
        .clk(clk), .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(drop), .rdata(drop_rdata)
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
            reg                       v;
            reg [N_TC*AEIN_BITS-1:0]  aein_q;
            reg [SUM_BITS-1:0]        sum_q;
`ifdef ECONT_SEU_INJECT
            always @(posedge clk) begin
                if (rst) v <= 1'b0;
                else     v <= valid_in ^ s1v_flip;
                if (valid_in)
                    {sum_q, aein_q} <= {fe_sum, fe_aein} ^ s1d_flip;
                else                                    // the held wafer (flipped or not)
                    {sum_q, aein_q} <= {sum_q, aein_q} ^ s1d_flip;
            end
`else
            always @(posedge clk) begin
                if (rst) v <= 1'b0;
                else     v <= valid_in;
                if (valid_in) begin
                    aein_q <= fe_aein;
                    sum_q  <= fe_sum;
                end
            end
`endif
            assign s1_valid = v;
            assign enc_aein = aein_q;
            assign s1_sum   = sum_q;
        end else begin : g_s0
            assign s1_valid = valid_in;
            assign enc_aein = fe_aein;
            assign s1_sum   = fe_sum;
        end
    endgenerate

    // ---- stage 2: encoder output
    always @(posedge clk) begin
        if (rst) begin
            valid_out  <= 1'b0;
            latent     <= {(N_LATENT * LATENT_BITS){1'b0}};
            module_sum <= {SUM_BITS{1'b0}};
        end else begin
`ifdef ECONT_SEU_INJECT
            valid_out <= s1_valid ^ ov_flip;
            if (s1_valid)
                {module_sum, latent} <= {s1_sum, enc_latent} ^ od_flip;
            else                                        // the held output (flipped or not)
                {module_sum, latent} <= {module_sum, latent} ^ od_flip;
`else
            valid_out <= s1_valid;
            if (s1_valid) begin
                latent     <= enc_latent;
                module_sum <= s1_sum;
            end
`endif
        end
    end
endmodule

`default_nettype wire
