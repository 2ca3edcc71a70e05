// SPDX-License-Identifier: MIT
// Every scalar the forward pass needs, read once from the GGUF file (HParams::from_gguf is the one place GGUF
// keys become numbers) and completed with the architecture facts of its ArchSpec row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/arch.h"

namespace butler {

class GgufFile;

struct HParams {
    const ArchSpec* arch = nullptr;
    int32_t n_layer = 0;
    int32_t n_embd = 0;      // width of the residual stream
    int32_t n_ff = 0;        // FFN hidden width
    int32_t n_head = 0;      // query heads
    int32_t n_head_kv = 0;   // key/value heads (n_head % n_head_kv == 0)
    int32_t head_dim = 0;    // key (and query) head dimension
    int32_t head_dim_v = 0;  // value head dimension
    int32_t n_vocab = 0;
    int32_t n_ctx_train = 0;
    int32_t n_swa = 0;  // sliding window in tokens (0: none); a query at p sees keys k with p - k < n_swa
    float rms_eps = 1e-6f;
    float rope_base_global = 10000.0f;
    float rope_base_local = 10000.0f;
    float rope_freq_scale = 1.0f;      // positions multiplied by this (linear RoPE scaling)
    // (head_dim / 2) divisors of the RoPE frequencies (theta_i = pos * base^(-2i/head_dim) / factor_i), from the
    // rope_freqs.weight tensor or the "llama3" rope.scaling.* keys; empty: none. Applied to every layer.
    std::vector<float> rope_freq_factors;
    float attn_scale = 0.0f;           // applied to Q before q.k
    float final_logit_softcap = 0.0f;  // 0: none
    std::vector<uint8_t> layer_is_swa;  // (n_layer): 1 for sliding-window layers

    bool is_swa(int layer) const { return layer_is_swa[static_cast<size_t>(layer)] != 0; }
    float rope_base(int layer) const { return is_swa(layer) ? rope_base_local : rope_base_global; }
    int64_t n_embd_q() const { return int64_t(n_head) * head_dim; }
    int64_t n_embd_k() const { return int64_t(n_head_kv) * head_dim; }
    int64_t n_embd_v() const { return int64_t(n_head_kv) * head_dim_v; }

    // Names the RoPE frequency treatment for messages and `butler inspect` ("none", "linear x0.25",
    // "freq factors (rope_freqs.weight)", ...). Set by from_gguf.
    std::string rope_scaling = "none";

    // Reads and validates (divisibility, ranges); Error(Format) names the key and the file.
    static HParams from_gguf(const GgufFile& file, const ArchSpec& spec);
};

// The "llama3" frequency divisors (Llama 3.1/3.2; what their GGUF files store as rope_freqs.weight): frequencies
// whose wavelength is below n_ctx_orig / high_freq_factor are kept, those above n_ctx_orig / low_freq_factor are
// divided by `factor`, and the band between is interpolated smoothly. Returns head_dim / 2 divisors.
std::vector<float> llama3_rope_freq_factors(int32_t head_dim, float base, float factor, float low_freq_factor,
                                            float high_freq_factor, int32_t n_ctx_orig);

}  // namespace butler
