// SPDX-License-Identifier: MIT
#include "runtime/random_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>

#include "cpu_kernels/quant.h"
#include "runtime/arch.h"
#include "runtime/hparams.h"
#include "runtime/status.h"

namespace butler {
namespace {

enum class Vocab { Llama3, Qwen2, Gemma3 };

// Public config.json values of each model.
struct ModelShape {
    const char* like;
    const char* arch;
    const char* display_name;
    int32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
    bool tied_output;
    float llama3_rope_factor;  // > 0: rope_freqs.weight with the llama3 divisors (low 1, high 4, original 8192)
    int32_t n_swa;
    Vocab vocab;
};

constexpr ModelShape kShapes[] = {
    {"llama-3.2-1b", "llama", "Llama 3.2 1B (random weights)", 16, 2048, 8192, 32, 8, 64, 128256, 131072, 500000.0f,
     1e-5f, true, 32.0f, 0, Vocab::Llama3},
    {"llama-3.2-3b", "llama", "Llama 3.2 3B (random weights)", 28, 3072, 8192, 24, 8, 128, 128256, 131072, 500000.0f,
     1e-5f, true, 32.0f, 0, Vocab::Llama3},
    {"llama-3.1-8b", "llama", "Llama 3.1 8B (random weights)", 32, 4096, 14336, 32, 8, 128, 128256, 131072,
     500000.0f, 1e-5f, false, 8.0f, 0, Vocab::Llama3},
    {"qwen2.5-7b", "qwen2", "Qwen2.5 7B (random weights)", 28, 3584, 18944, 28, 4, 128, 152064, 32768, 1000000.0f,
     1e-6f, false, 0.0f, 0, Vocab::Qwen2},
    {"gemma-3-270m", "gemma3", "Gemma 3 270M (random weights)", 18, 640, 2048, 4, 1, 256, 262144, 32768, 1000000.0f,
     1e-6f, true, 0.0f, 512, Vocab::Gemma3},
};

const ModelShape& find_shape(const std::string& like) {
    for (const ModelShape& s : kShapes)
        if (like == s.like) return s;
    fail(Status::InvalidArg, "--like '{}' is not a known model (known: {})", like, fmt::join(random_model_names(), ", "));
}

struct Plan {
    const ModelShape* shape;
    const ArchSpec* spec;
    int32_t n_layer, n_vocab;
    std::vector<PlannedTensor> tensors;
    std::vector<float> stddev;  // per tensor; 0: a constant-1 norm vector
};

Plan make_plan(const RandomModelOptions& o) {
    Plan p;
    p.shape = &find_shape(o.like);
    const ModelShape& s = *p.shape;
    p.spec = find_arch(s.arch);
    BUTLER_ASSERT(p.spec != nullptr, "no arch row for {}", s.arch);
    const DTypeTraits& tr = dtype_traits(o.type);
    if (!tr.computable || o.type == DType::F32)
        fail(Status::InvalidArg, "--type {} cannot be written (Q4_K, Q4_0, Q8_0, F16, BF16 and the other computable "
             "quantized types can)", tr.name);
    p.n_layer = o.n_layer > 0 ? o.n_layer : s.n_layer;
    p.n_vocab = o.n_vocab > 0 ? o.n_vocab : s.n_vocab;
    if (p.n_vocab < 512) fail(Status::InvalidArg, "--n-vocab must be at least 512 (got {})", p.n_vocab);
    const ArchSpec& a = *p.spec;
    const int64_t E = s.n_embd, F = s.n_ff, Q = int64_t(s.n_head) * s.head_dim, K = int64_t(s.n_head_kv) * s.head_dim;
    auto matrix = [&](std::string name, int64_t rows, int64_t cols, float stddev) {
        DType t = o.type;
        if (cols % dtype_traits(t).block_elems != 0) t = cols % 32 == 0 ? DType::Q8_0 : DType::F32;
        p.tensors.push_back({std::move(name), t, {rows, cols}});
        p.stddev.push_back(stddev);
    };
    auto vec = [&](std::string name, int64_t n) {
        p.tensors.push_back({std::move(name), DType::F32, {n}});
        p.stddev.push_back(0.0f);
    };
    const float embd_std = 2.0f / std::sqrt(float(E));
    matrix(std::string(a.tok_embd), p.n_vocab, E, embd_std);
    if (s.llama3_rope_factor > 0) vec(std::string(a.rope_freqs), s.head_dim / 2);  // filled with the divisors
    for (int l = 0; l < p.n_layer; ++l) {
        auto n = [l](std::string_view tmpl) { return tensor_name(tmpl, l); };
        vec(n(a.attn_norm), E);
        matrix(n(a.attn_q), Q, E, 1.0f / std::sqrt(float(E)));
        matrix(n(a.attn_k), K, E, 1.0f / std::sqrt(float(E)));
        matrix(n(a.attn_v), K, E, 1.0f / std::sqrt(float(E)));
        if (a.qkv_bias) {
            vec(n(a.attn_q_bias), Q);
            vec(n(a.attn_k_bias), K);
            vec(n(a.attn_v_bias), K);
        }
        if (a.qk_norm) {
            vec(n(a.attn_q_norm), s.head_dim);
            vec(n(a.attn_k_norm), s.head_dim);
        }
        matrix(n(a.attn_output), E, Q, 1.0f / std::sqrt(float(Q)));
        if (a.sandwich_norm) vec(n(a.attn_post_norm), E);
        vec(n(a.ffn_norm), E);
        matrix(n(a.ffn_gate), F, E, 1.0f / std::sqrt(float(E)));
        matrix(n(a.ffn_up), F, E, 1.0f / std::sqrt(float(E)));
        matrix(n(a.ffn_down), E, F, 1.0f / std::sqrt(float(F)));
        if (a.sandwich_norm) vec(n(a.ffn_post_norm), E);
    }
    vec(std::string(a.output_norm), E);
    if (!s.tied_output) matrix(std::string(a.output), p.n_vocab, E, 1.0f / std::sqrt(float(E)));
    return p;
}

// The vocabulary: byte tokens, the model's special tokens at their real ids, filler tokens elsewhere.
void write_vocab(GgufWriter& w, const ModelShape& s, int32_t n_vocab) {
    std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
    std::vector<int32_t> types(tokens.size(), 1);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = fmt::format("[filler_{}]", i);
    auto special = [&](int32_t id, std::string text) {
        tokens[size_t(id)] = std::move(text);
        types[size_t(id)] = 3;
    };
    // A shrunken vocabulary keeps the specials at its end, in the same order.
    auto sid = [&](int32_t real_id, int32_t real_first) { return n_vocab == s.n_vocab ? real_id : n_vocab - 256 + (real_id - real_first) % 256; };
    if (s.vocab == Vocab::Gemma3) {
        special(0, "<pad>"), special(1, "<eos>"), special(2, "<bos>"), special(3, "<unk>");
        types[3] = 2;
        special(106, "<start_of_turn>"), special(107, "<end_of_turn>");
        for (int b = 0; b < 256; ++b) tokens[size_t(238 + b)] = fmt::format("<0x{:02X}>", b), types[size_t(238 + b)] = 6;
        std::vector<float> scores(tokens.size());
        for (size_t i = 0; i < scores.size(); ++i) scores[i] = -float(i);
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string("tokenizer.ggml.pre", "default");
        w.set_strings("tokenizer.ggml.tokens", tokens);
        w.set_f32s("tokenizer.ggml.scores", scores);
        w.set_i32s("tokenizer.ggml.token_type", types);
        w.set_u32("tokenizer.ggml.bos_token_id", 2);
        w.set_u32("tokenizer.ggml.eos_token_id", 1);
        w.set_u32("tokenizer.ggml.unknown_token_id", 3);
        w.set_u32("tokenizer.ggml.padding_token_id", 0);
        w.set_bool("tokenizer.ggml.add_bos_token", true);
        w.set_bool("tokenizer.ggml.add_space_prefix", false);
        return;
    }
    // Byte-level BPE: GPT-2's 256 byte symbols are the first 256 tokens (as in the real files' ordering of the
    // single-byte merges' sources); no merges, so text tokenizes to byte symbols.
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int k = 0;
        for (int c = 0; c < b; ++c) k += ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)) ? 0 : 1;
        const uint32_t cp = printable ? uint32_t(b) : 256u + uint32_t(k);
        std::string sym;
        if (cp < 0x80) sym += char(cp);
        else sym += char(0xC0 | (cp >> 6)), sym += char(0x80 | (cp & 0x3F));
        tokens[size_t(b)] = sym;
    }
    int32_t bos, eos;
    if (s.vocab == Vocab::Llama3) {
        const int32_t first = 128000;
        for (int32_t id = first; id < 128256; ++id) special(sid(id, first), fmt::format("<|reserved_special_token_{}|>", id - first));
        special(sid(128000, first), "<|begin_of_text|>"), special(sid(128001, first), "<|end_of_text|>");
        special(sid(128006, first), "<|start_header_id|>"), special(sid(128007, first), "<|end_header_id|>");
        special(sid(128009, first), "<|eot_id|>");
        bos = sid(128000, first), eos = sid(128009, first);
        w.set_string("tokenizer.ggml.pre", "llama-bpe");
        w.set_bool("tokenizer.ggml.add_bos_token", true);
    } else {
        const int32_t first = 151643;
        for (int32_t id = first; id < 151665; ++id) special(sid(id, first), fmt::format("<|special_{}|>", id - first));
        special(sid(151643, first), "<|endoftext|>"), special(sid(151644, first), "<|im_start|>");
        special(sid(151645, first), "<|im_end|>");
        bos = sid(151643, first), eos = sid(151645, first);
        w.set_string("tokenizer.ggml.pre", "qwen2");
        w.set_bool("tokenizer.ggml.add_bos_token", false);
    }
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_strings("tokenizer.ggml.tokens", tokens);
    w.set_i32s("tokenizer.ggml.token_type", types);
    w.set_strings("tokenizer.ggml.merges", {});
    w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(bos));
    w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(eos));
}

// Quantized Gaussian rows, shared by every tensor of the same (type, width, scale).
struct RowPool {
    static constexpr int64_t kRows = 512;
    int64_t row_bytes = 0;
    std::vector<uint8_t> bytes;  // kRows rows
};

std::shared_ptr<const RowPool> make_pool(DType t, int64_t n_cols, float stddev, uint64_t seed) {
    auto pool = std::make_shared<RowPool>();
    pool->row_bytes = row_bytes(t, n_cols);
    pool->bytes.resize(size_t(RowPool::kRows * pool->row_bytes));
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t r = 0; r < RowPool::kRows; ++r) {
        std::mt19937_64 rng(seed * 1000003u + uint64_t(r));
        std::normal_distribution<float> g(0.0f, stddev);
        std::vector<float> row(static_cast<size_t>(n_cols));
        for (float& v : row) v = g(rng);
        quantize_row(t, row.data(), pool->bytes.data() + r * pool->row_bytes, n_cols);
    }
    return pool;
}

}  // namespace

std::vector<std::string> random_model_names() {
    std::vector<std::string> out;
    for (const ModelShape& s : kShapes) out.emplace_back(s.like);
    return out;
}

std::vector<PlannedTensor> random_model_tensors(const RandomModelOptions& opts) { return make_plan(opts).tensors; }

GgufWriter random_model_writer(const RandomModelOptions& opts) {
    const Plan plan = make_plan(opts);
    const ModelShape& s = *plan.shape;
    const std::string a = s.arch;
    GgufWriter w;
    w.set_string("general.architecture", a);
    w.set_string("general.name", s.display_name);
    w.set_string("general.description", fmt::format("random weights in the shape of {} (butler make-random-model, "
                                                    "--type {}, seed {})", s.like, dtype_name(opts.type), opts.seed));
    w.set_u32(a + ".context_length", uint32_t(s.n_ctx_train));
    w.set_u32(a + ".embedding_length", uint32_t(s.n_embd));
    w.set_u32(a + ".block_count", uint32_t(plan.n_layer));
    w.set_u32(a + ".feed_forward_length", uint32_t(s.n_ff));
    w.set_u32(a + ".attention.head_count", uint32_t(s.n_head));
    w.set_u32(a + ".attention.head_count_kv", uint32_t(s.n_head_kv));
    if (s.head_dim != s.n_embd / s.n_head) {
        w.set_u32(a + ".attention.key_length", uint32_t(s.head_dim));
        w.set_u32(a + ".attention.value_length", uint32_t(s.head_dim));
    }
    w.set_f32(a + ".rope.freq_base", s.rope_base);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
    if (s.n_swa > 0) w.set_u32(a + ".attention.sliding_window", uint32_t(s.n_swa));
    if (s.vocab != Vocab::Gemma3) {
        w.set_u32(a + ".rope.dimension_count", uint32_t(s.head_dim));
        w.set_u32(a + ".vocab_size", uint32_t(plan.n_vocab));
    }
    w.set_u32("general.quantization_version", 2);
    write_vocab(w, s, plan.n_vocab);

    std::map<std::tuple<DType, int64_t, float>, std::shared_ptr<const RowPool>> pools;
    for (size_t i = 0; i < plan.tensors.size(); ++i) {
        const PlannedTensor& t = plan.tensors[i];
        const float stddev = plan.stddev[i];
        if (t.shape.size() == 1) {
            std::vector<float> v(static_cast<size_t>(t.shape[0]), 1.0f);
            if (t.name == plan.spec->rope_freqs)
                v = llama3_rope_freq_factors(s.head_dim, s.rope_base, s.llama3_rope_factor, 1.0f, 4.0f, 8192);
            else if (t.name.find(".bias") != std::string::npos) {
                std::mt19937_64 rng(opts.seed + i);
                std::normal_distribution<float> g(0.0f, 0.1f);
                for (float& x : v) x = g(rng);
            }
            w.add_tensor(t.name, DType::F32, t.shape,
                         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4));
            continue;
        }
        const auto key = std::make_tuple(t.type, t.shape[1], stddev);
        auto& pool = pools[key];
        if (!pool) pool = make_pool(t.type, t.shape[1], stddev, opts.seed + pools.size());
        const uint64_t seed = opts.seed * 7919u + i;
        w.add_tensor_streamed(t.name, t.type, t.shape, [pool, seed, n_rows = t.shape[0]](std::span<uint8_t> out) {
            const int64_t rb = pool->row_bytes;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < n_rows; ++r) {
                // A cheap per-row hash picks the pool row (splitmix64).
                uint64_t z = seed + uint64_t(r) * 0x9E3779B97F4A7C15ull;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                z ^= z >> 31;
                std::memcpy(out.data() + r * rb, pool->bytes.data() + int64_t(z % RowPool::kRows) * rb, size_t(rb));
            }
        });
    }
    return w;
}

}  // namespace butler
