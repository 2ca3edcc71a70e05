// SPDX-License-Identifier: MIT
// The baseline selectors, each as its paper defines it, under DESIGN.md's budget (sinks + recent window + picks):
//   dense         every token (budget ignored).
//   oracle        top by the true attention of the current step: softmax(q.K) over the context, summed over the
//                 group's query heads (the ceiling for a mask the group shares; a max of raw logits over heads would
//                 follow whichever head has the widest logit range).
//   streamingllm  attention sinks + the most recent tokens, nothing else (Xiao et al. 2023): window = budget - sinks.
//   quest         Quest (Tang et al. 2024): pages scored by the upper bound sum_d max(q_d min_d, q_d max_d) of the
//                 page's per-dimension key bounds, max over the group's heads; whole pages taken in score order
//                 (the last one cut at the budget).
//   quest-tb      the TokenButler code's Quest (TOKENBUTLER.md §4): page score sum_d |q_d| max_d.
//   h2o           Heavy-Hitter Oracle (Zhang et al. 2023): accumulated attention probabilities per token; tokens
//                 leaving the recent window join the heavy set, and when it is over budget the token with the
//                 lowest accumulated score is evicted for good. Accumulation starts at the first sparse step with
//                 that step's full attention (the dense prefill does not report its attention matrix), then adds
//                 each step's probabilities over the attended set.
//   h2o-tb, snapkv-tb  the TokenButler code's variants (TOKENBUTLER.md §4), in selectors_tb.cpp.
//   snapkv        SnapKV (Li et al. 2024): once per sequence, the prompt's last kObsWindow queries (the observation
//                 window) vote for the keys before the window with their attention weights (softmax over each
//                 query's causal keys, summed over the window and the group's heads), the votes are smoothed by
//                 1-D pooling (the reference code's avgpool, kernel 5), and the top voted prefix tokens are kept;
//                 the observation window and every later token are kept as SnapKV keeps them (ranked above any
//                 voted token), all under the common budget.
#include <algorithm>
#include <cmath>
#include <limits>

#include "predictor/token_selector.h"
#include "runtime/status.h"

namespace butler {

SinksWindow clip_sinks_window(const SelectionRequest& r) {
    // The current token first (attention always sees itself), then the sinks, then the rest of the window.
    const int64_t budget = std::clamp<int64_t>(r.budget, 1, r.n_tok);
    const int64_t sinks  = std::clamp<int64_t>(r.sinks, 0, budget - 1);
    const int64_t window = std::clamp<int64_t>(r.window, 1, budget - sinks);
    return {sinks, window};
}

void expand_with_neighbours(const float* score, std::vector<int32_t>& idx, int64_t n_pick, int64_t hi,
                            std::vector<int32_t>& out) {
    n_pick = std::min<int64_t>(n_pick, int64_t(idx.size()));
    if (n_pick <= 0) return;
    auto better = [score](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
    // Candidates in score order (only as far as can be needed: n_pick of them at most).
    std::partial_sort(idx.begin(), idx.begin() + n_pick, idx.end(), better);
    const int64_t n_top = (n_pick + 1) / 2;
    const size_t first  = out.size();
    for (int64_t i = 0; i < n_top; ++i) out.push_back(idx[size_t(i)]);
    std::sort(out.begin() + int64_t(first), out.end());
    // Each run of consecutive ids [a, b] (length c = b - a + 1) brings [b + 1, b + c] (clamped below hi).
    const size_t n_sorted = out.size();
    for (size_t i = first; i < n_sorted;) {
        size_t j = i;
        while (j + 1 < n_sorted && out[j + 1] == out[j] + 1) ++j;
        const int64_t c = int64_t(j - i + 1);
        for (int64_t t = int64_t(out[j]) + 1; t <= int64_t(out[j]) + c && t < hi; ++t) out.push_back(int32_t(t));
        i = j + 1;
    }
    std::sort(out.begin() + int64_t(first), out.end());
    out.erase(std::unique(out.begin() + int64_t(first), out.end()), out.end());
    if (int64_t(out.size() - first) > n_pick) out.resize(first + size_t(n_pick));
    // Room left (runs clamped at hi, or merged into each other): the next best candidates not yet in.
    for (int64_t i = n_top; i < n_pick && int64_t(out.size() - first) < n_pick; ++i) {
        const int32_t t = idx[size_t(i)];
        if (!std::binary_search(out.begin() + int64_t(first), out.end(), t))
            out.insert(std::upper_bound(out.begin() + int64_t(first), out.end(), t), t);
    }
    // Still short only when the remaining candidates were all neighbours: take further ones in score order.
    if (int64_t(out.size() - first) < n_pick) {
        std::sort(idx.begin() + n_pick, idx.end(), better);
        for (size_t i = size_t(n_pick); i < idx.size() && int64_t(out.size() - first) < n_pick; ++i) {
            const int32_t t = idx[i];
            if (!std::binary_search(out.begin() + int64_t(first), out.end(), t))
                out.insert(std::upper_bound(out.begin() + int64_t(first), out.end(), t), t);
        }
    }
}

int64_t pick_count(const SelectionRequest& r, const SinksWindow& sw) {
    const int64_t lo = sw.sinks, hi = r.n_tok - sw.window;
    return std::clamp<int64_t>(std::min(r.budget, r.n_tok) - sw.sinks - sw.window, 0, std::max<int64_t>(0, hi - lo));
}

void select_top(const SelectionRequest& r, const float* score, std::vector<int32_t>& idx, std::vector<int32_t>& out) {
    out.clear();
    const SinksWindow sw = clip_sinks_window(r);
    const int64_t lo = sw.sinks, hi = r.n_tok - sw.window;
    const int64_t n_pick = pick_count(r, sw);
    for (int64_t t = 0; t < lo; ++t) out.push_back(int32_t(t));
    if (n_pick > 0) {
        if (r.neighbours) {
            idx.clear();
            for (int64_t t = lo; t < hi; ++t) idx.push_back(int32_t(t));
            expand_with_neighbours(score, idx, n_pick, hi, out);
        } else {
            idx.resize(size_t(hi - lo));  // within the reserved capacity
            const size_t first = out.size();
            out.resize(first + size_t(n_pick));
            top_k_ids(score, lo, hi, n_pick, out.data() + first, idx.data());
        }
    }
    for (int64_t t = hi; t < r.n_tok; ++t) out.push_back(int32_t(t));
}

namespace {

class DenseSelector final : public TokenSelector {
public:
    const char* name() const override { return "dense"; }
    bool needs_query() const override { return false; }
    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        out.clear();
        for (int64_t t = 0; t < r.n_tok; ++t) out.push_back(int32_t(t));
    }
};

class StreamingLlmSelector final : public TokenSelector {
public:
    const char* name() const override { return "streamingllm"; }
    bool needs_query() const override { return false; }
    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        SelectionRequest all_recent = r;
        all_recent.window           = r.budget;  // the whole budget after the sinks is the recent window
        const SinksWindow sw        = clip_sinks_window(all_recent);
        out.clear();
        for (int64_t t = 0; t < sw.sinks; ++t) out.push_back(int32_t(t));
        for (int64_t t = r.n_tok - sw.window; t < r.n_tok; ++t) out.push_back(int32_t(t));
    }
};

class OracleSelector final : public TokenSelector {
public:
    explicit OracleSelector(int64_t max_tok) : score_(size_t(max_tok)), logit_(size_t(max_tok)) {
        idx_.reserve(size_t(max_tok));
    }
    const char* name() const override { return "oracle"; }
    bool needs_query() const override { return true; }
    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        const PagedKvView kv = r.store->view(r.layer);
        std::fill(score_.begin(), score_.begin() + r.n_tok, 0.0f);
        for (int32_t h = 0; h < r.n_group; ++h) {
            const float* q = r.q + int64_t(h) * kv.head_dim;
#pragma omp parallel for schedule(static) if (r.n_tok > 4096)
            for (int64_t t = 0; t < r.n_tok; ++t) logit_[size_t(t)] = dot_kv_row(kv.type, kv.k_row(r.g, t), q, kv.head_dim);
            add_softmax(logit_.data(), r.n_tok, score_.data());
        }
        select_top(r, score_.data(), idx_, out);
    }

private:
    std::vector<float> score_, logit_;
    std::vector<int32_t> idx_;
};

class QuestSelector final : public TokenSelector {
public:
    QuestSelector(int64_t max_tok, bool tb) : tb_(tb), score_(size_t(max_tok)) { idx_.reserve(size_t(max_tok)); }
    const char* name() const override { return tb_ ? "quest-tb" : "quest"; }
    bool needs_query() const override { return true; }
    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        const int32_t page_tok = r.store->shape().page_tok, hd = r.store->shape().head_dim;
        const int64_t n_pages = (r.n_tok + page_tok - 1) / page_tok;
        for (int64_t p = 0; p < n_pages; ++p) {
            const float* mn = r.store->key_min(r.layer, r.g, p);
            const float* mx = r.store->key_max(r.layer, r.g, p);
            float best      = -std::numeric_limits<float>::infinity();
            for (int32_t h = 0; h < r.n_group; ++h) {
                const float* q = r.q + h * hd;
                float s        = 0;
                if (tb_)
                    for (int32_t d = 0; d < hd; ++d) s += std::fabs(q[d]) * mx[d];
                else
                    for (int32_t d = 0; d < hd; ++d) s += std::max(q[d] * mn[d], q[d] * mx[d]);
                best = std::max(best, s);
            }
            // Every token of a page carries the page's score, so the top-n by token takes whole pages in order.
            const int64_t end = std::min(r.n_tok, (p + 1) * page_tok);
            for (int64_t t = p * page_tok; t < end; ++t) score_[size_t(t)] = best;
        }
        select_top(r, score_.data(), idx_, out);
    }

private:
    bool tb_;
    std::vector<float> score_;
    std::vector<int32_t> idx_;
};

class H2oSelector final : public TokenSelector {
public:
    H2oSelector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok)
        : n_head_kv_(n_head_kv),
          max_tok_(max_tok),
          acc_(size_t(int64_t(n_layer) * n_head_kv * max_tok)),
          heavy_(acc_.size()),
          state_(size_t(n_layer * n_head_kv)),
          prob_(size_t(max_tok)) {
        idx_.reserve(size_t(max_tok));
    }
    const char* name() const override { return "h2o"; }
    // The heavy set is fixed before the step's query, but select() also accumulates this step's attention.
    bool needs_query() const override { return true; }
    void reset(int64_t) override {
        for (State& s : state_) s = State{};
    }

    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        const int64_t pool   = int64_t(r.layer) * n_head_kv_ + r.g;
        float* acc           = acc_.data() + pool * max_tok_;
        uint8_t* heavy       = heavy_.data() + pool * max_tok_;
        State& st            = state_[size_t(pool)];
        const SinksWindow sw = clip_sinks_window(r);
        const int64_t lo = sw.sinks, hi = r.n_tok - sw.window;
        const int64_t n_heavy = std::clamp<int64_t>(std::min(r.budget, r.n_tok) - sw.sinks - sw.window, 0, hi - lo);
        const PagedKvView kv  = r.store->view(r.layer);
        if (!st.initialized) {
            // The first sparse step: accumulated scores start from this step's full attention.
            std::fill(acc, acc + r.n_tok, 0.0f);
            std::fill(heavy, heavy + max_tok_, uint8_t(0));
            out.clear();
            for (int64_t t = 0; t < r.n_tok; ++t) out.push_back(int32_t(t));
            accumulate(r, kv, out, acc);
            select_top(r, acc, idx_, out);  // sinks + window + the n_heavy highest accumulated
            for (int32_t t : out)
                if (t >= lo && t < hi) heavy[t] = 1;
            st.n_heavy     = n_heavy;
            st.initialized = true;
        } else {
            // Tokens that left the recent window since the last step become heavy-hitter candidates.
            for (int64_t t = std::max(lo, st.hi); t < hi; ++t) {
                heavy[t] = 1;
                ++st.n_heavy;
            }
            while (st.n_heavy > n_heavy) {  // greedy eviction of the lowest accumulated score, for good
                int64_t victim = -1;
                for (int64_t t = lo; t < hi; ++t)
                    if (heavy[t] && (victim < 0 || acc[t] < acc[victim])) victim = t;
                heavy[victim] = 0;
                --st.n_heavy;
            }
            out.clear();
            for (int64_t t = 0; t < lo; ++t) out.push_back(int32_t(t));
            for (int64_t t = lo; t < hi; ++t)
                if (heavy[t]) out.push_back(int32_t(t));
            for (int64_t t = hi; t < r.n_tok; ++t) out.push_back(int32_t(t));
            acc[r.n_tok - 1] = 0;  // the current token has no score yet
            accumulate(r, kv, out, acc);
        }
        st.hi = hi;
    }

private:
    struct State {
        bool initialized = false;
        int64_t hi       = 0;  // the window's first token at the last step
        int64_t n_heavy  = 0;  // members of the heavy set
    };

    // acc[t] += sum over the group's heads of softmax_h(t) over the set.
    void accumulate(const SelectionRequest& r, const PagedKvView& kv, const std::vector<int32_t>& set, float* acc) {
        const int32_t hd = kv.head_dim;
        for (int32_t h = 0; h < r.n_group; ++h) {
            float m = -std::numeric_limits<float>::infinity();
            for (size_t j = 0; j < set.size(); ++j) {
                prob_[j] = dot_kv_row(kv.type, kv.k_row(r.g, set[j]), r.q + h * hd, hd);
                m        = std::max(m, prob_[j]);
            }
            double sum = 0;
            for (size_t j = 0; j < set.size(); ++j) sum += (prob_[j] = std::exp(prob_[j] - m));
            for (size_t j = 0; j < set.size(); ++j) acc[set[j]] += float(prob_[j] / sum);
        }
    }

    int32_t n_head_kv_;
    int64_t max_tok_;
    std::vector<float> acc_;      // (n_layer, n_head_kv, max_tok) accumulated attention
    std::vector<uint8_t> heavy_;  // (n_layer, n_head_kv, max_tok) member of the heavy set
    std::vector<State> state_;    // (n_layer, n_head_kv)
    std::vector<float> prob_;     // (max_tok) scratch
    std::vector<int32_t> idx_;
};

class SnapKvSelector final : public TokenSelector {
public:
    static constexpr int32_t kKernel = 5;
    SnapKvSelector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok)
        : n_head_kv_(n_head_kv),
          max_tok_(max_tok),
          score_(size_t(int64_t(n_layer) * n_head_kv * max_tok)),
          ready_(size_t(n_layer * n_head_kv), 0),
          vote_(size_t(max_tok)),
          prob_(size_t(max_tok)) {
        idx_.reserve(size_t(max_tok));
    }
    const char* name() const override { return "snapkv"; }
    bool needs_query() const override { return false; }  // decided once from the prompt's queries
    void reset(int64_t) override { std::fill(ready_.begin(), ready_.end(), uint8_t(0)); }

    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        const int64_t pool = int64_t(r.layer) * n_head_kv_ + r.g;
        float* score       = score_.data() + pool * max_tok_;
        if (!ready_[size_t(pool)]) {
            vote(r, score);
            ready_[size_t(pool)] = 1;
        }
        // Tokens after the voted prefix are kept as SnapKV keeps them (the observation window, then generation).
        for (int64_t t = std::max<int64_t>(0, r.n_obs > 0 ? r.obs_pos0 : 0); t < r.n_tok; ++t)
            if (t >= voted_end_) score[t] = std::numeric_limits<float>::infinity();
        select_top(r, score, idx_, out);
    }

private:
    void vote(const SelectionRequest& r, float* score) {
        const int64_t prefix = r.n_obs > 0 ? r.obs_pos0 : r.n_tok;
        voted_end_           = prefix;
        std::fill(vote_.begin(), vote_.begin() + prefix, 0.0f);
        const PagedKvView kv = r.store->view(r.layer);
        const int32_t hd     = kv.head_dim;
        for (int32_t o = 0; o < r.n_obs; ++o) {
            const int64_t p = r.obs_pos0 + o;  // this query's causal keys are [0, p]
            for (int32_t h = 0; h < r.n_group; ++h) {
                const float* q = r.obs_q + int64_t(o) * r.n_head * hd + (int64_t(r.g) * r.n_group + h) * hd;
                float m        = -std::numeric_limits<float>::infinity();
                for (int64_t t = 0; t <= p; ++t)
                    m = std::max(m, prob_[size_t(t)] = dot_kv_row(kv.type, kv.k_row(r.g, t), q, hd));
                double sum = 0;
                for (int64_t t = 0; t <= p; ++t) sum += (prob_[size_t(t)] = std::exp(prob_[size_t(t)] - m));
                for (int64_t t = 0; t < prefix; ++t) vote_[size_t(t)] += float(prob_[size_t(t)] / sum);
            }
        }
        // avg_pool1d(kernel 5, stride 1, padding 2) with zero padding counted, as torch's default does.
        for (int64_t t = 0; t < prefix; ++t) {
            float s = 0;
            for (int64_t j = t - kKernel / 2; j <= t + kKernel / 2; ++j)
                if (j >= 0 && j < prefix) s += vote_[size_t(j)];
            score[t] = s / float(kKernel);
        }
    }

    int32_t n_head_kv_;
    int64_t max_tok_;
    std::vector<float> score_;    // (n_layer, n_head_kv, max_tok) pooled votes
    std::vector<uint8_t> ready_;  // (n_layer, n_head_kv)
    std::vector<float> vote_, prob_;
    std::vector<int32_t> idx_;
    int64_t voted_end_ = 0;
};

}  // namespace

const char* selector_names() {
    return "dense, oracle, streamingllm, h2o, h2o-tb, snapkv, snapkv-tb, quest, quest-tb, tokenbutler[:PATH]";
}

std::unique_ptr<TokenSelector> make_selector(const std::string& name, int32_t n_layer, int32_t n_head_kv,
                                             int64_t max_tok, int32_t head_dim,
                                             std::shared_ptr<const TokenButlerPredictor> predictor, int32_t n_group) {
    if (name == "tokenbutler" || name.rfind("tokenbutler:", 0) == 0) {
        if (!predictor) fail(Status::Usage, "selector '{}' needs a loaded predictor", name);
        return make_tokenbutler_selector(std::move(predictor), n_layer, n_head_kv, max_tok);
    }
    if (name == "dense") return std::make_unique<DenseSelector>();
    if (name == "streamingllm") return std::make_unique<StreamingLlmSelector>();
    if (name == "oracle") return std::make_unique<OracleSelector>(max_tok);
    if (name == "quest") return std::make_unique<QuestSelector>(max_tok, false);
    if (name == "quest-tb") return std::make_unique<QuestSelector>(max_tok, true);
    if (name == "h2o") return std::make_unique<H2oSelector>(n_layer, n_head_kv, max_tok);
    if (name == "snapkv") return std::make_unique<SnapKvSelector>(n_layer, n_head_kv, max_tok);
    if (name == "h2o-tb") return make_h2o_tb_selector(n_layer, n_head_kv, max_tok);
    if (name == "snapkv-tb") return make_snapkv_tb_selector(n_layer, n_head_kv, max_tok, head_dim, n_group);
    fail(Status::Usage, "unknown selector '{}' (known: {})", name, selector_names());
}

}  // namespace butler
