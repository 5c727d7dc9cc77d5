// C simulation testbench of econt_top: streams a binary vector file, writes a binary result file.
//
//   econt_csim <vectors.bin> <results.bin>
//
// vectors.bin (little endian): 128-byte header
//   char magic[8] = "ECONTVEC"; u32 version = 1; u32 n; u32 drop; u32 n_tc = 48;
//   u16 calvalue[48]; zero padding to 128 bytes
// then n records of 48 bytes: the 7-bit TC words of one wafer (TC/CALQ order).
//
// results.bin: 32-byte header
//   char magic[8] = "ECONTOUT"; u32 version = 1; u32 n; u32 latent_bits; u32 record_bytes = 82;
//   zero padding to 32 bytes
// then n records: u8 aein[48] (front end alone, diagnostics), u16 latent[16] (econt_top),
// u16 module_sum (econt_top).
//
// Prints one JSON line with the number of vectors and the time spent in econt_top.
// Written by the econt-flow `convert` stage (flow/resources/hls/).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "econt_top.h"

static unsigned rd32(const unsigned char *p) {
    return unsigned(p[0]) | (unsigned(p[1]) << 8) | (unsigned(p[2]) << 16) | (unsigned(p[3]) << 24);
}
static void wr16(unsigned char *p, unsigned v) {
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
}
static void wr32(unsigned char *p, unsigned v) {
    wr16(p, v & 0xffff);
    wr16(p + 2, v >> 16);
}
static int fail(const char *msg, const char *path) {
    std::fprintf(stderr, "econt_csim: %s: %s\n", msg, path);
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <vectors.bin> <results.bin>\n", argv[0]);
        return 2;
    }
    FILE *fi = std::fopen(argv[1], "rb");
    if (!fi) return fail("cannot open vector file", argv[1]);
    unsigned char hdr[128];
    if (std::fread(hdr, 1, sizeof hdr, fi) != sizeof hdr) return fail("short header", argv[1]);
    if (std::memcmp(hdr, "ECONTVEC", 8) != 0 || rd32(hdr + 8) != 1 || rd32(hdr + 20) != 48)
        return fail("not an ECONTVEC version-1 file with 48 TCs", argv[1]);
    const unsigned n = rd32(hdr + 12), drop_v = rd32(hdr + 16);
    econt::cal_t cal[econt::N_TC];
    for (int t = 0; t < econt::N_TC; t++) cal[t] = unsigned(hdr[24 + 2 * t]) | (unsigned(hdr[25 + 2 * t]) << 8);
    const econt::drop_t drop = drop_v;
    std::vector<unsigned char> words(size_t(n) * econt::N_TC);
    if (n && std::fread(words.data(), 1, words.size(), fi) != words.size())
        return fail("file shorter than its header says", argv[1]);
    std::fclose(fi);

    const unsigned rec = econt::N_TC + 2 * ECONT_N_LATENT + 2;
    std::vector<unsigned char> out(32 + size_t(n) * rec, 0);
    std::memcpy(out.data(), "ECONTOUT", 8);
    wr32(&out[8], 1);
    wr32(&out[12], n);
    wr32(&out[16], ECONT_LATENT_BITS);
    wr32(&out[20], rec);

    // econt_top on every vector (timed)
    auto t0 = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < n; i++) {
        econt::word_t w[econt::N_TC];
        for (int t = 0; t < econt::N_TC; t++) w[t] = words[size_t(i) * econt::N_TC + t];
        result_t latent[ECONT_N_LATENT];
        econt::sum_code_t module_sum;
        econt_top(w, cal, drop, latent, module_sum);
        unsigned char *r = &out[32 + size_t(i) * rec];
        for (int j = 0; j < ECONT_N_LATENT; j++)
            wr16(r + econt::N_TC + 2 * j, econt_raw<ECONT_LATENT_BITS>(latent[j]).to_uint());
        wr16(r + econt::N_TC + 2 * ECONT_N_LATENT, module_sum.to_uint());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // the front end alone, for the AEin diagnostics
    for (unsigned i = 0; i < n; i++) {
        econt::word_t w[econt::N_TC];
        for (int t = 0; t < econt::N_TC; t++) w[t] = words[size_t(i) * econt::N_TC + t];
        econt::aein_code_t aein[econt::N_TC];
        econt::sum_code_t module_sum;
        econt::frontend(w, cal, drop, aein, module_sum);
        unsigned char *r = &out[32 + size_t(i) * rec];
        for (int t = 0; t < econt::N_TC; t++) r[t] = aein[t].to_uint();
    }

    FILE *fo = std::fopen(argv[2], "wb");
    if (!fo) return fail("cannot write result file", argv[2]);
    if (std::fwrite(out.data(), 1, out.size(), fo) != out.size()) return fail("short write", argv[2]);
    std::fclose(fo);
    std::printf("{\"n\": %u, \"econt_top_seconds\": %.6f}\n", n, secs);
    return 0;
}
