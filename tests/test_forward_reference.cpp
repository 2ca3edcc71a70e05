// SPDX-License-Identifier: MIT
// The CPU forward pass against a float64 Gemma 3 forward written here, independently, from the architecture's
// definition (DESIGN.md "Gemma 3 facts"), over a tiny random model written as GGUF by the fixtures.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"
#include "tests/reference64.h"

using namespace butler;
using namespace butler::test;

namespace {

// Logits (n_tok, n_vocab) of every position of `tokens`, causal, from position 0.
std::vector<Vec> reference_logits(const TinyGemma3& m, const std::vector<TokenId>& tokens) {
    const TinyGemma3Spec& s = m.spec;
    const size_t E = size_t(s.n_embd), D = size_t(s.head_dim), H = size_t(s.n_head), HKV = size_t(s.n_head_kv),
                 T = tokens.size();
    std::vector<Vec> x(T, Vec(E));
    for (size_t t = 0; t < T; ++t)
        for (size_t i = 0; i < E; ++i) x[t][i] = double(m.tok_embd[size_t(tokens[t]) * E + i]) * std::sqrt(double(E));
    for (int l = 0; l < s.n_layer; ++l) {
        const auto& L = m.layers[size_t(l)];
        const bool global = (l % 6) == 5;
        const double base = global ? double(s.rope_base) : 10000.0;
        std::vector<Vec> q(T), k(T), v(T);
        for (size_t t = 0; t < T; ++t) {
            const Vec xn = rmsnorm64(x[t].data(), L.attn_norm, E, s.rms_eps);
            q[t] = matvec64(L.wq, xn, H * D);
            k[t] = matvec64(L.wk, xn, HKV * D);
            v[t] = matvec64(L.wv, xn, HKV * D);
            for (size_t h = 0; h < H; ++h) {
                Vec qn = rmsnorm64(q[t].data() + h * D, L.q_norm, D, s.rms_eps);
                rope64(qn.data(), D, double(t), base, {}, /*neox=*/true);
                for (size_t d = 0; d < D; ++d) q[t][h * D + d] = qn[d] / std::sqrt(double(D));
            }
            for (size_t g = 0; g < HKV; ++g) {
                Vec kn = rmsnorm64(k[t].data() + g * D, L.k_norm, D, s.rms_eps);
                rope64(kn.data(), D, double(t), base, {}, /*neox=*/true);
                std::copy(kn.begin(), kn.end(), k[t].begin() + long(g * D));
            }
        }
        for (size_t t = 0; t < T; ++t) {
            Vec attn(H * D, 0.0);
            for (size_t h = 0; h < H; ++h) {
                const size_t g = h / (H / HKV);
                // Local layers: the query at t sees keys j with t - j < n_swa.
                const size_t j0 = global ? 0 : (t + 1 > size_t(s.n_swa) ? t + 1 - size_t(s.n_swa) : 0);
                Vec sc;
                double mx = -1e300;
                for (size_t j = j0; j <= t; ++j) {
                    double dot = 0;
                    for (size_t d = 0; d < D; ++d) dot += q[t][h * D + d] * k[j][g * D + d];
                    sc.push_back(dot);
                    mx = std::max(mx, dot);
                }
                double sum = 0;
                for (double& e : sc) sum += (e = std::exp(e - mx));
                for (size_t j = j0; j <= t; ++j)
                    for (size_t d = 0; d < D; ++d) attn[h * D + d] += sc[j - j0] / sum * v[j][g * D + d];
            }
            Vec o = matvec64(L.wo, attn, E);
            o = rmsnorm64(o.data(), L.attn_post_norm, E, s.rms_eps);
            for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
            const Vec xn = rmsnorm64(x[t].data(), L.ffn_norm, E, s.rms_eps);
            Vec gate = matvec64(L.ffn_gate, xn, size_t(s.n_ff));
            const Vec up = matvec64(L.ffn_up, xn, size_t(s.n_ff));
            for (size_t i = 0; i < gate.size(); ++i) {
                const double a = gate[i];
                const double gelu = 0.5 * a * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)));
                gate[i] = gelu * up[i];
            }
            Vec down = matvec64(L.ffn_down, gate, E);
            down = rmsnorm64(down.data(), L.ffn_post_norm, E, s.rms_eps);
            for (size_t i = 0; i < E; ++i) x[t][i] += down[i];
        }
    }
    std::vector<Vec> logits(T);
    for (size_t t = 0; t < T; ++t) {
        const Vec xn = rmsnorm64(x[t].data(), m.output_norm, E, s.rms_eps);
        logits[t] = matvec64(m.tok_embd, xn, size_t(m.n_vocab));  // tied output
    }
    return logits;
}

}  // namespace

TEST_SUITE("forward") {
    TEST_CASE("tiny gemma3: chunked prefill and decode match a float64 forward") {
        const TinyGemma3 tiny = make_tiny_gemma3(TinyGemma3Spec{}, 1234);
        TempFile file;
        file.write(tiny_gemma3_gguf(tiny));
        auto model = Model::load(file.path());
        const int32_t n_vocab = model->hparams().n_vocab;
        REQUIRE(n_vocab == tiny.n_vocab);
        CHECK(model->hparams().is_swa(0));
        CHECK_FALSE(model->hparams().is_swa(5));

        // 40 tokens: five times the sliding window, so local layers drop keys and the ring wraps.
        std::vector<TokenId> tokens;
        for (int i = 0; i < 40; ++i) tokens.push_back((i * 37 + 11) % n_vocab);
        const std::vector<Vec> ref = reference_logits(tiny, tokens);

        for (int32_t ubatch : {16, 7, 40}) {
            CAPTURE(ubatch);
            SessionParams sp;
            sp.n_ctx = 64;
            sp.n_ubatch = ubatch;
            sp.kv_type = DType::F32;
            Session session(model, sp);
            // Prefill the first 30 tokens in chunks, scoring every position...
            std::vector<int32_t> rows(30);
            for (int i = 0; i < 30; ++i) rows[size_t(i)] = i;
            std::vector<float> hidden(30 * size_t(model->hparams().n_embd));
            session.eval(std::span(tokens).first(30), rows, hidden.data());
            std::vector<float> logits(30 * size_t(n_vocab));
            session.logits(hidden.data(), 30, logits.data());
            for (int i = 0; i < 30; ++i) {
                CAPTURE(i);
                std::vector<float> row(logits.begin() + long(i) * n_vocab, logits.begin() + long(i + 1) * n_vocab);
                CHECK(rel_error(row.data(), ref[size_t(i)]) < 1e-4);
            }
            // ...then decode the rest one token at a time.
            std::vector<float> step(static_cast<size_t>(n_vocab));
            for (int i = 30; i < 40; ++i) {
                CAPTURE(i);
                session.eval_last(std::span(tokens).subspan(size_t(i), 1), step.data());
                CHECK(rel_error(step.data(), ref[size_t(i)]) < 1e-4);
            }
        }
    }

    TEST_CASE("tiny gemma3: target_logprobs equals log-softmax of the full logits") {
        const TinyGemma3 tiny = make_tiny_gemma3(TinyGemma3Spec{}, 99);
        TempFile file;
        file.write(tiny_gemma3_gguf(tiny));
        auto model = Model::load(file.path());
        const std::vector<TokenId> tokens = {2, 100, 200, 262, 263, 264, 5, 9, 77, 150};
        const std::vector<Vec> ref = reference_logits(tiny, tokens);
        SessionParams sp;
        sp.n_ctx = 16;
        sp.kv_type = DType::F32;
        Session session(model, sp);
        std::vector<int32_t> rows = {4, 5, 6, 7, 8};
        std::vector<float> hidden(rows.size() * size_t(model->hparams().n_embd));
        session.eval(tokens, rows, hidden.data());
        std::vector<double> lp(rows.size());
        session.target_logprobs(hidden.data(), int64_t(rows.size()), tokens.data() + 5, lp.data());
        for (size_t r = 0; r < rows.size(); ++r) {
            const Vec& l = ref[size_t(rows[r])];
            double mx = -1e300, sum = 0;
            for (double v : l) mx = std::max(mx, v);
            for (double v : l) sum += std::exp(v - mx);
            const double expected = l[size_t(tokens[size_t(rows[r]) + 1])] - mx - std::log(sum);
            CHECK(lp[r] == doctest::Approx(expected).epsilon(1e-4));
        }
    }

    TEST_CASE("context overflow and bad token ids are clear errors") {
        const TinyGemma3 tiny = make_tiny_gemma3(TinyGemma3Spec{}, 7);
        TempFile file;
        file.write(tiny_gemma3_gguf(tiny));
        auto model = Model::load(file.path());
        SessionParams sp;
        sp.n_ctx = 8;
        Session session(model, sp);
        std::vector<TokenId> too_many(9, 5);
        try {
            session.eval(too_many, {}, nullptr);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::InvalidArg);
            CHECK(std::string(e.what()).find("exceed the context of 8") != std::string::npos);
        }
        std::vector<TokenId> bad = {2, 100000};
        CHECK_THROWS_AS(session.eval(bad, {}, nullptr), Error);
        sp.n_ctx = 100000;
        CHECK_THROWS_AS(Session(model, sp), Error);
    }
}
