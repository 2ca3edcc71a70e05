// SPDX-License-Identifier: MIT
// Architectures as data. An ArchSpec row names the GGUF keys and tensor-name templates of one architecture and
// carries the facts the forward pass needs that the GGUF file does not state (DESIGN.md, "Gemma 3 facts that are
// NOT in the GGUF file"). A new architecture is a new row here plus at most a flag branch in forward.cpp.
#pragma once

#include <string>
#include <string_view>

namespace butler {

enum class ArchId { Gemma3, Llama, Qwen2 };

enum class RopeStyle {
    Neox,    // rotate pairs (i, i + d/2): GPT-NeoX, Qwen2, Gemma
    Normal,  // rotate pairs (2i, 2i + 1): Llama
};

enum class FfnAct {
    GeluTanh,  // GeGLU with the tanh-approximated GELU (Gemma)
    Silu,      // SwiGLU (Llama, Qwen2)
};

struct ArchSpec {
    ArchId id;
    std::string_view name;  // general.architecture, also the prefix of the hparam keys ("gemma3.block_count")

    // Forward-pass features.
    RopeStyle rope_style;
    FfnAct ffn_act;
    bool qk_norm;              // per-head RMSNorm of Q and K before RoPE (attn_q_norm / attn_k_norm)
    bool sandwich_norm;        // x + post_norm(f(norm(x))) around attention and FFN
    bool scale_embeddings;     // token embeddings multiplied by sqrt(n_embd)
    bool tied_output_default;  // output projection = token_embd when output.weight is absent
    bool qkv_bias;             // Q, K and V projections add a bias vector (attn_{q,k,v}.bias, F32)
    // Sliding-window attention pattern: layer l is global iff swa_period == 0 or l % swa_period == swa_period - 1.
    int swa_period;
    float rope_base_local;  // RoPE base of sliding-window layers (the file's rope.freq_base is the global one)

    // Tensor names; "{}" is the layer index.
    std::string_view tok_embd = "token_embd.weight";
    std::string_view output_norm = "output_norm.weight";
    std::string_view output = "output.weight";
    // Optional per-frequency RoPE divisors (head_dim / 2), F32: Llama 3.1/3.2 files carry their "llama3"
    // frequency scaling this way. Read by HParams::from_gguf.
    std::string_view rope_freqs = "rope_freqs.weight";
    std::string_view attn_norm = "blk.{}.attn_norm.weight";
    std::string_view attn_q = "blk.{}.attn_q.weight";
    std::string_view attn_k = "blk.{}.attn_k.weight";
    std::string_view attn_v = "blk.{}.attn_v.weight";
    std::string_view attn_q_bias = "blk.{}.attn_q.bias";
    std::string_view attn_k_bias = "blk.{}.attn_k.bias";
    std::string_view attn_v_bias = "blk.{}.attn_v.bias";
    std::string_view attn_q_norm = "blk.{}.attn_q_norm.weight";
    std::string_view attn_k_norm = "blk.{}.attn_k_norm.weight";
    std::string_view attn_output = "blk.{}.attn_output.weight";
    std::string_view attn_post_norm = "blk.{}.post_attention_norm.weight";
    std::string_view ffn_norm = "blk.{}.ffn_norm.weight";
    std::string_view ffn_gate = "blk.{}.ffn_gate.weight";
    std::string_view ffn_up = "blk.{}.ffn_up.weight";
    std::string_view ffn_down = "blk.{}.ffn_down.weight";
    std::string_view ffn_post_norm = "blk.{}.post_ffw_norm.weight";
};

// The row for a general.architecture value, or nullptr.
const ArchSpec* find_arch(std::string_view name);
// Names of every supported architecture, comma-separated (for error messages).
std::string supported_arch_names();

// A tensor-name template with the layer index filled in.
std::string tensor_name(std::string_view name_template, int layer);
// The hparam key "<arch>.<suffix>".
std::string arch_key(const ArchSpec& spec, std::string_view suffix);

}  // namespace butler
