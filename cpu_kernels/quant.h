// SPDX-License-Identifier: MIT
// Quantized tensor types on the CPU: dequantization and dot products over GGML block layouts.
//
// Block layouts (GGML's, little-endian, d/dmin are IEEE half):
//   Q8_0 (32 values, 34 B):  d, int8 qs[32];                       x = d * q
//   Q5_0 (32 values, 22 B):  d, uint8 qh[4], uint8 qs[16];          x = d * (q5 - 16), q5 = nibble | high bit << 4
//   Q4_K (256 values, 144 B): d, dmin, uint8 scales[12] (8 x 6-bit scale + 6-bit min), uint8 qs[128]
//   Q6_K (256 values, 210 B): uint8 ql[128], uint8 qh[64], int8 scales[16], d
//   F32, F16, BF16: plain.
// A "row" is n values of one type laid out contiguously (n a multiple of the block size).
//
// These are the correct-first kernels (the CPU speed issue makes them fast); the scalar versions in
// reference form are kept for testing.
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace butler {

// dst[0..n) = the n values of `src` (a row of type t). n must be a multiple of t's block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// sum_i row[i] * x[i] over n values of a row of type t, accumulated in float.
float dot_row(DType t, const void* row, const float* x, int64_t n);

// Quantizes n floats into a row of type t (round-to-nearest, the scale search of GGML's reference quantizers).
// Used by the test fixtures and model writers. Supported for every computable type.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// y[r] = dot_row(t, W row r, x) for r in [0, n_rows): a matrix-vector product with W (n_rows, n_cols) of type t,
// row stride row_bytes(t, n_cols). Parallel over rows with OpenMP.
void gemv(DType t, const void* w, int64_t n_rows, int64_t n_cols, const float* x, float* y);

// --- Exposed for tests ---------------------------------------------------------------------------------------
// The scalar reference of dot_row (per-block fused, no SIMD). dot_row agrees with it up to float rounding;
// the tests hold the SIMD paths to it.
float dot_row_reference(DType t, const void* row, const float* x, int64_t n);

}  // namespace butler
