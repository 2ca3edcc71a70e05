// SPDX-License-Identifier: MIT
#include "cpu_kernels/select.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cpu_kernels/quant.h"
#include "cpu_kernels/simd_math.h"
#include "runtime/dtype.h"

namespace butler {

void add_softmax(const float* logit, int64_t n, float* acc, float scale) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n; ++t) m = std::max(m, logit[t]);
    double sum = 0;
    for (int64_t t = 0; t < n; ++t) sum += std::exp(double(logit[t] - m));
    const double inv = double(scale) / sum;
    for (int64_t t = 0; t < n; ++t) acc[t] += float(std::exp(double(logit[t] - m)) * inv);
}

namespace {

// scale * q . k over d values, k IEEE half.
inline float scaled_dot(const float* q, const uint16_t* k, int32_t d, float scale) {
    int32_t e = 0;
    float s   = 0;
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    __m256 acc = _mm256_setzero_ps();
    for (; e + 8 <= d; e += 8) {
        const __m256 kf = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + e)));
        acc             = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), kf, acc);
    }
    s = simd::hsum(acc);
#endif
    for (; e < d; ++e) s += q[e] * f16_to_f32(k[e]);
    return s * scale;
}

}  // namespace

void group_softmax_mass(const uint16_t* keys, const float* q, int32_t n_group, int32_t d, int64_t lo, int64_t hi,
                        float scale, float* score, float* logit) {
    const int64_t n = hi - lo;
    if (n <= 0) return;
    std::fill(score + lo, score + hi, 0.0f);
    for (int32_t h = 0; h < n_group; ++h) {
        const float* qh = q + int64_t(h) * d;
        float m         = -std::numeric_limits<float>::infinity();
        for (int64_t t = lo; t < hi; ++t) {
            logit[t - lo] = scaled_dot(qh, keys + t * d, d, scale);
            m             = std::max(m, logit[t - lo]);
        }
        // exp(l - max) in place (vector exp, relative error ~1e-7), summed in double.
        int64_t i  = 0;
        double sum = 0;
#if defined(__AVX2__) && defined(__FMA__)
        const __m256 vm = _mm256_set1_ps(m);
        __m256d lo4 = _mm256_setzero_pd(), hi4 = _mm256_setzero_pd();
        for (; i + 8 <= n; i += 8) {
            const __m256 e = simd::exp256(_mm256_sub_ps(_mm256_loadu_ps(logit + i), vm));
            _mm256_storeu_ps(logit + i, e);
            lo4 = _mm256_add_pd(lo4, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            hi4 = _mm256_add_pd(hi4, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        sum = simd::hsum(lo4) + simd::hsum(hi4);
#endif
        for (; i < n; ++i) {
            logit[i] = std::exp(logit[i] - m);
            sum += logit[i];
        }
        const float inv = float(1.0 / sum);
        float* acc      = score + lo;
        for (int64_t t = 0; t < n; ++t) acc[t] += logit[t] * inv;
    }
}

void top_k_ids(const float* score, int64_t lo, int64_t hi, int64_t k, int32_t* ids, int32_t* idx) {
    const int64_t n = hi - lo;
    if (k <= 0 || n <= 0) return;
    std::iota(idx, idx + n, int32_t(lo));
    auto better = [score](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
    if (k < n) std::nth_element(idx, idx + k, idx + n, better);
    std::sort(idx, idx + k);
    std::copy(idx, idx + k, ids);
}

void importance_query(const float* x, const float* ln_w, const float* ln_b, const float* w1, const float* w2,
                      int64_t n_embd, int64_t intdim, int64_t q_width, float eps, float* out, float* scratch) {
    float* y = scratch;           // (n_embd) LayerNorm(x)
    float* a = scratch + n_embd;  // (intdim) SiLU(W1 y)
    double mean = 0, var = 0;
    for (int64_t j = 0; j < n_embd; ++j) mean += x[j];
    mean /= double(n_embd);
    for (int64_t j = 0; j < n_embd; ++j) var += (x[j] - mean) * (x[j] - mean);
    const float inv = float(1.0 / std::sqrt(var / double(n_embd) + eps));
    for (int64_t j = 0; j < n_embd; ++j) y[j] = (x[j] - float(mean)) * inv * ln_w[j] + ln_b[j];
    gemv(DType::F32, w1, intdim, n_embd, y, a);
    for (int64_t i = 0; i < intdim; ++i) a[i] = a[i] / (1.0f + std::exp(-a[i]));
    gemv(DType::F32, w2, q_width, intdim, a, out);
}

}  // namespace butler
