// SPDX-License-Identifier: MIT
// The decode loop allocates nothing after warm-up: global operator new is counted while a session decodes and
// samples tokens (the tiny gemma3 fixture, f16 KV, both attention paths), and while an offloaded session decodes
// with the tokenbutler selector scoring and picking on the emu device.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "offload/pipeline.h"
#include "predictor/tokenbutler.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tests/fixtures.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// Counting replacements of the global allocation functions (this test binary only).
void* operator new(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// The nothrow forms too (std::stable_sort's temporary buffer uses them): every replaced new must pair with the
// replaced deletes below, or sanitizers see new/free mismatches.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace butler;
using namespace butler::test;

TEST_SUITE("forward") {
    TEST_CASE("decode steps and sampling allocate nothing after warm-up") {
        TempFile file;
        file.write(tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 31)));
        auto model = Model::load(file.path());
        SessionParams sp;
        sp.n_ctx = 200;
        Session session(model, sp);
        SamplerParams spar;
        spar.temperature = 0.9f;
        Sampler sampler(spar, model->hparams().n_vocab);
        std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
        std::vector<TokenId> prompt = {2, 262, 263, 264, 5, 6, 7, 8, 9, 10, 11, 12};
        session.eval_last(prompt, logits.data());
        TokenId next = sampler.sample(logits);
        session.eval_last(std::span<const TokenId>(&next, 1), logits.data());  // warm-up of the decode path
        next = sampler.sample(logits);
        const long before = g_allocations.load();
        for (int i = 0; i < 100; ++i) {
            session.eval_last(std::span<const TokenId>(&next, 1), logits.data());
            next = sampler.sample(logits);
        }
        CHECK(g_allocations.load() == before);
        CHECK(session.n_past() == 113);  // 12 prompt tokens, 1 warm-up step, 100 counted steps
    }
}

TEST_SUITE("offload") {
    TEST_CASE("offloaded decode steps with tokenbutler selecting on the emu device allocate nothing after warm-up") {
        TinyGemma3Spec spec;
        spec.n_layer = 12;  // global layers 5 and 11, producers 4 and 8
        TempFile file;
        file.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 32)));
        auto model = Model::load(file.path());
        SessionParams sp;
        sp.n_ctx                 = 200;
        sp.offload.enabled       = true;
        sp.offload.device        = "emu";
        sp.offload.selector      = "tokenbutler";
        sp.offload.predictor     = std::make_shared<const TokenButlerPredictor>(
            PredictorShape::of(model->hparams(), 4, 8, 16), BaseModelIdentity::of(*model), 3);
        sp.offload.budget_tokens = 16;
        sp.offload.window        = 4;
        sp.offload.select_on     = SelectOn::Device;
        Session session(model, sp);
        REQUIRE(session.offload()->selects_on_device());
        std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
        std::vector<TokenId> prompt;
        for (int i = 0; i < 40; ++i) prompt.push_back((i * 37 + 5) % model->hparams().n_vocab);
        session.eval_last(prompt, logits.data());
        TokenId next = 7;
        for (int i = 0; i < 2; ++i) session.eval_last(std::span<const TokenId>(&next, 1), logits.data());  // warm-up
        const long before = g_allocations.load();
        const uint64_t device_allocs = session.offload()->device().n_allocs();
        for (int i = 0; i < 100; ++i) {
            next = TokenId((i * 13 + 1) % model->hparams().n_vocab);
            session.eval_last(std::span<const TokenId>(&next, 1), logits.data());
        }
        CHECK(g_allocations.load() == before);
        CHECK(session.offload()->device().n_allocs() == device_allocs);
        CHECK(session.offload()->stats().sparse_steps >= 200);
    }
}
