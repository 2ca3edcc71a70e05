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
// defines; through the kernels of dot_isa().
float dot_row_q(DType weight_type, const void* row, const void* xq, int64_t n);
// Scalar reference of dot_row_q (exposed for tests): integer sums per block, one float multiply per block.
float dot_row_q_reference(DType weight_type, const void* row, const void* xq, int64_t n);

// Instruction sets of the integer kernels, in order: the scalar reference, AVX2 (maddubs/madd; the build's baseline)
// and AVX-512 VNNI (vpdpbusd/vpdpwssd, AVX512VL; chosen at run time where the CPU reports AVX512F/BW/VL/VNNI). The
// integer sums of AVX2 and AVX-512 VNNI are identical, so are their results.
enum class DotIsa { Scalar, Avx2, Avx512Vnni };
// Whether this build has the kernels and this CPU runs them.
bool dot_isa_available(DotIsa isa);
// The set dot_row_q, gemv_q and gemv_q_multi use: the best available, capped by $BUTLER_CPU_ISA (scalar, avx2,
// avx512vnni) when set. Chosen once per process.
DotIsa dot_isa();
const char* dot_isa_name(DotIsa isa);
// dot_row_q through one set's kernels (tests compare each with the reference); Error(Unsupported) when unavailable.
float dot_row_q_isa(DotIsa isa, DType weight_type, const void* row, const void* xq, int64_t n);

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
