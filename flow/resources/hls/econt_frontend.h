// ECON-T front end, bit-exact (econt.md section 4; Python reference: flow/frontend.py).
//
//   48 x 7-bit TC words (4E3M) --decode, << drop, + half LSB--> charge (21 b)
//     --x CALVALUE / 2^11--> CALQ (22 b) --normalise, k = min(floor(log2 S), 21)--> AEin codes
//                                                                       (ufixed<8,1>, 8 b)
//                                        \--sum--> S (28 b) --5E4M--> 9-bit module sum
//
// Synthesizable HLS style: fixed-width unsigned integers, fully unrolled
// loops, no division (normalisation is a leading-one detector and a shift).
// Written by the econt-flow `convert` stage (flow/resources/hls/).
#ifndef ECONT_FRONTEND_H_
#define ECONT_FRONTEND_H_

#include "econt_types.h"

namespace econt {

static const int N_TC = 48;

typedef u<7> word_t;       // trigger-cell word: 4-bit exponent, 3-bit mantissa
typedef u<12> cal_t;       // CALVALUE register: 1 integer + 11 fractional bits
typedef u<2> drop_t;       // 1 (low density) or 3 (high density)
typedef u<21> charge_t;    // decoded charge: at most (15 << 17) + (1 << 16) < 2^21
typedef u<22> calq_t;      // calibrated charge
typedef u<28> calq_sum_t;  // sum of 48 CALQ < 48 * 2^22 < 2^28
typedef u<5> log2_t;       // floor(log2(sum)) in 0..27

// The normalisation shift saturates at 21 = CALQ width - 1, as in the ASIC's converter
// (econt.md section 4): module sums >= 2^22 are divided by 2^21.  The module-sum
// encoding uses the uncapped floor(log2(sum)).
static const int NORM_SHIFT_MAX = 21;
typedef u<8> aein_code_t;  // AEin code: ufixed<8,1> value * 128
typedef u<9> sum_code_t;   // module sum, 5-bit exponent + 4-bit mantissa

// "float to fix": d = m if e == 0 else (8 + m) << (e - 1); d <<= drop; plus half an LSB
// of the dropped/shifted bits: 1 << (drop + max(e - 1, 0) - 1) when that shift is > 0.
inline charge_t decode_word(word_t w, drop_t drop) {
    u<4> e = w >> 3;
    u<3> m = w;                                   // low 3 bits
    u<4> es = (e == 0) ? u<4>(0) : u<4>(e - 1);   // shift of the mantissa
    u<4> mant = (e == 0) ? u<4>(m) : u<4>(m + 8); // implicit leading one for e > 0
    charge_t d = mant;
    d <<= es;
    d <<= drop;
    u<5> sh = es + drop;
    if (sh != 0) {
        charge_t half = 1;
        half <<= (sh - 1);
        d += half;
    }
    return d;
}

// CALQ = floor(d * CALVALUE / 2^11)
inline calq_t calibrate(charge_t d, cal_t cal) {
    u<33> prod = d * cal;
    calq_t q = prod >> 11;
    return q;
}

// floor(log2(s)) (0 for s == 0): a priority encoder
inline log2_t floor_log2(calq_sum_t s) {
    log2_t k = 0;
    for (int b = 1; b < 28; b++) {
#pragma HLS UNROLL
#pragma hls_unroll yes
        if (s[b] == 1) k = b;
    }
    return k;
}

// module sum S -> 9-bit float: S if S < 16, else e = bit_length(S) - 4 and m = the four
// bits after the leading one; e > 31 saturates to 511 (cannot happen for S < 2^28)
inline sum_code_t encode_sum(calq_sum_t s, log2_t k) {
    sum_code_t code;
    if (s < 16) {
        code = s;
    } else {
        u<6> e = k - 3;            // bit_length(S) - 4 = k + 1 - 4, in 1..24
        calq_sum_t sh = s >> (e - 1);
        u<4> m = sh;               // low 4 bits: the ones after the leading one
        if (e > 31) {
            code = 511;
        } else {
            sum_code_t ec = e;
            ec <<= 4;
            code = ec | m;
        }
    }
    return code;
}

// The whole front end of one bunch crossing.
inline void frontend(const word_t words[N_TC], const cal_t calvalue[N_TC], drop_t drop,
                     aein_code_t aein[N_TC], sum_code_t &module_sum) {
    calq_t calq[N_TC];
#pragma HLS ARRAY_PARTITION variable=calq complete
    calq_sum_t s = 0;
    for (int t = 0; t < N_TC; t++) {
#pragma HLS UNROLL
#pragma hls_unroll yes
        calq[t] = calibrate(decode_word(words[t], drop), calvalue[t]);
        s += calq[t];
    }
    log2_t k = floor_log2(s);
    log2_t k_norm = (k > NORM_SHIFT_MAX) ? log2_t(NORM_SHIFT_MAX) : k;
    // AEin = floor(128 * CALQ / 2^k_norm), saturating at 255 (all zero when S == 0: CALQ == 0)
    for (int t = 0; t < N_TC; t++) {
#pragma HLS UNROLL
#pragma hls_unroll yes
        u<29> num = calq[t];
        num <<= 7;
        num >>= k_norm;
        aein[t] = (num > 255) ? aein_code_t(255) : aein_code_t(num);
    }
    module_sum = encode_sum(s, k);
}

}  // namespace econt

#endif
