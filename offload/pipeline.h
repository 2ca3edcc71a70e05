// SPDX-License-Identifier: MIT
// OffloadPipeline: the global-attention layers' K/V in the host store, attention through select -> plan -> copy ->
// split attention -> merge. The Session calls two hooks: store() where a layer's post-RoPE K/V are written, and
// attend() where a global layer's attention is computed.
//
// Dense vs sparse: a chunk of more than one token is prefill, and so is the first chunk after a reset; the first
// single-token step after prefill is the first decode token. All of these attend densely over the host store
// (DESIGN.md: prefill and the first decode token stay dense) on the CPU, or, with device_prefill, a prompt chunk on
// the device: chunked prefill streams the whole context through the slot pool block by block (attend_prefill_device).
// Later single-token steps go through the selector:
//   sparse mode: the device attends over the selected tokens only;
//   exact mode:  the device attends over the selected tokens and the CPU over the complement; merged, = dense.
// Copies: for a selector that needs no query (needs_query() false), the next stored layer's selection is made and
// its rows (all but the current token's, not computed yet) are fetched while this layer computes; the current
// token's row follows at that layer. Query-aware selectors fetch at the layer itself.
// Memory: the store, the slot pool (budget at n_ctx tokens per layer and KV head) and all scratch are allocated
// in the constructor; attend() and store() allocate nothing (the emu device counts its allocations).
// Threading: store() may be called concurrently for distinct (layer, token); attend() from the session thread.
#pragma once

#include "cpu_kernels/attention.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "offload/budget.h"
#include "offload/copy_engine.h"
#include "offload/device_slots.h"
#include "offload/kv_store.h"
#include "offload/split_attention.h"
#include "predictor/token_selector.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/hparams.h"

namespace butler {

class DevicePredictor;

struct OffloadStats {
    uint64_t dense_steps   = 0;                          // layer-chunks attended densely (prefill, first decode token)
    uint64_t sparse_steps  = 0;                          // layer-steps through the selector
    uint64_t prefetches    = 0;                          // layer selections fetched one layer ahead
    uint64_t device_tokens = 0;                          // (token, KV head) pairs attended on the device
    uint64_t cpu_tokens    = 0;                          // (token, KV head) pairs attended on the CPU in exact mode
    uint64_t fresh_selections = 0;                       // layer-steps that selected anew (others reused picks)
    uint64_t predictor_runs   = 0;                       // producer MLP evaluations (TokenButler)
    double select_ms = 0, cpu_attn_ms = 0, wait_ms = 0;  // host time: selection, CPU partials, waiting for the device
    double predict_ms = 0;                               // host time in the predictor's MLP
    uint64_t device_products = 0;                        // prefill matrix products run on the device (GemmArgs)
    uint64_t prefill_blocks  = 0;                        // (layer, K/V block) pairs of chunked prefill on the device
    CopyStats copy;
};

class OffloadPipeline {
public:
    // Error(Usage) for an unknown device or selector or a bad budget, Error(Oom) when the slots do not fit the
    // device (naming both sizes), Error(InvalidArg) for a model without global-attention layers.
    OffloadPipeline(const HParams& hp, const OffloadConfig& config, int64_t n_ctx, DType kv_type);
    ~OffloadPipeline();

    bool offloaded(int32_t model_layer) const { return store_index_[size_t(model_layer)] >= 0; }
    // Token pos's post-RoPE K (n_head_kv, head_dim) and V (n_head_kv, head_dim_v) of an offloaded layer.
    void store(int32_t model_layer, int64_t pos, const float* k, const float* v);
    // Attention of the chunk's tokens pos0 .. pos0 + n_tok - 1 for an offloaded layer:
    //   q (n_tok, n_head, head_dim) scaled; out (n_tok, n_head, head_dim_v).
    void attend(int32_t model_layer, const float* q, int64_t n_tok, int64_t pos0, float* out);
    // TokenButler producers: true when model_layer's attention input must be shown to observe_hidden() on decode
    // steps (it produces importance queries for an offloaded layer).
    bool wants_hidden(int32_t model_layer) const {
        return !producer_consumers_.empty() && !producer_consumers_[size_t(model_layer)].empty();
    }
    // x (n_embd): the attention input of producer model_layer for the single token at pos. On a sparse step where a
    // prediction is due it runs the predictor for the offloaded consumer layers; then it starts the fetch of the
    // next offloaded layer when that one is served by this producer (so its copies overlap the layers between).
    void observe_hidden(int32_t model_layer, int64_t pos, const float* x);
    // Forgets positions >= n (0: a new sequence).
    void truncate(int64_t n);
    // The host store holds positions 0 .. n - 1 written through store() without a forward pass (synthetic K/V for
    // benchmarks at contexts a CPU prefill would take too long to reach): commits them and treats them as prefill,
    // so the step at position n is the first decode token.
    void mark_prefilled(int64_t n);

    const OffloadStats& stats() const;
    // Counts a prefill matrix product the device forward ran on this pipeline's device.
    void count_device_product() { ++stats_.device_products; }
    void reset_stats();
    Device& device() { return *device_; }
    const HostKvStore& store() const { return *store_; }
    const OffloadConfig& config() const { return config_; }
    // Gives back the device_resident_bytes counted at construction (the device forward then allocates them as real
    // buffers: reserved first, the cap's error names them before the slots).
    void release_resident() { resident_.reset(); }
    int32_t n_slots() const { return slots_->n_slots(); }
    // True when the selector scores and picks on the device (OffloadConfig::select_on).
    bool selects_on_device() const { return selects_on_device_; }
    // Why selection stays on the host although select_on is Auto and the device is cuda (what did not fit); empty
    // otherwise.
    const std::string& select_on_device_note() const { return select_on_device_note_; }

private:
    void attend_dense(int32_t layer, const float* q, int64_t n_tok, int64_t pos0, float* out);
    void attend_sparse(int32_t layer, const float* q, int64_t pos, float* out);
    // A prompt chunk's attention on the device (config_.device_prefill): the context 0 .. pos0 + n_tok - 1 streams
    // from the host store in blocks of half the slot pool, alternating halves, so a block's copy overlaps the
    // previous block's attention; each block's partial merges into the chunk's running (o, lse) on the device.
    void attend_prefill_device(int32_t layer, const float* q, int64_t n_tok, int64_t pos0, float* out);
    void select_layer(int32_t layer, const float* q, int64_t pos, std::vector<std::vector<int32_t>>& out);
    void prefetch(int32_t layer, int64_t pos);
    bool sparse_step(int64_t pos) const { return prefill_end_ >= 0 && pos > prefill_end_; }
    // The slot-pool layer that holds stored layer `layer`'s rows: itself, or in stream mode one of two staging
    // layers, emptied when it starts to receive a new layer's rows for step pos.
    int32_t slot_layer(int32_t layer, int64_t pos);
    // Whether a sparse step at pos makes a fresh selection (else the picks of the last one are reused).
    bool prediction_due(int64_t pos) const { return (pos - prefill_end_ - 1) % config_.interval == 0; }

    OffloadConfig config_;
    int32_t n_head_, n_head_kv_, n_group_, head_dim_, head_dim_v_;
    int64_t n_ctx_;
    std::vector<int32_t> store_index_;  // (n_layer_model) -> stored layer or -1
    std::unique_ptr<Device> device_;
    DeviceReservation resident_;  // config_.device_resident_bytes counted against the device's capacity
    std::unique_ptr<HostKvStore> store_;
    std::unique_ptr<DeviceKvSlots> slots_;
    std::unique_ptr<CopyEngine> engine_;
    std::unique_ptr<TokenSelector> selector_;
    std::unique_ptr<Stream> compute_;
    int64_t prefill_end_ = -1;  // the first decode token's position; -1: the next chunk is prefill
    std::vector<std::pair<int32_t, int64_t>> stage_owner_;  // stream mode: (stored layer, step) each staging layer holds
    // Per KV head scratch, sized at construction.
    std::vector<std::vector<int32_t>> wanted_, complement_;
    // Prefetch of the next stored layer (query-independent selectors): its selection, made while this layer
    // computes, and the position it was made for (-1: none).
    std::vector<std::vector<int32_t>> wanted_next_;
    std::vector<int64_t> prefetched_pos_;  // (n_stored)
    // The last kObsWindow prefill queries of each stored layer (SnapKV's observation window), oldest first.
    static constexpr int32_t kObsWindow = 32;
    static constexpr int32_t kStreamPageTok = 4096;  // host store page in stream mode
    std::vector<float> obs_q_;        // (n_stored, kObsWindow, n_head, head_dim)
    std::vector<int32_t> obs_count_;  // (n_stored)
    std::vector<int64_t> obs_end_;    // (n_stored) position after the newest kept query
    // The device partials' arguments (kept until the stream ran them) and the buffers they name, readable and
    // writable by the device: pinned host for what the host writes or reads back (queries, slot ids, outputs),
    // device memory for the scores scratch. (n_head_kv, ...) each.
    std::vector<AttnPartialArgs> tasks_;
    Buffer q_dev_, slot_ids_dev_, o_dev_, lse_dev_, dev_scores_;
    std::vector<float> o_cpu_, lse_cpu_;  // (n_head_kv, n_group, ...)
    std::vector<CpuPartialScratch> cpu_scratch_;                         // (n_head_kv)
    std::vector<float> dense_scores_;                                    // (n_threads, n_group * n_ctx)
    AttnChunkScratch chunk_attn_;  // prompt chunks: the plain runtime's blocked attention, over the host pages
    int32_t n_threads_ = 1;
    // Prediction interval: the picks (selection minus sinks and window) of the last fresh selection per
    // (stored layer, KV head), and the position it was made at (-1: none).
    std::vector<std::vector<int32_t>> picks_;  // (n_stored * n_head_kv)
    std::vector<int64_t> picked_pos_;          // (n_stored)
    // Per stored layer: the CPU adds the complement of the selection (--attn exact, or the layer is a dense layer).
    std::vector<uint8_t> exact_layer_;  // (n_stored)
    // TokenButler: stored model layers, producer -> consumer stored layers, importance queries per stored layer.
    std::vector<int32_t> stored_model_layer_;                // (n_stored)
    std::vector<std::vector<int32_t>> producer_consumers_;  // (n_layer_model) stored layers; empty w/o predictor
    std::vector<float> imp_q_;                               // (n_stored, n_head, d')
    std::vector<int64_t> imp_q_pos_;                         // (n_stored) the step the queries were made for
    std::vector<float> pred_out_, pred_scratch_;             // (G * n_head * d'), (n_embd + intdim)
    mutable OffloadStats stats_;
    bool selects_on_device_ = false;
    std::string select_on_device_note_;
    std::unique_ptr<DevicePredictor> device_predictor_;  // selection on the device: the query MLP there too
    // Chunked prefill on the device: the chunk's queries, outputs and LSEs in device memory and the pinned host
    // staging of queries and outputs ((prefill_tokens, n_head, ...) each), the slot ids 0 .. n_slots - 1 (a block
    // occupies a run of them), the blocks' arguments ((2, n_head_kv): one set per half of the pool) and one event
    // per half, recorded after the block's attention (its slots and arguments are reused two blocks later).
    Buffer pre_q_dev_, pre_o_dev_, pre_lse_dev_, pre_q_host_, pre_o_host_, pre_slot_ids_;
    std::vector<PrefillAttnArgs> pre_args_;
    std::unique_ptr<Event> pre_done_[2];
};

}  // namespace butler
