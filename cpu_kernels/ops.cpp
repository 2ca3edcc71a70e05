// SPDX-License-Identifier: MIT
#include "cpu_kernels/ops.h"

#include <cmath>

#include "cpu_kernels/simd_math.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace butler {

void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps) {
    double sum_sq = 0;  // double: the residual stream of a deep model reaches values whose squares lose bits in f32
    for (int64_t i = 0; i < n; ++i) sum_sq += double(x[i]) * double(x[i]);
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / double(n) + double(eps)));
    if (w != nullptr) {
        for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
    } else {
        for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale;
    }
}

std::vector<float> rope_inv_freq(int32_t head_dim, float base, float freq_scale, const std::vector<float>& factors) {
    std::vector<float> inv(static_cast<size_t>(head_dim / 2));
    for (int32_t i = 0; i < head_dim / 2; ++i)
        inv[static_cast<size_t>(i)] = static_cast<float>(
            double(freq_scale) * std::pow(double(base), -2.0 * i / double(head_dim)) /
            (factors.empty() ? 1.0 : double(factors[static_cast<size_t>(i)])));
    return inv;
}

void rope_angles(int64_t pos, const float* inv_freq, int32_t head_dim, float* cos_out, float* sin_out) {
    for (int32_t i = 0; i < head_dim / 2; ++i) {
        const double theta = double(pos) * double(inv_freq[i]);
        cos_out[i] = static_cast<float>(std::cos(theta));
        sin_out[i] = static_cast<float>(std::sin(theta));
    }
}

void rope_neox(float* x, int32_t head_dim, const float* cos, const float* sin) {
    const int32_t half = head_dim / 2;
    for (int32_t i = 0; i < half; ++i) {
        const float x0 = x[i];
        const float x1 = x[i + half];
        x[i] = x0 * cos[i] - x1 * sin[i];
        x[i + half] = x0 * sin[i] + x1 * cos[i];
    }
}

void rope_normal(float* x, int32_t head_dim, const float* cos, const float* sin) {
    for (int32_t i = 0; i < head_dim / 2; ++i) {
        const float x0 = x[2 * i];
        const float x1 = x[2 * i + 1];
        x[2 * i] = x0 * cos[i] - x1 * sin[i];
        x[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
    }
}

#if defined(__AVX2__) && defined(__FMA__)
namespace {

using simd::exp256;

// x * sigmoid(z) for 8 floats.
inline __m256 mul_sigmoid(__m256 x, __m256 z) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), z))));
}

}  // namespace
#endif

// GELU(g) = 0.5 g (1 + tanh(u)) with u = sqrt(2/pi) (g + 0.044715 g^3), which is g * sigmoid(2u): one exp.
void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 c0 = _mm256_set1_ps(2.0f * kSqrt2OverPi), c1 = _mm256_set1_ps(0.044715f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 g2 = _mm256_mul_ps(g, g);
        const __m256 z = _mm256_mul_ps(_mm256_mul_ps(c0, g), _mm256_fmadd_ps(c1, g2, _mm256_set1_ps(1.0f)));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(mul_sigmoid(g, z), _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; ++i) {
        const float g = gate[i];
        const float gelu = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * g * (1.0f + 0.044715f * g * g)));
        gate[i] = gelu * up[i];
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(mul_sigmoid(g, g), _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

}  // namespace butler
