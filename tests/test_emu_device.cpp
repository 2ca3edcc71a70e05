// SPDX-License-Identifier: MIT
// Devices: stream order and events on the emulated device under injected delays (and a missing wait caught),
// the memory cap, poisoning, the allocation counter, device specs.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/emu_device.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;

namespace {

struct CopyBack {
    const float* src;
    float* dst;
    size_t n;
    static void run(void* ctx) {
        auto* c = static_cast<CopyBack*>(ctx);
        std::memcpy(c->dst, c->src, c->n * sizeof(float));
    }
};

// Holds a stream for 30 ms: the copy queued behind it lands that late, whatever the random delays draw, so a reader
// that does not wait runs first even when the machine is loaded enough to delay its thread by many milliseconds.
void hold_stream(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }

// Copies host -> device on one stream, then reads the device buffer back from a host function on another stream.
// Returns how many of `trials` reads saw data other than what was copied.
int count_stale_reads(bool with_wait, int trials) {
    auto dev         = make_device("emu:delay_us=3000,seed=5");
    auto copy_stream = dev->create_stream();
    auto compute     = dev->create_stream();
    auto ev          = dev->create_event();
    int stale        = 0;
    for (int t = 0; t < trials; ++t) {
        const size_t n = 1024;
        Buffer d       = dev->alloc(n * sizeof(float), MemKind::Device);  // fresh: poisoned
        std::vector<float> src(n), out(n, 0.0f);
        for (size_t i = 0; i < n; ++i) src[i] = float(t * 1000 + int(i));
        copy_stream->host_fn(&hold_stream, nullptr);
        copy_stream->copy(d.data(), src.data(), n * sizeof(float));
        copy_stream->record(*ev);
        if (with_wait) compute->wait(*ev);
        CopyBack cb{d.as<float>(), out.data(), n};
        compute->host_fn(&CopyBack::run, &cb);
        compute->synchronize();
        copy_stream->synchronize();
        if (out != src) ++stale;
    }
    return stale;
}

}  // namespace

TEST_SUITE("device") {
    TEST_CASE("emu: a waited event orders streams under random copy delays") {
        CHECK(count_stale_reads(true, 20) == 0);
    }

    TEST_CASE("emu: a planted missing wait is caught (the consumer reads poison)") {
        CHECK(count_stale_reads(false, 5) == 5);
    }

    TEST_CASE("gather: every piece lands and nothing else is written, on cpu and on emu under random delays") {
        for (const char* spec : {"cpu", "emu", "emu:delay_us=300,seed=4"}) {
            CAPTURE(spec);
            auto dev = make_device(spec);
            CHECK(test::gather_mismatched_bytes(*dev, 11, 40) == 0);
        }
    }

    TEST_CASE("gemv kernel on cpu and emu: every weight type against float64 over the dequantized rows") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=2"}) {
            auto dev = make_device(spec);
            for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K}) {
                CAPTURE(spec);
                CAPTURE(dtype_name(t));
                CHECK(test::gemv_max_rel_err(*dev, t, 37, 512, 3) < 1e-5);
            }
            // A type without a kernel and a width off the block are refused when enqueued, naming them.
            const GemvArgs bad{uint32_t(DType::Q4_K), nullptr, 1, 100, nullptr, nullptr};
            CHECK_THROWS_WITH_AS(dev->kernels().gemv(dev->default_stream(), &bad), doctest::Contains("q4_K"), Error);
        }
    }

    TEST_CASE("gemm kernel on cpu and emu: every weight type, whole and ragged tiles, against float64") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=2"}) {
            auto dev = make_device(spec);
            for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K})
                for (const int64_t tile_rows : {int64_t(10), int64_t(37)})
                    for (const int64_t n_tok : {int64_t(1), int64_t(9)}) {
                        CAPTURE(spec);
                        CAPTURE(dtype_name(t));
                        CAPTURE(tile_rows);
                        CAPTURE(n_tok);
                        CHECK(test::gemm_max_rel_err(*dev, t, 37, 512, n_tok, tile_rows, 4) < 1e-5);
                    }
            // Output rows narrower than W's rows are refused when enqueued, as are a type without a kernel and tiles
            // of no rows.
            const GemmArgs narrow{uint32_t(DType::Q8_0), nullptr, 40, 64, nullptr, 2, nullptr, 39, nullptr, 8};
            CHECK_THROWS_WITH_AS(dev->kernels().gemm(dev->default_stream(), &narrow), doctest::Contains("39 floats"),
                                 Error);
            const GemmArgs no_tile{uint32_t(DType::Q8_0), nullptr, 40, 64, nullptr, 2, nullptr, 40, nullptr, 0};
            CHECK_THROWS_WITH_AS(dev->kernels().gemm(dev->default_stream(), &no_tile), doctest::Contains("tiles"),
                                 Error);
            const GemmArgs bad{uint32_t(DType::Q4_K), nullptr, 1, 100, nullptr, 1, nullptr, 1, nullptr, 1};
            CHECK_THROWS_WITH_AS(dev->kernels().gemm(dev->default_stream(), &bad), doctest::Contains("q4_K"), Error);
            // No tokens: nothing is read or written.
            const GemmArgs none{uint32_t(DType::Q8_0), nullptr, 40, 64, nullptr, 0, nullptr, 40, nullptr, 8};
            dev->kernels().gemm(dev->default_stream(), &none);
            dev->default_stream().synchronize();
        }
        CHECK(gemm_tile_rows(14336, 4096) == 4096);  // 16 Mi floats of 4096 columns
        CHECK(gemm_tile_rows(4096, 14336) == 1170);
        CHECK(gemm_tile_rows(3, 1 << 26) == 1);
    }

    TEST_CASE("prefill attention kernel on cpu and emu: blocks merged by LSE equal float64 causal attention") {
        for (const char* spec : {"cpu", "emu:delay_us=100,seed=3"}) {
            auto dev = make_device(spec);
            for (DType kv : {DType::F32, DType::F16, DType::BF16})
                for (const int32_t head_dim : {64, 256}) {
                    CAPTURE(spec);
                    CAPTURE(dtype_name(kv));
                    CAPTURE(head_dim);
                    // The chunk's own keys span two blocks; earlier blocks are wholly visible; a block of 1.
                    CHECK(test::prefill_attn_max_err(*dev, kv, head_dim, 4, 13, 29, 10, 7) < 1e-5);
                    CHECK(test::prefill_attn_max_err(*dev, kv, head_dim, 1, 5, 0, 1, 8) < 1e-5);
                    CHECK(test::prefill_attn_max_err(*dev, kv, head_dim, 2, 9, 300, 128, 9) < 1e-5);
                }
            const PrefillAttnArgs wide{nullptr, 0,  1,       0,  1,       nullptr, nullptr, uint32_t(DType::F16), 512,
                                       512,     nullptr, 1, 0, nullptr, 0, nullptr, 0,    false};
            CHECK_THROWS_WITH_AS(dev->kernels().prefill_attn(dev->default_stream(), &wide),
                                 doctest::Contains("512"), Error);
            const PrefillAttnArgs q8{nullptr, 0, 1, 0, 1, nullptr, nullptr, uint32_t(DType::Q8_0), 64, 64, nullptr, 1,
                                     0,       nullptr, 0, nullptr, 0, false};
            CHECK_THROWS_WITH_AS(dev->kernels().prefill_attn(dev->default_stream(), &q8), doctest::Contains("K/V type"),
                                 Error);
        }
    }

    TEST_CASE("emu: events, in-order streams and synchronize") {
        auto dev  = make_device("emu:delay_us=500");
        Stream& s = dev->default_stream();
        auto ev   = dev->create_event();
        CHECK(ev->query());  // never recorded
        std::vector<uint8_t> a(4096, 7), b(4096, 0);
        Buffer d = dev->alloc(4096, MemKind::Device);
        s.copy(d.data(), a.data(), 4096);
        s.memset(d.data(), 3, 16);
        s.copy(b.data(), d.data(), 4096);
        s.record(*ev);
        ev->synchronize();
        CHECK(ev->query());
        CHECK(b[0] == 3);
        CHECK(b[15] == 3);
        CHECK(b[16] == 7);
        CHECK(b[4095] == 7);
    }

    TEST_CASE("emu: capped device memory fails with both sizes named; host memory is not capped") {
        auto dev = make_device("emu:mem=1MiB");
        CHECK(dev->memory_info().total_bytes == (1u << 20));
        Buffer a = dev->alloc(512 << 10, MemKind::Device);
        CHECK(dev->memory_info().free_bytes == (512u << 10));
        try {
            Buffer b = dev->alloc(1 << 20, MemKind::Device);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Oom);
            const std::string msg = e.what();
            CHECK(msg.find("1048576 bytes requested") != std::string::npos);
            CHECK(msg.find("524288 bytes free") != std::string::npos);
        }
        Buffer h = dev->alloc(2 << 20, MemKind::PinnedHost);
        a.reset();
        CHECK(dev->memory_info().free_bytes == (1u << 20));
        Buffer c = dev->alloc(1 << 20, MemKind::Device);  // freed memory is reusable
        CHECK(!c.empty());
    }

    TEST_CASE("emu: fresh device memory is NaN in f32, f16 and bf16") {
        auto dev          = make_device("emu");
        Buffer d          = dev->alloc(256, MemKind::Device);
        const auto* bytes = d.as<const uint8_t>();
        for (int i = 0; i < 256; ++i) REQUIRE(bytes[i] == kPoisonByte);
        CHECK(std::isnan(d.as<const float>()[3]));
        CHECK(std::isnan(f16_to_f32(d.as<const uint16_t>()[5])));
        CHECK(std::isnan(bf16_to_f32(d.as<const uint16_t>()[7])));
    }

    TEST_CASE("allocation counter and move-only buffers") {
        for (const char* spec : {"cpu", "emu"}) {
            auto dev          = make_device(spec);
            const uint64_t n0 = dev->n_allocs();
            Buffer a          = dev->alloc(64, MemKind::Host);
            Buffer b          = std::move(a);
            CHECK(a.empty());
            CHECK(!b.empty());
            auto ev = dev->create_event();
            CHECK(dev->n_allocs() == n0 + 2);
        }
    }

    TEST_CASE("device specs and byte counts") {
        CHECK(make_device("cpu")->is_host());
        CHECK(!make_device("emu:mem=64MiB,pcie_gbps=8,seed=2")->is_host());
        CHECK(emu_effective_pcie_gbps(EmuOptions{}) > 0);
        CHECK(emu_effective_pcie_gbps(EmuOptions{.pcie_gbps = 3.5}) == 3.5);
        for (const char* bad : {"gpu", "emu:foo=1", "emu:mem", "emu:pcie_gbps=x"}) {
            CAPTURE(bad);
            try {
                make_device(bad);
                FAIL("no error");
            } catch (const Error& e) {
                CHECK(e.status() == Status::Usage);
            }
        }
        CHECK(parse_bytes("4096") == 4096);
        CHECK(parse_bytes("64KiB") == 65536);
        CHECK(parse_bytes("2M") == 2u << 20);
        CHECK(parse_bytes("1GiB") == 1u << 30);
        CHECK_THROWS_AS(parse_bytes("lots"), Error);
        CHECK_THROWS_AS(parse_bytes("3 parsecs"), Error);
    }
}
