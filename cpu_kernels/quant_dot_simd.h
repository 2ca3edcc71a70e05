// SPDX-License-Identifier: MIT
// Internal to quant_dot.cpp and quant_dot_avx512.cpp: the activation block and the AVX2 helpers both kernel sets use.
// Everything here has internal linkage (an unnamed namespace): the two files are compiled for different ISAs, and a
// shared inline function could otherwise be linked from the AVX-512 file into the AVX2 path.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_kernels/quant_blocks.h"
#include "cpu_kernels/simd_math.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#endif

namespace butler::qdot {
namespace {

using namespace quant_blocks;

struct BlockQ8_0Act {  // activation block: 32 int8 values and a float scale (saves an f16 decode per block)
    float d;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0Act) == 36);

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
inline float hsum_ps(__m256 v) { return simd::hsum(v); }

inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Sum over pairs of x*y for signed bytes (neither is -128), as 8 int32 lanes (each the sum of 4 products). maddubs
// and vpdpbusd want unsigned x: |x| * (y with x's sign) has the same products. Vnni: one AVX-512 VNNI vpdpbusd
// (AVX512VL, 256-bit) instead of maddubs + madd; the integer sums are the same (maddubs cannot saturate here).
template <bool Vnni>
inline __m256i dot_i8_pairs(__m256i x, __m256i y) {
    const __m256i ux = _mm256_sign_epi8(x, x), sy = _mm256_sign_epi8(y, x);
    if constexpr (Vnni) {
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy);
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(ux, sy), _mm256_set1_epi16(1));
    }
}

// acc + the int16 pairs p times the int16 scales s, summed pairwise into 8 int32 lanes: madd + add, or one VNNI
// vpdpwssd. The same integer result.
template <bool Vnni>
inline __m256i add_scaled_pairs(__m256i acc, __m256i p, __m256i s) {
    if constexpr (Vnni) {
        return _mm256_dpwssd_epi32(acc, p, s);
    } else {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
    }
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

// 32 Q5_0 values as int8: (nibble | bit << 4) - 16 is nibble | 0xF0 where the bit is clear, nibble where set.
inline __m256i unpack_q5_0(const BlockQ5_0& b) {
    const __m256i high = _mm256_andnot_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return _mm256_or_si256(bytes_from_nibbles_32(b.qs), high);
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

// The dot products of quant_dot.h's contract, written once for AVX2 (Vnni false: quant_dot.cpp) and AVX-512 VNNI
// (Vnni true: quant_dot_avx512.cpp, compiled for it).
template <bool Vnni>
float dot_q8_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps();
    const int64_t n_blocks = n / kQK;
    int64_t b = 0;
    for (; b + 1 < n_blocks; b += 2) {  // two independent chains: the loop is latency-bound otherwise
        const __m256 d0 = _mm256_set1_ps(half(w[b].d) * x[b].d);
        const __m256 d1 = _mm256_set1_ps(half(w[b + 1].d) * x[b + 1].d);
        acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(load256(w[b].qs), load256(x[b].qs))), acc);
        acc2 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(load256(w[b + 1].qs), load256(x[b + 1].qs))), acc2);
    }
    for (; b < n_blocks; ++b) {
        const __m256 d = _mm256_set1_ps(half(w[b].d) * x[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(load256(w[b].qs), load256(x[b].qs))), acc);
    }
    return hsum_ps(_mm256_add_ps(acc, acc2));
}

template <bool Vnni>
float dot_q5_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ5_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    __m256 acc = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
    const int64_t n_blocks = n / kQK;
    int64_t b = 0;
    for (; b + 1 < n_blocks; b += 2) {  // two independent chains, as in dot_q8_0
        const __m256 d0 = _mm256_set1_ps(half(w[b].d) * x[b].d);
        const __m256 d1 = _mm256_set1_ps(half(w[b + 1].d) * x[b + 1].d);
        acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(unpack_q5_0(w[b]), load256(x[b].qs))), acc);
        acc2 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(unpack_q5_0(w[b + 1]), load256(x[b + 1].qs))),
                               acc2);
    }
    for (; b < n_blocks; ++b) {
        const __m256 d = _mm256_set1_ps(half(w[b].d) * x[b].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_pairs<Vnni>(unpack_q5_0(w[b]), load256(x[b].qs))), acc);
    }
    return hsum_ps(_mm256_add_ps(acc, acc2));
}

template <bool Vnni>
float dot_q4_k(const void* row, const void* xq, int64_t n) {
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
            const __m256i pl = _mm256_maddubs_epi16(lo, load256(x[b].qs + 64 * c));
            const __m256i ph = _mm256_maddubs_epi16(hi, load256(x[b].qs + 64 * c + 32));
            sumi = add_scaled_pairs<Vnni>(sumi, pl, _mm256_set1_epi16(sm[2 * c]));
            sumi = add_scaled_pairs<Vnni>(sumi, ph, _mm256_set1_epi16(sm[2 * c + 1]));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[b].d * half(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) - acc_min;
}

template <bool Vnni>
float dot_q6_k(const void* row, const void* xq, int64_t n) {
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
                sumi = add_scaled_pairs<Vnni>(sumi, p, scales);
            }
        }
        acc += half(w[b].d) * x[b].d * float(hsum_epi32(sumi) - 32 * offset);
    }
    return acc;
}
#endif  // AVX2
}  // namespace
}  // namespace butler::qdot
