// SPDX-License-Identifier: MIT
// The TokenButler selector: score = the predicted attention mass summed over the group's query heads,
// sum_h softmax(q'_h.k'/sqrt(d')) over the candidates, top picks outside sinks and
// the recent window (TOKENBUTLER.md §2.4). The importance keys k' = K . W_K are cached per (stored layer, KV head,
// token) and appended as tokens leave the recent window (before that the window covers them), so each key is
// projected once; the importance queries come in the request, made by the layer's producer. The keys are kept in
// IEEE half (relative rounding 2^-11, far below what separates picks; the scores are f32 products): n_stored x
// n_head_kv x n_ctx x d' values are 1 GiB for Llama-3.1-8B at 128K (2 GiB in f32), device memory that a small GPU
// needs for the K/V rows it streams.
// Device path (bind_device): keys are still projected on the host (one d' x head_dim product per new token) and
// mirrored to device memory as they are made; scoring and top-k run there (KernelTable imp_score, topk), and only the
// picked ids come back (with their scores for neighbour fetching), so a step's selection costs the host O(new
// tokens + budget) instead of O(context).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "cpu_kernels/select.h"
#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

namespace butler {

namespace {

constexpr float kHalfMax = 65504.0f;  // the largest finite IEEE half

class TokenButlerSelector final : public TokenSelector {
public:
    TokenButlerSelector(std::shared_ptr<const TokenButlerPredictor> p, int32_t n_layer, int32_t n_head_kv,
                        int64_t max_tok)
        : p_(std::move(p)), n_head_kv_(n_head_kv), max_tok_(max_tok), d_(p_->shape().d_dash) {
        keys_.resize(size_t(int64_t(n_layer) * n_head_kv * max_tok * d_));
        keys_host_ = keys_.data();
        projected_.assign(size_t(n_layer) * size_t(n_head_kv), 0);
        score_.resize(size_t(max_tok));
        logit_.resize(size_t(max_tok));
        idx_.reserve(size_t(max_tok));
    }
    ~TokenButlerSelector() override {
        if (stream_) stream_->synchronize();
    }
    const char* name() const override { return "tokenbutler"; }
    bool needs_query() const override { return false; }
    const TokenButlerPredictor* predictor() const override { return p_.get(); }
    void reset(int64_t n_tok) override {
        for (int64_t& n : projected_) n = std::min(n, n_tok);
        for (int64_t& n : uploaded_) n = std::min(n, n_tok);
    }

    bool bind_device(Device& device) override;

    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        BUTLER_ASSERT(r.imp_q != nullptr, "tokenbutler selection without importance queries (layer {})", r.layer);
        const SinksWindow sw = clip_sinks_window(r);
        const int64_t hi     = r.n_tok - sw.window;
        const PagedKvView kv = r.store->view(r.layer);
        const float* wk      = p_->key_proj(r.model_layer, r.g);
        const int32_t hd     = kv.head_dim;
        const int64_t head   = int64_t(r.layer) * n_head_kv_ + r.g;
        uint16_t* keys       = keys_host_ + head * max_tok_ * d_;
        int64_t& done        = projected_[size_t(head)];
        for (int64_t t = done; t < hi; ++t) {
            const uint8_t* k = kv.k_row(r.g, t);
            for (int32_t e = 0; e < d_; ++e) {
                const float v    = dot_kv_row(kv.type, k, wk + int64_t(e) * hd, hd);
                keys[t * d_ + e] = f32_to_f16(std::clamp(v, -kHalfMax, kHalfMax));  // no inf into the softmax
            }
        }
        done = std::max(done, hi);
        // Predicted attention mass of each candidate, summed over the group's query heads (softmax over the
        // candidates: the sinks and window are kept anyway).
        const float scale = 1.0f / std::sqrt(float(d_));
        if (device_ == nullptr) {
            BUTLER_ASSERT(!r.imp_q_on_device, "importance queries in device memory for a selector on the host");
            group_softmax_mass(keys, r.imp_q, r.n_group, d_, sw.sinks, hi, scale, score_.data(), logit_.data());
            select_top(r, score_.data(), idx_, out);
            return;
        }
        select_on_device(r, sw, head, keys, scale, out);
    }

private:
    void select_on_device(const SelectionRequest& r, const SinksWindow& sw, int64_t head, const uint16_t* keys,
                          float scale, std::vector<int32_t>& out);

    std::shared_ptr<const TokenButlerPredictor> p_;
    int32_t n_head_kv_;
    int64_t max_tok_;
    int32_t d_;
    std::vector<uint16_t> keys_;      // (n_layer, n_head_kv, max_tok, d') IEEE half, until bind_device moves them to
                                      // pinned memory
    uint16_t* keys_host_ = nullptr;   // keys_ or keys_pinned_
    std::vector<int64_t> projected_;  // (n_layer, n_head_kv) tokens whose k' is cached
    std::vector<float> score_;        // (max_tok) the scores; on the device path, the picked ones at their ids
    std::vector<float> logit_;        // (max_tok) one head's predicted logits (host path only)
    std::vector<int32_t> idx_;
    // The device path (bind_device): the keys mirrored in device memory, the tokens mirrored so far per (layer, KV
    // head), one group's importance queries and the picks in pinned memory, the scores and the kernels' scratch in
    // device memory; the argument structs live here until the stream ran them.
    Device* device_ = nullptr;
    std::unique_ptr<Stream> stream_;
    Buffer keys_pinned_, keys_dev_, q_pinned_, ids_pinned_, picked_pinned_, score_dev_, scratch_dev_;
    std::vector<int64_t> uploaded_;
    ImpScoreArgs score_args_{};
    TopkArgs topk_args_{};
};

bool TokenButlerSelector::bind_device(Device& device) {
    if (device_ == &device) return true;
    BUTLER_ASSERT(device_ == nullptr, "a tokenbutler selector bound to a second device");
    const int32_t n_group = p_->shape().n_head / std::max(1, n_head_kv_);
    const size_t key_bytes = sizeof(uint16_t) * keys_.size();
    Buffer keys_pinned = device.alloc(key_bytes, MemKind::PinnedHost);
    Buffer keys_dev    = device.alloc(key_bytes, MemKind::Device);
    Buffer q_pinned    = device.alloc(sizeof(float) * size_t(n_group * d_), MemKind::PinnedHost);
    Buffer ids_pinned  = device.alloc(sizeof(int32_t) * size_t(max_tok_), MemKind::PinnedHost);
    Buffer picked      = device.alloc(sizeof(float) * size_t(max_tok_), MemKind::PinnedHost);
    Buffer score_dev   = device.alloc(sizeof(float) * size_t(max_tok_), MemKind::Device);
    Buffer scratch     = device.alloc(std::max(imp_score_scratch_bytes(max_tok_, n_group), topk_scratch_bytes(max_tok_)),
                                      MemKind::Device);
    std::copy(keys_.begin(), keys_.end(), keys_pinned.as<uint16_t>());
    stream_       = device.create_stream();
    keys_pinned_  = std::move(keys_pinned);
    keys_dev_     = std::move(keys_dev);
    q_pinned_     = std::move(q_pinned);
    ids_pinned_   = std::move(ids_pinned);
    picked_pinned_ = std::move(picked);
    score_dev_    = std::move(score_dev);
    scratch_dev_  = std::move(scratch);
    keys_host_    = keys_pinned_.as<uint16_t>();
    std::vector<uint16_t>().swap(keys_);
    std::vector<float>().swap(logit_);
    uploaded_.assign(projected_.size(), 0);
    device_ = &device;
    return true;
}

void TokenButlerSelector::select_on_device(const SelectionRequest& r, const SinksWindow& sw, int64_t head,
                                           const uint16_t* keys, float scale, std::vector<int32_t>& out) {
    const int64_t lo = sw.sinks, hi = r.n_tok - sw.window;
    const int64_t n_pick = pick_count(r, sw);
    const KernelTable& kt = device_->kernels();
    uint16_t* keys_dev = keys_dev_.as<uint16_t>() + head * max_tok_ * d_;
    // The keys projected since the last upload (the current one is the only new row on most steps).
    int64_t& up = uploaded_[size_t(head)];
    if (hi > up) {
        stream_->copy(keys_dev + up * d_, keys + up * d_, sizeof(uint16_t) * size_t((hi - up) * d_));
        up = hi;
    }
    out.clear();
    for (int64_t t = 0; t < lo; ++t) out.push_back(int32_t(t));
    if (n_pick > 0 && n_pick < hi - lo) {
        const float* q = r.imp_q;
        if (!r.imp_q_on_device) {
            std::copy(r.imp_q, r.imp_q + int64_t(r.n_group) * d_, q_pinned_.as<float>());
            q = q_pinned_.as<float>();
        }
        score_args_ = ImpScoreArgs{keys_dev, q, r.n_group, d_, lo, hi, scale, score_dev_.as<float>(),
                                   scratch_dev_.data()};
        kt.imp_score(*stream_, &score_args_);
        float* picked_scores = r.neighbours ? picked_pinned_.as<float>() : nullptr;
        topk_args_ = TopkArgs{score_dev_.as<float>(), lo,           hi, n_pick, ids_pinned_.as<int32_t>(),
                              picked_scores,          scratch_dev_.data()};
        kt.topk(*stream_, &topk_args_);
        stream_->synchronize();
        const int32_t* ids = ids_pinned_.as<int32_t>();
        if (!r.neighbours) {
            out.insert(out.end(), ids, ids + n_pick);
        } else {
            // Neighbour fetching (the best half, its runs, then the rest in score order) reads the scores of the
            // n_pick best only, placed at their ids: the fill from the best n_pick always reaches n_pick (every one
            // of them is either added or already in as a neighbour, and the neighbours already in count too).
            float* score = score_.data();
            idx_.clear();
            for (int64_t i = 0; i < n_pick; ++i) {
                score[ids[i]] = picked_scores[i];
                idx_.push_back(ids[i]);
            }
            const size_t first = out.size();
            expand_with_neighbours(score, idx_, n_pick, hi, out);
            BUTLER_ASSERT(int64_t(out.size() - first) == n_pick, "neighbour fetching picked {} of {}",
                          out.size() - first, n_pick);
        }
    } else {
        stream_->synchronize();  // the key upload reads keys this call may rewrite after a reset
        for (int64_t t = lo; t < lo + n_pick; ++t) out.push_back(int32_t(t));
    }
    for (int64_t t = hi; t < r.n_tok; ++t) out.push_back(int32_t(t));
}

}  // namespace

std::unique_ptr<TokenSelector> make_tokenbutler_selector(std::shared_ptr<const TokenButlerPredictor> predictor,
                                                         int32_t n_layer, int32_t n_head_kv, int64_t max_tok) {
    if (predictor->shape().n_head_kv != n_head_kv)
        fail(Status::Format, "the predictor has {} KV heads, the model {}", predictor->shape().n_head_kv, n_head_kv);
    return std::make_unique<TokenButlerSelector>(std::move(predictor), n_layer, n_head_kv, max_tok);
}

}  // namespace butler
