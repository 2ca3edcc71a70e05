// SPDX-License-Identifier: MIT
// Device-side decoding of GGUF weight rows in chunks of 32 values: a Q8_0/Q5_0 block, a 32-value sub-block of
// Q4_K, a quarter of a Q6_K half, or 32 F32/F16/BF16 values. Chunk c of a row holds values [32 c, 32 c + 32).
// Blocks are only 2-byte aligned in GGUF rows (34, 22 and 210-byte blocks), so quant bytes are read as bytes and
// scales as 16-bit words. The layouts are ggml's, as cpu_kernels/quant_blocks.h describes them; include only from
// .cu files in gpu_kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace butler::cuda {

__device__ inline float half_at(const uint8_t* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K super-block.
__device__ inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m  = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m  = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// out[l] = value 32 c + l of the row, l < 32. type: F32, F16, BF16, Q8_0, Q5_0, Q4_K or Q6_K (anything else
// decodes as Q6_K: callers check the type first).
__device__ inline void decode_chunk(uint32_t type, const uint8_t* row, int64_t c, float out[32]) {
    if (type == uint32_t(DType::F32)) {
        const float* w = reinterpret_cast<const float*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) out[l] = w[l];
    } else if (type == uint32_t(DType::F16)) {
        const __half* w = reinterpret_cast<const __half*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) out[l] = __half2float(w[l]);
    } else if (type == uint32_t(DType::BF16)) {
        const __nv_bfloat16* w = reinterpret_cast<const __nv_bfloat16*>(row) + 32 * c;
        for (int l = 0; l < 32; ++l) out[l] = __bfloat162float(w[l]);
    } else if (type == uint32_t(DType::Q8_0)) {  // d (2 B), int8 qs[32]
        const uint8_t* b = row + 34 * c;
        const int8_t* q  = reinterpret_cast<const int8_t*>(b + 2);
        const float d    = half_at(b);
        for (int l = 0; l < 32; ++l) out[l] = d * float(q[l]);
    } else if (type == uint32_t(DType::Q5_0)) {  // d (2 B), qh[4], qs[16]
        const uint8_t* b  = row + 22 * c;
        const uint32_t qh = uint32_t(b[2]) | uint32_t(b[3]) << 8 | uint32_t(b[4]) << 16 | uint32_t(b[5]) << 24;
        const uint8_t* qs = b + 6;
        const float d     = half_at(b);
        for (int j = 0; j < 16; ++j) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            out[j]      = d * float(((qs[j] & 0xF) | h0) - 16);
            out[j + 16] = d * float(((qs[j] >> 4) | h1) - 16);
        }
    } else if (type == uint32_t(DType::Q4_K)) {  // d, dmin (2 B each), scales[12], qs[128]; 8 sub-blocks of 32
        const uint8_t* b = row + 144 * (c / 8);
        const int j      = int(c % 8);
        int sc = 0, m = 0;
        scale_min_k4(j, b + 4, sc, m);
        const uint8_t* q  = b + 16 + 32 * (j / 2);
        const int shift   = 4 * (j & 1);
        const float scale = half_at(b) * float(sc), min = half_at(b + 2) * float(m);
        for (int l = 0; l < 32; ++l) out[l] = scale * float((q[l] >> shift) & 0xF) - min;
    } else {  // Q6_K: ql[128], qh[64], int8 scales[16], d; chunk r of 8 = (half r / 4, group r % 4)
        const uint8_t* b = row + 210 * (c / 8);
        const int r = int(c % 8), half = r / 4, g = r % 4;
        const uint8_t* ql = b + 64 * half;
        const uint8_t* qh = b + 128 + 32 * half;
        const int8_t* sc  = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
        const float d     = half_at(b + 208);
        for (int l = 0; l < 32; ++l) {
            const int lo  = g & 1 ? ql[l + 32] : ql[l];
            const int nib = g < 2 ? lo & 0xF : lo >> 4;
            out[l]        = d * float(sc[2 * g + l / 16]) * float((nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32);
        }
    }
}

}  // namespace butler::cuda
