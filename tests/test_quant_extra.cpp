// SPDX-License-Identifier: MIT
// The block types of cpu_kernels/quant_extra.cpp (Q4_0, Q4_1, Q5_1, Q5_K, Q3_K, IQ4_NL) through the public entry
// points of quant.h: hand-built blocks whose values are derived here from GGML's layouts, dots against float64,
// quantizer round trips and determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu_kernels/quant.h"
#include "runtime/status.h"

using namespace butler;

namespace {

constexpr DType kExtraTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::Q5_K, DType::Q3_K};

constexpr uint16_t kF16_0_125 = 0x3000;
constexpr uint16_t kF16_0_25  = 0x3400;
constexpr uint16_t kF16_0_5   = 0x3800;
constexpr uint16_t kF16_m1    = 0xBC00;

void put_u16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
    b[at]     = uint8_t(v & 0xFF);
    b[at + 1] = uint8_t(v >> 8);
}

std::vector<float> dequant(DType t, const std::vector<uint8_t>& row, int64_t n) {
    std::vector<float> y(size_t(n), NAN);
    dequantize_row(t, row.data(), y.data(), n);
    return y;
}

// Random payload bytes with a sane f16 value in every scale slot of every block.
std::vector<uint8_t> random_row(DType t, int64_t n, std::mt19937& rng) {
    std::vector<uint8_t> row(size_t(row_bytes(t, n)));
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    for (auto& b : row) b = uint8_t(byte(rng));
    const size_t bb = size_t(dtype_traits(t).block_bytes);
    for (size_t off = 0; off < row.size(); off += bb) {
        if (t == DType::Q3_K) {
            put_u16(row, off + 108, f32_to_f16(scale(rng)));
        } else {
            put_u16(row, off, f32_to_f16(scale(rng)));
            if (t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q5_K) put_u16(row, off + 2, f32_to_f16(scale(rng)));
        }
    }
    return row;
}

}  // namespace

TEST_SUITE("quant") {
    TEST_CASE("Q4_0 hand-built block") {
        // d = 0.5, qs[j] = j | (15 - j) << 4: value j is 0.5 (j - 8), value j + 16 is 0.5 (7 - j).
        std::vector<uint8_t> b(18);
        put_u16(b, 0, kF16_0_5);
        for (int j = 0; j < 16; ++j) b[size_t(2 + j)] = uint8_t(j | ((15 - j) << 4));
        const auto y = dequant(DType::Q4_0, b, 32);
        CHECK(y[0] == -4.0f);
        CHECK(y[8] == 0.0f);
        CHECK(y[15] == 3.5f);
        CHECK(y[16] == 3.5f);
        CHECK(y[31] == -4.0f);
        for (int j = 0; j < 16; ++j) {
            CHECK(y[size_t(j)] == 0.5f * (j - 8));
            CHECK(y[size_t(j + 16)] == 0.5f * (7 - j));
        }
    }

    TEST_CASE("Q4_1 hand-built block") {
        // d = 0.25, m = -1, same nibbles: value j is 0.25 j - 1, value j + 16 is 0.25 (15 - j) - 1.
        std::vector<uint8_t> b(20);
        put_u16(b, 0, kF16_0_25);
        put_u16(b, 2, kF16_m1);
        for (int j = 0; j < 16; ++j) b[size_t(4 + j)] = uint8_t(j | ((15 - j) << 4));
        const auto y = dequant(DType::Q4_1, b, 32);
        CHECK(y[0] == -1.0f);
        CHECK(y[15] == 2.75f);
        CHECK(y[16] == 2.75f);
        CHECK(y[31] == -1.0f);
        for (int j = 0; j < 16; ++j) {
            CHECK(y[size_t(j)] == 0.25f * j - 1.0f);
            CHECK(y[size_t(j + 16)] == 0.25f * (15 - j) - 1.0f);
        }
    }

    TEST_CASE("Q5_1 hand-built block") {
        // d = 0.25, m = 0.5; qh = 0xF0008001 (bits 0, 15, 28..31); qs[j] = j | (15 - j) << 4.
        std::vector<uint8_t> b(24);
        put_u16(b, 0, kF16_0_25);
        put_u16(b, 2, kF16_0_5);
        const uint8_t qh[4] = {0x01, 0x80, 0x00, 0xF0};
        std::memcpy(&b[4], qh, 4);
        for (int j = 0; j < 16; ++j) b[size_t(8 + j)] = uint8_t(j | ((15 - j) << 4));
        const auto y = dequant(DType::Q5_1, b, 32);
        CHECK(y[0] == 4.5f);    // 0 | 16 -> 0.25 * 16 + 0.5
        CHECK(y[1] == 0.75f);   // 1
        CHECK(y[15] == 8.25f);  // 15 | 16 = 31
        CHECK(y[16] == 4.25f);  // 15, bit 16 clear
        CHECK(y[28] == 5.25f);  // 3 | 16 = 19
        CHECK(y[31] == 4.5f);   // 0 | 16
        const uint32_t bits = 0xF0008001u;
        for (int j = 0; j < 32; ++j) {
            const int nib = j < 16 ? j : 15 - (j - 16);
            const int q   = nib + (((bits >> j) & 1) ? 16 : 0);
            CHECK(y[size_t(j)] == 0.25f * q + 0.5f);
        }
    }

    TEST_CASE("IQ4_NL hand-built block") {
        // GGML's kvalues_iq4nl, copied here from ggml-common.h.
        const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        std::vector<uint8_t> b(18);
        put_u16(b, 0, kF16_0_125);
        for (int j = 0; j < 16; ++j) b[size_t(2 + j)] = uint8_t(j | ((15 - j) << 4));
        const auto y = dequant(DType::IQ4_NL, b, 32);
        CHECK(y[0] == -15.875f);
        CHECK(y[8] == 0.125f);
        CHECK(y[15] == 14.125f);
        CHECK(y[16] == 14.125f);
        CHECK(y[23] == 0.125f);
        for (int j = 0; j < 16; ++j) {
            CHECK(y[size_t(j)] == 0.125f * kv[j]);
            CHECK(y[size_t(j + 16)] == 0.125f * kv[15 - j]);
        }
    }

    TEST_CASE("Q5_K hand-built block") {
        // d = 0.5, dmin = 0.125 and the 6-bit scales/mins of the Q4_K test (same packing); qs[i] = 7 i,
        // qh[i] = 37 i + 5. Value v: chunk c = v / 64, l = v % 32, upper = (v % 64) / 32; nibble from qs[32 c + l]
        // (high nibble when upper), bit 4 from bit 2 c + upper of qh[l].
        const int ls[8]          = {1, 2, 3, 4, 17, 33, 50, 63};
        const int lm[8]          = {0, 5, 10, 63, 20, 37, 48, 7};
        const uint8_t scales[12] = {0x41, 0x82, 0xC3, 0xC4, 0x40, 0x85, 0xCA, 0x3F, 0x41, 0x51, 0x02, 0x7F};
        std::vector<uint8_t> b(176);
        put_u16(b, 0, kF16_0_5);
        put_u16(b, 2, kF16_0_125);
        std::memcpy(&b[4], scales, 12);
        for (int i = 0; i < 32; ++i) b[size_t(16 + i)] = uint8_t(37 * i + 5);
        for (int i = 0; i < 128; ++i) b[size_t(48 + i)] = uint8_t(7 * i);
        const auto y = dequant(DType::Q5_K, b, 256);
        CHECK(y[0] == 8.0f);        // qs[0] = 0, qh[0] = 5 bit 0 set: 16; sub 0: 0.5 * 1 * 16
        CHECK(y[17] == 3.5f);       // qs[17] = 0x77 low 7, qh[17] = 0x7A bit 0 clear; sub 0
        CHECK(y[40] == 2.375f);     // qs[8] = 0x38 high 3, qh[8] = 0x2D bit 1 clear; sub 1: 3 - 0.625
        CHECK(y[100] == 54.125f);   // qs[36] = 0xFC high 15, qh[4] = 0x99 bit 3 set: 31; sub 3: 62 - 7.875
        CHECK(y[130] == 116.5f);    // qs[66] = 0xCE low 14, qh[2] = 0x4F bit 4 clear; sub 4: 119 - 2.5
        CHECK(y[200] == 194.0f);    // qs[104] = 0xD8 low 8, qh[8] = 0x2D bit 6 clear; sub 6: 200 - 6
        CHECK(y[255] == 723.625f);  // qs[127] = 0x79 high 7, qh[31] = 0x8C bit 7 set: 23; sub 7: 724.5 - 0.875
        for (int v = 0; v < 256; ++v) {
            const int c = v / 64, l = v % 32, upper = (v % 64) / 32, sub = v / 32;
            const int qs = (7 * (32 * c + l)) & 0xFF, qh = (37 * l + 5) & 0xFF;
            const int q  = (upper ? qs >> 4 : qs & 15) | (((qh >> (2 * c + upper)) & 1) << 4);
            CHECK(y[size_t(v)] == doctest::Approx(0.5 * ls[sub] * q - 0.125 * lm[sub]));
        }
    }

    TEST_CASE("Q3_K hand-built block") {
        // d = 0.25; 16 unsigned 6-bit scales u (signed scale u - 32), packed by hand: low nibbles in bytes 0..7
        // (scales 0..7 low halves, 8..15 high halves), top two bits of scale s at bits 2 (s / 4) of byte 8 + s % 4.
        const int u[16]          = {0, 63, 32, 31, 1, 40, 20, 50, 33, 10, 62, 5, 45, 30, 16, 48};
        const uint8_t scales[12] = {0x10, 0xAF, 0xE0, 0x5F, 0xD1, 0xE8, 0x04, 0x02, 0xA0, 0x4B, 0x76, 0xCD};
        std::vector<uint8_t> b(110);
        for (int i = 0; i < 32; ++i) b[size_t(i)] = uint8_t(11 * i + 1);       // hmask
        for (int i = 0; i < 64; ++i) b[size_t(32 + i)] = uint8_t(13 * i + 7);  // qs
        std::memcpy(&b[96], scales, 12);
        put_u16(b, 108, kF16_0_25);
        const auto y = dequant(DType::Q3_K, b, 256);
        CHECK(y[0] == -24.0f);   // qs[0] = 0x07 bits 0-1 = 3, hmask[0] bit 0 set: 3; scale -32
        CHECK(y[17] == -31.0f);  // qs[17] = 0xE4 bits 0-1 = 0, hmask[17] = 0xBC bit 0 clear: -4; scale 31
        CHECK(y[90] == 2.0f);    // qs[26] = 0x59 bits 4-5 = 1, hmask[26] = 0x1F bit 2 set: 1; scale 8
        CHECK(y[140] == -0.25f); // qs[44] = 0x43 bits 0-1 = 3, hmask[12] = 0x85 bit 4 clear: -1; scale 1
        CHECK(y[170] == 15.0f);  // qs[42] = 0x29 bits 2-3 = 2, hmask[10] = 0x6F bit 5 set: 2; scale 30
        CHECK(y[230] == 4.0f);   // qs[38] = 0xF5 bits 6-7 = 3, hmask[6] = 0x43 bit 7 clear: -1; scale -16
        CHECK(y[255] == -16.0f); // qs[63] = 0x3A bits 6-7 = 0, hmask[31] = 0x56 bit 7 clear: -4; scale 16
        for (int v = 0; v < 256; ++v) {
            const int h = v / 128, j = (v % 128) / 32, l = v % 32;
            const int lo = (((13 * (32 * h + l) + 7) & 0xFF) >> (2 * j)) & 3;
            const int hb = (((11 * l + 1) & 0xFF) >> (4 * h + j)) & 1;
            CHECK(y[size_t(v)] == 0.25f * (u[v / 16] - 32) * (lo - (hb ? 0 : 4)));
        }
    }

    TEST_CASE("extra types: dot_row and gemv match float64 over the dequantized row") {
        std::mt19937 rng(77);
        for (DType t : kExtraTypes) {
            CAPTURE(dtype_name(t));
            for (int64_t n : {256, 512, 4096}) {
                const auto row = random_row(t, n, rng);
                std::normal_distribution<float> g(0.0f, 1.0f);
                std::vector<float> x(static_cast<size_t>(n));
                for (auto& v : x) v = g(rng);
                const auto w = dequant(t, row, n);
                double ref = 0.0, mag = 0.0;
                for (int64_t i = 0; i < n; ++i) {
                    ref += double(w[size_t(i)]) * x[size_t(i)];
                    mag += std::fabs(double(w[size_t(i)]) * x[size_t(i)]);
                }
                REQUIRE(std::isfinite(mag));
                CHECK(std::fabs(dot_row(t, row.data(), x.data(), n) - ref) <= 1e-5 * mag);
                CHECK(std::fabs(dot_row_reference(t, row.data(), x.data(), n) - ref) <= 1e-5 * mag);
            }
            // gemv over 3 rows.
            const int64_t n = 512;
            std::vector<uint8_t> mat;
            for (int r = 0; r < 3; ++r) {
                const auto row = random_row(t, n, rng);
                mat.insert(mat.end(), row.begin(), row.end());
            }
            std::vector<float> x(size_t(n), 0.5f), y(3);
            gemv(t, mat.data(), 3, n, x.data(), y.data());
            for (int r = 0; r < 3; ++r) {
                std::vector<uint8_t> row(mat.begin() + r * row_bytes(t, n), mat.begin() + (r + 1) * row_bytes(t, n));
                const auto w = dequant(t, row, n);
                double ref = 0.0, mag = 0.0;
                for (int64_t i = 0; i < n; ++i) ref += 0.5 * w[size_t(i)], mag += std::fabs(0.5 * w[size_t(i)]);
                CHECK(std::fabs(y[size_t(r)] - ref) <= 1e-5 * mag);
            }
        }
    }

    TEST_CASE("extra types: quantize -> dequantize round trip on Gaussian data") {
        std::mt19937 rng(42);
        const int64_t n = 4096;
        // Bounds sit just above what each format measured here on N(0, 1) data: Q4_0 8.7%, Q4_1 7.7%, Q5_1 3.8%,
        // IQ4_NL 7.3%, Q5_K 3.6%, Q3_K 14.8%.
        struct Case {
            DType t;
            double max_rel_rms;
        };
        const Case cases[] = {{DType::Q4_0, 0.095},  {DType::Q4_1, 0.085}, {DType::Q5_1, 0.042},
                              {DType::IQ4_NL, 0.08}, {DType::Q5_K, 0.04},  {DType::Q3_K, 0.16}};
        for (const Case& c : cases) {
            CAPTURE(dtype_name(c.t));
            std::normal_distribution<float> g(0.0f, 1.0f);
            std::vector<float> x(static_cast<size_t>(n));
            for (auto& v : x) v = g(rng);
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
            std::vector<uint8_t> again(q.size());
            quantize_row(c.t, x.data(), again.data(), n);
            CHECK(again == q);
        }
    }

    TEST_CASE("extra types: quantize zeros and constant rows") {
        for (DType t : kExtraTypes) {
            CAPTURE(dtype_name(t));
            const int64_t n = 512;
            std::vector<uint8_t> q(size_t(row_bytes(t, n)));
            for (float v : {0.0f, -0.75f, 3.0f}) {
                CAPTURE(v);
                std::vector<float> x(size_t(n), v);
                quantize_row(t, x.data(), q.data(), n);
                const auto y = dequant(t, q, n);
                // IQ4_NL's code book has no zero, so a zero row decodes to +-d with d = 0: still exactly 0.
                for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(y[size_t(i)] - v) <= 0.02f * std::fabs(v));
            }
        }
    }
}
