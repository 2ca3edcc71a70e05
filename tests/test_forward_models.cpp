// SPDX-License-Identifier: MIT
// The CPU forward pass on tiny random llama and qwen2 models against a float64 forward written here from the
// architectures' definitions (HF LlamaForCausalLM / Qwen2ForCausalLM): pre-norm blocks, SwiGLU, GQA, RoPE on
// interleaved pairs (GGUF llama: the converter permutes Q/K rows so that GGML's "normal" RoPE applies) or on halves
// (qwen2), Q/K/V biases (qwen2), Llama 3.1 frequency divisors, tied or separate output.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/hparams.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"
#include "tests/reference64.h"

using namespace butler;
using namespace butler::test;

namespace {

std::vector<Vec> reference_logits(const TinyModel& m, const std::vector<TokenId>& tokens) {
    const TinyModelSpec& s = m.spec;
    const bool neox = s.arch == "qwen2";
    const size_t E = size_t(s.n_embd), D = size_t(s.head_dim), H = size_t(s.n_head), HKV = size_t(s.n_head_kv),
                 T = tokens.size();
    std::vector<Vec> x(T, Vec(E));
    for (size_t t = 0; t < T; ++t)
        for (size_t i = 0; i < E; ++i) x[t][i] = double(m.tok_embd[size_t(tokens[t]) * E + i]);
    for (const TinyModel::Layer& L : m.layers) {
        std::vector<Vec> q(T), k(T), v(T);
        for (size_t t = 0; t < T; ++t) {
            const Vec xn = rmsnorm64(x[t].data(), L.attn_norm, E, s.rms_eps);
            q[t] = matvec64(L.wq, xn, H * D);
            k[t] = matvec64(L.wk, xn, HKV * D);
            v[t] = matvec64(L.wv, xn, HKV * D);
            for (size_t i = 0; i < L.bq.size(); ++i) q[t][i] += L.bq[i];
            for (size_t i = 0; i < L.bk.size(); ++i) k[t][i] += L.bk[i];
            for (size_t i = 0; i < L.bv.size(); ++i) v[t][i] += L.bv[i];
            for (size_t h = 0; h < H; ++h) rope64(q[t].data() + h * D, D, double(t), s.rope_base, m.rope_freqs, neox);
            for (size_t g = 0; g < HKV; ++g) rope64(k[t].data() + g * D, D, double(t), s.rope_base, m.rope_freqs, neox);
        }
        for (size_t t = 0; t < T; ++t) {
            Vec attn(H * D, 0.0);
            for (size_t h = 0; h < H; ++h) {
                const size_t g = h / (H / HKV);
                Vec sc(t + 1);
                double mx = -1e300;
                for (size_t j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (size_t d = 0; d < D; ++d) dot += q[t][h * D + d] * k[j][g * D + d];
                    sc[j] = dot / std::sqrt(double(D));
                    mx = std::max(mx, sc[j]);
                }
                double sum = 0;
                for (double& e : sc) sum += (e = std::exp(e - mx));
                for (size_t j = 0; j <= t; ++j)
                    for (size_t d = 0; d < D; ++d) attn[h * D + d] += sc[j] / sum * v[j][g * D + d];
            }
            const Vec o = matvec64(L.wo, attn, E);
            for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
            const Vec xn = rmsnorm64(x[t].data(), L.ffn_norm, E, s.rms_eps);
            Vec gate = matvec64(L.ffn_gate, xn, size_t(s.n_ff));
            const Vec up = matvec64(L.ffn_up, xn, size_t(s.n_ff));
            for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
            const Vec down = matvec64(L.ffn_down, gate, E);
            for (size_t i = 0; i < E; ++i) x[t][i] += down[i];
        }
    }
    std::vector<Vec> logits(T);
    for (size_t t = 0; t < T; ++t) {
        const Vec xn = rmsnorm64(x[t].data(), m.output_norm, E, s.rms_eps);
        logits[t] = matvec64(s.tied_output ? m.tok_embd : m.output, xn, size_t(m.n_vocab));
    }
    return logits;
}

// Prefill 20 tokens in chunks of 7 scoring every position, then decode 8 more; all against the reference.
void check_against_reference(const TinyModelSpec& spec, uint64_t seed) {
    const TinyModel tiny = make_tiny_model(spec, seed);
    TempFile file;
    file.write(tiny_model_gguf(tiny));
    auto model = Model::load(file.path());
    const int32_t n_vocab = model->hparams().n_vocab;
    REQUIRE(n_vocab == tiny.n_vocab);
    CHECK(model->weights().tied_output == spec.tied_output);
    std::vector<TokenId> tokens;
    for (int i = 0; i < 28; ++i) tokens.push_back((i * 37 + 11) % n_vocab);
    const std::vector<Vec> ref = reference_logits(tiny, tokens);

    SessionParams sp;
    sp.n_ctx = 32;
    sp.n_ubatch = 7;
    sp.kv_type = DType::F32;
    Session session(model, sp);
    std::vector<int32_t> rows(20);
    for (int i = 0; i < 20; ++i) rows[size_t(i)] = i;
    std::vector<float> hidden(20 * size_t(model->hparams().n_embd));
    session.eval(std::span(tokens).first(20), rows, hidden.data());
    std::vector<float> logits(20 * size_t(n_vocab));
    session.logits(hidden.data(), 20, logits.data());
    for (int i = 0; i < 20; ++i) {
        CAPTURE(i);
        CHECK(rel_error(logits.data() + size_t(i) * size_t(n_vocab), ref[size_t(i)]) < 1e-4);
    }
    std::vector<float> step(static_cast<size_t>(n_vocab));
    for (int i = 20; i < 28; ++i) {
        CAPTURE(i);
        session.eval_last(std::span(tokens).subspan(size_t(i), 1), step.data());
        CHECK(rel_error(step.data(), ref[size_t(i)]) < 1e-4);
    }
}

std::string load_error(const std::vector<uint8_t>& bytes) {
    TempFile file;
    file.write(bytes);
    try {
        Model::load(file.path());
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_SUITE("forward") {
    TEST_CASE("tiny llama (separate output, rope_freqs divisors) matches a float64 forward") {
        TinyModelSpec spec;
        spec.rope_freqs = true;
        check_against_reference(spec, 11);
    }

    TEST_CASE("tiny llama (tied output, GQA 4:1, BPE vocabulary) matches a float64 forward") {
        TinyModelSpec spec;
        spec.tied_output = true;
        spec.n_head_kv = 1;
        spec.tokenizer = "gpt2";
        spec.rope_base = 500000.0f;
        check_against_reference(spec, 12);
    }

    TEST_CASE("tiny qwen2 (QKV bias, NeoX RoPE, tied output) matches a float64 forward") {
        TinyModelSpec spec;
        spec.arch = "qwen2";
        spec.tied_output = true;
        spec.rope_base = 1000000.0f;
        check_against_reference(spec, 13);
    }

    TEST_CASE("tiny qwen2 (separate output, BPE vocabulary, head_dim != n_embd / n_head) matches a float64 forward") {
        TinyModelSpec spec;
        spec.arch = "qwen2";
        spec.tokenizer = "gpt2";
        spec.head_dim = 32;
        check_against_reference(spec, 14);
    }

    TEST_CASE("llama/qwen2 load errors name the tensor or key") {
        TinyModelSpec spec;
        spec.arch = "qwen2";
        const TinyModel qwen = make_tiny_model(spec, 3);
        std::string err = load_error(tiny_model_gguf(qwen, "blk.1.attn_k.bias"));
        CHECK(err.find("blk.1.attn_k.bias") != std::string::npos);
        err = load_error(tiny_model_gguf(qwen, "output.weight"));  // no output.weight: qwen2 ties it to token_embd
        CHECK(err.empty());

        TinyModelSpec lspec;
        lspec.rope_freqs = true;
        TinyModel llama = make_tiny_model(lspec, 4);
        llama.rope_freqs.push_back(1.0f);  // head_dim / 2 + 1 entries
        err = load_error(tiny_model_gguf(llama));
        CHECK(err.find("rope_freqs.weight") != std::string::npos);
        llama = make_tiny_model(lspec, 4);
        err = load_error(tiny_model_gguf(llama, "blk.2.ffn_up.weight"));
        CHECK(err.find("blk.2.ffn_up.weight") != std::string::npos);
    }

    TEST_CASE("butler generate runs on every llama/qwen2 fixture") {
        for (const char* arch : {"llama", "qwen2"}) {
            for (const char* tok : {"llama", "gpt2"}) {
                CAPTURE(arch);
                CAPTURE(tok);
                TinyModelSpec spec;
                spec.arch = arch;
                spec.tokenizer = tok;
                spec.rope_freqs = std::string(arch) == "llama";
                spec.weight_type = DType::Q4_0;
                TempFile file;
                file.write(tiny_model_gguf(make_tiny_model(spec, 8)));
                const CliResult r = run_cli({"generate", "-m", file.path(), "-p", "the cat sat", "-n", "6"});
                CHECK_MESSAGE(r.exit_code == 0, r.err);
                const CliResult i = run_cli({"inspect", "-m", file.path()});
                CHECK(i.exit_code == 0);
                CHECK(i.out.find(fmt::format("row '{}'", arch)) != std::string::npos);
            }
        }
    }

    TEST_CASE("llama/qwen2 bad input through the CLI: exit 1 naming the tensor or key") {
        auto check_cli = [](const TinyModelSpec& spec, const std::string& needle) {
            CAPTURE(needle);
            TempFile file;
            file.write(tiny_model_gguf(make_tiny_model(spec, 5)));
            const CliResult r = run_cli({"generate", "-m", file.path(), "-p", "hi", "-n", "1"});
            CHECK(r.exit_code == 1);
            CHECK(r.err.find(needle) != std::string::npos);
        };
        TinyModelSpec bias_f16;  // a bias tensor of the wrong type
        bias_f16.arch = "qwen2";
        bias_f16.bias_type = DType::F16;
        check_cli(bias_f16, "'blk.0.attn_q.bias' has type f16, expected f32");
        TinyModelSpec pre;  // an unknown pre-tokenizer
        pre.tokenizer = "gpt2";
        pre.pre = "tekken-9000";
        check_cli(pre, "pre-tokenizer 'tekken-9000'");
        TinyModelSpec yarn;  // a RoPE scaling type Butler does not implement
        yarn.rope_scaling_type = "yarn";
        check_cli(yarn, "'llama.rope.scaling.type' = 'yarn' is not supported");
    }

    TEST_CASE("llama3 rope.scaling keys give the divisors of the reference formula") {
        // Llama 3.1: factor 8, low 1, high 4, original context 8192, base 500000, head_dim 128. Wavelengths
        // 2 pi / base^(-2i/128): below 8192/4 = 2048 positions kept (divisor 1), above 8192 divided by 8, between
        // interpolated: 1 / ((1 - s) / 8 + s) with s = (8192 / wavelength - 1) / 3.
        const std::vector<float> f = llama3_rope_freq_factors(128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
        REQUIRE(f.size() == 64);
        for (size_t i = 0; i < 64; ++i) {
            const double wl = 2 * M_PI / std::pow(500000.0, -2.0 * double(i) / 128.0);
            double want = 1.0;
            if (wl > 8192) want = 8.0;
            else if (wl >= 2048) {
                const double s = (8192.0 / wl - 1.0) / 3.0;
                want = 1.0 / ((1.0 - s) / 8.0 + s);
            }
            CAPTURE(i);
            CHECK(f[i] == doctest::Approx(want).epsilon(1e-5));
        }
        CHECK(f[0] == 1.0f);
        CHECK(f[63] == 8.0f);
    }
}
