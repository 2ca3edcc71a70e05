// SPDX-License-Identifier: MIT
#include "cpu_kernels/ops.h"

#include <cmath>

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

void rope_neox(float* x, int32_t head_dim, int64_t pos, const float* inv_freq) {
    const int32_t half = head_dim / 2;
    for (int32_t i = 0; i < half; ++i) {
        const double theta = double(pos) * double(inv_freq[i]);
        const float c = static_cast<float>(std::cos(theta));
        const float s = static_cast<float>(std::sin(theta));
        const float x0 = x[i];
        const float x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x0 * s + x1 * c;
    }
}

void rope_normal(float* x, int32_t head_dim, int64_t pos, const float* inv_freq) {
    for (int32_t i = 0; i < head_dim / 2; ++i) {
        const double theta = double(pos) * double(inv_freq[i]);
        const float c = static_cast<float>(std::cos(theta));
        const float s = static_cast<float>(std::sin(theta));
        const float x0 = x[2 * i];
        const float x1 = x[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x0 * s + x1 * c;
    }
}

void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        const float gelu = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * g * (1.0f + 0.044715f * g * g)));
        gate[i] = gelu * up[i];
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

}  // namespace butler
