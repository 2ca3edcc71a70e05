// SPDX-License-Identifier: MIT
// Integer dot products of quantized weight rows against 8-bit quantized activations (the CPU decode path).
//
// A decode GEMV reads every weight byte once, so it is bound by memory bandwidth only if the arithmetic keeps up;
// converting each weight to float does not (it costs several instructions per value). Instead the activation x is
// quantized once per GEMV to 8-bit blocks, and each weight block is multiplied in int8/int16/int32 SIMD
// (maddubs/madd), with one float multiply per block:
//   Q8_0, Q5_0 weights  x  Q8_0 activations (32 values per block, f32 scale: 36 bytes)
//   Q4_K, Q6_K weights  x  Q8_K activations (256 values per block, f32 scale, 16 partial sums for the offsets)
// Other weight types (F32, F16, BF16) have no integer path: activation_type() says F32 and callers use dot_row.
// Quantizing activations changes results by ~0.5% relative per product (as in llama.cpp); tests bound it.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/dtype.h"

namespace butler {

// The activation block type the weight type's integer dot takes: Q8_0, Q8_K, or F32 (no integer path).
DType activation_type(DType weight_type);
// Bytes of n activations quantized for weight_type (n a multiple of the weight's block size).
int64_t activation_bytes(DType weight_type, int64_t n);
// x (n) -> xq (activation_bytes(weight_type, n) bytes).
void quantize_activation(DType weight_type, const float* x, int64_t n, void* xq);

// Dot of one weight row (n values of weight_type) with quantized activations, accumulated as the block format
// defines; the SIMD version when compiled for AVX2, else the scalar reference.
float dot_row_q(DType weight_type, const void* row, const void* xq, int64_t n);
// Scalar reference of dot_row_q (exposed for tests): integer sums per block, one float multiply per block.
float dot_row_q_reference(DType weight_type, const void* row, const void* xq, int64_t n);

// y (n_rows) = W x through the integer path when the type has one (x quantized once into xq_scratch, which is
// grown only when too small), else through dot_row. OpenMP over rows.
void gemv_q(DType t, const void* w, int64_t n_rows, int64_t n_cols, const float* x, float* y,
            std::vector<uint8_t>& xq_scratch);

// One row block of a fused GEMV: y (w_rows) = W (w_rows, n_cols) x.
struct GemvJob {
    DType type;
    const void* w;
    int64_t n_rows;
    float* y;
};

// Several GEMVs over the same x (n_cols) in one OpenMP region: x is quantized once per activation format and the
// threads move from one matrix to the next without a barrier (Q, K and V, or gate and up, of one layer).
void gemv_q_multi(const GemvJob* jobs, int n_jobs, int64_t n_cols, const float* x, std::vector<uint8_t>& xq_scratch);

}  // namespace butler
