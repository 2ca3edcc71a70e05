// SPDX-License-Identifier: MIT
// TokenSelector: picks, for one decode step, the tokens one (layer, KV head) attends to.
//
// Contract of select(): out = sorted unique token ids in [0, n_tok), at most `budget` of them (dense excepted: it
// returns every token), always containing the sinks [0, min(sinks, n_tok)) and the recent window
// [n_tok - window, n_tok) (clipped to fit the budget by clip_sinks_window(); the current token always stays). The
// current token is n_tok - 1 and is part of the window. Deterministic: the same inputs and history give the same output
// (ties go to the lower token id). out must have capacity for n_tok ids (the caller reserves it; select() does not
// allocate). Selectors keep per-(layer, head) state only where their paper does (h2o); reset() forgets it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu_kernels/select.h"
#include "offload/kv_store.h"

namespace butler {

class Device;
class TokenButlerPredictor;

struct SelectionRequest {
    int32_t layer            = 0;        // stored layer (HostKvStore index)
    int32_t g                = 0;        // KV head
    int64_t n_tok            = 0;        // context length including the current token
    const float* q           = nullptr;  // (n_group, head_dim) the current token's queries of this group, scaled
    int32_t n_group          = 1;
    const HostKvStore* store = nullptr;
    int64_t budget           = 0;
    int64_t sinks            = 0;
    int64_t window           = 0;
    // The last prefill queries of this layer (SnapKV's observation window): n_obs rows of (n_head, head_dim),
    // scaled, the first at position obs_pos0; this group's heads start at column g * n_group * head_dim.
    const float* obs_q = nullptr;
    int32_t n_obs      = 0;
    int64_t obs_pos0   = 0;
    int32_t n_head     = 0;
    // Learned selectors (tokenbutler): the model layer of `layer`, and this group's importance queries
    // (n_group, d') of the current token, made by the layer's producer.
    int32_t model_layer  = 0;
    const float* imp_q   = nullptr;
    bool imp_q_on_device = false;  // imp_q is device memory (predictor/device_predictor.h; bound selectors only)
    // Neighbour fetching (TOKENBUTLER.md §2.5): the top half of the picks, each run of consecutive picked tokens
    // extended to the right by its own length, the rest of the budget filled in score order.
    bool neighbours = false;
};

class TokenSelector {
public:
    virtual ~TokenSelector()         = default;
    virtual const char* name() const = 0;
    // True when the selection depends on the current query (it cannot be computed a layer ahead).
    virtual bool needs_query() const                                                = 0;
    virtual void select(const SelectionRequest& request, std::vector<int32_t>& out) = 0;
    // Forgets per-sequence state (a new sequence, or a rewind to n_tok tokens).
    virtual void reset(int64_t n_tok) {}
    // The learned predictor behind the selection (nullptr for the heuristic selectors).
    virtual const TokenButlerPredictor* predictor() const { return nullptr; }
    // From now on, scores and top-k run on `device` (KernelTable imp_score, topk): the selection's state moves to
    // device memory, allocated here (Error(Oom) naming it when it does not fit); select() then allocates nothing
    // and returns when the device's picks are back. The picks equal the host path's bit for bit on cpu and emu (the
    // same arithmetic); on cuda, up to float rounding of the scores. False, doing nothing, for a selector without
    // a device path (every one but tokenbutler). `device` must outlive the selector.
    virtual bool bind_device(Device& device) { return false; }
};

// "dense", "oracle", "streamingllm", "h2o", "h2o-tb", "snapkv", "snapkv-tb", "quest", "quest-tb",
// "tokenbutler[:PATH]". Error(Usage)
// naming the known ones otherwise.
//   n_layer, n_head_kv, max_tok: the shape of the store, for selectors that keep per-token state.
//   predictor: the loaded predictor, required by "tokenbutler" (Error(Usage) without one).
//   n_group: query heads per KV head (snapkv-tb keeps its last queries).
std::unique_ptr<TokenSelector> make_selector(const std::string& name, int32_t n_layer, int32_t n_head_kv,
                                             int64_t max_tok, int32_t head_dim,
                                             std::shared_ptr<const TokenButlerPredictor> predictor = nullptr,
                                             int32_t n_group = 1);
// The TokenButler code's H2O / SnapKV variants (predictor/selectors_tb.cpp).
std::unique_ptr<TokenSelector> make_h2o_tb_selector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok);
std::unique_ptr<TokenSelector> make_snapkv_tb_selector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok,
                                                       int32_t head_dim, int32_t n_group);
std::unique_ptr<TokenSelector> make_tokenbutler_selector(std::shared_ptr<const TokenButlerPredictor> predictor,
                                                         int32_t n_layer, int32_t n_head_kv, int64_t max_tok);
const char* selector_names();

// --- shared by the selectors (exposed for tests) ---

// The clipped sinks and window of a request, with b = min(budget, n_tok) (at least 1): the current token always,
// then the sinks: sinks' = min(sinks, b - 1); window' = clamp(window, 1, b - sinks').
struct SinksWindow {
    int64_t sinks;
    int64_t window;
};
SinksWindow clip_sinks_window(const SelectionRequest& r);

// The number of candidates select_top picks: the budget left after sinks and window, at most the candidates there are.
int64_t pick_count(const SelectionRequest& r, const SinksWindow& sw);

// out = sinks + window + the `n_pick` highest-scoring candidates of [sinks, n_tok - window) (score[t] for token t,
// ties to the lower id), sorted; with r.neighbours, the picks are chosen by expand_with_neighbours. idx: scratch
// with capacity n_tok.
void select_top(const SelectionRequest& r, const float* score, std::vector<int32_t>& idx, std::vector<int32_t>& out);

// add_softmax: cpu_kernels/select.h.

// Neighbour fetching over candidates idx (all of [lo, hi), any order; reordered in place): the top ceil(n_pick/2)
// by score, sorted; every run of consecutive picked ids extended to the right by its own length (clamped to hi);
// the union cut to n_pick; then the remaining room filled with the best unpicked candidates. Appends the picks,
// sorted, to out.
void expand_with_neighbours(const float* score, std::vector<int32_t>& idx, int64_t n_pick, int64_t hi,
                            std::vector<int32_t>& out);

}  // namespace butler
