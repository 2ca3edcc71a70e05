// SPDX-License-Identifier: MIT
// The forward's row and element-wise device kernels (KernelTable rmsnorm, rope, glu, add, scale, store_row) against float64 written here,
// on the cpu and emu devices; tests/test_cuda_device.cpp runs the same checks on cuda when a GPU is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;

namespace butler::test {

namespace {

// A device copy of host floats (landed before the constructor returns: `host` may be a temporary), and the way back.
struct DeviceFloats {
    Buffer buf;
    DeviceFloats(Device& dev, const std::vector<float>& host) : buf(dev.alloc(4 * host.size(), MemKind::Device)) {
        dev.default_stream().copy(buf.data(), host.data(), 4 * host.size());
        dev.default_stream().synchronize();
    }
    float* data() const { return buf.as<float>(); }
    std::vector<float> read(Device& dev) const {
        std::vector<float> out(buf.n_bytes() / 4);
        dev.default_stream().copy(out.data(), buf.data(), buf.n_bytes());
        dev.default_stream().synchronize();
        return out;
    }
};

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

}  // namespace butler::test

TEST_SUITE("device") {
    TEST_CASE("forward kernels on cpu and emu: rmsnorm, rope, glu, add, scale, store_row against float64") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=3"}) {
            CAPTURE(spec);
            auto dev = make_device(spec);
            test::check_forward_kernels(*dev);
        }
    }
}
