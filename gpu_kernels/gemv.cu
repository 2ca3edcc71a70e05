// SPDX-License-Identifier: MIT
// y = W x with W in its GGUF type (the decode step's projections): F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K.
// Work mapping: one warp per row; the row is cut into chunks of 32 values (a Q8_0/Q5_0 block, a 32-value sub-block
// of Q4_K, a quarter of a Q6_K half), lanes stride over the chunks, and each lane dots its chunk with x in float,
// folding the block scales in per chunk as the CPU's fused dots do (cpu_kernels/quant.cpp). A warp reduction ends
// the row. Blocks are only 2-byte aligned in GGUF rows (34, 22 and 210-byte blocks), so quant bytes are read as
// bytes and scales as 16-bit words. A correct first version: the CPU reference (dequantize_row in float64) checks
// it in tests/test_cuda_device.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"
#include "runtime/dtype.h"

namespace butler::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;

__device__ float half_at(const uint8_t* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K super-block.
__device__ void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The dot of values [32 c, 32 c + 32) of a row with x[0..32) (x already offset to the chunk).
__device__ float dot_chunk(uint32_t type, const uint8_t* row, int64_t c, const float* x) {
    float s = 0.f;
    if (type == uint32_t(DType::F32)) {
        const float* w = reinterpret_cast<const float*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) s += w[l] * x[l];
    } else if (type == uint32_t(DType::F16)) {
        const __half* w = reinterpret_cast<const __half*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) s += __half2float(w[l]) * x[l];
    } else if (type == uint32_t(DType::BF16)) {
        const __nv_bfloat16* w = reinterpret_cast<const __nv_bfloat16*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) s += __bfloat162float(w[l]) * x[l];
    } else if (type == uint32_t(DType::Q8_0)) {  // d (2 B), int8 qs[32]
        const uint8_t* b = row + 34 * c;
        const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
        for (int l = 0; l < 32; ++l) s += float(q[l]) * x[l];
        s *= half_at(b);
    } else if (type == uint32_t(DType::Q5_0)) {  // d (2 B), qh[4], qs[16]
        const uint8_t* b = row + 22 * c;
        const uint32_t qh = uint32_t(b[2]) | uint32_t(b[3]) << 8 | uint32_t(b[4]) << 16 | uint32_t(b[5]) << 24;
        const uint8_t* qs = b + 6;
        for (int j = 0; j < 16; ++j) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            s += float(((qs[j] & 0xF) | h0) - 16) * x[j] + float(((qs[j] >> 4) | h1) - 16) * x[j + 16];
        }
        s *= half_at(b);
    } else if (type == uint32_t(DType::Q4_K)) {  // d, dmin (2 B each), scales[12], qs[128]; 8 sub-blocks of 32
        const uint8_t* b = row + 144 * (c / 8);
        const int j = int(c % 8);
        int sc = 0, m = 0;
        scale_min_k4(j, b + 4, sc, m);
        const uint8_t* q = b + 16 + 32 * (j / 2);
        const int shift = 4 * (j & 1);
        float sqx = 0.f, sx = 0.f;
        for (int l = 0; l < 32; ++l) {
            sqx += float((q[l] >> shift) & 0xF) * x[l];
            sx += x[l];
        }
        s = half_at(b) * float(sc) * sqx - half_at(b + 2) * float(m) * sx;
    } else {  // Q6_K: ql[128], qh[64], int8 scales[16], d; chunk r of 8 = (half r / 4, group r % 4)
        const uint8_t* b = row + 210 * (c / 8);
        const int r = int(c % 8), half = r / 4, g = r % 4;
        const uint8_t* ql = b + 64 * half;
        const uint8_t* qh = b + 128 + 32 * half;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
        float acc[2] = {0.f, 0.f};
        for (int l = 0; l < 32; ++l) {
            const int lo = g & 1 ? ql[l + 32] : ql[l];
            const int nib = g < 2 ? lo & 0xF : lo >> 4;
            acc[l / 16] += float((nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32) * x[l];
        }
        s = half_at(b + 208) * (float(sc[2 * g]) * acc[0] + float(sc[1 + 2 * g]) * acc[1]);
    }
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
