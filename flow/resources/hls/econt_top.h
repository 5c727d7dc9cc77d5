// ECON-T block top: front end (econt_frontend.h) composed with the hls4ml encoder (myproject).
//
//   48 x 7-bit TC words + 48 CALVALUE registers + drop
//     -> 16 latent values (hls4ml result_t, ECONT_LATENT_BITS bits each) + 9-bit module sum
//
// Written by the econt-flow `convert` stage (flow/resources/hls/).
#ifndef ECONT_TOP_H_
#define ECONT_TOP_H_

#include "econt_frontend.h"
#include "econt_params.h"
#include "myproject.h"

void econt_top(const econt::word_t words[econt::N_TC], const econt::cal_t calvalue[econt::N_TC],
               econt::drop_t drop, result_t latent[ECONT_N_LATENT], econt::sum_code_t &module_sum);

#endif
