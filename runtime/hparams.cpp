// SPDX-License-Identifier: MIT
#include "runtime/hparams.h"

#include <cmath>

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

}  // namespace

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
    if (auto type = file.get<std::string>(arch_key(spec, "rope.scaling.type")); type && *type == "linear") {
        if (auto factor = file.get<float>(arch_key(spec, "rope.scaling.factor")); factor && *factor > 0)
            hp.rope_freq_scale = 1.0f / *factor;
    }
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
    // Gemma 3 (all sizes Butler loads) scales queries by 1/sqrt(head_dim).
    hp.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
    return hp;
}

}  // namespace butler
