// SPDX-License-Identifier: MIT
#include "cpu_kernels/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/status.h"

namespace butler {

void store_kv_row(DType type, const float* src, uint8_t* dst, int64_t n) {
    switch (type) {
        case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
        case DType::F16: {
            auto* d = reinterpret_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
            return;
        }
        case DType::BF16: {
            auto* d = reinterpret_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
            return;
        }
        default: BUTLER_ASSERT(false, "KV type {} is not supported", dtype_name(type));
    }
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
namespace {
inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}
inline __m256 load8(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F16:
            return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
        case DType::BF16: {
            const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
        default: return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
    }
}
inline float load1(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        case DType::BF16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        default: return reinterpret_cast<const float*>(row)[i];
    }
}
}  // namespace

float dot_kv_row(DType type, const uint8_t* row, const float* x, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(load8(type, row, i), _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(load8(type, row, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8(type, row, i), _mm256_loadu_ps(x + i), acc0);
    float sum = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) sum += load1(type, row, i) * x[i];
    return sum;
}

void axpy_kv_row(DType type, const uint8_t* row, float a, float* acc, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(va, load8(type, row, i), _mm256_loadu_ps(acc + i)));
    for (; i < n; ++i) acc[i] += a * load1(type, row, i);
}
#else
namespace {
inline float load1(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        case DType::BF16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        default: return reinterpret_cast<const float*>(row)[i];
    }
}
}  // namespace

float dot_kv_row(DType type, const uint8_t* row, const float* x, int64_t n) {
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += load1(type, row, i) * x[i];
    return sum;
}

void axpy_kv_row(DType type, const uint8_t* row, float a, float* acc, int64_t n) {
    for (int64_t i = 0; i < n; ++i) acc[i] += a * load1(type, row, i);
}
#endif

void attend_group(const float* q, int32_t n_group, const KvLayerView& kv, int32_t g, int64_t k_lo, int64_t k_hi,
                  float* out, float* lse, float* scores) {
    const int64_t n_keys = k_hi - k_lo + 1;
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    std::memset(out, 0, sizeof(float) * static_cast<size_t>(n_group) * dv);
    if (n_keys <= 0) {
        if (lse)
            for (int32_t h = 0; h < n_group; ++h) lse[h] = -std::numeric_limits<float>::infinity();
        return;
    }
    // Pass 1: scores, one K row read serves every query head of the group.
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* krow = kv.k_row(g, k_lo + j);
        for (int32_t h = 0; h < n_group; ++h) scores[h * n_keys + j] = dot_kv_row(kv.type, krow, q + h * dk, dk);
    }
    // Pass 2: softmax per head.
    for (int32_t h = 0; h < n_group; ++h) {
        float* s = scores + h * n_keys;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n_keys; ++j) m = std::max(m, s[j]);
        double sum = 0;
        for (int64_t j = 0; j < n_keys; ++j) {
            s[j] = std::exp(s[j] - m);
            sum += s[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n_keys; ++j) s[j] *= inv;
        if (lse) lse[h] = m + static_cast<float>(std::log(sum));
    }
    // Pass 3: weighted sum of V.
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* vrow = kv.v_row(g, k_lo + j);
        for (int32_t h = 0; h < n_group; ++h) axpy_kv_row(kv.type, vrow, scores[h * n_keys + j], out + h * dv, dv);
    }
}

namespace {

// One kernel body for every row addressing: `row_of(j)` maps the j-th key of the set to a row id of the view.
template <typename View, typename RowOf>
void attend_rows(const float* q, int32_t n_group, const View& kv, int32_t g, int64_t n_keys, RowOf row_of, float* out,
                 float* lse, float* scores) {
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    std::memset(out, 0, sizeof(float) * static_cast<size_t>(n_group) * dv);
    if (n_keys <= 0) {
        if (lse)
            for (int32_t h = 0; h < n_group; ++h) lse[h] = -std::numeric_limits<float>::infinity();
        return;
    }
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* krow = kv.k_row(g, row_of(j));
        for (int32_t h = 0; h < n_group; ++h) scores[h * n_keys + j] = dot_kv_row(kv.type, krow, q + h * dk, dk);
    }
    for (int32_t h = 0; h < n_group; ++h) {
        float* s = scores + h * n_keys;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n_keys; ++j) m = std::max(m, s[j]);
        double sum = 0;
        for (int64_t j = 0; j < n_keys; ++j) {
            s[j] = std::exp(s[j] - m);
            sum += s[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n_keys; ++j) s[j] *= inv;
        if (lse) lse[h] = m + static_cast<float>(std::log(sum));
    }
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* vrow = kv.v_row(g, row_of(j));
        for (int32_t h = 0; h < n_group; ++h) axpy_kv_row(kv.type, vrow, scores[h * n_keys + j], out + h * dv, dv);
    }
}

}  // namespace

void attend_group_indexed(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, const int32_t* idx,
                          int64_t n_idx, float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, g, n_idx, [idx](int64_t j) { return int64_t(idx[j]); }, out, lse, scores);
}

void attend_group_indexed(const float* q, int32_t n_group, const DenseKvRows& kv, const int32_t* idx, int64_t n_idx,
                          float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, 0, n_idx, [idx](int64_t j) { return int64_t(idx[j]); }, out, lse, scores);
}

void attend_group_range(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, int64_t t_lo,
                        int64_t t_hi, float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, g, t_hi - t_lo + 1, [t_lo](int64_t j) { return t_lo + j; }, out, lse, scores);
}

}  // namespace butler
