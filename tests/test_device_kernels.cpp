// SPDX-License-Identifier: MIT
// The forward's row and element-wise device kernels (KernelTable rmsnorm, rope, glu, add, scale, store_row) and the
// selection kernels (imp_score, topk, imp_query) against float64 and a full sort written here,
// on the cpu and emu devices; tests/test_cuda_device.cpp runs the same checks on cuda when a GPU is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <algorithm>
#include <random>
#include <tuple>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/status.h"
#include "tests/fixtures.h"
#include "tests/reference64.h"

using namespace butler;

namespace butler::test {

namespace {

// A device copy of a host array (landed before the constructor returns: `host` may be a temporary), and the way back.
template <typename T>
struct DeviceArray {
    Buffer buf;
    DeviceArray(Device& dev, const std::vector<T>& host)
        : buf(dev.alloc(sizeof(T) * host.size(), MemKind::Device)) {
        dev.default_stream().copy(buf.data(), host.data(), sizeof(T) * host.size());
        dev.default_stream().synchronize();
    }
    T* data() const { return buf.as<T>(); }
    std::vector<T> read(Device& dev) const {
        std::vector<T> out(buf.n_bytes() / sizeof(T));
        dev.default_stream().copy(out.data(), buf.data(), buf.n_bytes());
        dev.default_stream().synchronize();
        return out;
    }
};
using DeviceFloats = DeviceArray<float>;

// IEEE half and bfloat16 bit patterns decoded in float64 (normal and subnormal values; no inf/NaN here).
double half_to_double(uint16_t h) {
    const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
    return sign ? -mag : mag;
}
double bf16_to_double(uint16_t b) {
    const int sign = b >> 15, exp = (b >> 7) & 0xff, mant = b & 0x7f;
    const double mag = exp == 0 ? std::ldexp(mant, -133) : std::ldexp(128 + mant, exp - 134);
    return sign ? -mag : mag;
}

}  // namespace

void check_forward_kernels(Device& dev) {
    std::mt19937_64 rng(21);
    const KernelTable& k = dev.kernels();

    {  // rmsnorm: rows, with and without a weight, in place
        const int64_t n_rows = 5, n = 640;
        const std::vector<float> x = uniform(rng, size_t(n_rows * n), -3.f, 3.f), w = uniform(rng, size_t(n), 0.5f, 2.f);
        for (const bool weighted : {true, false})
            for (const bool in_place : {false, true}) {
                CAPTURE(weighted);
                CAPTURE(in_place);
                std::vector<double> want(x.size());
                for (int64_t r = 0; r < n_rows; ++r) {
                    double ss = 0;
                    for (int64_t i = 0; i < n; ++i) ss += double(x[size_t(r * n + i)]) * x[size_t(r * n + i)];
                    const double scale = 1.0 / std::sqrt(ss / double(n) + 1e-6);
                    for (int64_t i = 0; i < n; ++i)
                        want[size_t(r * n + i)] = x[size_t(r * n + i)] * scale * (weighted ? w[size_t(i)] : 1.0);
                }
                DeviceFloats xd(dev, x), wd(dev, w), out(dev, std::vector<float>(x.size(), 0.f));
                const RmsNormArgs a{xd.data(), weighted ? wd.data() : nullptr, in_place ? xd.data() : out.data(),
                                    n_rows, n, 1e-6f};
                k.rmsnorm(dev.default_stream(), &a);
                CHECK(max_rel_err((in_place ? xd : out).read(dev), want) < 1e-5);
            }
    }

    {  // rope: both pair layouts at head_dim 64, 128 and 256, a far position
        for (const int32_t hd : {64, 128, 256})
            for (const bool neox : {true, false}) {
                CAPTURE(hd);
                CAPTURE(neox);
                const int32_t n_heads = 6, half = hd / 2;
                const int64_t pos = 30011;
                std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
                std::vector<double> cos64(static_cast<size_t>(half)), sin64(static_cast<size_t>(half));
                for (int32_t i = 0; i < half; ++i) {
                    const double angle = double(pos) * std::pow(1e6, -2.0 * i / hd);
                    cos64[size_t(i)] = std::cos(angle), sin64[size_t(i)] = std::sin(angle);
                    cos_t[size_t(i)] = float(cos64[size_t(i)]), sin_t[size_t(i)] = float(sin64[size_t(i)]);
                }
                const std::vector<float> x = uniform(rng, size_t(n_heads * hd), -2.f, 2.f);
                std::vector<double> want(x.size());
                for (int32_t h = 0; h < n_heads; ++h)
                    for (int32_t i = 0; i < half; ++i) {
                        const size_t i0 = size_t(h * hd + (neox ? i : 2 * i)), i1 = size_t(h * hd + (neox ? i + half : 2 * i + 1));
                        want[i0] = x[i0] * cos64[size_t(i)] - x[i1] * sin64[size_t(i)];
                        want[i1] = x[i0] * sin64[size_t(i)] + x[i1] * cos64[size_t(i)];
                    }
                DeviceFloats xd(dev, x), cd(dev, cos_t), sd(dev, sin_t);
                const RopeArgs a{xd.data(), cd.data(), sd.data(), n_heads, hd, neox};
                k.rope(dev.default_stream(), &a);
                CHECK(max_rel_err(xd.read(dev), want) < 1e-5);
            }
    }

    {  // glu: GELU (tanh form) and SiLU times up
        const int64_t n = 1000;
        const std::vector<float> gate = uniform(rng, size_t(n), -8.f, 8.f), up = uniform(rng, size_t(n), -2.f, 2.f);
        for (const bool gelu : {true, false}) {
            CAPTURE(gelu);
            std::vector<double> want(static_cast<size_t>(n));
            for (size_t i = 0; i < size_t(n); ++i) {
                const double g = gate[i];
                const double act = gelu ? 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)))
                                        : g / (1 + std::exp(-g));
                want[i] = act * up[i];
            }
            DeviceFloats gd(dev, gate), ud(dev, up);
            const GluArgs a{gd.data(), ud.data(), n, gelu};
            k.glu(dev.default_stream(), &a);
            CHECK(max_rel_err(gd.read(dev), want) < 1e-5);
        }
    }

    {  // add and scale, in place, a ragged length
        const int64_t n = 1001;
        const std::vector<float> y = uniform(rng, size_t(n), -4.f, 4.f), x = uniform(rng, size_t(n), -4.f, 4.f);
        std::vector<double> want_add(static_cast<size_t>(n)), want_scale(static_cast<size_t>(n));
        for (size_t i = 0; i < size_t(n); ++i) want_add[i] = double(y[i]) + x[i], want_scale[i] = double(y[i]) * 0.0625;
        DeviceFloats yd(dev, y), xd(dev, x), sd(dev, y);
        const AddArgs add{yd.data(), xd.data(), n};
        k.add(dev.default_stream(), &add);
        CHECK(max_rel_err(yd.read(dev), want_add) < 1e-6);
        const ScaleArgs scale{sd.data(), n, 0.0625f};
        k.scale(dev.default_stream(), &scale);
        CHECK(max_rel_err(sd.read(dev), want_scale) < 1e-7);
    }

    {  // store_row: f32 copies exactly; f16 and bf16 land on the nearest representable value
        const int64_t n = 777;
        std::vector<float> x = uniform(rng, size_t(n), -70000.f, 70000.f);
        for (size_t i = 0; i < 200; ++i) x[i] *= 1e-9f;  // tiny values: f16 subnormals
        x[200] = 0.f, x[201] = -0.f;
        DeviceFloats xd(dev, x);
        for (const DType type : {DType::F32, DType::F16, DType::BF16}) {
            CAPTURE(dtype_name(type));
            const size_t elem = type == DType::F32 ? 4 : 2;
            Buffer out = dev.alloc(size_t(n) * elem, MemKind::Device);
            const StoreRowArgs a{xd.data(), out.data(), uint32_t(type), n};
            k.store_row(dev.default_stream(), &a);
            std::vector<uint8_t> got(size_t(n) * elem);
            dev.default_stream().copy(got.data(), out.data(), got.size());
            dev.default_stream().synchronize();
            int64_t n_bad = 0;
            for (size_t i = 0; i < size_t(n); ++i) {
                const double v = x[i];
                if (type == DType::F32) {
                    float f;
                    std::memcpy(&f, got.data() + 4 * i, 4);
                    n_bad += f != x[i];
                    continue;
                }
                uint16_t bits;
                std::memcpy(&bits, got.data() + 2 * i, 2);
                const auto decode = type == DType::F16 ? half_to_double : bf16_to_double;
                const double d = decode(bits);
                // Nearest: neither neighbour bit pattern (same sign) is closer to v. f16 rounds to infinity from 65520.
                if (type == DType::F16 && std::fabs(v) >= 65520) {
                    n_bad += (bits & 0x7fff) != 0x7c00;  // rounds to infinity
                    continue;
                }
                const double up = decode(uint16_t(bits + 1)), down = (bits & 0x7fff) ? decode(uint16_t(bits - 1)) : d;
                n_bad += std::fabs(d - v) > std::fabs(up - v) || std::fabs(d - v) > std::fabs(down - v) ||
                         (v != 0 && std::signbit(d) != std::signbit(v));
            }
            CHECK(n_bad == 0);
        }
        const StoreRowArgs q8{xd.data(), nullptr, uint32_t(DType::Q8_0), n};
        CHECK_THROWS_WITH_AS(k.store_row(dev.default_stream(), &q8), doctest::Contains("q8_0"), Error);
    }
}

void check_selection_kernels(Device& dev) {
    std::mt19937_64 rng(33);
    const KernelTable& k = dev.kernels();
    Stream& st = dev.default_stream();

    // imp_score: the group's softmax mass over [lo, hi), in float64 here; outside the range nothing is written.
    const int64_t n_keys = 1000;
    for (const auto& [n_group, d] : {std::pair{1, 16}, {4, 16}, {8, 32}, {3, 128}, {2, 12}}) {
        // Half keys as bit patterns: signed, magnitudes from 2^-14 (subnormal below) to ~2, decoded in float64.
        std::vector<uint16_t> keys(size_t(n_keys * d));
        std::uniform_int_distribution<int> bits(0, 0x3fff);
        for (uint16_t& h : keys) h = uint16_t(bits(rng) | (rng() & 1 ? 0x8000 : 0));
        const std::vector<float> q    = uniform(rng, size_t(n_group * d), -3.f, 3.f);  // peaked softmax
        const float scale             = 1.0f / std::sqrt(float(d));
        for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, n_keys}, {4, 997}, {10, 11}, {5, 5}}) {
            CAPTURE(n_group);
            CAPTURE(d);
            CAPTURE(lo);
            CAPTURE(hi);
            std::vector<double> want(size_t(n_keys), 0.0);
            for (int32_t h = 0; h < n_group; ++h) {
                std::vector<double> l(static_cast<size_t>(n_keys));
                for (int64_t t = lo; t < hi; ++t) {
                    double dot = 0;
                    for (int32_t e = 0; e < d; ++e)
                        dot += double(q[size_t(h * d + e)]) * half_to_double(keys[size_t(t * d + e)]);
                    l[size_t(t)] = dot * scale;
                }
                add_softmax64(l, size_t(lo), size_t(hi), want);
            }
            DeviceArray<uint16_t> kd(dev, keys);
            DeviceFloats qd(dev, q), score(dev, std::vector<float>(size_t(n_keys), -7.f));
            Buffer scratch = dev.alloc(imp_score_scratch_bytes(hi - lo, n_group), MemKind::Device);
            const ImpScoreArgs a{kd.data(), qd.data(), n_group, d, lo, hi, scale, score.data(), scratch.data()};
            k.imp_score(st, &a);
            const std::vector<float> got = score.read(dev);
            int64_t n_bad = 0;
            for (int64_t t = 0; t < n_keys; ++t) {
                const double w = want[size_t(t)], g = got[size_t(t)];
                n_bad += (t >= lo && t < hi) ? !(std::fabs(g - w) <= 1e-5 * w + 1e-9) : g != -7.f;
            }
            CHECK(n_bad == 0);
        }
    }

    // topk: ids of the k largest (ties to the lower id), ascending; negative, positive and many tied scores.
    const int64_t n = 3000;
    std::vector<float> scores(static_cast<size_t>(n));
    std::uniform_int_distribution<int> level(-40, 40);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (size_t i = 0; i < scores.size(); ++i) scores[i] = i % 3 == 0 ? normal(rng) : float(level(rng)) * 0.25f;
    DeviceFloats sd(dev, scores);
    for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, n}, {7, 2993}, {100, 101}}) {
        for (const int64_t want_k : {int64_t(0), int64_t(1), int64_t(17), (hi - lo) / 2, hi - lo}) {
            if (want_k > hi - lo) continue;
            CAPTURE(lo);
            CAPTURE(hi);
            CAPTURE(want_k);
            std::vector<int32_t> order(size_t(hi - lo));
            std::iota(order.begin(), order.end(), int32_t(lo));
            std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
                return scores[size_t(a)] > scores[size_t(b)] || (scores[size_t(a)] == scores[size_t(b)] && a < b);
            });
            std::vector<int32_t> want(order.begin(), order.begin() + want_k);
            std::sort(want.begin(), want.end());
            Buffer ids     = dev.alloc(sizeof(int32_t) * size_t(std::max<int64_t>(want_k, 1)), MemKind::PinnedHost);
            Buffer picked = dev.alloc(sizeof(float) * size_t(std::max<int64_t>(want_k, 1)), MemKind::PinnedHost);
            Buffer scratch = dev.alloc(topk_scratch_bytes(hi - lo), MemKind::Device);
            const TopkArgs a{sd.data(), lo, hi, want_k, ids.as<int32_t>(), picked.as<float>(), scratch.data()};
            k.topk(st, &a);
            st.synchronize();
            const std::vector<int32_t> got(ids.as<int32_t>(), ids.as<int32_t>() + want_k);
            CHECK(got == want);
            int64_t n_bad = 0;
            for (int64_t i = 0; i < want_k && got == want; ++i)
                n_bad += picked.as<float>()[i] != scores[size_t(want[size_t(i)])];
            CHECK(n_bad == 0);
        }
    }
    // imp_query: W2 . SiLU(W1 . LayerNorm(x)) in float64 here, at a predictor's shapes.
    for (const auto& [E, I, QW] : {std::tuple<int64_t, int64_t, int64_t>{640, 512, 256}, {200, 72, 40}}) {
        CAPTURE(E);
        const std::vector<float> x = uniform(rng, size_t(E), -2.f, 6.f), ln_w = uniform(rng, size_t(E), 0.5f, 1.5f),
                                 ln_b = uniform(rng, size_t(E), -0.2f, 0.2f), w1 = uniform(rng, size_t(I * E), -0.1f, 0.1f),
                                 w2 = uniform(rng, size_t(QW * I), -0.2f, 0.2f);
        double mean = 0, var = 0;
        for (float v : x) mean += v;
        mean /= double(E);
        for (float v : x) var += (v - mean) * (v - mean);
        const double inv = 1.0 / std::sqrt(var / double(E) + 1e-5);
        std::vector<double> y(static_cast<size_t>(E)), a(static_cast<size_t>(I)), want(static_cast<size_t>(QW));
        for (int64_t j = 0; j < E; ++j) y[size_t(j)] = (x[size_t(j)] - mean) * inv * ln_w[size_t(j)] + ln_b[size_t(j)];
        for (int64_t i = 0; i < I; ++i) {
            double z = 0;
            for (int64_t j = 0; j < E; ++j) z += double(w1[size_t(i * E + j)]) * y[size_t(j)];
            a[size_t(i)] = z / (1.0 + std::exp(-z));
        }
        for (int64_t r = 0; r < QW; ++r) {
            double o = 0;
            for (int64_t i = 0; i < I; ++i) o += double(w2[size_t(r * I + i)]) * a[size_t(i)];
            want[size_t(r)] = o;
        }
        DeviceFloats xd(dev, x), lw(dev, ln_w), lb(dev, ln_b), w1d(dev, w1), w2d(dev, w2),
            out(dev, std::vector<float>(size_t(QW), 0.f)), scratch(dev, std::vector<float>(size_t(E + I), 0.f));
        const ImpQueryArgs q{xd.data(), lw.data(), lb.data(), w1d.data(), w2d.data(), E, I, QW, 1e-5f, out.data(),
                             scratch.data()};
        k.imp_query(st, &q);
        CHECK(max_rel_err(out.read(dev), want) < 1e-5);
    }

    const TopkArgs too_many{sd.data(), 0, 10, 11, nullptr, nullptr, nullptr};
    CHECK_THROWS_WITH_AS(k.topk(st, &too_many), doctest::Contains("outside 0 .. 10"), Error);
}

}  // namespace butler::test

TEST_SUITE("device") {
    TEST_CASE("selection kernels on cpu and emu: imp_score, topk and imp_query against float64 and a full sort") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=4"}) {
            CAPTURE(spec);
            auto dev = make_device(spec);
            test::check_selection_kernels(*dev);
        }
    }

    TEST_CASE("forward kernels on cpu and emu: rmsnorm, rope, glu, add, scale, store_row against float64") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=3"}) {
            CAPTURE(spec);
            auto dev = make_device(spec);
            test::check_forward_kernels(*dev);
        }
    }
}
