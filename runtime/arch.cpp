// SPDX-License-Identifier: MIT
#include "runtime/arch.h"

#include <fmt/format.h>

namespace butler {
namespace {

constexpr ArchSpec kArchs[] = {
    {
        .id = ArchId::Gemma3,
        .name = "gemma3",
        .rope_style = RopeStyle::Neox,
        .ffn_act = FfnAct::GeluTanh,
        .qk_norm = true,
        .sandwich_norm = true,
        .scale_embeddings = true,
        .tied_output_default = true,
        .qkv_bias = false,
        .swa_period = 6,  // layers 5, 11, 17, ... are global; the rest use the sliding window
        .rope_base_local = 10000.0f,
    },
    {
        // Llama 2/3.x, Mistral, SmolLM: pre-norm blocks, SwiGLU, interleaved RoPE, GQA. Llama 3.2 1B/3B tie the
        // output projection (their files have no output.weight).
        .id = ArchId::Llama,
        .name = "llama",
        .rope_style = RopeStyle::Normal,
        .ffn_act = FfnAct::Silu,
        .qk_norm = false,
        .sandwich_norm = false,
        .scale_embeddings = false,
        .tied_output_default = true,
        .qkv_bias = false,
        .swa_period = 0,
        .rope_base_local = 0.0f,
    },
    {
        // Qwen2 / Qwen2.5: Llama's block with biases on Q, K and V and NeoX RoPE; small sizes tie the output.
        .id = ArchId::Qwen2,
        .name = "qwen2",
        .rope_style = RopeStyle::Neox,
        .ffn_act = FfnAct::Silu,
        .qk_norm = false,
        .sandwich_norm = false,
        .scale_embeddings = false,
        .tied_output_default = true,
        .qkv_bias = true,
        .swa_period = 0,
        .rope_base_local = 0.0f,
    },
};

}  // namespace

const ArchSpec* find_arch(std::string_view name) {
    for (const ArchSpec& spec : kArchs)
        if (spec.name == name) return &spec;
    return nullptr;
}

std::string supported_arch_names() {
    std::string out;
    for (const ArchSpec& spec : kArchs) {
        if (!out.empty()) out += ", ";
        out += spec.name;
    }
    return out;
}

std::string tensor_name(std::string_view name_template, int layer) {
    return fmt::format(fmt::runtime(name_template), layer);
}

std::string arch_key(const ArchSpec& spec, std::string_view suffix) { return fmt::format("{}.{}", spec.name, suffix); }

}  // namespace butler
