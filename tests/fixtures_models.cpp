// SPDX-License-Identifier: MIT
// Tiny random llama and qwen2 models (tests/fixtures.h).
#include <fmt/format.h>

#include <cmath>
#include <random>

#include "cpu_kernels/quant.h"
#include "runtime/gguf.h"
#include "tests/fixtures.h"

namespace butler::test {
namespace {

// SentencePiece vocabulary: control tokens, 256 byte tokens, a few words (as the gemma3 fixture).
void spm_vocab(TinyModel& m) {
    m.tokens = {"<unk>", "<s>", "</s>"};
    m.token_types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        m.tokens.push_back(fmt::format("<0x{:02X}>", b));
        m.token_types.push_back(6);
    }
    const std::string space = "\xE2\x96\x81";
    for (const char* w : {"the", "a", "cat", "sat", ""}) m.tokens.push_back(space + w), m.token_types.push_back(1);
    for (const char* w : {"t", "h", "e", "a", "c", "s"}) m.tokens.push_back(w), m.token_types.push_back(1);
}

// Byte-level BPE vocabulary: the 256 byte symbols of GPT-2's byte-to-unicode map, merged pieces, and two control
// tokens at the end (as Llama 3 and Qwen2 files order them).
void bpe_vocab(TinyModel& m) {
    auto byte_symbol = [](int b) -> std::string {
        // GPT-2: printable bytes map to themselves, the other 68 to U+0100 + k in byte order.
        int k = 0;
        for (int c = 0; c < b; ++c)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) ++k;
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        const uint32_t cp = printable ? uint32_t(b) : 256u + uint32_t(k);
        std::string s;
        if (cp < 0x80) s += char(cp);
        else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
        return s;
    };
    for (int b = 0; b < 256; ++b) m.tokens.push_back(byte_symbol(b)), m.token_types.push_back(1);
    const std::string G = "\xC4\xA0";  // U+0120, the byte symbol of ' '
    m.merges = {"t h", "th e", G + " th", G + "th e", "c a", "ca t", G + " cat", "s a", "sa t"};
    for (const std::string& w : std::vector<std::string>{"th", "the", G + "th", G + "the", "ca", "cat", G + "cat", "sa", "sat"})
        m.tokens.push_back(w), m.token_types.push_back(1);
    m.tokens.push_back("<|begin_of_text|>"), m.token_types.push_back(3);
    m.tokens.push_back("<|end_of_text|>"), m.token_types.push_back(3);
}

}  // namespace

TinyModel make_tiny_model(const TinyModelSpec& spec, uint64_t seed) {
    TinyModel m;
    m.spec = spec;
    std::mt19937_64 rng(seed);
    if (spec.tokenizer == "gpt2") bpe_vocab(m);
    else spm_vocab(m);
    m.n_vocab = static_cast<int32_t>(m.tokens.size());
    const size_t E = size_t(spec.n_embd), F = size_t(spec.n_ff), Q = size_t(spec.n_head * spec.head_dim),
                 K = size_t(spec.n_head_kv * spec.head_dim);
    const float s_in = 1.0f / std::sqrt(float(E));
    // Embeddings of unit RMS (no sqrt(n_embd) scaling in these architectures).
    m.tok_embd = gaussian(rng, size_t(m.n_vocab) * E, 1.0f);
    if (!spec.tied_output) m.output = gaussian(rng, size_t(m.n_vocab) * E, s_in);
    m.output_norm = uniform(rng, E, 0.5f, 1.5f);
    // Divisors between 1 and 8, as Llama 3.1's (1 for high frequencies, 8 for low).
    if (spec.rope_freqs) m.rope_freqs = uniform(rng, size_t(spec.head_dim / 2), 1.0f, 8.0f);
    for (int l = 0; l < spec.n_layer; ++l) {
        TinyModel::Layer L;
        L.attn_norm = uniform(rng, E, 0.5f, 1.5f);
        L.wq = gaussian(rng, Q * E, s_in);
        L.wk = gaussian(rng, K * E, s_in);
        L.wv = gaussian(rng, K * E, s_in);
        if (spec.arch == "qwen2") {
            L.bq = gaussian(rng, Q, 0.5f);
            L.bk = gaussian(rng, K, 0.5f);
            L.bv = gaussian(rng, K, 0.5f);
        }
        L.wo = gaussian(rng, E * Q, 1.0f / std::sqrt(float(Q)));
        L.ffn_norm = uniform(rng, E, 0.5f, 1.5f);
        L.ffn_gate = gaussian(rng, F * E, s_in);
        L.ffn_up = gaussian(rng, F * E, s_in);
        L.ffn_down = gaussian(rng, E * F, 1.0f / std::sqrt(float(F)));
        m.layers.push_back(std::move(L));
    }
    return m;
}

std::vector<uint8_t> tiny_model_gguf(const TinyModel& m, const std::string& skip_tensor) {
    const TinyModelSpec& s = m.spec;
    const std::string& a = s.arch;
    GgufWriter w;
    w.set_string("general.architecture", a);
    w.set_string("general.name", fmt::format("tiny random {} (test fixture)", a));
    w.set_u32(a + ".context_length", uint32_t(s.n_ctx_train));
    w.set_u32(a + ".embedding_length", uint32_t(s.n_embd));
    w.set_u32(a + ".block_count", uint32_t(s.n_layer));
    w.set_u32(a + ".feed_forward_length", uint32_t(s.n_ff));
    w.set_u32(a + ".attention.head_count", uint32_t(s.n_head));
    w.set_u32(a + ".attention.head_count_kv", uint32_t(s.n_head_kv));
    if (s.head_dim != s.n_embd / s.n_head) w.set_u32(a + ".attention.key_length", uint32_t(s.head_dim));
    if (s.head_dim != s.n_embd / s.n_head) w.set_u32(a + ".attention.value_length", uint32_t(s.head_dim));
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
    w.set_f32(a + ".rope.freq_base", s.rope_base);
    w.set_u32(a + ".rope.dimension_count", uint32_t(s.head_dim));
    if (!s.rope_scaling_type.empty()) {
        w.set_string(a + ".rope.scaling.type", s.rope_scaling_type);
        w.set_f32(a + ".rope.scaling.factor", 4.0f);
    }
    w.set_string("tokenizer.ggml.model", s.tokenizer);
    w.set_strings("tokenizer.ggml.tokens", m.tokens);
    w.set_i32s("tokenizer.ggml.token_type", m.token_types);
    if (s.tokenizer == "gpt2") {
        w.set_string("tokenizer.ggml.pre", !s.pre.empty() ? s.pre : a == "qwen2" ? "qwen2" : "llama-bpe");
        w.set_strings("tokenizer.ggml.merges", m.merges);
        w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(m.n_vocab - 2));
        w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(m.n_vocab - 1));
        w.set_bool("tokenizer.ggml.add_bos_token", a != "qwen2");
    } else {
        std::vector<float> scores(m.tokens.size());
        for (size_t i = 0; i < m.tokens.size(); ++i) scores[i] = -float(i);
        w.set_f32s("tokenizer.ggml.scores", scores);
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        w.set_u32("tokenizer.ggml.unknown_token_id", 0);
        w.set_bool("tokenizer.ggml.add_bos_token", true);
        w.set_bool("tokenizer.ggml.add_space_prefix", true);
    }

    auto add = [&](const std::string& name, const std::vector<float>& data, std::vector<int64_t> shape, DType type) {
        if (name == skip_tensor) return;
        const int64_t n_cols = shape.back();
        const int64_t n_rows = static_cast<int64_t>(data.size()) / n_cols;
        std::vector<uint8_t> bytes(static_cast<size_t>(n_rows * row_bytes(type, n_cols)));
        for (int64_t r = 0; r < n_rows; ++r)
            quantize_row(type, data.data() + r * n_cols, bytes.data() + r * row_bytes(type, n_cols), n_cols);
        w.add_tensor(name, type, shape, bytes);
    };
    const int64_t E = s.n_embd, F = s.n_ff, Q = int64_t(s.n_head) * s.head_dim, K = int64_t(s.n_head_kv) * s.head_dim;
    const DType t = s.weight_type;
    const DType vt = s.bias_type;
    add("token_embd.weight", m.tok_embd, {m.n_vocab, E}, t);
    add("output_norm.weight", m.output_norm, {E}, DType::F32);
    if (!s.tied_output) add("output.weight", m.output, {m.n_vocab, E}, t);
    if (!m.rope_freqs.empty()) add("rope_freqs.weight", m.rope_freqs, {int64_t(m.rope_freqs.size())}, DType::F32);
    for (int l = 0; l < s.n_layer; ++l) {
        const TinyModel::Layer& L = m.layers[size_t(l)];
        auto name = [l](const char* suffix) { return fmt::format("blk.{}.{}", l, suffix); };
        add(name("attn_norm.weight"), L.attn_norm, {E}, DType::F32);
        add(name("attn_q.weight"), L.wq, {Q, E}, t);
        add(name("attn_k.weight"), L.wk, {K, E}, t);
        add(name("attn_v.weight"), L.wv, {K, E}, t);
        if (!L.bq.empty()) {
            add(name("attn_q.bias"), L.bq, {Q}, vt);
            add(name("attn_k.bias"), L.bk, {K}, vt);
            add(name("attn_v.bias"), L.bv, {K}, vt);
        }
        add(name("attn_output.weight"), L.wo, {E, Q}, t);
        add(name("ffn_norm.weight"), L.ffn_norm, {E}, DType::F32);
        add(name("ffn_gate.weight"), L.ffn_gate, {F, E}, t);
        add(name("ffn_up.weight"), L.ffn_up, {F, E}, t);
        add(name("ffn_down.weight"), L.ffn_down, {E, F}, t);
    }
    return w.to_bytes();
}

}  // namespace butler::test
