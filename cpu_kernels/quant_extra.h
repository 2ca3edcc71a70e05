// SPDX-License-Identifier: MIT
// The block types added for the models issue (Q4_0, Q4_1, Q5_1, Q5_K, Q3_K, IQ4_NL): scalar dequantize, fused
// dot and quantize, reached through the public entry points of quant.h (their switch defaults land here).
// Internal to cpu_kernels/: callers use quant.h. Row lengths are checked by the caller (check_row in quant.cpp).
//
// Block layouts (GGML's, little-endian, d/m/dmin IEEE half):
//   Q4_0   (32 values, 18 B):  d, uint8 qs[16];                      x = d * (q4 - 8)
//   Q4_1   (32 values, 20 B):  d, m, uint8 qs[16];                   x = d * q4 + m
//   Q5_1   (32 values, 24 B):  d, m, uint8 qh[4], uint8 qs[16];      x = d * q5 + m
//   IQ4_NL (32 values, 18 B):  d, uint8 qs[16];                      x = d * kIq4nlValues[q4]
//   (nibbles: low nibble of qs[j] is value j, high nibble is value j + 16; Q5_1 bit j of qh is bit 4 of value j)
//   Q5_K (256 values, 176 B):  d, dmin, uint8 scales[12] (as Q4_K), uint8 qh[32], uint8 qs[128]
//   Q3_K (256 values, 110 B):  uint8 hmask[32], uint8 qs[64], uint8 scales[12] (16 x 6-bit, signed - 32), d
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace butler::detail {

// Each returns false when t is not one of the types above (and then touches nothing).
bool dequantize_row_extra(DType t, const void* src, float* dst, int64_t n);
bool dot_row_extra(DType t, const void* row, const float* x, int64_t n, float* result);
bool quantize_row_extra(DType t, const float* src, void* dst, int64_t n);

// IQ4_NL's non-linear 4-bit code book (GGML's kvalues_iq4nl).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,   38,  53,  69,  89,  113};

}  // namespace butler::detail
