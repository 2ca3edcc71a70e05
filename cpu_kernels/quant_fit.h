// SPDX-License-Identifier: MIT
// Scale fitting and scale packing shared by the quantizers of quant.cpp and quant_extra.cpp (private to
// cpu_kernels/). Quantizers run at model-writing time, never in the forward pass.
#pragma once

#include <cmath>
#include <cstdint>

namespace butler {

inline int nearest_int(float v) { return static_cast<int>(std::lrintf(v)); }

// Scale and min of sub-block j from the 12 packed bytes: j < 4 keep 6 plain bits; j >= 4 take their low
// nibble from byte j + 4 and their top two bits from the spare high bits of bytes j - 4 (scale) and j (min).
inline void get_scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m  = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m  = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Packs 8 x (6-bit scale, 6-bit min) into the 12 bytes get_scale_min_k4 reads.
void pack_scale_min_k4(const uint8_t ls[8], const uint8_t lm[8], uint8_t packed[12]);

// Fits x[i] ~= scale * L[i] + offset with L in [0, nmax] and offset <= 0 (Q4_K stores the offset as a
// non-negative 6-bit min that is subtracted). Tries a few grids around the min/max one and keeps the least
// squares fit with the smallest error.
float fit_scale_offset(const float* x, int n, int nmax, float* offset);

// Symmetric fit x[i] ~= scale * L[i], L in [-nmax, nmax - 1]: the signed extreme maps near -nmax, and a
// few neighbouring grids are tried, keeping the least squares scale that explains the most energy.
float fit_scale_symmetric(const float* x, int n, int nmax);

// The scales of a Q4_K / Q5_K super-block of 256 values: each 32-value sub-block fitted as scale * L - min with
// L in [0, nmax], the 8 scales and 8 mins quantized to 6 bits under f16 super-scales d and dmin, packed.
void fit_k4_scales(const float* x, int nmax, uint8_t packed[12], uint16_t* d, uint16_t* dmin);

}  // namespace butler
