// SPDX-License-Identifier: MIT
// OffloadConfig: what the user asked of the offload pipeline, and the budget rules of DESIGN.md.
//   Budget: per (layer, KV head), the number of tokens attention may read, counting sinks, the recent window and
//   selected tokens. Given as tokens (--budget N) or as the share of the current context kept (--budget P%).
//   Window default: max(16, budget / 8). Sinks default 4.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace butler {

class TokenButlerPredictor;

// sparse: the device attends over the selected tokens only;
// exact:  and the CPU over the complement (merged: equals dense);
// stream: dense attention with CPU offload, the baseline Butler is measured against: every decode step streams each
//         offloaded layer's whole K/V from the host store to the device, a layer ahead, and the device attends over
//         all of it (two layers' worth of device memory, whatever the context); selector dense only.
enum class AttnMode { Exact, Sparse, Stream };

// How the copy engine moves rows host -> device: one gather per layer (on cuda a kernel reading mapped pinned
// memory) or one stream copy (cudaMemcpyAsync) per contiguous piece, the baseline the gather is measured against.
enum class CopyPath { Gather, Memcpy };

enum class SelectOn { Auto, Host, Device };

struct OffloadConfig {
    bool enabled           = false;
    std::string device     = "emu";    // make_device() spec
    std::string selector   = "dense";  // make_selector() name
    int64_t budget_tokens  = 0;        // one of budget_tokens / budget_fraction is set
    double budget_fraction = 0;        // (0, 1]
    int32_t sinks          = 4;
    int32_t window         = -1;  // -1: max(16, budget / 8)
    AttnMode attn          = AttnMode::Sparse;
    CopyPath copy_path     = CopyPath::Gather;
    uint64_t device_memory = 0;      // 0: the device's own capacity (emu: 4 GiB)
    // Device memory a GPU run holds besides the K/V slots: the model's weights and the sliding-window layers'
    // K/V (the Session fills it in); reserved before the slots, so a cap below it is a clear error.
    uint64_t device_resident_bytes = 0;
    int32_t page_tok       = 16;     // host store page (Quest's page)
    // Decode steps run the whole model on the device (runtime/device_forward.h: weights resident, the sliding-window
    // K/V in device rings) instead of the CPU forward with only attention partials on the device.
    bool device_forward    = false;
    // With device_forward: a prefill chunk's matrix products run on the device (GemmArgs: the resident weights
    // dequantized in tiles into the device's GEMM), and so does the offloaded layers' attention (chunked prefill:
    // the context streams from the host store through the slot pool block by block, PrefillAttnArgs); norms, RoPE
    // and the sliding-window layers' attention stay on the CPU.
    bool device_prefill    = false;
    int64_t prefill_tokens = 0;  // with device_prefill: the largest chunk (the Session's n_ubatch; sizes staging)
    bool skip_copy_wait    = false;  // tests only: plants the missing compute-stream wait the tests must catch
    // Prediction interval (TOKENBUTLER.md §2.5): a fresh selection on the first sparse step and every `interval`
    // steps after it; in between each (layer, KV head) keeps its picks (sinks and window stay current).
    int32_t interval = 1;
    bool neighbours  = false;  // neighbour fetching: picked runs extended right by their own length
    // Model layers that, although offloaded and selected for as usual, attend exactly (the CPU adds the complement,
    // as AttnMode::Exact does for every layer): an analysis knob that shows which sparsified layer costs the
    // quality (butler eval --dense-layers).
    std::vector<int32_t> dense_layers;
    // Where a learned selector scores and picks (TokenSelector::bind_device): Auto = on the device for cuda, on the
    // host elsewhere.
    SelectOn select_on = SelectOn::Auto;
    // The "tokenbutler" selector's predictor (the Session loads it from the selector's PATH or the shipped one).
    std::shared_ptr<const TokenButlerPredictor> predictor;

    // The budget at a context of n_tok tokens (at least 1, at most n_tok).
    int64_t budget_at(int64_t n_tok) const;
    // The recent window for a budget.
    int64_t window_for(int64_t budget) const { return window >= 0 ? window : std::max<int64_t>(16, budget / 8); }
};

// Parses "--budget" values: "512" (tokens) or "10%" (share kept). Error(Usage) for 0, negative or garbage.
void parse_budget(const std::string& text, OffloadConfig& config);
const char* attn_mode_name(AttnMode mode);
const char* select_on_name(SelectOn where);  // "auto", "host", "device"
const char* copy_path_name(CopyPath path);
// "gather" or "memcpy"; Error(Usage) naming the value otherwise.
CopyPath parse_copy_path(const std::string& name);

}  // namespace butler
