// SPDX-License-Identifier: MIT
#include "cpu_kernels/attention.h"

#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu_kernels/lse_merge.h"
#include "cpu_kernels/matmul.h"
#include "cpu_kernels/simd_math.h"
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

namespace {
inline float load1(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        case DType::BF16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
        default: return reinterpret_cast<const float*>(row)[i];
    }
}
}  // namespace

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
namespace {
using simd::hsum;

// 8 values of a K/V row from element i, as floats (the KV type fixed at compile time).
template <DType T>
inline __m256 load8_as(const uint8_t* row, int64_t i) {
    if constexpr (T == DType::F16) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    } else if constexpr (T == DType::BF16) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
    }
}

inline __m256 load8(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F16: return load8_as<DType::F16>(row, i);
        case DType::BF16: return load8_as<DType::BF16>(row, i);
        default: return load8_as<DType::F32>(row, i);
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

float dot_kv_row(DType type, const uint8_t* row, const float* x, int64_t n) {
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += load1(type, row, i) * x[i];
    return sum;
}

void axpy_kv_row(DType type, const uint8_t* row, float a, float* acc, int64_t n) {
    for (int64_t i = 0; i < n; ++i) acc[i] += a * load1(type, row, i);
}

#endif

namespace {

// Reference body for any shape: scores row by row, softmax, then the weighted V sum. Used where the blocked AVX2
// kernel below does not apply (no AVX2 build, head dims not multiples of 8, groups above 8 heads).
template <typename View, typename RowOf>
void attend_rows_generic(const float* q, int32_t n_group, const View& kv, int32_t g, int64_t n_keys, RowOf row_of,
                         float* out, float* lse, float* scores) {
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* row = kv.k_row(g, row_of(j));
        for (int32_t h = 0; h < n_group; ++h) scores[h * n_keys + j] = dot_kv_row(kv.type, row, q + h * dk, dk);
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
        const uint8_t* row = kv.v_row(g, row_of(j));
        for (int32_t h = 0; h < n_group; ++h) axpy_kv_row(kv.type, row, scores[h * n_keys + j], out + h * dv, dv);
    }
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// Blocked decode attention: keys go in blocks of kRowBlock rows whose addresses are resolved once; the scores of
// NG heads are computed for ROWS key rows at a time (NG * ROWS independent FMA chains, each K vector converted
// once), the softmax runs on 8 lanes, and the V sum keeps NG x CH vectors of the output in registers while it
// walks a block (the block's V rows stay in L1), so the output is loaded and stored once per block, not per row.
constexpr int64_t kRowBlock = 32;
constexpr int64_t kRowsAhead = 8;  // rows prefetched ahead of the one being scored (indexed sets are scattered)

inline void prefetch_row(const uint8_t* row, int64_t bytes) {
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(row + b), _MM_HINT_T0);
}

// scores[h * stride + j] = q_h . K(rows[j]) for j < nb; rows[nb .. n_avail) are only prefetched.
template <DType T, int NG>
void qk_block(const float* q, int32_t dk, const uint8_t* const* rows, int64_t nb, int64_t n_avail, float* scores,
              int64_t stride, int64_t row_bytes) {
    constexpr int ROWS = NG <= 2 ? 4 : NG <= 4 ? 2 : 1;
    int64_t j = 0;
    for (; j + ROWS <= nb; j += ROWS) {
        for (int r = 0; r < ROWS; ++r)
            if (j + r + kRowsAhead < n_avail) prefetch_row(rows[j + r + kRowsAhead], row_bytes);
        __m256 acc[ROWS][NG];
        for (int r = 0; r < ROWS; ++r)
            for (int h = 0; h < NG; ++h) acc[r][h] = _mm256_setzero_ps();
        for (int32_t i = 0; i < dk; i += 8) {
            __m256 k[ROWS];
            for (int r = 0; r < ROWS; ++r) k[r] = load8_as<T>(rows[j + r], i);
            for (int h = 0; h < NG; ++h) {
                const __m256 qv = _mm256_loadu_ps(q + int64_t(h) * dk + i);
                for (int r = 0; r < ROWS; ++r) acc[r][h] = _mm256_fmadd_ps(k[r], qv, acc[r][h]);
            }
        }
        for (int r = 0; r < ROWS; ++r)
            for (int h = 0; h < NG; ++h) scores[h * stride + j + r] = hsum(acc[r][h]);
    }
    for (; j < nb; ++j) {
        __m256 acc[NG];
        for (int h = 0; h < NG; ++h) acc[h] = _mm256_setzero_ps();
        for (int32_t i = 0; i < dk; i += 8) {
            const __m256 k = load8_as<T>(rows[j], i);
            for (int h = 0; h < NG; ++h) acc[h] = _mm256_fmadd_ps(k, _mm256_loadu_ps(q + int64_t(h) * dk + i), acc[h]);
        }
        for (int h = 0; h < NG; ++h) scores[h * stride + j] = hsum(acc[h]);
    }
}

// out[h] (dv) += sum_j p[h * stride + j] * V(rows[j]) for j < nb.
template <DType T, int NG, int CH>
void pv_pass(const uint8_t* const* rows, int64_t nb, const float* p, int64_t stride, float* out, int32_t dv,
             int32_t c) {
    __m256 acc[NG][CH];
    for (int h = 0; h < NG; ++h)
        for (int u = 0; u < CH; ++u) acc[h][u] = _mm256_loadu_ps(out + int64_t(h) * dv + c + 8 * u);
    for (int64_t j = 0; j < nb; ++j) {
        __m256 v[CH];
        for (int u = 0; u < CH; ++u) v[u] = load8_as<T>(rows[j], c + 8 * u);
        for (int h = 0; h < NG; ++h) {
            const __m256 ph = _mm256_broadcast_ss(p + h * stride + j);
            for (int u = 0; u < CH; ++u) acc[h][u] = _mm256_fmadd_ps(ph, v[u], acc[h][u]);
        }
    }
    for (int h = 0; h < NG; ++h)
        for (int u = 0; u < CH; ++u) _mm256_storeu_ps(out + int64_t(h) * dv + c + 8 * u, acc[h][u]);
}

template <DType T, int NG>
void pv_block(const uint8_t* const* rows, int64_t nb, const float* p, int64_t stride, float* out, int32_t dv) {
    // Vectors per head and pass: enough independent FMA chains to hide the FMA latency, few enough for 16 registers.
    constexpr int CH = NG <= 2 ? 4 : NG <= 4 ? 2 : 1;
    int32_t c = 0;
    for (; c + 8 * CH <= dv; c += 8 * CH) pv_pass<T, NG, CH>(rows, nb, p, stride, out, dv, c);
    for (; c < dv; c += 8) pv_pass<T, NG, 1>(rows, nb, p, stride, out, dv, c);
}

// Softmax of each head's scores in place (normalized), lse[h] = max + log(sum). Sums in double.
inline void softmax_rows(float* scores, int32_t n_group, int64_t n_keys, float* lse) {
    for (int32_t h = 0; h < n_group; ++h) {
        float* s = scores + h * n_keys;
        __m256 vm = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
        int64_t j = 0;
        for (; j + 8 <= n_keys; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
        float m = -std::numeric_limits<float>::infinity();
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, vm);
        for (float x : lanes) m = std::max(m, x);
        for (int64_t t = j; t < n_keys; ++t) m = std::max(m, s[t]);
        const __m256 bm = _mm256_set1_ps(m);
        __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
        for (j = 0; j + 8 <= n_keys; j += 8) {
            const __m256 e = simd::exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), bm));
            _mm256_storeu_ps(s + j, e);
            sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        double sum = hsum(_mm256_add_pd(sum_lo, sum_hi));
        for (; j < n_keys; ++j) sum += (s[j] = std::exp(s[j] - m));
        const float inv_sum = static_cast<float>(1.0 / sum);
        const __m256 inv = _mm256_set1_ps(inv_sum);
        for (j = 0; j + 8 <= n_keys; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
        for (; j < n_keys; ++j) s[j] *= inv_sum;
        if (lse) lse[h] = m + static_cast<float>(std::log(sum));
    }
}

template <DType T, int NG, typename View, typename RowOf>
void attend_rows_blocked(const float* q, const View& kv, int32_t g, int64_t n_keys, RowOf row_of, float* out,
                         float* lse, float* scores) {
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    const uint8_t* rows[kRowBlock + kRowsAhead];
    for (int64_t j0 = 0; j0 < n_keys; j0 += kRowBlock) {
        const int64_t nb = std::min(kRowBlock, n_keys - j0), n_avail = std::min(kRowBlock + kRowsAhead, n_keys - j0);
        for (int64_t r = 0; r < n_avail; ++r) rows[r] = kv.k_row(g, row_of(j0 + r));
        qk_block<T, NG>(q, dk, rows, nb, n_avail, scores + j0, n_keys, int64_t(dk) * kv.elem_bytes);
    }
    softmax_rows(scores, NG, n_keys, lse);
    for (int64_t j0 = 0; j0 < n_keys; j0 += kRowBlock) {
        const int64_t nb = std::min(kRowBlock, n_keys - j0);
        for (int64_t r = 0; r < nb; ++r) rows[r] = kv.v_row(g, row_of(j0 + r));
        if (j0 + kRowBlock < n_keys)  // the next block's first V rows, while this one is summed
            for (int64_t r = 0; r < std::min<int64_t>(kRowsAhead, n_keys - j0 - kRowBlock); ++r)
                prefetch_row(kv.v_row(g, row_of(j0 + kRowBlock + r)), int64_t(dv) * kv.elem_bytes);
        pv_block<T, NG>(rows, nb, scores + j0, n_keys, out, dv);
    }
}

template <DType T, typename View, typename RowOf>
bool attend_rows_dispatch_group(const float* q, int32_t n_group, const View& kv, int32_t g, int64_t n_keys,
                                RowOf row_of, float* out, float* lse, float* scores) {
    switch (n_group) {
        case 1: attend_rows_blocked<T, 1>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 2: attend_rows_blocked<T, 2>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 3: attend_rows_blocked<T, 3>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 4: attend_rows_blocked<T, 4>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 5: attend_rows_blocked<T, 5>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 6: attend_rows_blocked<T, 6>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 7: attend_rows_blocked<T, 7>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        case 8: attend_rows_blocked<T, 8>(q, kv, g, n_keys, row_of, out, lse, scores); return true;
        default: return false;
    }
}
#endif

// One kernel body for every row addressing: `row_of(j)` maps the j-th key of the set to a row id of the view.
template <typename View, typename RowOf>
void attend_rows(const float* q, int32_t n_group, const View& kv, int32_t g, int64_t n_keys, RowOf row_of, float* out,
                 float* lse, float* scores) {
    std::memset(out, 0, sizeof(float) * static_cast<size_t>(n_group) * kv.head_dim_v);
    if (n_keys <= 0) {
        if (lse)
            for (int32_t h = 0; h < n_group; ++h) lse[h] = -std::numeric_limits<float>::infinity();
        return;
    }
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    if (kv.head_dim % 8 == 0 && kv.head_dim_v % 8 == 0) {
        bool done = false;
        switch (kv.type) {
            case DType::F16:
                done = attend_rows_dispatch_group<DType::F16>(q, n_group, kv, g, n_keys, row_of, out, lse, scores);
                break;
            case DType::BF16:
                done = attend_rows_dispatch_group<DType::BF16>(q, n_group, kv, g, n_keys, row_of, out, lse, scores);
                break;
            case DType::F32:
                done = attend_rows_dispatch_group<DType::F32>(q, n_group, kv, g, n_keys, row_of, out, lse, scores);
                break;
            default: break;
        }
        if (done) return;
    }
#endif
    attend_rows_generic(q, n_group, kv, g, n_keys, row_of, out, lse, scores);
}

}  // namespace

void attend_group(const float* q, int32_t n_group, const KvLayerView& kv, int32_t g, int64_t k_lo, int64_t k_hi,
                  float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, g, k_hi - k_lo + 1, [k_lo](int64_t j) { return k_lo + j; }, out, lse, scores);
}


void attend_group_indexed(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, const int32_t* idx,
                          int64_t n_idx, float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, g, n_idx, [idx](int64_t j) { return int64_t(idx[j]); }, out, lse, scores);
}

void attend_group_indexed(const float* q, int32_t n_group, const DenseKvRows& kv, const int32_t* idx, int64_t n_idx,
                          float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, 0, n_idx, [idx](int64_t j) { return int64_t(idx[j]); }, out, lse, scores);
}

void attend_causal_block(const float* q, int64_t q_stride, int64_t n_q, int64_t q_pos0, int32_t n_group,
                         const DenseKvRows& kv, const int32_t* idx, int64_t n_idx, int64_t kv_pos0, float* out,
                         int64_t o_stride, float* lse, int64_t lse_stride, bool accumulate) {
    constexpr int64_t kKeys   = 128;  // scores per pass: the running max and the accumulator rescale once per pass
    constexpr int32_t kMaxDim = 256;
    BUTLER_ASSERT(kv.head_dim_v <= kMaxDim, "attend_causal_block: head_dim_v over 256");
    const int64_t n_rows = n_q * n_group;
#pragma omp parallel for schedule(dynamic, 4) if (n_rows * n_idx > 4096)
    for (int64_t r = 0; r < n_rows; ++r) {
        const int64_t i = r / n_group, h = r % n_group;
        const float* qh = q + i * q_stride + h * kv.head_dim;
        // Rows j < n_seen are visible to this query (positions <= its own).
        const int64_t n_seen = std::clamp<int64_t>(q_pos0 + i - kv_pos0 + 1, 0, n_idx);
        float acc[kMaxDim];
        std::fill(acc, acc + kv.head_dim_v, 0.0f);
        float m = -INFINITY, sum = 0.0f;
        float s[kKeys];
        for (int64_t j0 = 0; j0 < n_seen; j0 += kKeys) {
            const int64_t nj = std::min(kKeys, n_seen - j0);
            float m_pass = -INFINITY;
            for (int64_t j = 0; j < nj; ++j) {
                s[j]   = dot_kv_row(kv.type, kv.k_row(0, idx[j0 + j]), qh, kv.head_dim);
                m_pass = std::max(m_pass, s[j]);
            }
            const float m_new = std::max(m, m_pass);
            const float shrink = std::exp(m - m_new);  // m = -inf on the first pass: exp(-inf) = 0, acc is 0 anyway
            sum *= shrink;
            for (int32_t d = 0; d < kv.head_dim_v; ++d) acc[d] *= shrink;
            for (int64_t j = 0; j < nj; ++j) {
                const float p = std::exp(s[j] - m_new);
                sum += p;
                axpy_kv_row(kv.type, kv.v_row(0, idx[j0 + j]), p, acc, kv.head_dim_v);
            }
            m = m_new;
        }
        float* o  = out + i * o_stride + h * kv.head_dim_v;
        float* ls = lse + i * lse_stride + h;
        const float block_lse = n_seen > 0 ? m + std::log(sum) : -INFINITY;
        if (n_seen > 0)
            for (int32_t d = 0; d < kv.head_dim_v; ++d) acc[d] /= sum;
        if (accumulate) {
            lse_merge(o, ls, acc, &block_lse, 1, kv.head_dim_v);
        } else {
            std::copy(acc, acc + kv.head_dim_v, o);
            *ls = block_lse;
        }
    }
}

void attend_group_range(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, int64_t t_lo,
                        int64_t t_hi, float* out, float* lse, float* scores) {
    attend_rows(q, n_group, kv, g, t_hi - t_lo + 1, [t_lo](int64_t j) { return t_lo + j; }, out, lse, scores);
}

}  // namespace butler

// ---------------------------------------------------------------------------------------------------------------
// Blocked attention for prefill chunks and split-K attention for decode.

namespace butler {

void AttnChunkScratch::reserve(int32_t n_thr, int32_t n_group, int32_t head_dim, int32_t head_dim_v) {
    n_threads = n_thr;
    const int64_t rows = kQueryBlock * n_group;
    per_thread = rows * head_dim                 // Q block
                 + kKeyBlock * head_dim          // K block (f32)
                 + kKeyBlock * head_dim_v        // V block (f32)
                 + rows * kKeyBlock              // scores / probabilities
                 + rows * head_dim_v             // output accumulator
                 + 2 * rows;                     // running max and sum
    buf.assign(static_cast<size_t>(per_thread * n_threads), 0.0f);
}

namespace {

// Converts KV rows of positions [p0, p0 + n) of KV head g into f32 rows (n, dim).
template <typename View>
void kv_rows_to_f32(const View& kv, bool keys, int32_t g, int64_t p0, int64_t n, float* dst) {
    const int32_t dim = keys ? kv.head_dim : kv.head_dim_v;
    for (int64_t j = 0; j < n; ++j) {
        const uint8_t* row = keys ? kv.k_row(g, p0 + j) : kv.v_row(g, p0 + j);
        float* d = dst + j * dim;
        switch (kv.type) {
            case DType::F32: std::memcpy(d, row, sizeof(float) * static_cast<size_t>(dim)); break;
            case DType::F16: {
                const auto* h = reinterpret_cast<const uint16_t*>(row);
                int32_t i = 0;
#if defined(__F16C__)
                for (; i + 8 <= dim; i += 8)
                    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
#endif
                for (; i < dim; ++i) d[i] = f16_to_f32(h[i]);
                break;
            }
            default: {
                const auto* h = reinterpret_cast<const uint16_t*>(row);
                for (int32_t i = 0; i < dim; ++i) d[i] = bf16_to_f32(h[i]);
            }
        }
    }
}

void sgemm_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, float beta) {
    const dnnl_status_t st = dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    BUTLER_ASSERT(st == dnnl_success, "dnnl_sgemm failed with status {}", static_cast<int>(st));
}

}  // namespace

template <typename View>
void attend_chunk_impl(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const View& kv, int64_t n_swa,
                       float* out, AttnChunkScratch& scratch) {
    const int32_t n_group = n_head / kv.n_head_kv;
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    const int64_t qb = AttnChunkScratch::kQueryBlock, kb = AttnChunkScratch::kKeyBlock;
    const int64_t n_qblocks = (n_q + qb - 1) / qb;
    const int64_t n_tasks = n_qblocks * kv.n_head_kv;
    const int64_t ld_q = int64_t(n_head) * dk, ld_o = int64_t(n_head) * dv;
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#pragma omp parallel for schedule(dynamic, 1) num_threads(scratch.n_threads)
    for (int64_t task = 0; task < n_tasks; ++task) {
        const int32_t g = static_cast<int32_t>(task % kv.n_head_kv);
        const int64_t i0 = (task / kv.n_head_kv) * qb;
        const int64_t n_i = std::min(qb, n_q - i0);
        const int64_t rows = n_i * n_group;  // row r = (query i0 + r / n_group, head g * n_group + r % n_group)
        float* base = scratch.buf.data() + int64_t(omp_get_thread_num()) * scratch.per_thread;
        float* qs = base;
        float* ks = qs + qb * n_group * dk;
        float* vs = ks + kb * dk;
        float* s = vs + kb * dv;
        float* o = s + qb * n_group * kb;
        float* m = o + qb * n_group * dv;
        float* l = m + qb * n_group;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = i0 + r / n_group;
            const int32_t h = g * n_group + static_cast<int32_t>(r % n_group);
            std::memcpy(qs + r * dk, q + i * ld_q + int64_t(h) * dk, sizeof(float) * static_cast<size_t>(dk));
            m[r] = kNegInf;
            l[r] = 0.0f;
        }
        std::memset(o, 0, sizeof(float) * static_cast<size_t>(rows * dv));
        const int64_t p_first = pos0 + i0, p_last = pos0 + i0 + n_i - 1;
        const int64_t k_lo = n_swa > 0 ? std::max<int64_t>(0, p_first - n_swa + 1) : 0;
        for (int64_t k0 = k_lo; k0 <= p_last; k0 += kb) {
            const int64_t n_k = std::min(kb, p_last + 1 - k0);
            kv_rows_to_f32(kv, true, g, k0, n_k, ks);
            kv_rows_to_f32(kv, false, g, k0, n_k, vs);
            sgemm_nt(rows, n_k, dk, qs, dk, ks, dk, s, n_k);
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t pos = pos0 + i0 + r / n_group;
                // Visible keys of this row inside the block: [lo, hi) relative to k0.
                const int64_t lo = n_swa > 0 ? std::clamp<int64_t>(pos - n_swa + 1 - k0, 0, n_k) : 0;
                const int64_t hi = std::clamp<int64_t>(pos + 1 - k0, 0, n_k);
                float* sr = s + r * n_k;
                if (lo >= hi) {
                    std::memset(sr, 0, sizeof(float) * static_cast<size_t>(n_k));
                    continue;
                }
                float mx = m[r];
                for (int64_t j = lo; j < hi; ++j) mx = std::max(mx, sr[j]);
                const float rescale = std::exp(m[r] - mx);  // 0 when m[r] is -inf
                float sum = 0;
                for (int64_t j = 0; j < lo; ++j) sr[j] = 0.0f;
                for (int64_t j = lo; j < hi; ++j) sum += (sr[j] = std::exp(sr[j] - mx));
                for (int64_t j = hi; j < n_k; ++j) sr[j] = 0.0f;
                l[r] = l[r] * rescale + sum;
                m[r] = mx;
                if (rescale != 1.0f) {
                    float* orow = o + r * dv;
                    for (int32_t d = 0; d < dv; ++d) orow[d] *= rescale;
                }
            }
            sgemm_nn(rows, dv, n_k, s, n_k, vs, dv, o, dv, 1.0f);
        }
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = i0 + r / n_group;
            const int32_t h = g * n_group + static_cast<int32_t>(r % n_group);
            const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
            float* dst = out + i * ld_o + int64_t(h) * dv;
            for (int32_t d = 0; d < dv; ++d) dst[d] = o[r * dv + d] * inv;
        }
    }
}

void attend_chunk(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const KvLayerView& kv, int64_t n_swa,
                  float* out, AttnChunkScratch& scratch) {
    attend_chunk_impl(q, n_q, pos0, n_head, kv, n_swa, out, scratch);
}

void attend_chunk(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const PagedKvView& kv, int64_t n_swa,
                  float* out, AttnChunkScratch& scratch) {
    attend_chunk_impl(q, n_q, pos0, n_head, kv, n_swa, out, scratch);
}

void attend_split(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const KvLayerView& kv, int64_t n_swa,
                  float* out, float* partials, int64_t n_partials, float* scores, int64_t scores_per_thread) {
    const int32_t n_group = n_head / kv.n_head_kv;
    const int32_t dk = kv.head_dim, dv = kv.head_dim_v;
    const int64_t n_tasks = n_q * kv.n_head_kv;
    const int n_threads = omp_get_max_threads();
    constexpr int64_t kMinKeysPerSplit = 128;
    BUTLER_ASSERT(n_partials >= 1, "attend_split needs partial buffers");
    // Splits per task: enough to give every thread work; tasks go in batches that fit the partial buffers.
    const int64_t max_keys = n_swa > 0 ? std::min<int64_t>(n_swa, pos0 + n_q) : pos0 + n_q;
    const int64_t n_split = std::clamp<int64_t>(
        std::min<int64_t>((2 * n_threads + n_tasks - 1) / n_tasks, max_keys / kMinKeysPerSplit), 1, n_partials);
    const int64_t batch = std::max<int64_t>(1, n_partials / n_split);
    const int64_t part_stride = int64_t(n_group) * (dv + 1);

    for (int64_t t0 = 0; t0 < n_tasks; t0 += batch) {
        const int64_t n_batch = std::min(batch, n_tasks - t0);
        // A single short task (decode over a short context) runs on the calling thread: a fork would only add a wait.
#pragma omp parallel for schedule(dynamic, 1) if (n_batch * n_split > 1)
        for (int64_t w = 0; w < n_batch * n_split; ++w) {
            const int64_t task = t0 + w / n_split, part = w % n_split;
            const int64_t i = task / kv.n_head_kv;
            const int32_t g = static_cast<int32_t>(task % kv.n_head_kv);
            const int64_t pos = pos0 + i;
            const int64_t k_lo = n_swa > 0 ? std::max<int64_t>(0, pos - n_swa + 1) : 0;
            const int64_t n_keys = pos - k_lo + 1;
            const int64_t splits = std::clamp<int64_t>(n_keys / kMinKeysPerSplit, 1, n_split);
            float* p = partials + w * part_stride;  // (n_group, dv) outputs, then (n_group) lse
            if (part >= splits) {
                std::memset(p, 0, sizeof(float) * static_cast<size_t>(n_group) * dv);
                for (int32_t h = 0; h < n_group; ++h)
                    p[int64_t(n_group) * dv + h] = -std::numeric_limits<float>::infinity();
                continue;
            }
            const int64_t lo = k_lo + n_keys * part / splits, hi = k_lo + n_keys * (part + 1) / splits - 1;
            float* sc = scores + int64_t(omp_get_thread_num()) * scores_per_thread;
            attend_group(q + i * int64_t(n_head) * dk + int64_t(g) * n_group * dk, n_group, kv, g, lo, hi, p,
                         p + int64_t(n_group) * dv, sc);
        }
        for (int64_t b = 0; b < n_batch; ++b) {
            float* first = partials + b * n_split * part_stride;
            for (int64_t part = 1; part < n_split; ++part) {
                const float* pp = first + part * part_stride;
                lse_merge(first, first + int64_t(n_group) * dv, pp, pp + int64_t(n_group) * dv, n_group, dv);
            }
            const int64_t task = t0 + b;
            const int64_t i = task / kv.n_head_kv;
            const int32_t g = static_cast<int32_t>(task % kv.n_head_kv);
            std::memcpy(out + i * int64_t(n_head) * dv + int64_t(g) * n_group * dv, first,
                        sizeof(float) * static_cast<size_t>(n_group) * dv);
        }
    }
}

}  // namespace butler
