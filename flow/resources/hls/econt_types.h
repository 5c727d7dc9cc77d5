// ECON-T front end: integer types for both HLS type libraries.
//
// Written by the econt-flow `convert` stage (flow/resources/hls/).  The same
// front-end source compiles against Xilinx/AMD ap_types (Vitis project) and
// Siemens ac_types (Catapult project, built with -DECONT_AC_TYPES).  Only
// arithmetic, shifts, comparisons and single-bit reads are used, which have
// the same semantics in both libraries; raw-bit access to the hls4ml
// fixed-point types goes through econt_raw / econt_set_raw below.
#ifndef ECONT_TYPES_H_
#define ECONT_TYPES_H_

#ifdef ECONT_AC_TYPES
#include <ac_fixed.h>
#include <ac_int.h>

namespace econt {
template <int W> using u = ac_int<W, false>;  // W-bit unsigned
}

// the W low bits of a fixed-point value (its code)
template <int W, class T> inline ac_int<W, false> econt_raw(const T &x) {
    return x.template slc<W>(0);
}
// set a fixed-point value from its code
template <class T, int W> inline void econt_set_raw(T &x, const ac_int<W, false> &code) {
    x.set_slc(0, code);
}
#else
#include "ap_fixed.h"
#include "ap_int.h"

namespace econt {
template <int W> using u = ap_uint<W>;  // W-bit unsigned
}

template <int W, class T> inline ap_uint<W> econt_raw(const T &x) {
    ap_uint<W> r = x.range(W - 1, 0);
    return r;
}
template <class T, int W> inline void econt_set_raw(T &x, const ap_uint<W> &code) {
    x.range(W - 1, 0) = code;
}
#endif

#endif
