// ECON-T block top (see econt_top.h).  Written by the econt-flow `convert` stage.
#include "econt_top.h"

void econt_top(const econt::word_t words[econt::N_TC], const econt::cal_t calvalue[econt::N_TC],
               econt::drop_t drop, result_t latent[ECONT_N_LATENT], econt::sum_code_t &module_sum) {
#pragma HLS PIPELINE II=1
#pragma HLS ARRAY_PARTITION variable=words complete
#pragma HLS ARRAY_PARTITION variable=calvalue complete
#pragma HLS ARRAY_PARTITION variable=latent complete
    econt::aein_code_t aein[econt::N_TC];
#pragma HLS ARRAY_PARTITION variable=aein complete
    econt::frontend(words, calvalue, drop, aein, module_sum);

    // 48 TCs -> the encoder's flattened 8x8x1 image (encoding A); dead positions are 0
    input_t image[64];
#pragma HLS ARRAY_PARTITION variable=image complete
    for (int i = 0; i < 64; i++) {
#pragma HLS UNROLL
#pragma hls_unroll yes
        image[i] = 0;
    }
    for (int t = 0; t < econt::N_TC; t++) {
#pragma HLS UNROLL
#pragma hls_unroll yes
        econt_set_raw(image[econt::remap_8x8[t]], aein[t]);
    }
    myproject(image, latent);
}
