// SPDX-License-Identifier: MIT
// Y = X W^T for many tokens (prefill; GemmArgs in runtime/device.h): W is dequantized to f32 a tile of rows at a
// time into the caller's scratch (one thread per 32-value chunk, gpu_kernels/quant_decode.cuh) and each tile is
// multiplied with every token row by cuBLAS (cublasGemmEx, TF32 tensor-core inputs, f32 accumulation). The
// dequantization is paid once per tile however many tokens there are; at 512 tokens a tile's GEMM does 512 FMAs
// per dequantized value, so the GEMM dominates.
// Row-major to cuBLAS's column-major: the output rows [r0, r0 + n) of every token are C (n, n_tok) column-major at
// y + r0 with ldc = ldy, and C = A^T B with A = the tile read as (n_cols, n) column-major and B = X read as
// (n_cols, n_tok) column-major.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"
#include "gpu_kernels/quant_decode.cuh"
#include "runtime/dtype.h"

#define BUTLER_CUBLAS_CHECK(expr)                                                                              \
    do {                                                                                                     \
        const cublasStatus_t butler_blas_st_ = (expr);                                                          \
        if (butler_blas_st_ != CUBLAS_STATUS_SUCCESS)                                                           \
            ::butler::cuda::throw_cuda_error(cublasGetStatusName(butler_blas_st_),                              \
                                             cublasGetStatusString(butler_blas_st_), #expr, __FILE__, __LINE__); \
    } while (0)

namespace butler::cuda {
namespace {

constexpr int kThreads = 256;

// dst (n, n_cols) f32 = rows [0, n) of w (row_stride bytes apart), decoded a 32-value chunk per thread.
__global__ void dequant_rows_kernel(uint32_t type, const uint8_t* w, int64_t row_stride, int64_t n, int64_t n_cols,
                                    float* dst) {
    const int64_t chunks_per_row = n_cols / 32;
    const int64_t i              = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= n * chunks_per_row) return;
    const int64_t r = i / chunks_per_row, c = i % chunks_per_row;
    float v[32];
    decode_chunk(type, w + r * row_stride, c, v);
    float4* out = reinterpret_cast<float4*>(dst + r * n_cols + 32 * c);  // 128-byte aligned: n_cols % 32 == 0
    for (int l = 0; l < 8; ++l) out[l] = make_float4(v[4 * l], v[4 * l + 1], v[4 * l + 2], v[4 * l + 3]);
}

void gemm_tile(cublasHandle_t blas, const float* tile, int64_t n, const GemmArgs& a, int64_t r0) {
    const float alpha = 1.f, beta = 0.f;
    BUTLER_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(a.n_tok), int(a.n_cols), &alpha,
                                     tile, CUDA_R_32F, int(a.n_cols), a.x, CUDA_R_32F, int(a.n_cols), &beta,
                                     a.y + r0, CUDA_R_32F, int(a.ldy), CUBLAS_COMPUTE_32F_FAST_TF32,
                                     CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void* create_blas_handle(void* stream) {
    cublasHandle_t h = nullptr;
    BUTLER_CUBLAS_CHECK(cublasCreate(&h));
    const cublasStatus_t st = cublasSetStream(h, static_cast<cudaStream_t>(stream));
    if (st != CUBLAS_STATUS_SUCCESS) {
        (void)cublasDestroy(h);
        BUTLER_CUBLAS_CHECK(st);
    }
    return h;
}

void destroy_blas_handle(void* handle) {
    if (handle != nullptr) (void)cublasDestroy(static_cast<cublasHandle_t>(handle));
}

bool gemm_fits_int(const GemmArgs& a) {
    return a.n_rows <= INT_MAX && a.n_cols <= INT_MAX && a.n_tok <= INT_MAX && a.ldy <= INT_MAX;
}

void launch_gemm(const GemmArgs& a, void* stream, void* blas_handle) {
    if (a.n_tok == 0 || a.n_rows == 0) return;
    auto* blas = static_cast<cublasHandle_t>(blas_handle);
    if (a.type == uint32_t(DType::F32)) {
        gemm_tile(blas, static_cast<const float*>(a.w), a.n_rows, a, 0);
        return;
    }
    const int64_t tile = a.tile_rows, stride = row_bytes(DType(a.type), a.n_cols);
    auto* scratch      = static_cast<float*>(a.scratch);
    for (int64_t r0 = 0; r0 < a.n_rows; r0 += tile) {
        const int64_t n      = a.n_rows - r0 < tile ? a.n_rows - r0 : tile;
        const int64_t blocks = (n * (a.n_cols / 32) + kThreads - 1) / kThreads;
        // Stream order keeps the next tile's dequantization behind this tile's GEMM, which reads the scratch.
        dequant_rows_kernel<<<unsigned(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
            a.type, static_cast<const uint8_t*>(a.w) + r0 * stride, stride, n, a.n_cols, scratch);
        BUTLER_CUDA_CHECK(cudaGetLastError());
        gemm_tile(blas, scratch, n, a, r0);
    }
}

}  // namespace butler::cuda
