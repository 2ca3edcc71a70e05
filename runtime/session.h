// SPDX-License-Identifier: MIT
// Session: the per-sequence state of one model run on the CPU (KV cache, scratch, position) and the forward pass.
//
// Threading: one caller thread; the kernels inside use OpenMP. Memory: everything is sized in the constructor
// (KV cache for n_ctx tokens, scratch for n_ubatch tokens), so eval() and decode allocate nothing.
// KV cache: global-attention layers keep all n_ctx positions; sliding-window layers keep a ring of
// n_swa + n_ubatch positions (enough for the oldest query of a chunk to see its whole window).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "cpu_kernels/attention.h"
#include "cpu_kernels/matmul.h"
#include "offload/budget.h"
#include "runtime/dtype.h"
#include "runtime/model.h"

namespace butler {

struct SessionParams {
    int32_t n_ctx = 4096;       // positions the session can hold
    int32_t n_ubatch = 512;     // tokens per forward chunk (prefill is chunked into these)
    DType kv_type = DType::F16; // F16 (default, as llama.cpp), BF16 or F32
    OffloadConfig offload;      // when enabled, the global layers' K/V live in the offload pipeline's host store
    // Decode steps multiply float activations, as prompt chunks do (cpu_kernels/matmul.h MatmulScratch): what the
    // evaluations use (a decode view then equals the one-pass view); off, 8-bit activations (faster, llama.cpp's).
    bool float_activations = false;
};

class OffloadPipeline;
class DeviceForward;

// What a layer computed for a chunk, shown to a tap (predictor training): rows of the chunk's n_tok tokens.
struct LayerTap {
    int32_t layer;
    int64_t pos0, n_tok;
    const float* x;  // (n_tok, n_embd) the attention input (after the layer's input RMSNorm)
    const float* q;  // (n_tok, n_head, head_dim) post-RoPE queries, already scaled by attn_scale
    const float* k;  // (n_tok, n_head_kv, head_dim) post-RoPE keys
};

// One layer's attention inputs of a chunk, shown to an attention override (the masked-prefill simulation), which
// writes the attention output itself. Rows are the chunk's n_tok tokens at positions pos0 .. pos0 + n_tok - 1.
struct LayerAttentionIo {
    int32_t layer;
    int64_t pos0, n_tok;
    int64_t n_swa;   // the layer's sliding window (0: global attention)
    const float* x;  // (n_tok, n_embd) the attention input (after the layer's input RMSNorm)
    const float* q;  // (n_tok, n_head, head_dim) post-RoPE queries, already scaled by attn_scale
    const float* k;  // (n_tok, n_head_kv, head_dim) post-RoPE keys
    const float* v;  // (n_tok, n_head_kv, head_dim_v)
    float* out;      // (n_tok, n_head, head_dim_v) the attention output, written when the override returns true
};

// A scored row compared with a reference row (sparse vs dense): log-probabilities of the target under both,
// KL(reference || this) over the whole vocabulary, and both argmaxes.
struct RowComparison {
    double logprob = 0, logprob_ref = 0, kl = 0;
    TokenId argmax = -1, argmax_ref = -1;
};

class Session {
public:
    // Error(InvalidArg) for a context over the model's training context or a bad parameter, Error(Oom) when the
    // KV cache cannot be allocated.
    Session(std::shared_ptr<const Model> model, const SessionParams& params);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    const Model& model() const { return *model_; }
    const SessionParams& params() const { return params_; }
    int32_t n_past() const { return n_past_; }
    // Bytes of the KV cache.
    uint64_t kv_bytes() const;

    // Forgets every position (the next token is at position 0).
    void reset();
    // Starts over with n positions of synthetic K/V (uniform, unit variance, from seed) in every layer's cache or
    // the offload host store, as if a prompt of n tokens had been evaluated: decode latency at long contexts can
    // then be measured where a CPU prefill would take too long. The text it continues is meaningless.
    // Error(InvalidArg) when n does not fit the context.
    void fill_synthetic_kv(int32_t n, uint64_t seed);
    // Rewinds to n positions (n <= n_past). Sliding-window rings only hold the last n_swa + n_ubatch positions,
    // so a rewind of more than n_ubatch positions is refused (Error(InvalidArg)) unless n == 0.
    void truncate(int32_t n);

    // Runs `tokens` at positions n_past() .. n_past() + n - 1, chunked by n_ubatch, and advances n_past.
    // For each index in out_rows (ascending, into tokens), the final hidden state after the output norm is written
    // to hidden_out (out_rows.size(), n_embd). Error(InvalidArg) when the tokens do not fit the context or an id is
    // outside the vocabulary.
    void eval(std::span<const TokenId> tokens, std::span<const int32_t> out_rows, float* hidden_out);

    // Logits (n_rows, n_vocab) of final hidden states (n_rows, n_embd), with the model's soft-capping.
    void logits(const float* hidden, int64_t n_rows, float* out);
    // Log-probability of targets[r] under the logits of hidden row r, for n_rows rows, without materializing all
    // logits at once (vocabulary tiles through sgemm, an online log-sum-exp per row). Accumulated in double.
    // With argmax_out, also the most likely token of each row (the first one on ties).
    void target_logprobs(const float* hidden, int64_t n_rows, const TokenId* targets, double* out,
                         TokenId* argmax_out = nullptr);

    // The same for rows of two runs at once (hidden and hidden_ref, (n_rows, n_embd) each): one pass over the
    // output matrix computes both distributions, so KL(ref || this) is exact without storing logits.
    void compare_rows(const float* hidden, const float* hidden_ref, int64_t n_rows, const TokenId* targets,
                      RowComparison* out);

    // Convenience for generation: eval(tokens) and the logits of the last one into logits (n_vocab).
    void eval_last(std::span<const TokenId> tokens, float* logits);

    // Calls `tap` for every layer of every later chunk, after RoPE and before attention (nullptr: none).
    void set_tap(std::function<void(const LayerTap&)> tap) { tap_ = std::move(tap); }

    // Lets `attend` replace the attention of any layer of later chunks (nullptr: none): called after RoPE (and after
    // the tap), it returns true when it wrote io.out, false to leave the layer to the session. The K/V of the chunk
    // are stored in the cache either way.
    void set_attention_override(std::function<bool(const LayerAttentionIo&)> attend) {
        attention_override_ = std::move(attend);
    }

    // The offload pipeline (nullptr unless params.offload.enabled).
    OffloadPipeline* offload() { return offload_.get(); }

private:
    void forward_chunk(const TokenId* tokens, int64_t n_tok, int64_t pos0);
    // Error(InvalidArg) when n tokens do not fit the context after n_past or an id is outside the vocabulary.
    void check_tokens(std::span<const TokenId> tokens) const;
    // Single-token steps run on the device (params.offload.device_forward) unless a tap or override watches.
    bool device_step() const { return device_forward_ && !tap_ && !attention_override_; }
    // Moves the sliding-window rings to the side that runs next (device: the device forward; else the CPU).
    void rings_to_device(bool device);
    struct LayerCache;

    std::shared_ptr<const Model> model_;
    SessionParams params_;
    int32_t n_past_ = 0;
    std::vector<LayerCache> cache_;
    std::vector<float> inv_freq_global_, inv_freq_local_;  // (head_dim / 2)
    std::vector<float> rope_cs_;  // (2, n_ubatch, head_dim): cos | sin per position, global then local base
    // Scratch, (n_ubatch, width) each.
    std::vector<float> x_, xn_, q_, k_, v_, attn_, o_, gate_, up_;
    std::vector<float> scores_;    // (n_threads, n_group * n_ctx)
    std::vector<float> partials_;  // (kPartials, n_group * (head_dim_v + 1)): split-K decode attention
    AttnChunkScratch chunk_attn_;  // blocked prefill attention
    std::vector<float> hidden_last_;  // (n_embd)
    std::vector<float> logits_tile_;  // (kLogitRows, kVocabTile)
    MatmulScratch mm_;
    int32_t n_threads_ = 1;
    std::unique_ptr<OffloadPipeline> offload_;
    std::unique_ptr<DeviceForward> device_forward_;  // after offload_: destroyed first, it uses the pipeline's device
    bool rings_on_device_ = false;                    // which side holds the sliding-window rings' latest K/V
    std::function<void(const LayerTap&)> tap_;
    std::function<bool(const LayerAttentionIo&)> attention_override_;
};

}  // namespace butler
