// SPDX-License-Identifier: MIT
// Integer dot products against 8-bit activations: the activation blocks decode (in this test's own code) to
// values within half a step of x; the integer dot equals the float64 dot of the decoded weights and decoded
// activations; the SIMD path equals the scalar reference; every instruction set's kernels (scalar, AVX2, AVX-512
// VNNI where the CPU has it) give that dot, AVX2 and VNNI bit for bit; the result is within the
// activation-quantization bound of the float64 dot with the original x.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu_kernels/quant.h"
#include "cpu_kernels/quant_dot.h"
#include "runtime/dtype.h"

using namespace butler;

namespace {

// Decodes the activation blocks by their documented layout: Q8_0 {f32 d, int8 qs[32]},
// Q8_K {f32 d, int8 qs[256], int16 bsums[16]}. Also checks each bsums entry against its 16 values.
std::vector<double> decode_activations(DType act, const std::vector<uint8_t>& xq, int64_t n) {
    std::vector<double> out(static_cast<size_t>(n));
    if (act == DType::Q8_0) {
        for (int64_t b = 0; b < n / 32; ++b) {
            const uint8_t* p = xq.data() + b * 36;
            float d;
            std::memcpy(&d, p, 4);
            for (int j = 0; j < 32; ++j) out[static_cast<size_t>(b * 32 + j)] = double(d) * static_cast<int8_t>(p[4 + j]);
        }
    } else {
        for (int64_t b = 0; b < n / 256; ++b) {
            const uint8_t* p = xq.data() + b * 292;
            float d;
            std::memcpy(&d, p, 4);
            for (int j = 0; j < 256; ++j) out[static_cast<size_t>(b * 256 + j)] = double(d) * static_cast<int8_t>(p[4 + j]);
            for (int k = 0; k < 16; ++k) {
                int16_t bs;
                std::memcpy(&bs, p + 4 + 256 + 2 * k, 2);
                int sum = 0;
                for (int j = 0; j < 16; ++j) sum += static_cast<int8_t>(p[4 + 16 * k + j]);
                CHECK(bs == sum);
            }
        }
    }
    return out;
}

// A weight row quantized to t and its decoded values; x quantized to t's activation blocks and decoded.
struct QuantizedPair {
    std::vector<uint8_t> row, xq;
    std::vector<float> w;
    std::vector<double> xd;
};

QuantizedPair quantize_pair(DType t, const std::vector<float>& wf, const std::vector<float>& x) {
    const int64_t n = static_cast<int64_t>(wf.size());
    QuantizedPair p;
    p.row.resize(static_cast<size_t>(row_bytes(t, n)));
    quantize_row(t, wf.data(), p.row.data(), n);
    p.w.resize(wf.size());
    dequantize_row(t, p.row.data(), p.w.data(), n);
    p.xq.resize(static_cast<size_t>(activation_bytes(t, n)));
    quantize_activation(t, x.data(), n, p.xq.data());
    p.xd = decode_activations(activation_type(t), p.xq, n);
    return p;
}

}  // namespace

TEST_SUITE("quant") {
    TEST_CASE("integer dot products against 8-bit activations") {
        std::mt19937_64 rng(5);
        std::normal_distribution<float> g(0.0f, 1.0f);
        for (DType t : {DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K}) {
            for (int64_t n : {256, 512, 2048}) {
                CAPTURE(dtype_name(t));
                CAPTURE(n);
                const DType act = activation_type(t);
                REQUIRE((act == DType::Q8_0 || act == DType::Q8_K));
                std::vector<float> wf(static_cast<size_t>(n)), x(wf.size());
                for (auto& v : wf) v = g(rng);
                for (auto& v : x) v = g(rng) * (1 + 3 * float(rng() % 2));  // blocks of different scales
                const QuantizedPair qp = quantize_pair(t, wf, x);
                const std::vector<uint8_t>& row = qp.row;
                const std::vector<uint8_t>& xq  = qp.xq;
                const std::vector<float>& w     = qp.w;
                const std::vector<double>& xd   = qp.xd;
                const int64_t blk = act == DType::Q8_0 ? 32 : 256;
                double exact = 0, decoded = 0, abs_sum = 0, bound = 0;
                for (int64_t b = 0; b < n / blk; ++b) {
                    double amax = 0;
                    for (int64_t j = 0; j < blk; ++j) amax = std::max(amax, std::abs(double(x[static_cast<size_t>(b * blk + j)])));
                    for (int64_t j = 0; j < blk; ++j) {
                        const size_t i = static_cast<size_t>(b * blk + j);
                        // Each decoded activation is within half a quantization step (amax / 127 / 2) of x.
                        CHECK(std::abs(xd[i] - x[i]) <= amax / 254 * 1.001 + 1e-6);
                        exact += double(w[i]) * x[i];
                        decoded += double(w[i]) * xd[i];
                        abs_sum += std::abs(double(w[i]) * x[i]);
                        bound += std::abs(double(w[i])) * amax / 254 * 1.001;
                    }
                }
                const float ref = dot_row_q_reference(t, row.data(), xq.data(), n);
                const float fast = dot_row_q(t, row.data(), xq.data(), n);
                CHECK(std::abs(ref - decoded) <= 1e-5 * abs_sum + 1e-4);
                CHECK(std::abs(fast - decoded) <= 1e-5 * abs_sum + 1e-4);
                CHECK(std::abs(fast - exact) <= bound + 1e-5 * abs_sum + 1e-4);
            }
        }
    }

    TEST_CASE("every instruction set's integer dots: the float64 dot of the decoded values; AVX2 == AVX-512 VNNI") {
        std::mt19937_64 rng(11);
        std::normal_distribution<float> g(0.0f, 1.0f);
        for (DotIsa isa : {DotIsa::Scalar, DotIsa::Avx2, DotIsa::Avx512Vnni})
            if (!dot_isa_available(isa)) {
                const std::string note = std::string("skipped: no ") + dot_isa_name(isa) + " kernels on this CPU or build";
                MESSAGE(note);
            }
        const std::string running = std::string("dot_row_q runs the ") + dot_isa_name(dot_isa()) + " kernels";
        MESSAGE(running);
        for (DType t : {DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K}) {
            const int64_t blk = activation_type(t) == DType::Q8_0 ? 32 : 256;
            // One block, an odd count (the two-chain loops' tail), a long row; values at full scale (the largest
            // integer products, where a saturating path would differ).
            for (const int64_t n_blocks : {int64_t(1), int64_t(3), int64_t(21)})
                for (const bool full_scale : {false, true}) {
                    const int64_t n = n_blocks * blk;
                    CAPTURE(dtype_name(t));
                    CAPTURE(n);
                    CAPTURE(full_scale);
                    std::vector<float> wf(static_cast<size_t>(n)), x(wf.size());
                    for (size_t i = 0; i < wf.size(); ++i) {
                        wf[i] = full_scale ? (i % 2 ? 1.0f : -1.0f) * (i % 7 == 0 ? 0.01f : 1.0f) : g(rng);
                        x[i]  = full_scale ? (i % 3 ? -1.0f : 1.0f) : g(rng);
                    }
                    const QuantizedPair qp = quantize_pair(t, wf, x);
                    const std::vector<uint8_t>& row = qp.row;
                    const std::vector<uint8_t>& xq  = qp.xq;
                    const std::vector<float>& w     = qp.w;
                    const std::vector<double>& xd   = qp.xd;
                    double decoded = 0, abs_sum = 0;
                    for (size_t i = 0; i < w.size(); ++i) {
                        decoded += double(w[i]) * xd[i];
                        abs_sum += std::abs(double(w[i]) * xd[i]);
                    }
                    for (DotIsa isa : {DotIsa::Scalar, DotIsa::Avx2, DotIsa::Avx512Vnni}) {
                        if (!dot_isa_available(isa)) continue;
                        const std::string isa_name = dot_isa_name(isa);
                        CAPTURE(isa_name);
                        CHECK(std::abs(dot_row_q_isa(isa, t, row.data(), xq.data(), n) - decoded) <=
                              1e-5 * abs_sum + 1e-4);
                    }
                    if (dot_isa_available(DotIsa::Avx512Vnni)) {
                        const float a = dot_row_q_isa(DotIsa::Avx2, t, row.data(), xq.data(), n);
                        const float b = dot_row_q_isa(DotIsa::Avx512Vnni, t, row.data(), xq.data(), n);
                        CHECK(std::memcmp(&a, &b, sizeof a) == 0);
                    }
                }
        }
        if (!dot_isa_available(DotIsa::Avx512Vnni)) {
            std::vector<uint8_t> row(34), xq(36);
            CHECK_THROWS(dot_row_q_isa(DotIsa::Avx512Vnni, DType::Q8_0, row.data(), xq.data(), 32));
        }
    }

    TEST_CASE("gemv_q equals per-row integer dots; types without an integer path use the float dot") {
        std::mt19937_64 rng(9);
        std::normal_distribution<float> g(0.0f, 1.0f);
        std::vector<uint8_t> scratch;
        for (DType t : {DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K, DType::F16, DType::F32}) {
            CAPTURE(dtype_name(t));
            const int64_t n_rows = 37, n_cols = 512;
            std::vector<float> wf(static_cast<size_t>(n_rows * n_cols)), x(static_cast<size_t>(n_cols));
            for (auto& v : wf) v = g(rng);
            for (auto& v : x) v = g(rng);
            const int64_t rb = row_bytes(t, n_cols);
            std::vector<uint8_t> w(static_cast<size_t>(n_rows * rb));
            for (int64_t r = 0; r < n_rows; ++r) quantize_row(t, wf.data() + r * n_cols, w.data() + r * rb, n_cols);
            std::vector<float> y(static_cast<size_t>(n_rows));
            gemv_q(t, w.data(), n_rows, n_cols, x.data(), y.data(), scratch);
            std::vector<uint8_t> xq(static_cast<size_t>(activation_bytes(t, n_cols)));
            quantize_activation(t, x.data(), n_cols, xq.data());
            for (int64_t r = 0; r < n_rows; ++r) {
                const float expect = activation_type(t) == DType::F32 ? dot_row(t, w.data() + r * rb, x.data(), n_cols)
                                                                      : dot_row_q(t, w.data() + r * rb, xq.data(), n_cols);
                CHECK(y[static_cast<size_t>(r)] == doctest::Approx(expect).epsilon(1e-6));
            }
        }
    }
}

TEST_SUITE("quant") {
    TEST_CASE("gemv_q_multi equals one gemv_q per matrix") {
        std::mt19937_64 rng(13);
        std::normal_distribution<float> g(0.0f, 1.0f);
        const int64_t n_cols = 512;
        std::vector<float> x(static_cast<size_t>(n_cols));
        for (auto& v : x) v = g(rng);
        const DType types[3] = {DType::Q5_0, DType::Q4_K, DType::Q8_0};
        const int64_t rows[3] = {33, 7, 64};
        std::vector<std::vector<uint8_t>> w(3);
        std::vector<std::vector<float>> y_multi(3), y_single(3);
        GemvJob jobs[3];
        for (int j = 0; j < 3; ++j) {
            std::vector<float> wf(static_cast<size_t>(rows[j] * n_cols));
            for (auto& v : wf) v = g(rng);
            const int64_t rb = row_bytes(types[j], n_cols);
            w[static_cast<size_t>(j)].resize(static_cast<size_t>(rows[j] * rb));
            for (int64_t r = 0; r < rows[j]; ++r)
                quantize_row(types[j], wf.data() + r * n_cols, w[static_cast<size_t>(j)].data() + r * rb, n_cols);
            y_multi[static_cast<size_t>(j)].assign(static_cast<size_t>(rows[j]), 0.0f);
            y_single[static_cast<size_t>(j)].assign(static_cast<size_t>(rows[j]), 0.0f);
            jobs[j] = GemvJob{types[j], w[static_cast<size_t>(j)].data(), rows[j], y_multi[static_cast<size_t>(j)].data()};
        }
        std::vector<uint8_t> scratch;
        gemv_q_multi(jobs, 3, n_cols, x.data(), scratch);
        for (int j = 0; j < 3; ++j) {
            gemv_q(types[j], w[static_cast<size_t>(j)].data(), rows[j], n_cols, x.data(), y_single[static_cast<size_t>(j)].data(), scratch);
            for (int64_t r = 0; r < rows[j]; ++r)
                CHECK(y_multi[static_cast<size_t>(j)][static_cast<size_t>(r)] == y_single[static_cast<size_t>(j)][static_cast<size_t>(r)]);
        }
    }
}
