// SPDX-License-Identifier: MIT
// Training the TokenButler predictor by distillation from the frozen base model's own attention
// (TOKENBUTLER.md §3.2): for each consumer layer l >= 1, each query head and each sampled row r (uniform over the
// second half of the sequence by default, TrainOptions::tail; the last row always in), the predictor's distribution
// softmax_j(q'.k'_j / sqrt(d')) over the row's keys is fitted to the model's attention softmax_j(q.k_j / sqrt(D)) by
// cross-entropy (or, as an option, the logits by mean squared error). Keys j are those the model's attention sees:
// causal, and within the sliding window on sliding-window layers. The loss is the mean over (layer, head, row).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "predictor/tokenbutler.h"

namespace butler {

struct HParams;
class Session;

enum class LossKind { CrossEntropy, LogitMse };

// Keys left out of the loss: positions < sinks, and each row's `window` most recent keys (its own included). A
// selector keeps its sinks and recent window without ranking them, so fitting only the keys between lets the
// predictor spend itself on the ranking that matters (the attention sink can hold much of a row's mass).
struct LossKeys {
    int32_t sinks  = 0;
    int32_t window = 0;
};

// One sequence's activations of the frozen model, what training needs of it.
struct TrainSample {
    int64_t n_tok = 0;
    std::vector<int32_t> rows;  // (R) sampled query positions, ascending
    std::vector<float> x;       // (n_producers, R, n_embd) producer attention inputs at the rows
    std::vector<float> q;       // (n_layer, R, n_head, head_dim) scaled post-RoPE queries at the rows (layer 0 unused)
    std::vector<float> k;       // (n_layer, n_tok, n_head_kv, head_dim) post-RoPE keys (layer 0 unused)
};

// The first position sample_rows may draw: floor(n_tok * (1 - tail)), clamped to [0, n_tok - 1].
int64_t first_sampled_row(int64_t n_tok, double tail);

// Rows: n_rows positions drawn without replacement from [first_sampled_row(n_tok, tail), n_tok), always with
// n_tok - 1.
std::vector<int32_t> sample_rows(int64_t n_tok, int32_t n_rows, double tail, uint64_t seed);

// The order in which one epoch visits n_seq training sequences: 0..n_seq-1 as given, or with `shuffle` a permutation
// drawn from (seed, epoch), so every epoch has its own order and a resumed run visits the same sequences again.
std::vector<size_t> epoch_order(size_t n_seq, int64_t epoch, uint64_t seed, bool shuffle);

// Runs `tokens` through the session from position 0 (the session is reset; n_ubatch >= tokens.size() avoids
// re-running layers) and fills `out` for the given rows and the predictor's shape.
void collect_sample(Session& session, const std::vector<int32_t>& tokens, const std::vector<int32_t>& rows,
                    const PredictorShape& shape, TrainSample& out);

// The predictor's parameters as flat arrays (producers' norm weight, norm bias, W1, W2 in order, then W_K).
std::vector<std::vector<float>*> predictor_params(TokenButlerPredictor& p);

// Mean loss over (consumer layer, head, row) of one sample; with grads (same layout as predictor_params, each the
// size of its parameter, zeroed by the caller), adds the gradient of that mean loss. `layers` restricts the loss to
// those consumer layers (each in [1, n_layer)); empty: every layer >= 1. `keys` leaves keys out of both
// distributions (LossKeys); a (layer, row) with no key left contributes nothing and the mean is over the
// (layer, head, row) that have one. Throws if none has.
double predictor_loss(const TokenButlerPredictor& p, const HParams& hp, const TrainSample& s, LossKind kind,
                      std::vector<std::vector<float>>* grads, const std::vector<int32_t>& layers = {},
                      LossKeys keys = {});

// The consumer layers the offload runtime sparsifies (and so consults the predictor for): layers >= 1 without a
// sliding window (on Gemma 3 270M: 5, 11, 17; on a model without windows: every layer >= 1).
std::vector<int32_t> runtime_sparse_layers(const HParams& hp);

struct TrainOptions {
    int32_t seq_len       = 1024;  // tokens per sequence (BOS first)
    int32_t rows          = 256;   // sampled query rows per sequence
    double tail           = 0.5;   // rows come from the last `tail` of each sequence, in (0, 1]
    int32_t epochs        = 1;
    float lr              = 1e-3f;
    float warmup          = 0.1f;  // share of the steps with a linear warm-up; cosine decay after
    float clip            = 20.0f; // global gradient-norm clip
    float weight_decay    = 0.01f; // decoupled (AdamW)
    LossKind loss         = LossKind::CrossEntropy;
    uint64_t seed         = 42;
    int32_t checkpoint_every = 50;  // steps; the checkpoint is OUT.ckpt beside the output
    bool resume           = false;
    int32_t max_steps     = 0;      // 0: all sequences of all epochs
    std::vector<int32_t> loss_layers;  // consumer layers in the loss; empty: every layer >= 1
    LossKeys loss_keys;             // keys left out of the loss (default: none)
    bool shuffle          = false;  // visit the sequences in a seeded random order per epoch (epoch_order)
    bool progress         = true;
};

struct TrainReport {
    int64_t steps = 0, tokens = 0;
    double first_loss = 0, last_loss = 0;  // mean over the first and the last 10% of the steps
    double eval_loss = -1;                 // on the held-apart sequences (-1: none)
    double seconds = 0;
};

// Trains `p` over the token sequences `train` (each seq_len long), evaluating on `held_out` at the end; writes the
// predictor to out_path (and checkpoints + optimizer state to out_path + ".ckpt" every checkpoint_every steps;
// resume continues from it). The session runs the frozen model (n_ctx, n_ubatch >= seq_len).
TrainReport train_predictor(TokenButlerPredictor& p, Session& session, const std::vector<std::vector<int32_t>>& train,
                            const std::vector<std::vector<int32_t>>& held_out, const TrainOptions& options,
                            const std::string& out_path);

// The learning rate at step (0-based) of n_steps: linear warm-up over warmup * n_steps steps, then cosine to 0.
float lr_at(int64_t step, int64_t n_steps, float lr, float warmup);

}  // namespace butler
