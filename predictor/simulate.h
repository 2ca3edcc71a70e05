// SPDX-License-Identifier: MIT
// The masked-prefill simulation (TOKENBUTLER.md §2.2, DESIGN.md's `simulate` evaluation view): the whole sequence in
// one forward pass, every layer >= 1 sparsified row by row, so selectors are compared the way the paper's tables
// compare them. Layer 0 stays dense.
//
// For layer l >= 1, KV head g and query row i (0-based, positions from 0):
//   valid keys   j in [lo_i, i], lo_i = max(0, i - n_swa + 1) on a sliding-window layer, else 0; n_i = i - lo_i + 1.
//   budget       K_i = min(ceil(n_i * keep), n_i): the share `keep` of the row's valid keys (global layers: of the
//                causal prefix, as the paper; sliding-window layers: of their window).
//   selection    the selector's K_i keys of the row (below), then the sinks j < `sinks` (those valid) in addition.
//   attention    softmax(q.k) over the selected keys, times V, for each query head of the group.
// Selection is per KV head (one set for the group's query heads, as the runtime gathers one set per KV head).
//   oracle        top K_i by the true attention mass of the group: sum over its query heads of softmax(q.k) of the
//                 row (a max of raw logits over heads would follow the head with the widest logit range).
//   tokenbutler   top K_i by the predicted mass: sum over the group of softmax(q'.k'/sqrt(d')) of the row, q' from
//                 the layer's producer at row i, k' = K W_K (one mask serves the group's query heads). With
//                 group_max_logit: by the max over the group of the raw predicted logit q'.k'/sqrt(d'), the rule of
//                 TOKENBUTLER.md §1.3 / §2.4, kept to measure against.
//   recent window tokenbutler and quest keep the min(W, K_i) most recent keys of the row, then rank the older
//                 ones, K_i in all (W = SimulateParams::window; the v2 runtime's window, §2.4, and Quest's
//                 implementations keep recent keys too; the paper's §2.2 rule and the -tb variants have none).
//   streamingllm  the K_i most recent keys (the sinks come on top).
//   quest         pages of `page` keys scored by Quest's bound sum_d max(q_d min_d, q_d max_d) over the page's valid
//                 keys, max over the group; each key takes its page's score, the top K_i keys (whole pages, the last
//                 one cut), after the recent window.
//   quest-tb      the TokenButler code's Quest (§4): score sum_d |q_d| max_d, max_d over the whole page (future keys
//                 of the row's own page included).
//   h2o           H2O decoded row by row: an active set; row i joins it, then while it is over K_i the active key
//                 with the lowest accumulated attention, outside the most recent K_i / 2, is evicted for good; the
//                 row attends to the set (and sinks) and adds its probabilities (summed over the group) to the
//                 accumulators.
//   h2o-tb        the TokenButler code's H2O (§4): the set starts {0}; budget B_i = max(4, floor(n_i * keep)); row
//                 i joins when the set is under B_i, else replaces the member of lowest current logit q_i.k_j when
//                 its own logit q_i.k_i is higher; the row attends to the set and the sinks (not always to itself).
//   snapkv        SnapKV with row i as the first token after a prompt of rows 0 .. i-1: the prompt's last 32 rows
//                 (i-32 .. i-1) vote for the older keys with their full causal softmax (summed over the window and
//                 the group), avg-pooled (kernel 5); row i and the observation rows' keys rank first, then the top
//                 voted keys, K_i in all. (Row i does not vote for its own keys: that would be oracle knowledge.)
//   snapkv-tb     the TokenButler code's SnapKV (§4): h2o-tb's greedy rule with importance = max_pool(kernel 7) of
//                 the summed softmax rows i-31 .. i (row i included, as that code does); the joining token's
//                 importance is pooled[i].
//   dense         every valid key (keep ignored).
// On sliding-window layers keys that leave the window leave the greedy sets too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace butler {

class TokenButlerPredictor;
struct HParams;
struct LayerAttentionIo;

struct SimulateParams {
    std::string selector = "oracle";
    double keep          = 1.0;  // (0, 1]
    int32_t sinks        = 4;
    int32_t page         = 16;   // quest, quest-tb
    // tokenbutler, quest: the recent keys kept within each row's budget. 32 = SnapKV's observation window, so they
    // start from the same recent keys; 0 = the paper's §2.2 rule.
    int32_t window       = 32;
    std::shared_ptr<const TokenButlerPredictor> predictor;  // required by tokenbutler
    // tokenbutler: rank by max_h q'_h.k'/sqrt(d') over the group's query heads instead of the summed predicted mass
    // (butler eval --group-score max).
    bool group_max_logit = false;
    // Layers (>= 1) left dense: they attend to every valid key, so a run per layer shows which one costs the
    // quality (butler eval --dense-layers). Their producers still run.
    std::vector<int32_t> dense_layers;
};

// The selectors the simulation knows, comma-separated (messages).
const char* simulate_selector_names();

class MaskedPrefillSimulator {
public:
    // Error(Usage) for an unknown selector, keep outside (0, 1] or a dense layer outside [1, n_layer);
    // Error(InvalidArg) for tokenbutler without a predictor. max_tok: the longest sequence attend() will see (scratch
    // is sized for it).
    MaskedPrefillSimulator(const HParams& hp, SimulateParams params, int64_t max_tok);
    ~MaskedPrefillSimulator();

    // The Session attention override (Session::set_attention_override): layer 0 and the dense layers return false
    // (dense, done by the session); every other layer writes io.out and returns true. The sequence must come in one
    // chunk from position 0 (n_ubatch >= its length), else Error(InvalidArg).
    bool attend(const LayerAttentionIo& io);

    // The share of causally valid keys masked, averaged over rows, KV heads and sparsified layers since construction
    // (the paper's true_token_sparsity without its layer-0 zero).
    double masked_share() const { return n_masked_rows_ > 0 ? masked_sum_ / double(n_masked_rows_) : 0.0; }
    void reset_stats() { masked_sum_ = 0, n_masked_rows_ = 0; }

    // Exposed for tests: the selection of one (layer, KV head) for every row, as a row-major (n, n) 0/1 mask.
    //   q (n, n_group, hd) scaled queries of the group; k (n, hd); imp (n_group, n, n) the importance logits of
    //   each query head for tokenbutler (else ignored, may be null). Writes mask[i * n + j] = 1 for the keys row i attends to.
    void select_layer(int64_t n, int32_t n_group, int32_t hd, int64_t n_swa, const float* q, const float* k,
                      const float* imp, uint8_t* mask);

    // Tests: the mask (n, n) that the last KV head of the last attend() used.
    const uint8_t* last_mask() const;

private:
    void produce_importance_queries(const LayerAttentionIo& io);
    struct Impl;
    std::unique_ptr<Impl> impl_;
    double masked_sum_     = 0;
    int64_t n_masked_rows_ = 0;
};

}  // namespace butler
