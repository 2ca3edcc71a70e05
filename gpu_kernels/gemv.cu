// SPDX-License-Identifier: MIT
// y = W x with W in its GGUF type (the decode step's projections): F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K.
// Work mapping: one warp per row; the row is cut into chunks of 32 values (gpu_kernels/quant_decode.cuh), lanes
// stride over the chunks, and each lane decodes its chunk and dots it with x in float. A warp reduction ends the
// row. A correct first version: the CPU reference (dequantize_row in float64) checks it in
// tests/test_cuda_device.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"
#include "gpu_kernels/quant_decode.cuh"
#include "runtime/dtype.h"

namespace butler::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;

// The dot of values [32 c, 32 c + 32) of a row with x[0..32) (x already offset to the chunk).
__device__ float dot_chunk(uint32_t type, const uint8_t* row, int64_t c, const float* x) {
    float w[32];
    decode_chunk(type, row, c, w);
    float s = 0.f;
    for (int l = 0; l < 32; ++l) s += w[l] * x[l];
    return s;
}

__global__ void gemv_kernel(GemvArgs a, int64_t row_stride) {
    const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
    if (r >= a.n_rows) return;
    const int lane = threadIdx.x % 32;
    const uint8_t* row = static_cast<const uint8_t*>(a.w) + r * row_stride;
    float s = 0.f;
    for (int64_t c = lane; c < a.n_cols / 32; c += 32) s += dot_chunk(a.type, row, c, a.x + 32 * c);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) a.y[r] = s;
}

}  // namespace

bool gemv_has_kernel(uint32_t type) {
    switch (DType(type)) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
        case DType::Q8_0:
        case DType::Q5_0:
        case DType::Q4_K:
        case DType::Q6_K: return true;
        default: return false;
    }
}

void launch_gemv(const GemvArgs& a, void* stream) {
    if (a.n_rows == 0) return;
    const int64_t blocks = (a.n_rows + kRowsPerBlock - 1) / kRowsPerBlock;
    gemv_kernel<<<unsigned(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, row_bytes(DType(a.type), a.n_cols));
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
