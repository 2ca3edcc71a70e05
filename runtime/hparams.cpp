// SPDX-License-Identifier: MIT
#include "runtime/hparams.h"

#include <fmt/ranges.h>

#include <cmath>
#include <optional>

#include "runtime/gguf.h"
#include "runtime/status.h"

namespace butler {
namespace {

int32_t require_positive(const GgufFile& file, const ArchSpec& spec, std::string_view suffix, uint32_t max_value) {
    const std::string key = arch_key(spec, suffix);
    const uint32_t v = file.require<uint32_t>(key);
    if (v == 0 || v > max_value) fail(Status::Format, "{}: '{}' = {} is out of range (1..{})", file.path(), key, v, max_value);
    return static_cast<int32_t>(v);
}

// RoPE frequency scaling: the rope_freqs.weight tensor (Llama 3.1/3.2 files) or the rope.scaling.* keys. A
// scaling type Butler does not implement is refused rather than silently ignored (it would change every logit).
void read_rope_scaling(const GgufFile& file, const ArchSpec& spec, HParams& hp) {
    const int32_t n_freq = hp.head_dim / 2;
    if (const GgufTensorInfo* t = file.tensor(spec.rope_freqs)) {
        if (t->type != DType::F32 || t->n_dims != 1 || t->ne[0] != n_freq)
            fail(Status::Format, "{}: tensor '{}' must be f32 of shape [{}] (head_dim / 2), found {} [{}]", file.path(),
                 spec.rope_freqs, n_freq, dtype_name(t->type), fmt::join(t->shape(), ", "));
        const float* f = reinterpret_cast<const float*>(t->data);
        hp.rope_freq_factors.assign(f, f + n_freq);
        for (float v : hp.rope_freq_factors)
            if (!(v > 0) || !std::isfinite(v))
                fail(Status::Format, "{}: tensor '{}' holds a non-positive or non-finite factor {}", file.path(),
                     spec.rope_freqs, v);
        hp.rope_scaling = fmt::format("frequency divisors from {}", spec.rope_freqs);
    }
    const std::string type_key = arch_key(spec, "rope.scaling.type");
    const std::optional<std::string> type = file.get<std::string>(type_key);
    if (!type || *type == "none") return;
    const std::string factor_key = arch_key(spec, "rope.scaling.factor");
    const float factor = file.get<float>(factor_key).value_or(1.0f);
    if (!(factor > 0)) fail(Status::Format, "{}: '{}' = {} must be positive", file.path(), factor_key, factor);
    if (*type == "linear") {
        hp.rope_freq_scale = 1.0f / factor;
        hp.rope_scaling = fmt::format("linear, positions x {}", hp.rope_freq_scale);
    } else if (*type == "llama3") {
        if (!hp.rope_freq_factors.empty()) return;  // the tensor, when present, is what the converter computed
        const int32_t n_ctx_orig = static_cast<int32_t>(
            file.get<uint32_t>(arch_key(spec, "rope.scaling.original_context_length")).value_or(8192));
        const float low = file.get<float>(arch_key(spec, "rope.scaling.low_freq_factor")).value_or(1.0f);
        const float high = file.get<float>(arch_key(spec, "rope.scaling.high_freq_factor")).value_or(4.0f);
        if (!(high > low && low > 0) || n_ctx_orig <= 0)
            fail(Status::Format, "{}: llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor (got {}, {})",
                 file.path(), low, high);
        hp.rope_freq_factors =
            llama3_rope_freq_factors(hp.head_dim, hp.rope_base_global, factor, low, high, n_ctx_orig);
        hp.rope_scaling = fmt::format("llama3 (factor {}, from rope.scaling keys)", factor);
    } else {
        fail(Status::Unsupported, "{}: '{}' = '{}' is not supported (none, linear, llama3)", file.path(), type_key,
             *type);
    }
}

}  // namespace

std::vector<float> llama3_rope_freq_factors(int32_t head_dim, float base, float factor, float low_freq_factor,
                                            float high_freq_factor, int32_t n_ctx_orig) {
    const double low_wavelen = double(n_ctx_orig) / low_freq_factor;
    const double high_wavelen = double(n_ctx_orig) / high_freq_factor;
    std::vector<float> out(static_cast<size_t>(head_dim / 2));
    for (int32_t i = 0; i < head_dim / 2; ++i) {
        const double freq = std::pow(double(base), -2.0 * i / double(head_dim));
        const double wavelen = 2.0 * M_PI / freq;
        double divisor = 1.0;
        if (wavelen > low_wavelen) {
            divisor = factor;
        } else if (wavelen >= high_wavelen) {
            const double smooth = (double(n_ctx_orig) / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[static_cast<size_t>(i)] = static_cast<float>(divisor);
    }
    return out;
}

HParams HParams::from_gguf(const GgufFile& file, const ArchSpec& spec) {
    HParams hp;
    hp.arch = &spec;
    hp.n_layer = require_positive(file, spec, "block_count", 1024);
    hp.n_embd = require_positive(file, spec, "embedding_length", 1 << 16);
    hp.n_ff = require_positive(file, spec, "feed_forward_length", 1 << 18);
    hp.n_head = require_positive(file, spec, "attention.head_count", 1024);
    hp.n_ctx_train = require_positive(file, spec, "context_length", 1 << 24);
    hp.n_head_kv = hp.n_head;
    if (auto v = file.get<uint32_t>(arch_key(spec, "attention.head_count_kv"))) hp.n_head_kv = static_cast<int32_t>(*v);
    if (hp.n_head_kv <= 0 || hp.n_head % hp.n_head_kv != 0)
        fail(Status::Format, "{}: attention.head_count ({}) is not a multiple of attention.head_count_kv ({})", file.path(),
             hp.n_head, hp.n_head_kv);
    hp.head_dim = hp.n_embd / hp.n_head;
    if (auto v = file.get<uint32_t>(arch_key(spec, "attention.key_length"))) hp.head_dim = static_cast<int32_t>(*v);
    hp.head_dim_v = hp.head_dim;
    if (auto v = file.get<uint32_t>(arch_key(spec, "attention.value_length"))) hp.head_dim_v = static_cast<int32_t>(*v);
    if (hp.head_dim <= 0 || hp.head_dim > 1024 || hp.head_dim % 2 != 0 || hp.head_dim_v <= 0 || hp.head_dim_v > 1024)
        fail(Status::Format, "{}: head dimensions {} / {} are out of range (even, 2..1024)", file.path(), hp.head_dim,
             hp.head_dim_v);
    if (auto v = file.get<float>(arch_key(spec, "attention.layer_norm_rms_epsilon"))) hp.rms_eps = *v;
    if (!(hp.rms_eps > 0 && hp.rms_eps < 1))
        fail(Status::Format, "{}: layer_norm_rms_epsilon {} is out of range", file.path(), hp.rms_eps);
    if (auto v = file.get<float>(arch_key(spec, "rope.freq_base"))) hp.rope_base_global = *v;
    hp.rope_base_local = spec.swa_period > 0 ? spec.rope_base_local : hp.rope_base_global;
    if (!(hp.rope_base_global > 1))
        fail(Status::Format, "{}: rope.freq_base {} is out of range", file.path(), hp.rope_base_global);
    read_rope_scaling(file, spec, hp);
    if (auto v = file.get<float>(arch_key(spec, "final_logit_softcapping"))) hp.final_logit_softcap = *v;

    // The vocabulary size is the token list's length (the embedding's row count is checked against it on load).
    if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->type == GgufType::Array)
        hp.n_vocab = static_cast<int32_t>(tokens->n_items);

    hp.layer_is_swa.assign(static_cast<size_t>(hp.n_layer), 0);
    if (spec.swa_period > 0) {
        if (auto v = file.get<uint32_t>(arch_key(spec, "attention.sliding_window"))) hp.n_swa = static_cast<int32_t>(*v);
        if (hp.n_swa <= 0) fail(Status::Format, "{}: '{}' is missing or zero", file.path(), arch_key(spec, "attention.sliding_window"));
        for (int l = 0; l < hp.n_layer; ++l)
            hp.layer_is_swa[static_cast<size_t>(l)] = (l % spec.swa_period != spec.swa_period - 1) ? 1 : 0;
    }
    // Gemma 3, Llama and Qwen2 (all sizes Butler loads) scale queries by 1/sqrt(head_dim).
    hp.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
    return hp;
}

}  // namespace butler
