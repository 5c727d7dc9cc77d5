// ECON-T front end: trigger-cell words -> AEin (encoder input) and module sum.
//
// Hand-written, parameterised, shared by both encoder flavours (econt.md
// section 4; bit-exact to flow/frontend.py):
//
//   word (4E3M) --decode, drop, half-LSB--> d --x CALVALUE / 2^11--> CALQ (22 b)
//   CALQ --sum--> S --leading one, k = min(floor(log2 S), 21)--> AEin_t = (CALQ_t << 7) >> k
//   (< 256 always).  The shift saturates at CALQ_BITS - 1 = 21 as in the ASIC's
//   converter (econt.md section 4): module sums >= 2^22 are divided by 2^21.
//   S --5E4M float--> module sum (9 b)
//
// Purely combinational; the shell registers its outputs.
`timescale 1ns / 1ps
`default_nettype none

// ---------------------------------------------------------------- the block
module econt_frontend #(
    parameter integer N_TC          = 48,
    parameter integer EXP_BITS      = 4,
    parameter integer MANT_BITS     = 3,
    parameter integer DROP_BITS     = 2,
    parameter integer CAL_BITS      = 12,
    parameter integer CAL_FRAC      = 11,
    parameter integer CALQ_BITS     = 22,
    parameter integer AEIN_BITS     = 8,
    parameter integer AEIN_FRAC     = 7,
    parameter integer SUM_EXP_BITS  = 5,
    parameter integer SUM_MANT_BITS = 4
) (
    input  wire [N_TC*(EXP_BITS+MANT_BITS)-1:0] tc_words,   // TC t at [7t +: 7]
    input  wire [N_TC*CAL_BITS-1:0]             calvalues,  // TC t at [12t +: 12]
    input  wire [DROP_BITS-1:0]                 drop,
    output wire [N_TC*AEIN_BITS-1:0]            aein,       // TC t at [8t +: 8]
    output wire [SUM_EXP_BITS+SUM_MANT_BITS-1:0] module_sum
);
    localparam integer WB       = EXP_BITS + MANT_BITS;
    localparam integer S_BITS   = CALQ_BITS + $clog2(N_TC);          // 28: sum of 48 CALQ
    localparam integer BL_BITS  = $clog2(S_BITS + 1);                // bit length 0..28
    localparam integer X_BITS   = CALQ_BITS + AEIN_FRAC;             // CALQ << 7
    localparam integer SUM_BITS = SUM_EXP_BITS + SUM_MANT_BITS;
    localparam integer E_BITS   = BL_BITS;                           // exponent before saturation
    localparam integer K_MAX    = CALQ_BITS - 1;                     // 21: the shift saturates here
    localparam [SUM_BITS-1:0] SUM_MAX = {SUM_BITS{1'b1}};

    // ---- decode + calibrate every TC
    wire [N_TC*CALQ_BITS-1:0] calq;
    genvar t;
    generate
        for (t = 0; t < N_TC; t = t + 1) begin : tc
            econt_tc_calq #(
                .EXP_BITS(EXP_BITS), .MANT_BITS(MANT_BITS), .DROP_BITS(DROP_BITS),
                .CAL_BITS(CAL_BITS), .CAL_FRAC(CAL_FRAC), .CALQ_BITS(CALQ_BITS)
            ) u_calq (
                .word(tc_words[t*WB +: WB]),
                .cal (calvalues[t*CAL_BITS +: CAL_BITS]),
                .drop(drop),
                .calq(calq[t*CALQ_BITS +: CALQ_BITS])
            );
        end
    endgenerate

    // ---- module sum S and its bit length
    wire [S_BITS-1:0] s;
    econt_adder_tree #(.N(N_TC), .W_IN(CALQ_BITS), .W_OUT(S_BITS)) u_sum (.in(calq), .sum(s));

    function automatic [BL_BITS-1:0] bit_length(input [S_BITS-1:0] x);
        integer b;
        begin
            bit_length = {BL_BITS{1'b0}};
            for (b = 0; b < S_BITS; b = b + 1)
                if (x[b]) bit_length = BL_BITS'(b + 1);
        end
    endfunction

    wire [BL_BITS-1:0] bl = bit_length(s);
    // k = min(floor(log2 S), K_MAX) (0 for S == 0): the normalisation shift saturates
    // at K_MAX; the module-sum encoding below uses the uncapped bit length
    wire [BL_BITS-1:0] k  = (bl == {BL_BITS{1'b0}}) ? {BL_BITS{1'b0}} :
                            (bl > BL_BITS'(K_MAX + 1)) ? BL_BITS'(K_MAX) : bl - 1'b1;

    // ---- normalisation: AEin_t = (CALQ_t << AEIN_FRAC) >> k.  The golden model's
    // saturation at 255 can never act: CALQ_t <= S < 2^(k+1) below the cap and
    // CALQ_t < 2^CALQ_BITS = 2^(K_MAX+1) at it, so the result is below
    // 2^(AEIN_FRAC+1) = 2^AEIN_BITS; only the AEIN_BITS-wide window of
    // {CALQ_t, 0000000} starting at bit k is needed.
    generate
        for (t = 0; t < N_TC; t = t + 1) begin : norm
            // bits above the window are zero by the argument above
            /* verilator lint_off UNUSEDSIGNAL */
            wire [X_BITS-1:0] x = {calq[t*CALQ_BITS +: CALQ_BITS], {AEIN_FRAC{1'b0}}} >> k;
            /* verilator lint_on UNUSEDSIGNAL */
            assign aein[t*AEIN_BITS +: AEIN_BITS] = x[AEIN_BITS-1:0];
        end
    endgenerate

    // ---- module sum as a 5E4M float: S < 16: S; else e = bl - 4, m = the 4 bits
    // after the leading one (truncated); e > 31 saturates to all ones
    localparam integer E_MAX = (1 << SUM_EXP_BITS) - 1;
    wire               is_small = (bl <= BL_BITS'(SUM_MANT_BITS));
    wire [E_BITS-1:0]  e        = bl - E_BITS'(SUM_MANT_BITS);
    // only the low SUM_EXP_BITS of e and the low SUM_MANT_BITS of s_sh reach the output
    /* verilator lint_off UNUSEDSIGNAL */
    wire [S_BITS-1:0]  s_sh     = s >> (e - 1'b1);
    /* verilator lint_on UNUSEDSIGNAL */
    wire [SUM_BITS-1:0] code    = {e[SUM_EXP_BITS-1:0], s_sh[SUM_MANT_BITS-1:0]};
    generate
        if (S_BITS - SUM_MANT_BITS > E_MAX) begin : g_sat
            wire sat = (e > E_BITS'(E_MAX));
            assign module_sum = is_small ? s[SUM_BITS-1:0] : sat ? SUM_MAX : code;
        end else begin : g_nosat
            // the exponent cannot exceed E_MAX for S_BITS-bit sums
            assign module_sum = is_small ? s[SUM_BITS-1:0] : code;
        end
    endgenerate
endmodule

`default_nettype wire
