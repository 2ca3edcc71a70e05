// SPDX-License-Identifier: MIT
// The offload pipeline inside a Session on the tiny gemma3 fixture (emulated device with random copy delays):
// --attn exact equals the plain runtime for every selector; the dense selector's decode view gives the plain
// perplexity; sparse mode with the whole budget equals dense; the decode loop allocates nothing; CLI bad input.
// On the default model (suite "model"): exact-mode logits equal the plain runtime's past the sliding window.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "offload/pipeline.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

// Logits after prefilling tokens[0, n_prefill) and then each later token, one decode step at a time.
std::vector<std::vector<float>> run(std::shared_ptr<const Model> model, const SessionParams& sp,
                                    const std::vector<TokenId>& tokens, int64_t n_prefill,
                                    uint64_t* allocs_in_loop = nullptr) {
    Session s(model, sp);
    const int32_t n_vocab = model->hparams().n_vocab;
    std::vector<std::vector<float>> out;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    s.eval_last(std::span(tokens).first(size_t(n_prefill)), logits.data());
    out.push_back(logits);
    const uint64_t allocs0 = s.offload() ? s.offload()->device().n_allocs() : 0;
    for (size_t i = size_t(n_prefill); i < tokens.size(); ++i) {
        s.eval_last(std::span(tokens).subspan(i, 1), logits.data());
        out.push_back(logits);
    }
    if (allocs_in_loop && s.offload()) *allocs_in_loop = s.offload()->device().n_allocs() - allocs0;
    return out;
}

struct Tiny {
    TempFile file;
    std::shared_ptr<const Model> model;
    std::vector<TokenId> tokens;
    explicit Tiny(int n_tok, int32_t n_layer = 6, DType weight_type = DType::F32) {
        TinyGemma3Spec spec;
        spec.n_layer     = n_layer;
        spec.weight_type = weight_type;
        file.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 77)));
        model = Model::load(file.path());
        for (int i = 0; i < n_tok; ++i) tokens.push_back((i * 53 + 7) % model->hparams().n_vocab);
    }
};

}  // namespace

TEST_SUITE("pipeline") {
    TEST_CASE("exact mode equals the plain runtime for every selector (emu, random copy delays)") {
        // 12 layers: two global ones (5, 11), so query-independent selectors prefetch layer 11 during layer 5.
        Tiny tiny(110, 12);
        for (DType kv : {DType::F16, DType::F32}) {
            SessionParams plain;
            plain.n_ctx     = 128;
            plain.n_ubatch  = 32;
            plain.kv_type   = kv;
            const auto want = run(tiny.model, plain, tiny.tokens, 60);
            for (const char* sel :
                 {"dense", "oracle", "streamingllm", "h2o", "h2o-tb", "snapkv", "snapkv-tb", "quest", "quest-tb"}) {
                CAPTURE(sel);
                CAPTURE(dtype_name(kv));
                SessionParams sp         = plain;
                sp.offload.enabled       = true;
                sp.offload.device        = "emu:delay_us=200,seed=4";
                sp.offload.selector      = sel;
                sp.offload.budget_tokens = 24;
                sp.offload.attn          = AttnMode::Exact;
                // Both copy paths meet every selector: the gather ring with f16 rows, a copy per piece with f32.
                sp.offload.copy_path     = kv == DType::F16 ? CopyPath::Gather : CopyPath::Memcpy;
                uint64_t allocs          = 1;
                const auto got           = run(tiny.model, sp, tiny.tokens, 60, &allocs);
                {
                    Session probe(tiny.model, sp);  // does prefetching happen where it should?
                    std::vector<float> l(static_cast<size_t>(tiny.model->hparams().n_vocab));
                    probe.eval_last(std::span(tiny.tokens).first(60), l.data());
                    for (size_t i = 60; i < 64; ++i) probe.eval_last(std::span(tiny.tokens).subspan(i, 1), l.data());
                    const bool ahead = std::string(sel) == "dense" || std::string(sel) == "streamingllm" ||
                                       std::string(sel) == "snapkv";
                    CHECK((probe.offload()->stats().prefetches > 0) == ahead);
                }
                REQUIRE(got.size() == want.size());
                for (size_t i = 0; i < got.size(); ++i) {
                    CAPTURE(i);
                    CHECK(rel_diff(got[i], want[i]) < 1e-4);
                }
                CHECK(allocs == 0);  // the decode loop allocates nothing on the device
            }
        }
    }

    TEST_CASE("stream mode (dense offload) equals the plain runtime and streams every row of every layer each step") {
        // 18 layers: three global ones (5, 11, 17) share two staging layers on the device.
        Tiny tiny(100, 18);
        const HParams& hp = tiny.model->hparams();
        SessionParams plain;
        plain.n_ctx     = 128;
        plain.n_ubatch  = 32;
        plain.kv_type   = DType::F32;
        const auto want = run(tiny.model, plain, tiny.tokens, 60);
        SessionParams sp   = plain;
        sp.offload.enabled = true;
        sp.offload.device  = "emu:delay_us=200,seed=7";
        sp.offload.budget_fraction = 1.0;
        sp.offload.attn    = AttnMode::Stream;
        uint64_t allocs    = 1;
        const auto got     = run(tiny.model, sp, tiny.tokens, 60, &allocs);
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
            CAPTURE(i);
            CHECK(rel_diff(got[i], want[i]) < 1e-4);
        }
        CHECK(allocs == 0);
        // Bytes: the step at position p (after the first decode token, which is dense) moves rows 0..p of every
        // global layer and KV head, K and V in f32.
        Session s(tiny.model, sp);
        std::vector<float> l(static_cast<size_t>(hp.n_vocab));
        s.eval_last(std::span(tiny.tokens).first(60), l.data());
        s.eval_last(std::span(tiny.tokens).subspan(60, 1), l.data());
        s.offload()->reset_stats();
        uint64_t expected = 0;
        int n_global = 0;
        for (int32_t layer = 0; layer < hp.n_layer; ++layer) n_global += hp.is_swa(layer) ? 0 : 1;
        REQUIRE(n_global == 3);
        for (size_t p = 61; p < 70; ++p) {
            s.eval_last(std::span(tiny.tokens).subspan(p, 1), l.data());
            expected += uint64_t(n_global) * uint64_t(hp.n_head_kv) * (p + 1) * uint64_t(hp.head_dim + hp.head_dim_v) * 4;
        }
        CHECK(s.offload()->stats().copy.bytes == expected);
        // A selector other than dense is refused.
        sp.offload.selector = "oracle";
        CHECK_THROWS_AS(Session(tiny.model, sp), Error);
    }

    TEST_CASE("synthetic K/V: the plain runtime and every offload mode decode the same from it; seeded") {
        Tiny tiny(4, 12);
        const int32_t n_vocab = tiny.model->hparams().n_vocab;
        SessionParams plain;
        plain.n_ctx    = 200;
        plain.n_ubatch = 16;
        plain.kv_type  = DType::F32;
        auto decode    = [&](const SessionParams& sp, uint64_t seed) {
            Session s(tiny.model, sp);
            s.fill_synthetic_kv(150, seed);
            CHECK(s.n_past() == 150);
            std::vector<float> l(static_cast<size_t>(n_vocab)), all;
            for (int i = 0; i < 3; ++i) {
                s.eval_last(std::span(tiny.tokens).subspan(size_t(i), 1), l.data());
                all.insert(all.end(), l.begin(), l.end());
            }
            return all;
        };
        const auto want = decode(plain, 3);
        CHECK(rel_diff(decode(plain, 3), want) == 0);
        CHECK(rel_diff(decode(plain, 4), want) > 1e-3);
        for (AttnMode mode : {AttnMode::Exact, AttnMode::Stream}) {
            CAPTURE(attn_mode_name(mode));
            SessionParams sp           = plain;
            sp.offload.enabled         = true;
            sp.offload.device          = "emu";
            sp.offload.budget_fraction = mode == AttnMode::Exact ? 0.1 : 1.0;
            sp.offload.selector        = mode == AttnMode::Exact ? "quest" : "dense";
            sp.offload.attn            = mode;
            CHECK(rel_diff(decode(sp, 3), want) < 1e-4);
        }
        Session s(tiny.model, plain);
        CHECK_THROWS_AS(s.fill_synthetic_kv(200, 1), Error);  // no room left to decode
    }

    TEST_CASE("sparse mode: the whole budget equals dense; a small budget differs") {
        Tiny tiny(100, 18);
        SessionParams plain;
        plain.n_ctx                = 128;
        const auto want            = run(tiny.model, plain, tiny.tokens, 50);
        SessionParams sp           = plain;
        sp.offload.enabled         = true;
        sp.offload.device          = "emu:delay_us=100";
        sp.offload.selector        = "oracle";
        sp.offload.budget_fraction = 1.0;
        const auto all             = run(tiny.model, sp, tiny.tokens, 50);
        for (size_t i = 0; i < all.size(); ++i) CHECK(rel_diff(all[i], want[i]) < 1e-4);
        sp.offload.budget_fraction = 0;
        sp.offload.budget_tokens   = 20;
        sp.offload.window          = 4;
        const auto few             = run(tiny.model, sp, tiny.tokens, 50);
        CHECK(rel_diff(few[0], want[0]) < 1e-4);  // prefill stays dense
        CHECK(rel_diff(few[1], want[1]) < 1e-4);  // and so does the first decode token
        double worst = 0;
        for (size_t i = 2; i < few.size(); ++i) worst = std::max(worst, rel_diff(few[i], want[i]));
        CHECK(worst > 1e-3);  // the global layer really attends to fewer tokens
    }

    TEST_CASE("pipeline: a planted missing compute-stream wait is caught (poisoned or stale slots)") {
        Tiny tiny(90);
        SessionParams plain;
        plain.n_ctx               = 128;
        const auto want           = run(tiny.model, plain, tiny.tokens, 50);
        SessionParams sp          = plain;
        sp.offload.enabled        = true;
        sp.offload.device         = "emu:delay_us=2000,seed=3";
        sp.offload.selector       = "oracle";
        sp.offload.budget_tokens  = 24;
        sp.offload.attn           = AttnMode::Exact;
        sp.offload.skip_copy_wait = true;
        const auto got            = run(tiny.model, sp, tiny.tokens, 50);
        int bad                   = 0;
        for (size_t i = 2; i < got.size(); ++i) bad += !(rel_diff(got[i], want[i]) < 1e-4);  // NaN counts as bad
        CHECK(bad >= 10);
    }

    TEST_CASE("dense selector in the decode view gives the plain perplexity (float activations with quantized weights)") {
      for (const DType weights : {DType::F32, DType::Q8_0, DType::Q5_0}) {
        CAPTURE(dtype_name(weights));
        Tiny tiny(128, 6, weights);
        const int64_t n_ctx = 128, first = n_ctx / 2, n_scored = n_ctx - 1 - first;
        const int32_t n_embd = tiny.model->hparams().n_embd;
        auto nll             = [&](const SessionParams& sp, bool decode_view) {
            Session s(tiny.model, sp);
            std::vector<float> hidden(static_cast<size_t>(n_scored * n_embd));
            if (decode_view) {
                s.eval(std::span(tiny.tokens).first(size_t(first)), {}, hidden.data());
                const int32_t row0 = 0;
                for (int64_t j = 0; j < n_scored; ++j)
                    s.eval(std::span(tiny.tokens).subspan(size_t(first + j), 1), std::span(&row0, 1),
                                       hidden.data() + j * n_embd);
            } else {
                std::vector<int32_t> rows;
                for (int64_t j = 0; j < n_scored; ++j) rows.push_back(int32_t(first + j));
                s.eval(tiny.tokens, rows, hidden.data());
            }
            std::vector<double> lp(static_cast<size_t>(n_scored));
            s.target_logprobs(hidden.data(), n_scored, tiny.tokens.data() + first + 1, lp.data());
            double sum = 0;
            for (double x : lp) sum -= x;
            return sum / double(n_scored);
        };
        SessionParams plain;
        plain.n_ctx              = int32_t(n_ctx);
        plain.float_activations  = true;  // decode steps multiply what prompt chunks multiply
        SessionParams sp         = plain;
        sp.offload.enabled       = true;
        sp.offload.device        = "emu";
        sp.offload.selector      = "dense";
        sp.offload.budget_tokens = 8;  // ignored by dense
        const double ppl_plain = std::exp(nll(plain, false)), ppl_dense = std::exp(nll(sp, true));
        CHECK(std::fabs(ppl_dense - ppl_plain) / ppl_plain < 1e-4);
        if (weights != DType::F32) {  // 8-bit activations are a different computation: the decode view moves
            sp.float_activations = false;
            CHECK(std::fabs(std::exp(nll(sp, true)) - ppl_plain) / ppl_plain > 1e-6);
        }
      }
    }

    TEST_CASE("target_logprobs' argmax is the argmax of the full logits") {
        Tiny tiny(40);
        SessionParams sp;
        sp.n_ctx = 64;
        Session s(tiny.model, sp);
        const int32_t n_embd = tiny.model->hparams().n_embd, n_vocab = tiny.model->hparams().n_vocab;
        std::vector<int32_t> rows;
        for (int32_t i = 0; i < 39; ++i) rows.push_back(i);
        std::vector<float> hidden(rows.size() * size_t(n_embd)), logits(static_cast<size_t>(n_vocab));
        s.eval(tiny.tokens, rows, hidden.data());
        std::vector<double> lp(rows.size());
        std::vector<TokenId> am(rows.size(), -1);
        s.target_logprobs(hidden.data(), int64_t(rows.size()), tiny.tokens.data() + 1, lp.data(), am.data());
        for (size_t r = 0; r < rows.size(); ++r) {
            s.logits(hidden.data() + r * size_t(n_embd), 1, logits.data());
            CHECK(am[r] == std::max_element(logits.begin(), logits.end()) - logits.begin());
        }
    }

    TEST_CASE("rewinding a session keeps the offloaded layers consistent") {
        Tiny tiny(90);
        SessionParams plain;
        plain.n_ctx              = 128;
        SessionParams sp         = plain;
        sp.offload.enabled       = true;
        sp.offload.selector      = "oracle";
        sp.offload.budget_tokens = 16;
        sp.offload.attn          = AttnMode::Exact;
        Session s(tiny.model, sp);
        std::vector<float> a(static_cast<size_t>(tiny.model->hparams().n_vocab)), b(a.size());
        s.eval_last(std::span(tiny.tokens).first(60), a.data());
        for (size_t i = 60; i < 70; ++i) s.eval_last(std::span(tiny.tokens).subspan(i, 1), a.data());
        s.reset();
        s.eval_last(std::span(tiny.tokens).first(60), b.data());
        for (size_t i = 60; i < 70; ++i) s.eval_last(std::span(tiny.tokens).subspan(i, 1), b.data());
        CHECK(rel_diff(a, b) < 1e-6);
    }

    TEST_CASE("CLI: offload bad input gives DESIGN.md's exit codes and names the problem") {
        Tiny tiny(1);
        const std::string m = tiny.file.path();
        auto check          = [](const CliResult& r, int code, const std::string& needle) {
            CAPTURE(r.err);
            CHECK(r.exit_code == code);
            CHECK(r.err.find(needle) != std::string::npos);
        };
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "--budget", "0"}), 2, "--budget");
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "--budget", "-3"}), 2, "--budget");
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "--selector", "magic"}), 2,
              "unknown selector 'magic'");
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "--attn", "fast"}), 2, "--attn");
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "--copy", "fast"}), 2, "--copy");
        // A cap below the weights (which a GPU run keeps on the device): exit 3, naming them and the cap.
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "-c", "200", "--selector", "oracle", "--budget",
                       "200", "--device-memory", "4KiB"}),
              3, "weights");
        // A cap that holds the weights and the sliding-window K/V (computed here from the file) but not the K/V
        // slots of a 200-token budget: exit 3, naming the slots and the cap.
        const HParams& hp = tiny.model->hparams();
        uint64_t resident = tiny.model->n_weight_bytes(), slots = 0;
        for (int32_t l = 0; l < hp.n_layer; ++l) {
            const uint64_t row = uint64_t(hp.n_head_kv) * (hp.head_dim + hp.head_dim_v) * 2;  // f16 K and V
            if (hp.is_swa(l)) resident += row * uint64_t(std::min<int64_t>(200, hp.n_swa + 512));  // window + ubatch
            else slots += row * 200;
        }
        REQUIRE(slots > 0);
        const std::string cap = std::to_string(resident + slots / 2);
        check(run_cli({"generate", "-m", m, "-p", "hi", "-n", "2", "-c", "200", "--selector", "oracle", "--budget",
                       "200", "--device-memory", cap}),
              3, "K/V slots");
        const CliResult ok = run_cli({"generate", "-m", m, "-p", "hi", "-n", "4", "--temp", "0", "--selector", "h2o",
                                      "--budget", "50%", "--json"});
        CAPTURE(ok.err);
        CHECK(ok.exit_code == 0);
        CHECK(ok.out.find("\"hit_rate\"") != std::string::npos);
        CHECK(ok.out.find("\"copy_path\": \"gather\"") != std::string::npos);
        const CliResult by_copy = run_cli({"generate", "-m", m, "-p", "hi", "-n", "4", "--temp", "0", "--selector",
                                           "h2o", "--budget", "50%", "--copy", "memcpy", "--json"});
        CHECK(by_copy.exit_code == 0);
        CHECK(by_copy.out.find("\"copy_path\": \"memcpy\"") != std::string::npos);
        CHECK(by_copy.out.find("\"gathers\": 0") != std::string::npos);
    }
}

TEST_SUITE("model") {
    TEST_CASE("default model: --attn exact logits equal the plain runtime's past the sliding window") {
        const std::string path = default_model_or_skip();
        if (path.empty()) return;
        auto model = Model::load(path);
        std::vector<TokenId> tokens{2};
        const std::string text = "The history of the city begins with a small market by the river. ";
        for (int i = 0; tokens.size() < 700; ++i) {
            const auto ids = model->tokenizer().encode(text, false, false);
            tokens.insert(tokens.end(), ids.begin(), ids.end());
        }
        tokens.resize(700);
        SessionParams plain;
        plain.n_ctx                = 704;
        const auto want            = run(model, plain, tokens, 690);
        SessionParams sp           = plain;
        sp.offload.enabled         = true;
        sp.offload.selector        = "quest";
        sp.offload.budget_fraction = 0.1;
        sp.offload.attn            = AttnMode::Exact;
        const auto got             = run(model, sp, tokens, 690);
        for (size_t i = 0; i < got.size(); ++i) {
            CAPTURE(i);
            CHECK(rel_diff(got[i], want[i]) < 1e-4);
        }
    }
}
