// SPDX-License-Identifier: MIT
// CPU quantized rows: dequantize, dot, quantize and gemv over GGML block layouts (see quant.h).
//
// Work mapping: one call walks one row block by block; gemv hands whole rows to OpenMP threads (static
// schedule). Memory traffic per dot: the row's bytes once plus n floats of x; nothing is materialized.
// The scalar *_reference paths define the arithmetic; the AVX2 paths (compiled when the target has
// AVX2+FMA+F16C) reorder the float sums only and are tested against the scalar ones.
#include "cpu_kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define BUTLER_QUANT_AVX2 1
#endif

#include "cpu_kernels/quant_blocks.h"
#include "cpu_kernels/quant_extra.h"
#include "cpu_kernels/quant_fit.h"
#include "cpu_kernels/simd_math.h"
#include "runtime/status.h"

namespace butler {
namespace {

using namespace quant_blocks;



[[noreturn]] void unsupported(const char* what, DType t) {
    fail(Status::Unsupported, "{}: tensor type {} is not supported on the CPU", what, dtype_name(t));
}

void check_row(const char* what, DType t, int64_t n) {
    const DTypeTraits& tr = dtype_traits(t);
    if (!tr.computable) unsupported(what, t);
    BUTLER_ASSERT(n >= 0 && n % tr.block_elems == 0, "{}: {} values is not a multiple of the {} block size {}", what, n,
                  tr.name, tr.block_elems);
}



inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);  // little-endian host, as GGUF
    return v;
}

// --- dequantize (one block) ---------------------------------------------------------------------------------

void dequant_q8_0(const BlockQ8_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = d * b.qs[j];
}

void dequant_q5_0(const BlockQ5_0& b, float* y) {
    const float d     = f16_to_f32(b.d);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10;
        const int h1 = (qh >> (j + 12)) & 0x10;
        y[j]         = d * (((b.qs[j] & 0xF) | h0) - 16);
        y[j + 16]    = d * (((b.qs[j] >> 4) | h1) - 16);
    }
}

void dequant_q4_k(const BlockQ4_K& b, float* y) {
    const float d    = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    const uint8_t* q = b.qs;
    for (int is = 0; is < 8; is += 2, q += 32, y += 64) {
        int sc, m;
        get_scale_min_k4(is, b.scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        get_scale_min_k4(is + 1, b.scales, &sc, &m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) y[l] = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) y[32 + l] = d2 * (q[l] >> 4) - m2;
    }
}

// The 6-bit value at position l + 32 * g (g = 0..3) of a 128-value half.
inline int q6_value(const uint8_t* ql, const uint8_t* qh, int l, int g) {
    const int lo  = g & 1 ? ql[l + 32] : ql[l];
    const int nib = g < 2 ? lo & 0xF : lo >> 4;
    return (nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
}

void dequant_q6_k(const BlockQ6_K& b, float* y) {
    const float d     = f16_to_f32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc  = b.scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            for (int g = 0; g < 4; ++g) y[l + 32 * g] = d * sc[is + 2 * g] * q6_value(ql, qh, l, g);
        }
    }
}

// --- scalar fused dots (one block): sum the integer-valued products first, scale once per (sub-)block ----------

float dot_q8_0(const BlockQ8_0& b, const float* x) {
    float s = 0.0f;
    for (int j = 0; j < kQK; ++j) s += b.qs[j] * x[j];
    return f16_to_f32(b.d) * s;
}

float dot_q5_0(const BlockQ5_0& b, const float* x) {
    const uint32_t qh = load_u32(b.qh);
    float s           = 0.0f;
    for (int j = 0; j < kQK / 2; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10;
        const int h1 = (qh >> (j + 12)) & 0x10;
        s += (((b.qs[j] & 0xF) | h0) - 16) * x[j] + (((b.qs[j] >> 4) | h1) - 16) * x[j + 16];
    }
    return f16_to_f32(b.d) * s;
}

float dot_q4_k(const BlockQ4_K& b, const float* x) {
    const float d    = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    float acc        = 0.0f;
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        get_scale_min_k4(j, b.scales, &sc, &m);
        const uint8_t* q = b.qs + 32 * (j / 2);
        const int shift  = 4 * (j & 1);
        const float* xs  = x + 32 * j;
        float sqx = 0.0f, sx = 0.0f;
        for (int l = 0; l < 32; ++l) {
            sqx += ((q[l] >> shift) & 0xF) * xs[l];
            sx += xs[l];
        }
        acc += d * sc * sqx - dmin * m * sx;
    }
    return acc;
}

float dot_q6_k(const BlockQ6_K& b, const float* x) {
    const float d = f16_to_f32(b.d);
    float acc     = 0.0f;
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        const int8_t* sc  = b.scales + 8 * half;
        const float* xs   = x + 128 * half;
        // One sum per 16-value scale group: group (g, is) covers values 32 g + 16 is + [0, 16).
        for (int g = 0; g < 4; ++g) {
            for (int is = 0; is < 2; ++is) {
                float s = 0.0f;
                for (int l = 16 * is; l < 16 * is + 16; ++l) s += q6_value(ql, qh, l, g) * xs[l + 32 * g];
                acc += d * sc[is + 2 * g] * s;
            }
        }
    }
    return acc;
}

template <typename Block, float (*kDot)(const Block&, const float*)>
float dot_blocks(const void* row, const float* x, int64_t n, int64_t block_elems) {
    const Block* b = static_cast<const Block*>(row);
    float acc      = 0.0f;
    for (int64_t i = 0; i < n / block_elems; ++i) acc += kDot(b[i], x + i * block_elems);
    return acc;
}

template <typename Block, void (*kDequant)(const Block&, float*)>
void dequant_blocks(const void* row, float* y, int64_t n, int64_t block_elems) {
    const Block* b = static_cast<const Block*>(row);
    for (int64_t i = 0; i < n / block_elems; ++i) kDequant(b[i], y + i * block_elems);
}

// --- AVX2 dots -------------------------------------------------------------------------------------------------
#ifdef BUTLER_QUANT_AVX2

using simd::hsum;

// Bytes 0..7 of v, as 8 floats (unsigned / signed).
inline __m256 u8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
inline __m256 i8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

float dot_f32_avx2(const float* w, const float* x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += w[i] * x[i];
    return s;
}

float dot_f16_avx2(const uint16_t* w, const float* x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8)));
        a0              = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1              = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
    return s;
}

float dot_bf16_avx2(const uint16_t* w, const float* x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i  = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        acc             = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(h, 16)), _mm256_loadu_ps(x + i), acc);
    }
    float s = hsum(acc);
    for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

float dot_q8_0_avx2(const BlockQ8_0* b, const float* x, int64_t n_blocks) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
        const __m256i q  = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
        const __m128i lo = _mm256_castsi256_si128(q);
        const __m128i hi = _mm256_extracti128_si256(q, 1);
        __m256 s         = _mm256_mul_ps(i8x8_to_ps(lo), _mm256_loadu_ps(x));
        s                = _mm256_fmadd_ps(i8x8_to_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), s);
        s                = _mm256_fmadd_ps(i8x8_to_ps(hi), _mm256_loadu_ps(x + 16), s);
        s                = _mm256_fmadd_ps(i8x8_to_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), s);
        acc              = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(b[i].d)), s, acc);
    }
    return hsum(acc);
}

float dot_q5_0_avx2(const BlockQ5_0* b, const float* x, int64_t n_blocks) {
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m256i one  = _mm256_set1_epi32(1);
    const __m256i k16  = _mm256_set1_epi32(16);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 acc         = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_blocks; ++i, x += kQK) {
        const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
        // Nibbles in value order: values 0..15 are the low nibbles, 16..31 the high ones.
        const __m128i nib[2] = {_mm_and_si128(qs, low4), _mm_and_si128(_mm_srli_epi16(qs, 4), low4)};
        const __m256i qh     = _mm256_set1_epi32(static_cast<int>(load_u32(b[i].qh)));
        __m256 s             = _mm256_setzero_ps();
        for (int g = 0; g < 4; ++g) {
            const __m128i bytes = g & 1 ? _mm_srli_si128(nib[g >> 1], 8) : nib[g >> 1];
            const __m256i shift = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g));
            const __m256i high  = _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(qh, shift), one), 4);
            const __m256i q     = _mm256_sub_epi32(_mm256_or_si256(_mm256_cvtepu8_epi32(bytes), high), k16);
            s                   = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(x + 8 * g), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(b[i].d)), s, acc);
    }
    return hsum(acc);
}

float dot_q4_k_avx2(const BlockQ4_K* b, const float* x, int64_t n_blocks) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256 acc         = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_blocks; ++i, x += kQKK) {
        const float d    = f16_to_f32(b[i].d);
        const float dmin = f16_to_f32(b[i].dmin);
        for (int c = 0; c < 4; ++c) {
            const __m256i q       = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * c));
            const __m256i nibs[2] = {_mm256_and_si256(q, low4), _mm256_and_si256(_mm256_srli_epi16(q, 4), low4)};
            for (int h = 0; h < 2; ++h) {
                const int j = 2 * c + h;
                int sc, m;
                get_scale_min_k4(j, b[i].scales, &sc, &m);
                const float* xs  = x + 32 * j;
                const __m128i lo = _mm256_castsi256_si128(nibs[h]);
                const __m128i hi = _mm256_extracti128_si256(nibs[h], 1);
                const __m256 x0 = _mm256_loadu_ps(xs), x1 = _mm256_loadu_ps(xs + 8);
                const __m256 x2 = _mm256_loadu_ps(xs + 16), x3 = _mm256_loadu_ps(xs + 24);
                __m256 sqx      = _mm256_mul_ps(u8x8_to_ps(lo), x0);
                sqx             = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), x1, sqx);
                sqx             = _mm256_fmadd_ps(u8x8_to_ps(hi), x2, sqx);
                sqx             = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), x3, sqx);
                const __m256 sx = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
                acc             = _mm256_fmadd_ps(_mm256_set1_ps(d * sc), sqx, acc);
                acc             = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * m), sx, acc);
            }
        }
    }
    return hsum(acc);
}

float dot_q6_k_avx2(const BlockQ6_K* b, const float* x, int64_t n_blocks) {
    const __m256i low4  = _mm256_set1_epi32(0x0F);
    const __m256i three = _mm256_set1_epi32(3);
    const __m256i k32   = _mm256_set1_epi32(32);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_blocks; ++i, x += kQKK) {
        const float d = f16_to_f32(b[i].d);
        for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = b[i].ql + 64 * half;
            const uint8_t* qh = b[i].qh + 32 * half;
            const int8_t* sc  = b[i].scales + 8 * half;
            const float* xs   = x + 128 * half;
            for (int l = 0; l < 32; l += 8) {
                const int is    = l / 16;
                const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l)));
                const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l + 32)));
                const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
                const __m256i hb[4] = {
                    _mm256_slli_epi32(_mm256_and_si256(h, three), 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), three), 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), three), 4),
                    _mm256_slli_epi32(_mm256_srli_epi32(h, 6), 4),
                };
                const __m256i nib[4] = {_mm256_and_si256(a, low4), _mm256_and_si256(c, low4), _mm256_srli_epi32(a, 4),
                                        _mm256_srli_epi32(c, 4)};
                for (int g = 0; g < 4; ++g) {
                    const __m256i q = _mm256_sub_epi32(_mm256_or_si256(nib[g], hb[g]), k32);
                    const __m256 wq = _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(d * sc[is + 2 * g]));
                    if (g & 1)
                        acc1 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(xs + l + 32 * g), acc1);
                    else
                        acc0 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(xs + l + 32 * g), acc0);
                }
            }
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

#endif  // BUTLER_QUANT_AVX2

// --- quantizers ------------------------------------------------------------------------------------------------

void quantize_q8_0(const float* x, BlockQ8_0& b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d  = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d            = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
}

void quantize_q5_0(const float* x, BlockQ5_0& b) {
    // The signed extreme maps to -16 exactly, so the 32 levels are spent where the data is (GGML's choice).
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            vmax = x[j];
        }
    }
    const float d  = vmax / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d            = f32_to_f16(d);
    uint32_t qh    = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
        const int q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 16.5f)));
        b.qs[j]      = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
        qh |= uint32_t((q0 >> 4) & 1) << j;
        qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
}


void quantize_q4_k(const float* x, BlockQ4_K& b) {
    fit_k4_scales(x, 15, b.scales, &b.d, &b.dmin);
    // Requantize against the scales as stored (f16 super-scales times 6-bit factors), which is what decodes.
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    uint8_t l_all[kQKK];
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        get_scale_min_k4(j, b.scales, &sc, &m);
        const float dd = d * sc, dm = dmin * m;
        for (int i = 0; i < 32; ++i) {
            const int l       = dd != 0.0f ? nearest_int((x[32 * j + i] + dm) / dd) : 0;
            l_all[32 * j + i] = static_cast<uint8_t>(std::clamp(l, 0, 15));
        }
    }
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
            b.qs[32 * c + l] = static_cast<uint8_t>(l_all[64 * c + l] | (l_all[64 * c + 32 + l] << 4));
}


void quantize_q6_k(const float* x, BlockQ6_K& b) {
    float scales[16];
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 16; ++j) {
        scales[j] = fit_scale_symmetric(x + 16 * j, 16, 32);
        if (std::fabs(scales[j]) > amax) {
            amax = std::fabs(scales[j]);
            vmax = scales[j];
        }
    }
    std::memset(&b, 0, sizeof(b));
    if (amax == 0.0f) {
        // All zero: d = 0 decodes to zeros whatever the 6-bit values are; store the zero level (32) anyway.
        std::memset(b.qh, 0xAA, sizeof(b.qh));  // 0b10 in each 2-bit field: 32 = high bits 2, nibble 0
        return;
    }
    const float iscale = -128.0f / vmax;
    for (int j = 0; j < 16; ++j)
        b.scales[j] = static_cast<int8_t>(std::clamp(nearest_int(iscale * scales[j]), -128, 127));
    b.d           = f32_to_f16(1.0f / iscale);
    const float d = f16_to_f32(b.d);
    uint8_t l_all[kQKK];
    for (int j = 0; j < 16; ++j) {
        const float dd = d * b.scales[j];
        for (int i = 0; i < 16; ++i) {
            const int l       = dd != 0.0f ? nearest_int(x[16 * j + i] / dd) : 0;
            l_all[16 * j + i] = static_cast<uint8_t>(std::clamp(l, -32, 31) + 32);
        }
    }
    for (int half = 0; half < 2; ++half) {
        const uint8_t* L = l_all + 128 * half;
        uint8_t* ql      = b.ql + 64 * half;
        uint8_t* qh      = b.qh + 32 * half;
        for (int l = 0; l < 32; ++l) {
            ql[l]      = static_cast<uint8_t>((L[l] & 0xF) | ((L[l + 64] & 0xF) << 4));
            ql[l + 32] = static_cast<uint8_t>((L[l + 32] & 0xF) | ((L[l + 96] & 0xF) << 4));
            qh[l]      = static_cast<uint8_t>((L[l] >> 4) | ((L[l + 32] >> 4) << 2) | ((L[l + 64] >> 4) << 4) |
                                         ((L[l + 96] >> 4) << 6));
        }
    }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    check_row("dequantize_row", t, n);
    switch (t) {
        case DType::F32:
            std::memcpy(dst, src, size_t(n) * sizeof(float));
            return;
        case DType::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
            return;
        }
        case DType::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
            return;
        }
        case DType::Q8_0:
            return dequant_blocks<BlockQ8_0, dequant_q8_0>(src, dst, n, kQK);
        case DType::Q5_0:
            return dequant_blocks<BlockQ5_0, dequant_q5_0>(src, dst, n, kQK);
        case DType::Q4_K:
            return dequant_blocks<BlockQ4_K, dequant_q4_k>(src, dst, n, kQKK);
        case DType::Q6_K:
            return dequant_blocks<BlockQ6_K, dequant_q6_k>(src, dst, n, kQKK);
        default:
            if (detail::dequantize_row_extra(t, src, dst, n)) return;
            unsupported("dequantize_row", t);
    }
}

float dot_row_reference(DType t, const void* row, const float* x, int64_t n) {
    check_row("dot_row", t, n);
    switch (t) {
        case DType::F32: {
            const float* w = static_cast<const float*>(row);
            float s        = 0.0f;
            for (int64_t i = 0; i < n; ++i) s += w[i] * x[i];
            return s;
        }
        case DType::F16: {
            const uint16_t* w = static_cast<const uint16_t*>(row);
            float s           = 0.0f;
            for (int64_t i = 0; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
            return s;
        }
        case DType::BF16: {
            const uint16_t* w = static_cast<const uint16_t*>(row);
            float s           = 0.0f;
            for (int64_t i = 0; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
            return s;
        }
        case DType::Q8_0:
            return dot_blocks<BlockQ8_0, dot_q8_0>(row, x, n, kQK);
        case DType::Q5_0:
            return dot_blocks<BlockQ5_0, dot_q5_0>(row, x, n, kQK);
        case DType::Q4_K:
            return dot_blocks<BlockQ4_K, dot_q4_k>(row, x, n, kQKK);
        case DType::Q6_K:
            return dot_blocks<BlockQ6_K, dot_q6_k>(row, x, n, kQKK);
        default: {
            float r;
            if (detail::dot_row_extra(t, row, x, n, &r)) return r;
            unsupported("dot_row", t);
        }
    }
}

float dot_row(DType t, const void* row, const float* x, int64_t n) {
#ifdef BUTLER_QUANT_AVX2
    check_row("dot_row", t, n);
    switch (t) {
        case DType::F32:
            return dot_f32_avx2(static_cast<const float*>(row), x, n);
        case DType::F16:
            return dot_f16_avx2(static_cast<const uint16_t*>(row), x, n);
        case DType::BF16:
            return dot_bf16_avx2(static_cast<const uint16_t*>(row), x, n);
        case DType::Q8_0:
            return dot_q8_0_avx2(static_cast<const BlockQ8_0*>(row), x, n / kQK);
        case DType::Q5_0:
            return dot_q5_0_avx2(static_cast<const BlockQ5_0*>(row), x, n / kQK);
        case DType::Q4_K:
            return dot_q4_k_avx2(static_cast<const BlockQ4_K*>(row), x, n / kQKK);
        case DType::Q6_K:
            return dot_q6_k_avx2(static_cast<const BlockQ6_K*>(row), x, n / kQKK);
        default:
            return dot_row_reference(t, row, x, n);  // the types of quant_extra.cpp have no SIMD path yet
    }
#else
    return dot_row_reference(t, row, x, n);
#endif
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
    check_row("quantize_row", t, n);
    switch (t) {
        case DType::F32:
            std::memcpy(dst, src, size_t(n) * sizeof(float));
            return;
        case DType::F16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
            return;
        }
        case DType::BF16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
            return;
        }
        case DType::Q8_0: {
            BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
            for (int64_t i = 0; i < n / kQK; ++i) quantize_q8_0(src + i * kQK, b[i]);
            return;
        }
        case DType::Q5_0: {
            BlockQ5_0* b = static_cast<BlockQ5_0*>(dst);
            for (int64_t i = 0; i < n / kQK; ++i) quantize_q5_0(src + i * kQK, b[i]);
            return;
        }
        case DType::Q4_K: {
            BlockQ4_K* b = static_cast<BlockQ4_K*>(dst);
            for (int64_t i = 0; i < n / kQKK; ++i) quantize_q4_k(src + i * kQKK, b[i]);
            return;
        }
        case DType::Q6_K: {
            BlockQ6_K* b = static_cast<BlockQ6_K*>(dst);
            for (int64_t i = 0; i < n / kQKK; ++i) quantize_q6_k(src + i * kQKK, b[i]);
            return;
        }
        default:
            if (detail::quantize_row_extra(t, src, dst, n)) return;
            unsupported("quantize_row", t);
    }
}

void gemv(DType t, const void* w, int64_t n_rows, int64_t n_cols, const float* x, float* y) {
    // Validate here, on the calling thread: an exception must not escape the OpenMP region.
    check_row("gemv", t, n_cols);
    const int64_t stride = row_bytes(t, n_cols);
    const uint8_t* base  = static_cast<const uint8_t*>(w);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = dot_row(t, base + r * stride, x, n_cols);
}

}  // namespace butler
