// SPDX-License-Identifier: MIT
// Quantized rows (cpu_kernels/quant.h): hand-built blocks with hand-derived values, SIMD dots against the
// scalar reference and float64, quantizer round trips, f16/bf16 conversions, and gemv.
#include <doctest/doctest.h>
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu_kernels/quant.h"
#include "runtime/status.h"

using namespace butler;

namespace {

constexpr DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K};

// f16 bit patterns of the exact powers of two used as block scales below.
constexpr uint16_t kF16_0_125 = 0x3000;
constexpr uint16_t kF16_0_25  = 0x3400;
constexpr uint16_t kF16_0_5   = 0x3800;

void put_u16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
    b[at]     = uint8_t(v & 0xFF);
    b[at + 1] = uint8_t(v >> 8);
}

std::vector<float> dequant(DType t, const std::vector<uint8_t>& row, int64_t n) {
    std::vector<float> y(size_t(n), NAN);
    dequantize_row(t, row.data(), y.data(), n);
    return y;
}

// A row of n values with random payload bytes and a sane random f16 scale in every scale slot.
std::vector<uint8_t> random_row(DType t, int64_t n, std::mt19937& rng) {
    const int64_t nb = row_bytes(t, n);
    std::vector<uint8_t> row(static_cast<size_t>(nb));
    std::uniform_real_distribution<float> val(-2.0f, 2.0f);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    std::uniform_int_distribution<int> byte(0, 255);
    switch (t) {
        case DType::F32:
            for (int64_t i = 0; i < n; ++i) {
                const float v = val(rng);
                std::memcpy(&row[size_t(4 * i)], &v, 4);
            }
            return row;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) put_u16(row, size_t(2 * i), f32_to_f16(val(rng)));
            return row;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) put_u16(row, size_t(2 * i), f32_to_bf16(val(rng)));
            return row;
        default:
            break;
    }
    for (auto& b : row) b = uint8_t(byte(rng));
    const int64_t bb = dtype_traits(t).block_bytes;
    for (int64_t off = 0; off < nb; off += bb) {
        switch (t) {
            case DType::Q8_0:
            case DType::Q5_0:
                put_u16(row, size_t(off), f32_to_f16(scale(rng)));
                break;
            case DType::Q4_K:
                put_u16(row, size_t(off), f32_to_f16(scale(rng)));
                put_u16(row, size_t(off + 2), f32_to_f16(scale(rng)));
                break;
            case DType::Q6_K:
                put_u16(row, size_t(off + 208), f32_to_f16(scale(rng) * 0.1f));
                break;
            default:
                break;
        }
    }
    return row;
}

std::vector<float> gaussian(int64_t n, std::mt19937& rng) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = g(rng);
    return x;
}

}  // namespace

TEST_SUITE("quant") {
    TEST_CASE("Q8_0 hand-built block") {
        // d = 0.5, qs[j] = j - 16, except qs[5] = -128 and qs[6] = 127 (the int8 extremes).
        std::vector<uint8_t> b(34);
        put_u16(b, 0, kF16_0_5);
        for (int j = 0; j < 32; ++j) b[size_t(2 + j)] = uint8_t(int8_t(j - 16));
        b[2 + 5]     = 0x80;
        b[2 + 6]     = 0x7F;
        const auto y = dequant(DType::Q8_0, b, 32);
        CHECK(y[0] == -8.0f);
        CHECK(y[5] == -64.0f);
        CHECK(y[6] == 63.5f);
        CHECK(y[16] == 0.0f);
        CHECK(y[17] == 0.5f);
        CHECK(y[31] == 7.5f);
        for (int j = 0; j < 32; ++j) {
            const double q = j == 5 ? -128 : j == 6 ? 127 : j - 16;
            CHECK(y[size_t(j)] == doctest::Approx(0.5 * q));
        }
    }

    TEST_CASE("Q5_0 hand-built block") {
        // d = 0.25; qh = 0xF0008001 (bits 0, 15, 28..31); qs[j] = j | (15 - j) << 4.
        std::vector<uint8_t> b(22);
        put_u16(b, 0, kF16_0_25);
        const uint8_t qh[4] = {0x01, 0x80, 0x00, 0xF0};
        std::memcpy(&b[2], qh, 4);
        for (int j = 0; j < 16; ++j) b[size_t(6 + j)] = uint8_t(j | ((15 - j) << 4));
        const auto y = dequant(DType::Q5_0, b, 32);
        CHECK(y[0] == 0.0f);     // nibble 0 | bit 0 -> 16 - 16
        CHECK(y[1] == -3.75f);   // nibble 1, no high bit -> 1 - 16 = -15
        CHECK(y[15] == 3.75f);   // nibble 15 | bit 15 -> 31 - 16
        CHECK(y[16] == -0.25f);  // high nibble of qs[0] = 15, bit 16 clear
        CHECK(y[27] == -3.0f);   // high nibble of qs[11] = 4, bit 27 clear
        CHECK(y[28] == 0.75f);   // high nibble of qs[12] = 3 | bit 28 -> 19 - 16
        CHECK(y[31] == 0.0f);    // high nibble of qs[15] = 0 | bit 31 -> 16 - 16
        const uint32_t bits = 0xF0008001u;
        for (int j = 0; j < 32; ++j) {
            const int nib = j < 16 ? j : 15 - (j - 16);
            const int q   = nib + (((bits >> j) & 1) ? 16 : 0);
            CHECK(y[size_t(j)] == doctest::Approx(0.25 * (q - 16)));
        }
    }

    TEST_CASE("Q4_K hand-built block") {
        // d = 0.5, dmin = 0.125; 6-bit scales and mins per 32-value sub-block, packed by hand below.
        const int ls[8] = {1, 2, 3, 4, 17, 33, 50, 63};
        const int lm[8] = {0, 5, 10, 63, 20, 37, 48, 7};
        // Bytes 0..3: ls[j] | (ls[j+4] >> 4) << 6; bytes 4..7: lm[j] | (lm[j+4] >> 4) << 6;
        // bytes 8..11: (ls[j+4] & 15) | (lm[j+4] & 15) << 4.
        const uint8_t scales[12] = {0x41, 0x82, 0xC3, 0xC4, 0x40, 0x85, 0xCA, 0x3F, 0x41, 0x51, 0x02, 0x7F};
        std::vector<uint8_t> b(144);
        put_u16(b, 0, kF16_0_5);
        put_u16(b, 2, kF16_0_125);
        std::memcpy(&b[4], scales, 12);
        for (int i = 0; i < 128; ++i) b[size_t(16 + i)] = uint8_t(i * 7);
        const auto y = dequant(DType::Q4_K, b, 256);
        CHECK(y[0] == 0.0f);        // qs[0] = 0, sub 0
        CHECK(y[17] == 3.5f);       // qs[17] = 0x77, low 7, sub 0: 0.5*1*7
        CHECK(y[40] == 2.375f);     // qs[8] = 0x38, high 3, sub 1: 0.5*2*3 - 0.125*5
        CHECK(y[100] == 22.125f);   // qs[36] = 0xFC, high 15, sub 3: 0.5*4*15 - 0.125*63
        CHECK(y[130] == 116.5f);    // qs[66] = 0xCE, low 14, sub 4: 0.5*17*14 - 0.125*20
        CHECK(y[170] == -4.625f);   // qs[74] = 0x06, high 0, sub 5: -0.125*37
        CHECK(y[200] == 194.0f);    // qs[104] = 0xD8, low 8, sub 6: 0.5*50*8 - 0.125*48
        CHECK(y[255] == 219.625f);  // qs[127] = 0x79, high 7, sub 7: 0.5*63*7 - 0.125*7
        for (int v = 0; v < 256; ++v) {
            const int chunk = v / 64, w = v % 64, sub = v / 32;
            const int byte = (7 * (32 * chunk + w % 32)) & 0xFF;
            const int q    = w < 32 ? byte & 15 : byte >> 4;
            CHECK(y[size_t(v)] == doctest::Approx(0.5 * ls[sub] * q - 0.125 * lm[sub]));
        }
    }

    TEST_CASE("Q6_K hand-built block") {
        // ql[i] = 5 i, qh[i] = 9 i + 3, int8 scales with both signs and both extremes, d = 0.25.
        const int8_t sc[16] = {1, -2, 3, -4, 5, 6, 7, 8, 127, -128, 10, 11, 12, 13, 14, 15};
        std::vector<uint8_t> b(210);
        for (int i = 0; i < 128; ++i) b[size_t(i)] = uint8_t(5 * i);
        for (int i = 0; i < 64; ++i) b[size_t(128 + i)] = uint8_t(9 * i + 3);
        std::memcpy(&b[192], sc, 16);
        put_u16(b, 208, kF16_0_25);
        const auto y = dequant(DType::Q6_K, b, 256);
        CHECK(y[0] == 4.0f);       // ql[0] low 0, qh[0] bits 0-1 = 3: 48 - 32 = 16, sc[0] = 1
        CHECK(y[17] == 13.5f);     // ql[17] = 0x55 low 5, qh[17] = 0x9C bits 0-1 = 0: -27, sc[1] = -2
        CHECK(y[50] == 6.0f);      // ql[50] = 0xFA low 10, qh[18] = 0xA5 bits 2-3 = 1: 26 - 32, sc[3] = -4
        CHECK(y[70] == 21.25f);    // ql[6] = 0x1E high 1, qh[6] = 0x39 bits 4-5 = 3: 49 - 32, sc[4] = 5
        CHECK(y[100] == -36.75f);  // ql[36] = 0xB4 high 11, qh[4] = 0x27 bits 6-7 = 0: -21, sc[6] = 7
        CHECK(y[136] == 762.0f);   // ql[72] = 0x68 low 8, qh[40] = 0x6B bits 0-1 = 3: 24, sc[8] = 127
        CHECK(y[150] == 64.0f);    // ql[86] = 0xAE low 14, qh[54] = 0xE9 bits 0-1 = 1: -2, sc[9] = -128
        CHECK(y[200] == 18.0f);    // ql[72] high 6, qh[40] bits 4-5 = 2: 6, sc[12] = 12
        CHECK(y[255] == -93.75f);  // ql[127] = 0x7B high 7, qh[63] = 0x3A bits 6-7 = 0: -25, sc[15] = 15
        for (int v = 0; v < 256; ++v) {
            const int half = v / 128, g = (v % 128) / 32, l = v % 32;
            const int ql = (5 * (64 * half + l + (g & 1 ? 32 : 0))) & 0xFF;
            const int qh = (9 * (32 * half + l) + 3) & 0xFF;
            const int q  = ((g < 2 ? ql & 15 : ql >> 4) | (((qh >> (2 * g)) & 3) << 4)) - 32;
            CHECK(y[size_t(v)] == doctest::Approx(0.25 * sc[8 * half + 2 * g + l / 16] * q));
        }
    }

    TEST_CASE("plain types dequantize") {
        const uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};  // f16: 1, -2, 2^-24, 65504
        float y[4];
        dequantize_row(DType::F16, h, y, 4);
        CHECK(y[0] == 1.0f);
        CHECK(y[1] == -2.0f);
        CHECK(y[2] == std::ldexp(1.0f, -24));
        CHECK(y[3] == 65504.0f);
        const uint16_t bf[3] = {0x3F80, 0xC0A0, 0x3E00};  // bf16: 1, -5, 0.125
        dequantize_row(DType::BF16, bf, y, 3);
        CHECK(y[0] == 1.0f);
        CHECK(y[1] == -5.0f);
        CHECK(y[2] == 0.125f);
        const float f[2] = {1.25f, -3.5f};
        dequantize_row(DType::F32, f, y, 2);
        CHECK(y[0] == 1.25f);
        CHECK(y[1] == -3.5f);
    }

    TEST_CASE("dot_row matches the scalar reference and float64") {
        std::mt19937 rng(1234);
        for (DType t : kAllTypes) {
            const int64_t be              = dtype_traits(t).block_elems;
            const int64_t lengths_k[]     = {256, 512, 2048, 4096};
            const int64_t lengths_32[]    = {32, 64, 640, 2048, 4096};
            const int64_t lengths_plain[] = {1, 7, 15, 16, 17, 640, 2049, 4096};
            const int64_t* lengths        = be == 256 ? lengths_k : be == 32 ? lengths_32 : lengths_plain;
            const size_t n_len            = be == 256 ? 4 : be == 32 ? 5 : 8;
            for (size_t k = 0; k < n_len; ++k) {
                const int64_t n = lengths[k];
                CAPTURE(dtype_name(t));
                CAPTURE(n);
                for (int rep = 0; rep < 3; ++rep) {
                    const auto row = random_row(t, n, rng);
                    const auto x   = gaussian(n, rng);
                    const auto w   = dequant(t, row, n);
                    double ref = 0.0, mag = 0.0;
                    for (int64_t i = 0; i < n; ++i) {
                        ref += double(w[size_t(i)]) * x[size_t(i)];
                        mag += std::fabs(double(w[size_t(i)]) * x[size_t(i)]);
                    }
                    REQUIRE(std::isfinite(mag));
                    const double fast   = dot_row(t, row.data(), x.data(), n);
                    const double scalar = dot_row_reference(t, row.data(), x.data(), n);
                    CHECK(std::fabs(fast - ref) <= 1e-5 * mag);
                    CHECK(std::fabs(scalar - ref) <= 1e-5 * mag);
                    CHECK(std::fabs(fast - scalar) <= 1e-5 * mag);
                }
            }
        }
    }

    TEST_CASE("quantizers: hand-checked Q8_0 and Q5_0 values") {
        // Q8_0: amax 127 gives d = 1, so q = round(x) with halves away from zero.
        std::vector<float> x(32, 0.0f);
        x[0] = 127.0f;
        x[1] = 2.5f;
        x[2] = -2.5f;
        x[3] = 0.49f;
        x[4] = -126.6f;
        std::vector<uint8_t> q8(34);
        quantize_row(DType::Q8_0, x.data(), q8.data(), 32);
        CHECK((q8[0] | q8[1] << 8) == 0x3C00);
        CHECK(int8_t(q8[2 + 0]) == 127);
        CHECK(int8_t(q8[2 + 1]) == 3);
        CHECK(int8_t(q8[2 + 2]) == -3);
        CHECK(int8_t(q8[2 + 3]) == 0);
        CHECK(int8_t(q8[2 + 4]) == -127);

        // Q5_0: the extreme is -8, so d = 0.5, id = 2 and q = min(31, trunc(2 x + 16.5)).
        std::vector<float> z(32, 0.0f);
        z[0]  = -8.0f;   // 0.5 -> 0
        z[1]  = 1.3f;    // 19.1 -> 19
        z[2]  = 0.25f;   // 17 -> 17
        z[3]  = -0.25f;  // 16 -> 16
        z[20] = 7.9f;    // 32.3 -> 32 -> 31
        std::vector<uint8_t> q5(22);
        quantize_row(DType::Q5_0, z.data(), q5.data(), 32);
        CHECK((q5[0] | q5[1] << 8) == kF16_0_5);
        const auto y = dequant(DType::Q5_0, q5, 32);
        CHECK(y[0] == -8.0f);
        CHECK(y[1] == 1.5f);
        CHECK(y[2] == 0.5f);
        CHECK(y[3] == 0.0f);
        CHECK(y[20] == 7.5f);
        // z[20] = 31: nibble 15 in the high half of qs[4], bit 20 of qh.
        CHECK((q5[6 + 4] >> 4) == 15);
        CHECK(((q5[2] | q5[3] << 8 | q5[4] << 16 | uint32_t(q5[5]) << 24) >> 20 & 1) == 1);
    }

    TEST_CASE("quantize -> dequantize round trip on Gaussian data") {
        std::mt19937 rng(42);
        const int64_t n = 4096;
        // Bounds sit just above what the formats can do on N(0, 1) data (measured here: Q8_0 0.54%, Q5_0 4.3%,
        // Q4_K 7.3%, Q6_K 1.7%); a 4-bit grid cannot get near 3% on Gaussian blocks.
        struct Case {
            DType t;
            double max_rel_rms;
        };
        const Case cases[] = {{DType::F32, 0.0},   {DType::F16, 5e-4},   {DType::BF16, 4e-3}, {DType::Q8_0, 0.0065},
                              {DType::Q5_0, 0.05}, {DType::Q4_K, 0.085}, {DType::Q6_K, 0.02}};
        for (const Case& c : cases) {
            CAPTURE(dtype_name(c.t));
            const auto x = gaussian(n, rng);
            std::vector<uint8_t> q(size_t(row_bytes(c.t, n)));
            quantize_row(c.t, x.data(), q.data(), n);
            const auto y = dequant(c.t, q, n);
            double err = 0.0, energy = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                err += (double(y[size_t(i)]) - x[size_t(i)]) * (double(y[size_t(i)]) - x[size_t(i)]);
                energy += double(x[size_t(i)]) * x[size_t(i)];
            }
            const double rel = std::sqrt(err / energy);
            MESSAGE(dtype_name(c.t), " relative RMS error ", rel);
            CHECK(rel <= c.max_rel_rms);
            // Deterministic: the same input quantizes to the same bytes.
            std::vector<uint8_t> again(q.size());
            quantize_row(c.t, x.data(), again.data(), n);
            CHECK(again == q);
        }
    }

    TEST_CASE("quantize zeros and constant rows") {
        for (DType t : kAllTypes) {
            CAPTURE(dtype_name(t));
            const int64_t n = 512;
            std::vector<uint8_t> q(size_t(row_bytes(t, n)));
            for (float v : {0.0f, -0.75f, 3.0f}) {
                std::vector<float> x(size_t(n), v);
                quantize_row(t, x.data(), q.data(), n);
                const auto y = dequant(t, q, n);
                for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(y[size_t(i)] - v) <= 0.02f * std::fabs(v));
            }
        }
    }

    TEST_CASE("f16 conversion edge cases") {
        const auto ldexp = [](float m, int e) { return std::ldexp(m, e); };
        CHECK(f32_to_f16(0.0f) == 0x0000);
        CHECK(f32_to_f16(-0.0f) == 0x8000);
        CHECK(f32_to_f16(1.0f) == 0x3C00);
        CHECK(f32_to_f16(-2.0f) == 0xC000);
        CHECK(f32_to_f16(65504.0f) == 0x7BFF);  // max finite
        CHECK(f32_to_f16(65519.0f) == 0x7BFF);  // below the halfway point to 65536
        CHECK(f32_to_f16(65520.0f) == 0x7C00);  // halfway, ties to even = 2^16 = inf
        CHECK(f32_to_f16(INFINITY) == 0x7C00);
        CHECK(f32_to_f16(-INFINITY) == 0xFC00);
        CHECK((f32_to_f16(NAN) & 0x7FFF) > 0x7C00);         // still a NaN
        CHECK(f32_to_f16(ldexp(1, -24)) == 0x0001);         // smallest subnormal
        CHECK(f32_to_f16(ldexp(1, -25)) == 0x0000);         // halfway to it: ties to even (0)
        CHECK(f32_to_f16(ldexp(1.5f, -25)) == 0x0001);      // above halfway
        CHECK(f32_to_f16(ldexp(3, -25)) == 0x0002);         // 1.5 ulp: ties to even (2)
        CHECK(f32_to_f16(ldexp(1023, -24)) == 0x03FF);      // largest subnormal
        CHECK(f32_to_f16(ldexp(1, -14)) == 0x0400);         // smallest normal
        CHECK(f32_to_f16(1.0f + ldexp(1, -11)) == 0x3C00);  // halfway between 0x3C00 and 0x3C01: even
        CHECK(f32_to_f16(1.0f + ldexp(3, -11)) == 0x3C02);  // halfway between 0x3C01 and 0x3C02: even
        CHECK(f32_to_f16(1.0f + ldexp(1, -11) + ldexp(1, -20)) == 0x3C01);
        CHECK(f16_to_f32(0x0001) == ldexp(1, -24));
        CHECK(f16_to_f32(0x03FF) == ldexp(1023, -24));
        CHECK(f16_to_f32(0x8000) == 0.0f);
        CHECK(std::signbit(f16_to_f32(0x8000)));
        CHECK(f16_to_f32(0x7BFF) == 65504.0f);
        CHECK(f16_to_f32(0x7C00) == INFINITY);
        CHECK(f16_to_f32(0xFC00) == -INFINITY);
        CHECK(std::isnan(f16_to_f32(0x7E00)));
        CHECK(std::isnan(f16_to_f32(0x7C01)));
        // Every non-NaN half survives a round trip.
        for (uint32_t h = 0; h < 0x10000; ++h) {
            if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;
            if (f32_to_f16(f16_to_f32(uint16_t(h))) != h) FAIL_CHECK("round trip of ", h);
        }
        // Against the F16C instruction (round to nearest even) on random floats of all magnitudes.
        std::mt19937 rng(7);
        for (int i = 0; i < 200000; ++i) {
            uint32_t bits = rng();
            if ((bits & 0x7F800000) == 0x7F800000) continue;  // NaN payloads differ; covered above
            float f;
            std::memcpy(&f, &bits, 4);
            const uint16_t hw = uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
            if (f32_to_f16(f) != hw) FAIL_CHECK("f32_to_f16 of bits ", bits);
        }
    }

    TEST_CASE("bf16 conversion edge cases") {
        CHECK(f32_to_bf16(0.0f) == 0x0000);
        CHECK(f32_to_bf16(-0.0f) == 0x8000);
        CHECK(f32_to_bf16(1.0f) == 0x3F80);
        CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);  // halfway: even
        CHECK(f32_to_bf16(1.0f + std::ldexp(3.0f, -8)) == 0x3F82);  // halfway: even (up)
        CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81);
        CHECK(f32_to_bf16(INFINITY) == 0x7F80);
        CHECK(f32_to_bf16(-INFINITY) == 0xFF80);
        uint32_t bits = 0x7F7FFFFF;  // FLT_MAX rounds up to inf
        float f;
        std::memcpy(&f, &bits, 4);
        CHECK(f32_to_bf16(f) == 0x7F80);
        bits = 0x7F800001;  // a signaling NaN must stay a NaN, not round to inf
        std::memcpy(&f, &bits, 4);
        CHECK(f32_to_bf16(f) == 0x7FC0);
        bits = 0x00010000;  // float subnormal, exact in bf16
        std::memcpy(&f, &bits, 4);
        CHECK(f32_to_bf16(f) == 0x0001);
        CHECK(bf16_to_f32(0x0001) == f);
        CHECK(bf16_to_f32(0xC0A0) == -5.0f);
        CHECK(std::isnan(bf16_to_f32(0x7FC0)));
        CHECK(bf16_to_f32(0xFF80) == -INFINITY);
    }

    TEST_CASE("gemv matches a float64 reference") {
        std::mt19937 rng(99);
        struct Shape {
            int64_t n_rows, n_cols;
        };
        const Shape shapes[]    = {{1, 256}, {3, 512}, {17, 256}, {33, 768}, {131, 1024}};
        const int saved_threads = omp_get_max_threads();
        for (int threads : {1, 3, saved_threads}) {
            omp_set_num_threads(threads);
            for (DType t : kAllTypes) {
                for (const Shape& s : shapes) {
                    CAPTURE(dtype_name(t));
                    CAPTURE(s.n_rows);
                    CAPTURE(s.n_cols);
                    CAPTURE(threads);
                    const auto w = random_row(t, s.n_rows * s.n_cols, rng);  // rows are back-to-back whole blocks
                    const auto x = gaussian(s.n_cols, rng);
                    std::vector<float> y(size_t(s.n_rows), NAN);
                    gemv(t, w.data(), s.n_rows, s.n_cols, x.data(), y.data());
                    const auto wf = dequant(t, w, s.n_rows * s.n_cols);
                    for (int64_t r = 0; r < s.n_rows; ++r) {
                        double ref = 0.0, mag = 0.0;
                        for (int64_t c = 0; c < s.n_cols; ++c) {
                            const double p = double(wf[size_t(r * s.n_cols + c)]) * x[size_t(c)];
                            ref += p;
                            mag += std::fabs(p);
                        }
                        CHECK(std::fabs(y[size_t(r)] - ref) <= 1e-5 * mag);
                    }
                }
            }
        }
        omp_set_num_threads(saved_threads);
    }

    TEST_CASE("unsupported types are refused") {
        std::vector<uint8_t> row(1024);
        std::vector<float> x(256, 1.0f);
        CHECK_THROWS_AS(dot_row(DType::Q8_1, row.data(), x.data(), 256), Error);
        CHECK_THROWS_AS(dequantize_row(DType::Q8_K, row.data(), x.data(), 256), Error);
        CHECK_THROWS_AS(quantize_row(DType::Q2_K, x.data(), row.data(), 256), Error);
        float y;
        CHECK_THROWS_AS(gemv(DType::I8, row.data(), 1, 256, x.data(), &y), Error);
    }

}  // TEST_SUITE("quant")
