// SPDX-License-Identifier: MIT
// The cuda device (skipped without a GPU; without a CUDA build, "cuda" must be refused clearly): the attention
// partial kernel against float64 attention written here over random index sets (empty included) for head_dim 64,
// 128, 256 and f32/f16/bf16 rows; stream order, events and the memory cap; and the offload pipeline on cuda, whose
// exact mode must equal the plain CPU runtime.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "offload/pipeline.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"
#ifdef BUTLER_WITH_CUDA
#include "gpu_kernels/cuda_info.h"
#endif

using namespace butler;
using namespace butler::test;

namespace {

bool have_gpu() {
#ifdef BUTLER_WITH_CUDA
    if (cuda::device_count() > 0) return true;
    MESSAGE("skipped: CUDA is built but no GPU is present");
#else
    MESSAGE("skipped: built without CUDA");
#endif
    return false;
}

void put_row(DType type, const std::vector<float>& src, uint8_t* dst) {
    for (size_t d = 0; d < src.size(); ++d) {
        if (type == DType::F32) std::memcpy(dst + 4 * d, &src[d], 4);
        else if (type == DType::F16) reinterpret_cast<uint16_t*>(dst)[d] = f32_to_f16(src[d]);
        else reinterpret_cast<uint16_t*>(dst)[d] = f32_to_bf16(src[d]);
    }
}

double stored_value(DType type, const uint8_t* row, size_t d) {
    if (type == DType::F32) return reinterpret_cast<const float*>(row)[d];
    if (type == DType::F16) return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[d]);
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[d]);
}

}  // namespace

TEST_SUITE("cuda") {
    TEST_CASE("a build without CUDA, or a machine without the GPU asked for, refuses the cuda device clearly") {
#ifndef BUTLER_WITH_CUDA
        try {
            (void)make_device("cuda");
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Unsupported);
            CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
        }
#else
        CHECK_THROWS_AS(make_device("cuda:warp=9"), Error);  // a bad option is refused on any machine
        if (cuda::device_count() == 0) {
            try {
                (void)make_device("cuda:3");
                FAIL("no error");
            } catch (const Error& e) {
                CHECK(e.status() == Status::Unsupported);
                CHECK(std::string(e.what()).find("cuda:3") != std::string::npos);
            }
        }
#endif
    }

    TEST_CASE("attention partial kernel equals float64 attention (index sets, head dims, K/V types)") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        std::mt19937_64 rng(5);
        std::normal_distribution<float> nd(0.f, 1.f);
        for (DType type : {DType::F32, DType::F16, DType::BF16}) {
            for (int32_t hd : {64, 128, 256}) {
                for (int64_t n_idx : {int64_t(0), int64_t(1), int64_t(37), int64_t(700)}) {
                    CAPTURE(dtype_name(type));
                    CAPTURE(hd);
                    CAPTURE(n_idx);
                    const int32_t n_group = 4, n_rows = 1000;
                    const size_t elem = type == DType::F32 ? 4 : 2;
                    Buffer k = dev->alloc(size_t(n_rows) * hd * elem, MemKind::Device);
                    Buffer v = dev->alloc(size_t(n_rows) * hd * elem, MemKind::Device);
                    std::vector<uint8_t> hk(size_t(n_rows) * hd * elem), hv(hk.size());
                    std::vector<float> row(static_cast<size_t>(hd));
                    for (int32_t r = 0; r < n_rows; ++r) {
                        for (float& x : row) x = nd(rng);
                        put_row(type, row, hk.data() + size_t(r) * hd * elem);
                        for (float& x : row) x = nd(rng);
                        put_row(type, row, hv.data() + size_t(r) * hd * elem);
                    }
                    Buffer q   = dev->alloc(sizeof(float) * size_t(n_group * hd), MemKind::PinnedHost);
                    Buffer idx = dev->alloc(sizeof(int32_t) * size_t(std::max<int64_t>(n_idx, 1)), MemKind::PinnedHost);
                    Buffer out = dev->alloc(sizeof(float) * size_t(n_group * hd), MemKind::PinnedHost);
                    Buffer lse = dev->alloc(sizeof(float) * size_t(n_group), MemKind::PinnedHost);
                    Buffer sc  = dev->alloc(sizeof(float) * size_t(n_group * std::max<int64_t>(n_idx, 1)), MemKind::Device);
                    for (int32_t i = 0; i < n_group * hd; ++i) q.as<float>()[i] = nd(rng) / std::sqrt(float(hd));
                    for (int64_t i = 0; i < n_idx; ++i) idx.as<int32_t>()[i] = int32_t((i * 7919 + 13) % n_rows);
                    Stream& s = dev->default_stream();
                    s.copy(k.data(), hk.data(), hk.size());
                    s.copy(v.data(), hv.data(), hv.size());
                    const AttnPartialArgs a{q.as<float>(), n_group, k.as<uint8_t>(), v.as<uint8_t>(), uint32_t(type), hd,
                                            hd, idx.as<int32_t>(), n_idx, out.as<float>(), lse.as<float>(), sc.as<float>()};
                    dev->kernels().attn_partial(s, &a);
                    s.synchronize();
                    for (int32_t h = 0; h < n_group; ++h) {
                        if (n_idx == 0) {
                            CHECK(lse.as<float>()[h] == -std::numeric_limits<float>::infinity());
                            for (int32_t d = 0; d < hd; ++d) CHECK(out.as<float>()[h * hd + d] == 0.f);
                            continue;
                        }
                        std::vector<double> score(static_cast<size_t>(n_idx));
                        double m = -INFINITY;
                        for (int64_t i = 0; i < n_idx; ++i) {
                            const uint8_t* kr = hk.data() + size_t(idx.as<int32_t>()[i]) * hd * elem;
                            double dot = 0;
                            for (int32_t d = 0; d < hd; ++d) dot += double(q.as<float>()[h * hd + d]) * stored_value(type, kr, size_t(d));
                            score[size_t(i)] = dot;
                            m = std::max(m, dot);
                        }
                        double sum = 0;
                        for (double& x : score) sum += (x = std::exp(x - m));
                        CHECK(lse.as<float>()[h] == doctest::Approx(m + std::log(sum)).epsilon(1e-4));
                        for (int32_t d = 0; d < hd; ++d) {
                            double o = 0;
                            for (int64_t i = 0; i < n_idx; ++i)
                                o += score[size_t(i)] *
                                     stored_value(type, hv.data() + size_t(idx.as<int32_t>()[i]) * hd * elem, size_t(d));
                            CHECK(out.as<float>()[h * hd + d] == doctest::Approx(o / sum).epsilon(1e-3).scale(1.0));
                        }
                    }
                }
            }
        }
    }

    TEST_CASE("cuda streams: order, events across streams, the memory cap") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda:mem=64MiB");
        CHECK(dev->memory_info().total_bytes == (64u << 20));
        auto a = dev->create_stream(), b = dev->create_stream();
        auto ev = dev->create_event();
        CHECK(ev->query());  // never recorded
        std::vector<float> src(1 << 16), back(src.size(), 0.f);
        for (size_t i = 0; i < src.size(); ++i) src[i] = float(i);
        Buffer d = dev->alloc(src.size() * 4, MemKind::Device);
        a->copy(d.data(), src.data(), src.size() * 4);
        a->record(*ev);
        b->wait(*ev);
        b->copy(back.data(), d.data(), back.size() * 4);
        b->synchronize();
        CHECK(back == src);
        CHECK_THROWS_AS(dev->alloc(65u << 20, MemKind::Device), Error);
        try {
            (void)dev->reserve(65u << 20, "the test's weights");
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Oom);
            CHECK(std::string(e.what()).find("the test's weights") != std::string::npos);
        }
    }

    TEST_CASE("gemv kernel: every weight type against float64 over the dequantized rows") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K})
            for (int64_t n_cols : {256, 2048, 4096 + 256}) {
                CAPTURE(dtype_name(t));
                CAPTURE(n_cols);
                CHECK(gemv_max_rel_err(*dev, t, 301, n_cols, 5) < 1e-5);
            }
        const GemvArgs bad{uint32_t(DType::Q4_K), nullptr, 1, 100, nullptr, nullptr};
        CHECK_THROWS_WITH_AS(dev->kernels().gemv(dev->default_stream(), &bad), doctest::Contains("q4_K"), Error);
    }

    TEST_CASE("gemm kernel (dequantized tiles into cuBLAS): every weight type against float64") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        // TF32 inputs (10-bit mantissas) put the product ~1e-3 off the float64 one; a wrong layout or tile is O(1) off.
        for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K})
            for (const int64_t tile_rows : {int64_t(64), int64_t(301)})
                for (const int64_t n_tok : {int64_t(1), int64_t(67)}) {
                    CAPTURE(dtype_name(t));
                    CAPTURE(tile_rows);
                    CAPTURE(n_tok);
                    CHECK(gemm_max_rel_err(*dev, t, 301, 2048, n_tok, tile_rows, 6) < 5e-3);
                }
        const GemmArgs bad{uint32_t(DType::Q4_K), nullptr, 1, 100, nullptr, 1, nullptr, 1, nullptr, 1};
        CHECK_THROWS_WITH_AS(dev->kernels().gemm(dev->default_stream(), &bad), doctest::Contains("q4_K"), Error);
    }

    TEST_CASE("prefill attention kernel on cuda: blocks merged by LSE equal float64 causal attention") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        for (DType kv : {DType::F32, DType::F16, DType::BF16})
            for (const int32_t head_dim : {64, 128, 256}) {
                CAPTURE(dtype_name(kv));
                CAPTURE(head_dim);
                // Query tiles of 4 with ragged ends, the chunk inside its last blocks, GQA groups of 1, 4 and 8.
                CHECK(prefill_attn_max_err(*dev, kv, head_dim, 4, 13, 29, 10, 7) < 1e-4);
                CHECK(prefill_attn_max_err(*dev, kv, head_dim, 1, 5, 0, 1, 8) < 1e-4);
                CHECK(prefill_attn_max_err(*dev, kv, head_dim, 8, 67, 700, 256, 9) < 1e-4);
            }
    }

    TEST_CASE("forward kernels on cuda: rmsnorm, rope, glu, add, scale, store_row against float64") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        check_forward_kernels(*dev);
    }

    TEST_CASE("selection kernels on cuda: imp_score, topk and imp_query against float64 and a full sort") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        check_selection_kernels(*dev);
    }

    TEST_CASE("gather kernel: every piece lands (16-byte, 4-byte and unaligned), nothing else is written") {
        if (!have_gpu()) return;
        auto dev = make_device("cuda");
        CHECK(gather_mismatched_bytes(*dev, 12, 40) == 0);
    }

    TEST_CASE("offload pipeline on cuda: exact mode equals the plain CPU runtime, with and without the device forward") {
        if (!have_gpu()) return;
        TinyGemma3Spec spec;
        spec.n_layer = 12;
        TempFile file;
        file.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 77)));
        auto model = Model::load(file.path());
        std::vector<TokenId> tokens;
        for (int i = 0; i < 90; ++i) tokens.push_back((i * 53 + 7) % model->hparams().n_vocab);
        auto decode = [&](const SessionParams& sp) {
            Session s(model, sp);
            std::vector<float> l(static_cast<size_t>(model->hparams().n_vocab)), all;
            s.eval_last(std::span(tokens).first(60), l.data());
            for (size_t i = 60; i < tokens.size(); ++i) {
                s.eval_last(std::span(tokens).subspan(i, 1), l.data());
                all.insert(all.end(), l.begin(), l.end());
            }
            return all;
        };
        SessionParams plain;
        plain.n_ctx   = 128;
        plain.kv_type = DType::F32;
        const auto want = decode(plain);
        for (const char* sel : {"dense", "oracle", "quest"})
        for (const CopyPath path : {CopyPath::Gather, CopyPath::Memcpy})
        for (const bool device_forward : {false, true}) {  // the whole decode step on the GPU, or attention only
            CAPTURE(sel);
            const std::string path_name = copy_path_name(path);
            CAPTURE(path_name);
            CAPTURE(device_forward);
            SessionParams sp         = plain;
            sp.offload.device_forward = device_forward;
            sp.offload.copy_path     = path;
            sp.offload.enabled       = true;
            sp.offload.device        = "cuda";
            sp.offload.selector      = sel;
            sp.offload.budget_tokens = 24;
            sp.offload.attn          = AttnMode::Exact;
            CHECK(rel_diff(decode(sp), want) < 1e-4);
        }
    }
}
