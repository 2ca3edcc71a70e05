// SPDX-License-Identifier: MIT
// Element-wise ops against float64 formulas written here.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "cpu_kernels/ops.h"

using namespace butler;

TEST_SUITE("ops") {
    TEST_CASE("GeGLU (tanh GELU) and SwiGLU over a wide range, SIMD body and scalar tail") {
        for (int64_t n : {1, 7, 8, 61, 2048}) {
            std::vector<float> x(static_cast<size_t>(n)), up(x.size());
            for (int64_t i = 0; i < n; ++i) {
                x[static_cast<size_t>(i)] = -30.0f + 60.0f * float(i) / float(std::max<int64_t>(1, n - 1));
                up[static_cast<size_t>(i)] = 0.5f + float(i % 5);
            }
            std::vector<float> gelu = x, silu = x;
            gelu_tanh_mul(gelu.data(), up.data(), n);
            silu_mul(silu.data(), up.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const double g = x[static_cast<size_t>(i)], u = up[static_cast<size_t>(i)];
                const double want_gelu = 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g))) * u;
                const double want_silu = g / (1 + std::exp(-g)) * u;
                CHECK(gelu[static_cast<size_t>(i)] == doctest::Approx(want_gelu).epsilon(2e-6).scale(1e-6));
                CHECK(silu[static_cast<size_t>(i)] == doctest::Approx(want_silu).epsilon(2e-6).scale(1e-6));
            }
        }
    }

    TEST_CASE("RMSNorm and NeoX / normal RoPE") {
        std::vector<float> x = {1, -2, 3, -4, 5, -6, 7, -8}, w = {1, 2, 1, 2, 1, 2, 1, 2}, out(8);
        rmsnorm(x.data(), w.data(), out.data(), 8, 1e-6f);
        double ss = 0;
        for (float v : x) ss += double(v) * v;
        const double s = 1 / std::sqrt(ss / 8 + 1e-6);
        for (int i = 0; i < 8; ++i) CHECK(out[size_t(i)] == doctest::Approx(x[size_t(i)] * s * w[size_t(i)]).epsilon(1e-6));

        const float inv_freq[4] = {1.0f, 0.1f, 0.01f, 0.001f};
        float cs[8];
        rope_angles(7, inv_freq, 8, cs, cs + 4);
        std::vector<float> a = x, b = x;
        rope_neox(a.data(), 8, cs, cs + 4);
        rope_normal(b.data(), 8, cs, cs + 4);
        for (int i = 0; i < 4; ++i) {
            const double th = 7.0 * inv_freq[i], c = std::cos(th), sn = std::sin(th);
            CHECK(a[size_t(i)] == doctest::Approx(x[size_t(i)] * c - x[size_t(i + 4)] * sn).epsilon(1e-6));
            CHECK(a[size_t(i + 4)] == doctest::Approx(x[size_t(i)] * sn + x[size_t(i + 4)] * c).epsilon(1e-6));
            CHECK(b[size_t(2 * i)] == doctest::Approx(x[size_t(2 * i)] * c - x[size_t(2 * i + 1)] * sn).epsilon(1e-6));
            CHECK(b[size_t(2 * i + 1)] == doctest::Approx(x[size_t(2 * i)] * sn + x[size_t(2 * i + 1)] * c).epsilon(1e-6));
        }
    }
}
