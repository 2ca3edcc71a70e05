// SPDX-License-Identifier: MIT
// The TokenButler selector: score = the predicted attention mass summed over the group's query heads,
// sum_h softmax(q'_h.k'/sqrt(d')) over the candidates, top picks outside sinks and
// the recent window (TOKENBUTLER.md §2.4). The importance keys k' = K . W_K are cached per (stored layer, KV head,
// token) and appended as tokens leave the recent window (before that the window covers them), so each key is
// projected once; the importance queries come in the request, made by the layer's producer.
#include <algorithm>
#include <cmath>
#include <limits>

#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "runtime/status.h"

namespace butler {

namespace {

class TokenButlerSelector final : public TokenSelector {
public:
    TokenButlerSelector(std::shared_ptr<const TokenButlerPredictor> p, int32_t n_layer, int32_t n_head_kv,
                        int64_t max_tok)
        : p_(std::move(p)), n_head_kv_(n_head_kv), max_tok_(max_tok), d_(p_->shape().d_dash) {
        keys_.resize(size_t(int64_t(n_layer) * n_head_kv * max_tok * d_));
        projected_.assign(size_t(n_layer) * size_t(n_head_kv), 0);
        score_.resize(size_t(max_tok));
        logit_.resize(size_t(max_tok));
        idx_.reserve(size_t(max_tok));
    }
    const char* name() const override { return "tokenbutler"; }
    bool needs_query() const override { return false; }
    const TokenButlerPredictor* predictor() const override { return p_.get(); }
    void reset(int64_t n_tok) override {
        for (int64_t& n : projected_) n = std::min(n, n_tok);
    }

    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        BUTLER_ASSERT(r.imp_q != nullptr, "tokenbutler selection without importance queries (layer {})", r.layer);
        const SinksWindow sw = clip_sinks_window(r);
        const int64_t hi     = r.n_tok - sw.window;
        const PagedKvView kv = r.store->view(r.layer);
        const float* wk      = p_->key_proj(r.model_layer, r.g);
        const int32_t hd     = kv.head_dim;
        float* keys          = keys_.data() + (int64_t(r.layer) * n_head_kv_ + r.g) * max_tok_ * d_;
        int64_t& done        = projected_[size_t(r.layer) * size_t(n_head_kv_) + size_t(r.g)];
        for (int64_t t = done; t < hi; ++t) {
            const uint8_t* k = kv.k_row(r.g, t);
            for (int32_t e = 0; e < d_; ++e) keys[t * d_ + e] = dot_kv_row(kv.type, k, wk + int64_t(e) * hd, hd);
        }
        done               = std::max(done, hi);
        // Predicted attention mass of each candidate, summed over the group's query heads (softmax over the
        // candidates: the sinks and window are kept anyway).
        const float scale = 1.0f / std::sqrt(float(d_));
        const int64_t n_cand = std::max<int64_t>(0, hi - sw.sinks);
        std::fill(score_.begin(), score_.begin() + hi, 0.0f);
        for (int32_t h = 0; h < r.n_group && n_cand > 0; ++h) {
            const float* q = r.imp_q + int64_t(h) * d_;
            for (int64_t t = sw.sinks; t < hi; ++t) {
                const float* k = keys + t * d_;
                float s        = 0;
                for (int32_t e = 0; e < d_; ++e) s += q[e] * k[e];
                logit_[size_t(t)] = s * scale;
            }
            add_softmax(logit_.data() + sw.sinks, n_cand, score_.data() + sw.sinks);
        }
        select_top(r, score_.data(), idx_, out);
    }

private:
    std::shared_ptr<const TokenButlerPredictor> p_;
    int32_t n_head_kv_;
    int64_t max_tok_;
    int32_t d_;
    std::vector<float> keys_;         // (n_layer, n_head_kv, max_tok, d')
    std::vector<int64_t> projected_;  // (n_layer, n_head_kv) tokens whose k' is cached
    std::vector<float> score_;        // (max_tok)
    std::vector<float> logit_;        // (max_tok) one head's predicted logits
    std::vector<int32_t> idx_;
};

}  // namespace

std::unique_ptr<TokenSelector> make_tokenbutler_selector(std::shared_ptr<const TokenButlerPredictor> predictor,
                                                         int32_t n_layer, int32_t n_head_kv, int64_t max_tok) {
    if (predictor->shape().n_head_kv != n_head_kv)
        fail(Status::Format, "the predictor has {} KV heads, the model {}", predictor->shape().n_head_kv, n_head_kv);
    return std::make_unique<TokenButlerSelector>(std::move(predictor), n_layer, n_head_kv, max_tok);
}

}  // namespace butler
