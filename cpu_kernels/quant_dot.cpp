// SPDX-License-Identifier: MIT
// Integer dot products against 8-bit activations (see quant_dot.h).
// Work mapping: gemv_q quantizes x once on the calling thread, then OpenMP threads take whole rows (static
// schedule). Memory traffic per GEMV: the weight bytes once, x's blocks (a few KiB, cache-resident) per row.
#include "cpu_kernels/quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define BUTLER_QDOT_AVX2 1
#endif

#include "cpu_kernels/quant.h"
#include "cpu_kernels/quant_blocks.h"
#include "cpu_kernels/simd_math.h"
#include "runtime/status.h"

namespace butler {
namespace {

using namespace quant_blocks;

struct BlockQ8_0Act {  // activation block: 32 int8 values and a float scale (saves an f16 decode per block)
    float d;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0Act) == 36);

inline int get_scale(int j, const uint8_t* q) { return j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); }
inline int get_min(int j, const uint8_t* q) { return j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }

int8_t round_clamp(float v) { return static_cast<int8_t>(std::clamp(static_cast<int>(std::lrintf(v)), -127, 127)); }

void quantize_q8_0(const float* x, int64_t n, BlockQ8_0Act* out) {
    for (int64_t b = 0; b < n / kQK; ++b) {
        const float* xb = x + b * kQK;
        float amax = 0;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
        // The scale rounded to f16, as GGML's Q8_0 activation blocks carry it, keeps results closest to llama.cpp.
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        const float id = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int j = 0; j < kQK; ++j) out[b].qs[j] = round_clamp(xb[j] * id);
    }
}

void quantize_q8_k(const float* x, int64_t n, BlockQ8_K* out) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
        const float* xb = x + b * kQKK;
        float amax = 0;
        for (int j = 0; j < kQKK; ++j) amax = std::max(amax, std::fabs(xb[j]));
        // The scale rounded to f16, as GGML's Q8_0 activation blocks carry it, keeps results closest to llama.cpp.
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        const float id = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int j = 0; j < kQKK; ++j) out[b].qs[j] = round_clamp(xb[j] * id);
        for (int k = 0; k < kQKK / 16; ++k) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += out[b].qs[16 * k + j];
            out[b].bsums[k] = static_cast<int16_t>(sum);
        }
    }
}

// --- scalar references -------------------------------------------------------------------------------------

float ref_q8_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQK; ++b) {
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += int(w[b].qs[j]) * int(x[b].qs[j]);
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

float ref_q5_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ5_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQK; ++b) {
        uint32_t qh;
        std::memcpy(&qh, w[b].qh, 4);
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int v0 = ((w[b].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
            const int v1 = ((w[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += v0 * x[b].qs[j] + v1 * x[b].qs[j + 16];
        }
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

float ref_q4_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ4_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            const int c = j / 2, shift = 4 * (j % 2);
            int sumq = 0;
            for (int l = 0; l < 32; ++l) sumq += ((w[b].qs[32 * c + l] >> shift) & 0xF) * x[b].qs[32 * j + l];
            sumi += get_scale(j, w[b].scales) * sumq;
            summ += get_min(j, w[b].scales) * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        acc += x[b].d * (f16_to_f32(w[b].d) * float(sumi) - f16_to_f32(w[b].dmin) * float(summ));
    }
    return acc;
}

float ref_q6_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ6_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        int q[kQKK];
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = w[b].ql + 64 * h;
            const uint8_t* qh = w[b].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                q[128 * h + l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                q[128 * h + l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                q[128 * h + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                q[128 * h + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            }
        }
        int sumi = 0;
        for (int g = 0; g < kQKK / 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q[16 * g + j] * x[b].qs[16 * g + j];
            sumi += w[b].scales[g] * s;
        }
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

#ifdef BUTLER_QDOT_AVX2
// --- AVX2 ----------------------------------------------------------------------------------------------------

inline float hsum_ps(__m256 v) { return simd::hsum(v); }

inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Sum over pairs of x*y for signed bytes (neither is -128), as 8 int32 lanes. maddubs wants unsigned x:
// |x| * (y with x's sign) has the same products.
inline __m256i dot_i8_pairs(__m256i x, __m256i y) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// 32 bits -> 32 bytes of 0xFF (bit set) or 0x00.
inline __m256i bytes_from_bits_32(const uint8_t* p) {
    uint32_t bits;
    std::memcpy(&bits, p, 4);
    const __m256i shuffle = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuffle);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles first (values 0..15), then high nibbles (values 16..31).
inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i both = _mm256_insertf128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// One f16 -> f32 through F16C (the portable f16_to_f32 costs a dozen instructions and branches per block).
inline float half(uint16_t h) { return _cvtsh_ss(h); }

float avx2_q8_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps();
    const int64_t n_blocks = n / kQK;
    int64_t b = 0;
    for (; b + 1 < n_blocks; b += 2) {  // two independent chains: the loop is latency-bound otherwise
        const __m256 d0 = _mm256_set1_ps(half(w[b].d) * x[b].d);
        const __m256 d1 = _mm256_set1_ps(half(w[b + 1].d) * x[b + 1].d);
        acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8_pairs(load256(w[b].qs), load256(x[b].qs))), acc);
        acc2 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8_pairs(load256(w[b + 1].qs), load256(x[b + 1].qs))), acc2);
    }
    for (; b < n_blocks; ++b) {
        const __m256 d = _mm256_set1_ps(half(w[b].d) * x[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_pairs(load256(w[b].qs), load256(x[b].qs))), acc);
    }
    return hsum_ps(_mm256_add_ps(acc, acc2));
}

// 32 Q5_0 values as int8: (nibble | bit << 4) - 16 is nibble | 0xF0 where the bit is clear, nibble where set.
inline __m256i unpack_q5_0(const BlockQ5_0& b) {
    const __m256i high = _mm256_andnot_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return _mm256_or_si256(bytes_from_nibbles_32(b.qs), high);
}

float avx2_q5_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ5_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    __m256 acc = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
    const int64_t n_blocks = n / kQK;
    int64_t b = 0;
    for (; b + 1 < n_blocks; b += 2) {  // two independent chains, as in avx2_q8_0
        const __m256 d0 = _mm256_set1_ps(half(w[b].d) * x[b].d);
        const __m256 d1 = _mm256_set1_ps(half(w[b + 1].d) * x[b + 1].d);
        acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8_pairs(unpack_q5_0(w[b]), load256(x[b].qs))), acc);
        acc2 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8_pairs(unpack_q5_0(w[b + 1]), load256(x[b + 1].qs))),
                               acc2);
    }
    for (; b < n_blocks; ++b) {
        const __m256 d = _mm256_set1_ps(half(w[b].d) * x[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_pairs(unpack_q5_0(w[b]), load256(x[b].qs))), acc);
    }
    return hsum_ps(_mm256_add_ps(acc, acc2));
}

// The 12 packed scale bytes of a Q4_K block as 8 scales then 8 mins, one byte each (get_scale / get_min for all
// j at once, with 32-bit masks instead of per-j branches).
inline void unpack_scales_mins_k4(const uint8_t* packed, uint8_t out[16]) {
    uint32_t u[4];
    std::memcpy(u, packed, 12);
    constexpr uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
    u[3] = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);  // mins 4..7
    const uint32_t mins_lo = u[1] & k6;                     // mins 0..3
    u[1] = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);          // scales 4..7
    u[2] = mins_lo;
    u[0] &= k6;                                              // scales 0..3
    std::memcpy(out, u, 16);
}

float avx2_q4_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ4_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        alignas(16) uint8_t sm[16];
        unpack_scales_mins_k4(w[b].scales, sm);
        // sum_j min_j * (activation sum of sub-block j): pairwise bsums against the 8 mins.
        const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].bsums)),
                                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].bsums + 8)));
        const __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)));
        __m128i pm = _mm_madd_epi16(bs, mins);
        pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, _MM_SHUFFLE(1, 0, 3, 2)));
        pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, _MM_SHUFFLE(2, 3, 0, 1)));
        acc_min += x[b].d * half(w[b].dmin) * float(_mm_cvtsi128_si32(pm));
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q4 = load256(w[b].qs + 32 * c);
            const __m256i lo = _mm256_and_si256(q4, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
            __m256i pl = _mm256_maddubs_epi16(lo, load256(x[b].qs + 64 * c));
            __m256i ph = _mm256_maddubs_epi16(hi, load256(x[b].qs + 64 * c + 32));
            pl = _mm256_madd_epi16(_mm256_set1_epi16(sm[2 * c]), pl);
            ph = _mm256_madd_epi16(_mm256_set1_epi16(sm[2 * c + 1]), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * half(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) - acc_min;
}

float avx2_q6_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ6_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        const int8_t* sc = w[b].scales;
        // The -32 offset of every 6-bit value, folded through the activation sums of each 16-value group.
        const __m128i sc_lo = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc)));
        const __m128i sc_hi = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8)));
        __m128i po = _mm_add_epi32(_mm_madd_epi16(sc_lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].bsums))),
                                   _mm_madd_epi16(sc_hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].bsums + 8))));
        po = _mm_add_epi32(po, _mm_shuffle_epi32(po, _MM_SHUFFLE(1, 0, 3, 2)));
        po = _mm_add_epi32(po, _mm_shuffle_epi32(po, _MM_SHUFFLE(2, 3, 0, 1)));
        const int offset = _mm_cvtsi128_si32(po);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load256(w[b].ql + 64 * h);
            const __m256i ql1 = load256(w[b].ql + 64 * h + 32);
            const __m256i qh = load256(w[b].qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
            };
            for (int k = 0; k < 4; ++k) {
                const int g = 8 * h + 2 * k;  // the 16-value groups of the low and high 128-bit lane
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                const __m256i p = _mm256_maddubs_epi16(q[k], load256(x[b].qs + 128 * h + 32 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales));
            }
        }
        acc += half(w[b].d) * x[b].d * float(hsum_epi32(sumi) - 32 * offset);
    }
    return acc;
}
#endif

using DotFn = float (*)(const void*, const void*, int64_t);

DotFn reference_fn(DType t) {
    switch (t) {
        case DType::Q8_0: return ref_q8_0;
        case DType::Q5_0: return ref_q5_0;
        case DType::Q4_K: return ref_q4_k;
        case DType::Q6_K: return ref_q6_k;
        default: return nullptr;
    }
}

DotFn fast_fn(DType t) {
#ifdef BUTLER_QDOT_AVX2
    switch (t) {
        case DType::Q8_0: return avx2_q8_0;
        case DType::Q5_0: return avx2_q5_0;
        case DType::Q4_K: return avx2_q4_k;
        case DType::Q6_K: return avx2_q6_k;
        default: return nullptr;
    }
#else
    return reference_fn(t);
#endif
}

}  // namespace

DType activation_type(DType weight_type) {
    switch (weight_type) {
        case DType::Q8_0:
        case DType::Q5_0: return DType::Q8_0;
        case DType::Q4_K:
        case DType::Q6_K: return DType::Q8_K;
        default: return DType::F32;
    }
}

int64_t activation_bytes(DType weight_type, int64_t n) {
    switch (activation_type(weight_type)) {
        case DType::Q8_0: return n / kQK * int64_t(sizeof(BlockQ8_0Act));
        case DType::Q8_K: return n / kQKK * int64_t(sizeof(BlockQ8_K));
        default: return n * 4;
    }
}

void quantize_activation(DType weight_type, const float* x, int64_t n, void* xq) {
    switch (activation_type(weight_type)) {
        case DType::Q8_0: quantize_q8_0(x, n, static_cast<BlockQ8_0Act*>(xq)); return;
        case DType::Q8_K: quantize_q8_k(x, n, static_cast<BlockQ8_K*>(xq)); return;
        default: std::memcpy(xq, x, static_cast<size_t>(n) * 4); return;
    }
}

float dot_row_q(DType weight_type, const void* row, const void* xq, int64_t n) {
    const DotFn f = fast_fn(weight_type);
    if (f == nullptr) return dot_row(weight_type, row, static_cast<const float*>(xq), n);
    return f(row, xq, n);
}

float dot_row_q_reference(DType weight_type, const void* row, const void* xq, int64_t n) {
    const DotFn f = reference_fn(weight_type);
    if (f == nullptr) return dot_row(weight_type, row, static_cast<const float*>(xq), n);
    return f(row, xq, n);
}

void gemv_q(DType t, const void* w, int64_t n_rows, int64_t n_cols, const float* x, float* y,
            std::vector<uint8_t>& xq_scratch) {
    const DotFn f = fast_fn(t);
    if (f == nullptr) {
        gemv(t, w, n_rows, n_cols, x, y);
        return;
    }
    BUTLER_ASSERT(n_cols % dtype_traits(t).block_elems == 0, "gemv_q: {} columns for type {}", n_cols, dtype_name(t));
    const size_t n_xq = static_cast<size_t>(activation_bytes(t, n_cols));
    if (xq_scratch.size() < n_xq) xq_scratch.resize(n_xq);
    quantize_activation(t, x, n_cols, xq_scratch.data());
    const int64_t stride = row_bytes(t, n_cols);
    const auto* base = static_cast<const uint8_t*>(w);
    const void* xq = xq_scratch.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = f(base + r * stride, xq, n_cols);
}

void gemv_q_multi(const GemvJob* jobs, int n_jobs, int64_t n_cols, const float* x, std::vector<uint8_t>& xq_scratch) {
    // Activation blocks: Q8_0 first, then Q8_K (each quantized only if some job needs it).
    const int64_t q8_0_bytes = activation_bytes(DType::Q8_0, n_cols);
    const int64_t q8_k_bytes = n_cols % kQKK == 0 ? activation_bytes(DType::Q4_K, n_cols) : 0;
    if (xq_scratch.size() < static_cast<size_t>(q8_0_bytes + q8_k_bytes))
        xq_scratch.resize(static_cast<size_t>(q8_0_bytes + q8_k_bytes));
    bool need_q8_0 = false, need_q8_k = false;
    DotFn fns[8];
    const void* xqs[8];
    BUTLER_ASSERT(n_jobs <= 8, "gemv_q_multi takes at most 8 jobs");
    for (int j = 0; j < n_jobs; ++j) {
        fns[j] = fast_fn(jobs[j].type);
        BUTLER_ASSERT(fns[j] != nullptr, "gemv_q_multi: type {} has no integer path", dtype_name(jobs[j].type));
        const bool k = activation_type(jobs[j].type) == DType::Q8_K;
        need_q8_k |= k;
        need_q8_0 |= !k;
        xqs[j] = xq_scratch.data() + (k ? q8_0_bytes : 0);
    }
    if (need_q8_0) quantize_activation(DType::Q8_0, x, n_cols, xq_scratch.data());
    if (need_q8_k) quantize_activation(DType::Q4_K, x, n_cols, xq_scratch.data() + q8_0_bytes);
#pragma omp parallel
    for (int j = 0; j < n_jobs; ++j) {
        const int64_t stride = row_bytes(jobs[j].type, n_cols);
        const auto* base = static_cast<const uint8_t*>(jobs[j].w);
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < jobs[j].n_rows; ++r) jobs[j].y[r] = fns[j](base + r * stride, xqs[j], n_cols);
    }
}

}  // namespace butler
