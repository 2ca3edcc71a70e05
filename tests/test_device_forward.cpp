// SPDX-License-Identifier: MIT
// The device forward (runtime/device_forward.h) against the CPU forward: decode steps computed from the device's
// kernel table on the emu device (random copy delays) and on the cpu device give the plain runtime's logits and
// hidden states for gemma3 (sliding-window rings, sandwich and q/k norms), llama (interleaved RoPE) and qwen2
// (biases, halves RoPE); the rings follow the side that runs when prompt chunks and decode steps alternate; the
// TokenButler producers see the same attention input; prompt chunks whose matrix products and offloaded-layer
// attention run on the device (the device prefill: the context streamed through the slot pool in blocks) give the
// same logits; the decode loop allocates nothing; a cap below the resident bytes is a clear
// error.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "offload/pipeline.h"
#include "predictor/tokenbutler.h"
#include "runtime/device_forward.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

struct Trace {
    std::vector<std::vector<float>> logits, hidden;
    uint64_t device_allocs_in_decode = 0;
    OffloadStats stats;
};

// A prompt chunk, single decode steps, another chunk (the rings go back to the host), more steps: the logits of
// every eval_last, and after the run the hidden state of three more single steps through eval() (perplexity's
// path).
Trace run(const std::shared_ptr<const Model>& model, const SessionParams& sp, const std::vector<TokenId>& tokens) {
    Session s(model, sp);
    const HParams& hp = model->hparams();
    Trace t;
    std::vector<float> logits(static_cast<size_t>(hp.n_vocab));
    auto step = [&](size_t i, size_t n) {
        s.eval_last(std::span(tokens).subspan(i, n), logits.data());
        t.logits.push_back(logits);
    };
    step(0, 40);
    step(40, 1);  // the first decode token (dense in the pipeline): allocations may still be lazy before it
    const uint64_t allocs0 = s.offload() ? s.offload()->device().n_allocs() : 0;
    for (size_t i = 41; i < 70; ++i) step(i, 1);
    if (s.offload()) t.device_allocs_in_decode = s.offload()->device().n_allocs() - allocs0;
    step(70, 12);
    for (size_t i = 82; i < 100; ++i) step(i, 1);
    const int32_t row0 = 0;
    for (size_t i = 100; i < 103; ++i) {
        std::vector<float> h(static_cast<size_t>(hp.n_embd));
        s.eval(std::span(tokens).subspan(i, 1), std::span(&row0, 1), h.data());
        t.hidden.push_back(h);
    }
    if (s.offload()) t.stats = s.offload()->stats();
    return t;
}

void check_same(const Trace& got, const Trace& want, double tol) {
    REQUIRE(got.logits.size() == want.logits.size());
    for (size_t i = 0; i < got.logits.size(); ++i) {
        CAPTURE(i);
        CHECK(rel_diff(got.logits[i], want.logits[i]) < tol);
    }
    for (size_t i = 0; i < got.hidden.size(); ++i) CHECK(rel_diff(got.hidden[i], want.hidden[i]) < tol);
}

std::vector<TokenId> tokens_for(const Model& m, int n) {
    std::vector<TokenId> t;
    for (int i = 0; i < n; ++i) t.push_back((i * 53 + 7) % m.hparams().n_vocab);
    return t;
}

}  // namespace

TEST_SUITE("pipeline") {
    TEST_CASE("device forward equals the CPU forward: gemma3 rings, llama, qwen2; emu and cpu devices") {
        struct Case {
            const char* name;
            std::vector<uint8_t> gguf;
        };
        std::vector<Case> cases;
        {
            TinyGemma3Spec g;
            g.n_layer = 12;  // global layers 5 and 11; the rest slide over 8 tokens
            cases.push_back({"gemma3", tiny_gemma3_gguf(make_tiny_gemma3(g, 77))});
            TinyModelSpec l;
            l.n_layer = 3;
            cases.push_back({"llama", tiny_model_gguf(make_tiny_model(l, 5))});
            l.arch = "qwen2";
            cases.push_back({"qwen2", tiny_model_gguf(make_tiny_model(l, 6))});
        }
        for (const Case& c : cases) {
            CAPTURE(c.name);
            TempFile file;
            file.write(c.gguf);
            const auto model  = Model::load(file.path());
            const auto tokens = tokens_for(*model, 110);
            for (const DType kv : {DType::F16, DType::F32}) {
                CAPTURE(dtype_name(kv));
                SessionParams plain;
                plain.n_ctx     = 128;
                plain.n_ubatch  = 16;  // a ring of n_swa + 16 slots: the decode steps wrap it several times
                plain.kv_type   = kv;
                const Trace want = run(model, plain, tokens);
                for (const char* device : {"emu:delay_us=100,seed=9", "cpu"})
                    for (const bool prefill : {false, true}) {
                        CAPTURE(device);
                        CAPTURE(prefill);
                        SessionParams sp          = plain;
                        sp.offload.enabled        = true;
                        sp.offload.device         = device;
                        sp.offload.selector       = "oracle";
                        sp.offload.budget_tokens  = 24;
                        sp.offload.attn           = AttnMode::Exact;
                        sp.offload.device_forward = true;
                        sp.offload.device_prefill = prefill;
                        const Trace got           = run(model, sp, tokens);
                        check_same(got, want, 1e-4);
                        CHECK(got.device_allocs_in_decode == 0);
                        CHECK(got.stats.sparse_steps > 0);
                        // The chunks of 16, 16, 8 and 12 tokens: every layer matrix of each on the device.
                        const uint64_t per_chunk = 7 * uint64_t(model->hparams().n_layer);
                        CHECK(got.stats.device_products == (prefill ? 4 * per_chunk : 0));
                        // Chunked prefill attention of the offloaded layers: the keys 0 .. 16, 32, 40 and 82 in blocks
                        // of half the 24-slot pool, 2 + 3 + 4 + 7 per layer.
                        uint64_t n_offloaded = 0;
                        for (int l = 0; l < model->hparams().n_layer; ++l) n_offloaded += model->hparams().is_swa(l) ? 0 : 1;
                        CHECK(got.stats.prefill_blocks == (prefill ? 16 * n_offloaded : 0));
                    }
            }
        }
    }

    TEST_CASE("device forward, sparse: the same selections and logits as the CPU forward (TokenButler producers)") {
        TinyGemma3Spec spec;
        spec.n_layer = 12;  // global layers 5 and 11, served by producers 4 and 8
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 77)));
        auto model   = Model::load(mf.path());
        auto pred    = std::make_shared<const TokenButlerPredictor>(PredictorShape::of(model->hparams(), 4, 8, 16),
                                                                    BaseModelIdentity::of(*model), 5);
        const auto tokens = tokens_for(*model, 110);
        SessionParams sp;
        sp.n_ctx                 = 128;
        sp.n_ubatch              = 16;
        sp.offload.enabled       = true;
        sp.offload.device        = "emu:delay_us=100,seed=2";
        sp.offload.selector      = "tokenbutler";
        sp.offload.predictor     = pred;
        sp.offload.budget_tokens = 20;
        sp.offload.window        = 4;
        sp.offload.attn          = AttnMode::Sparse;
        const Trace host         = run(model, sp, tokens);
        sp.offload.device_forward = true;
        const Trace dev           = run(model, sp, tokens);
        check_same(dev, host, 1e-4);
        CHECK(dev.stats.predictor_runs == host.stats.predictor_runs);
        CHECK(dev.stats.predictor_runs > 0);
        CHECK(dev.stats.copy.bytes == host.stats.copy.bytes);  // the same rows were picked and fetched
    }

    TEST_CASE("device forward: a device cap below the resident weights and rings is a clear error") {
        TinyGemma3Spec spec;
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 3)));
        auto model = Model::load(mf.path());
        SessionParams sp;
        sp.n_ctx                  = 64;
        sp.offload.enabled        = true;
        sp.offload.selector       = "oracle";
        sp.offload.budget_tokens  = 8;
        sp.offload.device_forward = true;
        const uint64_t resident   = DeviceForward::device_bytes(*model, 64, DType::F16);
        sp.offload.device         = "emu:mem=" + std::to_string(resident / 2);
        CHECK_THROWS_WITH_AS(Session(model, sp), doctest::Contains("weights"), Error);
        sp.offload.device = "emu:mem=" + std::to_string(resident + (1 << 20));
        Session ok(model, sp);  // the weights, rings and scratch fit with the slots
        CHECK(ok.offload()->device().memory_info().free_bytes < (1u << 20));
    }
}
