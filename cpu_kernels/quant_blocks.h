// SPDX-License-Identifier: MIT
// GGML block layouts shared by the CPU quant kernels (quant.cpp: dequantize/dot/quantize; quant_dot.cpp: the
// integer dot products against 8-bit activations). Private to cpu_kernels/.
#pragma once

#include <cstdint>

namespace butler::quant_blocks {

constexpr int kQK  = 32;   // values per legacy block (Q8_0, Q5_0)
constexpr int kQKK = 256;  // values per k-quant super-block (Q4_K, Q6_K, Q8_K)

// Byte-exact mirrors of ggml's block structs. Every member is a byte or a uint16, so these have no padding
// and need only 2-byte alignment, which every GGUF tensor row satisfies (data is 32-aligned, block sizes even).
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];        // bit j = bit 4 of value j
    uint8_t qs[kQK / 2];  // low nibble: value j, high nibble: value j + 16
};
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];  // 8 x (6-bit scale, 6-bit min), packed as get_scale_min_k4 reads them
    uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
    uint8_t ql[kQKK / 2];
    uint8_t qh[kQKK / 4];
    int8_t scales[kQKK / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210);

// 8-bit activations for the k-quant dot products (ggml's block_q8_K): d is a float scale, bsums[k] is the sum of
// qs[16k .. 16k+15] (the k-quants fold their mins / offsets through it).
struct BlockQ8_K {
    float d;
    int8_t qs[kQKK];
    int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace butler::quant_blocks
