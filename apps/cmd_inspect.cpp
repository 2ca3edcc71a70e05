// SPDX-License-Identifier: MIT
// butler inspect: what a GGUF file holds and how Butler maps it (architecture row, layer kinds, RoPE bases, types).
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>

#include "apps/common.h"
#include "runtime/gguf.h"
#include "runtime/model_path.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct InspectOptions {
    CommonOptions common;
    bool all_tensors = false;
};

std::string value_text(const GgufValue& v, size_t max_items) {
    switch (v.type) {
        case GgufType::String: return fmt::format("\"{}\"", v.str);
        case GgufType::Bool: return v.b ? "true" : "false";
        case GgufType::F32:
        case GgufType::F64: return fmt::format("{}", v.f);
        case GgufType::Array: {
            std::string s = fmt::format("[{} x {}]", v.n_items, gguf_type_name(v.elem_type));
            std::vector<std::string> parts;
            for (size_t i = 0; i < std::min(max_items, v.items.size()); ++i) parts.push_back(value_text(v.items[i], 3));
            if (!parts.empty())
                s += fmt::format(" [{}{}]", fmt::join(parts, ", "), v.n_items > parts.size() ? ", ..." : "");
            return s;
        }
        default: return v.is_integer() && (v.type == GgufType::I8 || v.type == GgufType::I16 || v.type == GgufType::I32 ||
                                           v.type == GgufType::I64)
                            ? fmt::format("{}", v.i)
                            : fmt::format("{}", v.u);
    }
}

nlohmann::json value_json(const GgufValue& v, size_t max_items) {
    switch (v.type) {
        case GgufType::String: return v.str;
        case GgufType::Bool: return v.b;
        case GgufType::F32:
        case GgufType::F64: return v.f;
        case GgufType::I8:
        case GgufType::I16:
        case GgufType::I32:
        case GgufType::I64: return v.i;
        case GgufType::Array: {
            nlohmann::json a = nlohmann::json::array();
            for (size_t i = 0; i < std::min(max_items, v.items.size()); ++i) a.push_back(value_json(v.items[i], max_items));
            return {{"type", gguf_type_name(v.elem_type)}, {"count", v.n_items}, {"head", a}};
        }
        default: return v.u;
    }
}

int run_inspect(const InspectOptions& o) {
    auto model = load_model(o.common);
    const GgufFile& f = model->file();
    const HParams& hp = model->hparams();
    std::map<std::string, int> type_counts;
    for (const auto& t : f.tensors()) type_counts[std::string(dtype_name(t.type))]++;
    std::vector<int> global_layers;
    for (int l = 0; l < hp.n_layer; ++l)
        if (!hp.is_swa(l)) global_layers.push_back(l);

    if (o.common.json) {
        nlohmann::json meta = nlohmann::json::object();
        for (const auto& [k, v] : f.metadata()) meta[k] = value_json(v, 8);
        nlohmann::json tensors = nlohmann::json::array();
        for (const auto& t : f.tensors())
            tensors.push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"shape", t.shape()}, {"bytes", t.n_bytes}});
        nlohmann::json j = {
            {"file", f.path()},
            {"gguf_version", f.version()},
            {"file_bytes", f.file_bytes()},
            {"n_params", model->n_params()},
            {"metadata", meta},
            {"tensors", tensors},
            {"tensor_types", type_counts},
            {"architecture",
             {{"row", model->arch().name},
              {"n_layer", hp.n_layer},
              {"n_embd", hp.n_embd},
              {"n_ff", hp.n_ff},
              {"n_head", hp.n_head},
              {"n_head_kv", hp.n_head_kv},
              {"head_dim", hp.head_dim},
              {"n_vocab", hp.n_vocab},
              {"n_ctx_train", hp.n_ctx_train},
              {"sliding_window", hp.n_swa},
              {"global_layers", global_layers},
              {"rope_style", model->arch().rope_style == RopeStyle::Neox ? "neox" : "normal"},
              {"rope_base_global", hp.rope_base_global},
              {"rope_base_local", hp.rope_base_local},
              {"rope_scaling", hp.rope_scaling},
              {"rope_freq_factors", hp.rope_freq_factors},
              {"qkv_bias", model->arch().qkv_bias},
              {"attn_scale", hp.attn_scale},
              {"tied_output", model->weights().tied_output}}}};
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::printf("file: %s\nGGUF v%u, %llu bytes, %zu tensors, %zu metadata keys, %.1f M parameters\n\n", f.path().c_str(),
                f.version(), static_cast<unsigned long long>(f.file_bytes()), f.tensors().size(), f.metadata().size(),
                double(model->n_params()) / 1e6);
    std::printf("metadata:\n");
    for (const auto& [k, v] : f.metadata()) std::printf("  %-44s %s\n", k.c_str(), value_text(v, 6).c_str());
    std::vector<std::string> type_parts;
    for (const auto& [name, count] : type_counts) type_parts.push_back(fmt::format("{} x{}", name, count));
    std::printf("\ntensor types: %s\n", fmt::format("{}", fmt::join(type_parts, ", ")).c_str());
    std::printf("\ntensors%s:\n", o.all_tensors ? "" : " (blk.0 and global ones; --all-tensors for every tensor)");
    for (const auto& t : f.tensors()) {
        if (!o.all_tensors && t.name.rfind("blk.", 0) == 0 && t.name.rfind("blk.0.", 0) != 0) continue;
        std::printf("  %-36s %-6s [%s]\n", t.name.c_str(), std::string(dtype_name(t.type)).c_str(),
                    fmt::format("{}", fmt::join(t.shape(), ", ")).c_str());
    }
    const ArchSpec& a = model->arch();
    std::printf("\narchitecture mapping (row '%s'):\n", std::string(a.name).c_str());
    std::printf("  layers %d, width %d, FFN %d (%s), heads %d query / %d KV, head dim %d\n", hp.n_layer, hp.n_embd, hp.n_ff,
                a.ffn_act == FfnAct::GeluTanh ? "GeGLU, tanh GELU" : "SwiGLU", hp.n_head, hp.n_head_kv, hp.head_dim);
    std::printf("  vocabulary %d, training context %d, RMSNorm eps %g\n", hp.n_vocab, hp.n_ctx_train, hp.rms_eps);
    if (hp.n_swa > 0)
        std::printf("  sliding window %d tokens; global layers: %s (the other %d are local)\n", hp.n_swa,
                    fmt::format("{}", fmt::join(global_layers, ", ")).c_str(), hp.n_layer - int(global_layers.size()));
    else
        std::printf("  every layer attends to the full context (no sliding window)\n");
    const char* rope_style = a.rope_style == RopeStyle::Neox ? "NeoX (halves)" : "normal (interleaved pairs)";
    if (hp.n_swa > 0)
        std::printf("  RoPE %s, base %g (global layers), %g (local layers)\n", rope_style, hp.rope_base_global,
                    hp.rope_base_local);
    else
        std::printf("  RoPE %s, base %g\n", rope_style, hp.rope_base_global);
    std::printf("  RoPE scaling: %s\n", hp.rope_scaling.c_str());
    std::printf("  Q/K RMSNorm per head: %s; Q/K/V bias: %s; sandwich norms: %s; embeddings x sqrt(n_embd): %s\n",
                a.qk_norm ? "yes" : "no", a.qkv_bias ? "yes" : "no", a.sandwich_norm ? "yes" : "no",
                a.scale_embeddings ? "yes" : "no");
    std::printf("  attention scale %g (1/sqrt(head_dim)); output projection %s; final logit soft-cap %s\n", hp.attn_scale,
                model->weights().tied_output ? "tied to token_embd" : "output.weight",
                hp.final_logit_softcap > 0 ? fmt::format("{}", hp.final_logit_softcap).c_str() : "none");
    return 0;
}

}  // namespace

Action register_inspect(CLI::App& sub) {
    auto o = std::make_shared<InspectOptions>();
    add_common_options(sub, o->common);
    sub.add_flag("--all-tensors", o->all_tensors, "list every tensor");
    return [o] { return run_inspect(*o); };
}

}  // namespace butler::cli
