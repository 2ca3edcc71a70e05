// SPDX-License-Identifier: MIT
// Scalar kernels for Q4_0, Q4_1, Q5_1, Q5_K, Q3_K and IQ4_NL (layouts in quant_extra.h).
//
// Work mapping: one call walks one row block by block on the calling thread (gemv in quant.cpp parallelizes
// over rows). Memory traffic per dot: the row's bytes once plus n floats of x. These are the correct-first
// versions; they live apart from quant.cpp so SIMD work there and new types here merge without conflicts.
#include "cpu_kernels/quant_extra.h"
#include "cpu_kernels/quant_fit.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace butler::detail {
namespace {

constexpr int kQK  = 32;
constexpr int kQKK = 256;

struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockIq4Nl {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQKK / 8];  // bit 2c of qh[l]: bit 4 of value 64c + l; bit 2c + 1: of value 64c + 32 + l
    uint8_t qs[kQKK / 2];  // qs[32c + l]: low nibble value 64c + l, high nibble value 64c + 32 + l
};
struct BlockQ3_K {
    uint8_t hmask[kQKK / 8];  // bit (4h + j) of hmask[l]: the high bit of value 128h + 32j + l (set: no -4)
    uint8_t qs[kQKK / 4];     // bits 2j of qs[32h + l]: the low 2 bits of value 128h + 32j + l
    uint8_t scales[12];       // 16 x 6 bits: sub-block s of 16 values has scale (6 bits) - 32
    uint16_t d;
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockIq4Nl) == 18 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ3_K) == 110);


inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}


// Q3_K's 6-bit scale s (0..15), unsigned (0..63): low nibble from byte s (s < 8) or the high nibble of byte
// s - 8; top two bits from bits 2 (s / 4) of byte 8 + s % 4.
inline int q3k_scale(const uint8_t* q, int s) {
    const int lo = s < 8 ? q[s] & 0xF : q[s - 8] >> 4;
    const int hi = (q[8 + s % 4] >> (2 * (s / 4))) & 3;
    return lo | (hi << 4);
}

// The signed 3-bit value (-4..3) at position i (0..255) of a Q3_K block.
inline int q3k_value(const BlockQ3_K& b, int i) {
    const int h = i / 128, j = (i % 128) / 32, l = i % 32;
    const int lo   = (b.qs[32 * h + l] >> (2 * j)) & 3;
    const int high = (b.hmask[l] >> (4 * h + j)) & 1;
    return lo - (high ? 0 : 4);
}

// The 5-bit value (0..31) at position i (0..255) of a Q5_K block.
inline int q5k_value(const BlockQ5_K& b, int i) {
    const int c = i / 64, r = i % 64, l = r % 32, upper = r / 32;
    const int nib = upper ? b.qs[32 * c + l] >> 4 : b.qs[32 * c + l] & 0xF;
    const int hi  = (b.qh[l] >> (2 * c + upper)) & 1;
    return nib | (hi << 4);
}

// --- dequantize (one block) ------------------------------------------------------------------------------------

void dequant_q4_0(const BlockQ4_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j]      = d * ((b.qs[j] & 0xF) - 8);
        y[j + 16] = d * ((b.qs[j] >> 4) - 8);
    }
}

void dequant_q4_1(const BlockQ4_1& b, float* y) {
    const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j]      = d * (b.qs[j] & 0xF) + m;
        y[j + 16] = d * (b.qs[j] >> 4) + m;
    }
}

void dequant_q5_1(const BlockQ5_1& b, float* y) {
    const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j]      = d * ((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) + m;
        y[j + 16] = d * ((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) + m;
    }
}

void dequant_iq4_nl(const BlockIq4Nl& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j]      = d * kIq4nlValues[b.qs[j] & 0xF];
        y[j + 16] = d * kIq4nlValues[b.qs[j] >> 4];
    }
}

void dequant_q5_k(const BlockQ5_K& b, float* y) {
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        get_scale_min_k4(j, b.scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * q5k_value(b, 32 * j + l) - m1;
    }
}

void dequant_q3_k(const BlockQ3_K& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int s = 0; s < 16; ++s) {
        const float dl = d * (q3k_scale(b.scales, s) - 32);
        for (int l = 0; l < 16; ++l) y[16 * s + l] = dl * q3k_value(b, 16 * s + l);
    }
}

// --- fused dots (one block): integer-valued products summed first, scaled once per (sub-)block ---------------

float dot_q4_0(const BlockQ4_0& b, const float* x) {
    float s = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) s += ((b.qs[j] & 0xF) - 8) * x[j] + ((b.qs[j] >> 4) - 8) * x[j + 16];
    return f16_to_f32(b.d) * s;
}

float dot_q4_1(const BlockQ4_1& b, const float* x) {
    float sqx = 0.0f, sx = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
        sqx += (b.qs[j] & 0xF) * x[j] + (b.qs[j] >> 4) * x[j + 16];
        sx += x[j] + x[j + 16];
    }
    return f16_to_f32(b.d) * sqx + f16_to_f32(b.m) * sx;
}

float dot_q5_1(const BlockQ5_1& b, const float* x) {
    const uint32_t qh = load_u32(b.qh);
    float sqx = 0.0f, sx = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
        sqx += ((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) * x[j] +
               ((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) * x[j + 16];
        sx += x[j] + x[j + 16];
    }
    return f16_to_f32(b.d) * sqx + f16_to_f32(b.m) * sx;
}

float dot_iq4_nl(const BlockIq4Nl& b, const float* x) {
    float s = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) s += kIq4nlValues[b.qs[j] & 0xF] * x[j] + kIq4nlValues[b.qs[j] >> 4] * x[j + 16];
    return f16_to_f32(b.d) * s;
}

float dot_q5_k(const BlockQ5_K& b, const float* x) {
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    float acc = 0.0f;
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        get_scale_min_k4(j, b.scales, &sc, &m);
        float sqx = 0.0f, sx = 0.0f;
        for (int l = 0; l < 32; ++l) {
            sqx += q5k_value(b, 32 * j + l) * x[32 * j + l];
            sx += x[32 * j + l];
        }
        acc += d * sc * sqx - dmin * m * sx;
    }
    return acc;
}

float dot_q3_k(const BlockQ3_K& b, const float* x) {
    const float d = f16_to_f32(b.d);
    float acc = 0.0f;
    for (int s = 0; s < 16; ++s) {
        float sqx = 0.0f;
        for (int l = 0; l < 16; ++l) sqx += q3k_value(b, 16 * s + l) * x[16 * s + l];
        acc += d * (q3k_scale(b.scales, s) - 32) * sqx;
    }
    return acc;
}

// --- quantizers --------------------------------------------------------------------------------------------

void quantize_q4_0(const float* x, BlockQ4_0& b) {
    // GGML's reference: the signed extreme maps to level 0 (value -8) exactly.
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < kQK; ++j)
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
    const float d  = vmax / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d            = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
        const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
        b.qs[j]      = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

// Q4_1 and Q5_1: min/max affine grid with nmax + 1 levels (GGML's reference).
template <typename Block>
void quantize_affine(const float* x, Block& b, int nmax, int* levels) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQK; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d  = (hi - lo) / nmax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d            = f32_to_f16(d);
    b.m            = f32_to_f16(lo);
    for (int j = 0; j < kQK; ++j) levels[j] = std::clamp(static_cast<int>((x[j] - lo) * id + 0.5f), 0, nmax);
}

void quantize_q4_1(const float* x, BlockQ4_1& b) {
    int q[kQK];
    quantize_affine(x, b, 15, q);
    for (int j = 0; j < kQK / 2; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

void quantize_q5_1(const float* x, BlockQ5_1& b) {
    int q[kQK];
    quantize_affine(x, b, 31, q);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        qh |= uint32_t(q[j] >> 4) << j;
        qh |= uint32_t(q[j + 16] >> 4) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
}

int nearest_iq4nl(float v) {
    int best = 0;
    for (int k = 1; k < 16; ++k)
        if (std::fabs(kIq4nlValues[k] - v) < std::fabs(kIq4nlValues[best] - v)) best = k;
    return best;
}

void quantize_iq4_nl(const float* x, BlockIq4Nl& b) {
    // Tries scales that put the signed extreme near each end of the code book and keeps the least squares
    // scale that explains the most energy (the search of GGML's quantize_row_iq4_nl, without weights).
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < kQK; ++j)
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
    std::memset(&b, 0, sizeof(b));
    if (amax < 1e-30f) {
        for (int j = 0; j < kQK / 2; ++j) b.qs[j] = 0x88;  // level 8 is the value closest to 0
        return;
    }
    float best_d = 0.0f, best_score = -1.0f;
    for (int step = -10; step <= 10; ++step) {
        for (float end : {float(kIq4nlValues[0]), float(kIq4nlValues[15])}) {
            const float id = (end + step) / vmax;
            float sxv = 0.0f, svv = 0.0f;
            for (int j = 0; j < kQK; ++j) {
                const float v = kIq4nlValues[nearest_iq4nl(id * x[j])];
                sxv += x[j] * v;
                svv += v * v;
            }
            if (svv > 0.0f && sxv * sxv / svv > best_score) best_score = sxv * sxv / svv, best_d = sxv / svv;
        }
    }
    b.d           = f32_to_f16(best_d);
    const float d = f16_to_f32(b.d);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK / 2; ++j)
        b.qs[j] = static_cast<uint8_t>(nearest_iq4nl(id * x[j]) | (nearest_iq4nl(id * x[j + 16]) << 4));
}


void quantize_q5_k(const float* x, BlockQ5_K& b) {
    std::memset(&b, 0, sizeof(b));
    fit_k4_scales(x, 31, b.scales, &b.d, &b.dmin);
    // Requantize against the scales as stored, which is what decodes.
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        get_scale_min_k4(j, b.scales, &sc, &m);
        const float dd = d * sc, dm = dmin * m;
        for (int l = 0; l < 32; ++l) {
            const int i = 32 * j + l;
            const int q = std::clamp(dd != 0.0f ? nearest_int((x[i] + dm) / dd) : 0, 0, 31);
            const int c = i / 64, upper = (i % 64) / 32;
            b.qs[32 * c + l] |= static_cast<uint8_t>((q & 0xF) << (4 * upper));
            b.qh[l] |= static_cast<uint8_t>((q >> 4) << (2 * c + upper));
        }
    }
}


void quantize_q3_k(const float* x, BlockQ3_K& b) {
    float scales[16], amax = 0.0f, vmax = 0.0f;
    for (int s = 0; s < 16; ++s) {
        scales[s] = fit_scale_symmetric(x + 16 * s, 16, 4);
        if (std::fabs(scales[s]) > amax) amax = std::fabs(scales[s]), vmax = scales[s];
    }
    std::memset(&b, 0, sizeof(b));
    const float iscale = amax > 0.0f ? -32.0f / vmax : 0.0f;
    int ls[16];
    for (int s = 0; s < 16; ++s) ls[s] = std::clamp(nearest_int(iscale * scales[s]), -32, 31);
    for (int s = 0; s < 16; ++s) {
        const int u = ls[s] + 32;
        if (s < 8) b.scales[s] |= static_cast<uint8_t>(u & 0xF);
        else b.scales[s - 8] |= static_cast<uint8_t>((u & 0xF) << 4);
        b.scales[8 + s % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (s / 4)));
    }
    b.d           = f32_to_f16(iscale != 0.0f ? 1.0f / iscale : 0.0f);
    const float d = f16_to_f32(b.d);
    for (int i = 0; i < kQKK; ++i) {
        const float dd = d * ls[i / 16];
        const int q    = std::clamp(dd != 0.0f ? nearest_int(x[i] / dd) : 0, -4, 3) + 4;  // 0..7
        const int h = i / 128, j = (i % 128) / 32, l = i % 32;
        b.qs[32 * h + l] |= static_cast<uint8_t>((q & 3) << (2 * j));
        b.hmask[l] |= static_cast<uint8_t>((q >> 2) << (4 * h + j));
    }
}

template <typename Block, void (*kDequant)(const Block&, float*)>
void dequant_blocks(const void* row, float* y, int64_t n, int block_elems) {
    const Block* b = static_cast<const Block*>(row);
    for (int64_t i = 0; i < n / block_elems; ++i) kDequant(b[i], y + i * block_elems);
}

template <typename Block, float (*kDot)(const Block&, const float*)>
float dot_blocks(const void* row, const float* x, int64_t n, int block_elems) {
    const Block* b = static_cast<const Block*>(row);
    float acc      = 0.0f;
    for (int64_t i = 0; i < n / block_elems; ++i) acc += kDot(b[i], x + i * block_elems);
    return acc;
}

template <typename Block, void (*kQuant)(const float*, Block&)>
void quant_blocks(const float* x, void* row, int64_t n, int block_elems) {
    Block* b = static_cast<Block*>(row);
    for (int64_t i = 0; i < n / block_elems; ++i) kQuant(x + i * block_elems, b[i]);
}

}  // namespace

bool dequantize_row_extra(DType t, const void* src, float* dst, int64_t n) {
    switch (t) {
        case DType::Q4_0: dequant_blocks<BlockQ4_0, dequant_q4_0>(src, dst, n, kQK); return true;
        case DType::Q4_1: dequant_blocks<BlockQ4_1, dequant_q4_1>(src, dst, n, kQK); return true;
        case DType::Q5_1: dequant_blocks<BlockQ5_1, dequant_q5_1>(src, dst, n, kQK); return true;
        case DType::IQ4_NL: dequant_blocks<BlockIq4Nl, dequant_iq4_nl>(src, dst, n, kQK); return true;
        case DType::Q5_K: dequant_blocks<BlockQ5_K, dequant_q5_k>(src, dst, n, kQKK); return true;
        case DType::Q3_K: dequant_blocks<BlockQ3_K, dequant_q3_k>(src, dst, n, kQKK); return true;
        default: return false;
    }
}

bool dot_row_extra(DType t, const void* row, const float* x, int64_t n, float* result) {
    switch (t) {
        case DType::Q4_0: *result = dot_blocks<BlockQ4_0, dot_q4_0>(row, x, n, kQK); return true;
        case DType::Q4_1: *result = dot_blocks<BlockQ4_1, dot_q4_1>(row, x, n, kQK); return true;
        case DType::Q5_1: *result = dot_blocks<BlockQ5_1, dot_q5_1>(row, x, n, kQK); return true;
        case DType::IQ4_NL: *result = dot_blocks<BlockIq4Nl, dot_iq4_nl>(row, x, n, kQK); return true;
        case DType::Q5_K: *result = dot_blocks<BlockQ5_K, dot_q5_k>(row, x, n, kQKK); return true;
        case DType::Q3_K: *result = dot_blocks<BlockQ3_K, dot_q3_k>(row, x, n, kQKK); return true;
        default: return false;
    }
}

bool quantize_row_extra(DType t, const float* src, void* dst, int64_t n) {
    switch (t) {
        case DType::Q4_0: quant_blocks<BlockQ4_0, quantize_q4_0>(src, dst, n, kQK); return true;
        case DType::Q4_1: quant_blocks<BlockQ4_1, quantize_q4_1>(src, dst, n, kQK); return true;
        case DType::Q5_1: quant_blocks<BlockQ5_1, quantize_q5_1>(src, dst, n, kQK); return true;
        case DType::IQ4_NL: quant_blocks<BlockIq4Nl, quantize_iq4_nl>(src, dst, n, kQK); return true;
        case DType::Q5_K: quant_blocks<BlockQ5_K, quantize_q5_k>(src, dst, n, kQKK); return true;
        case DType::Q3_K: quant_blocks<BlockQ3_K, quantize_q3_k>(src, dst, n, kQKK); return true;
        default: return false;
    }
}

}  // namespace butler::detail
