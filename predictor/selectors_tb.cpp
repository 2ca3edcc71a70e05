// SPDX-License-Identifier: MIT
// The TokenButler code's H2O and SnapKV variants (TOKENBUTLER.md §4) in the decode view, under DESIGN.md's budget
// (sinks + recent window + picks). Both keep a greedy set of picks per (layer, KV head) that "continues at decode":
// a token leaving the recent window joins the set while it has room, else replaces the member of lowest importance
// when its own importance is higher; evicted tokens do not return. On the first sparse step (no history after a dense
// prefill) the set is filled with the candidates of highest importance, and whenever the budget grew faster than
// tokens left the window it is topped up the same way.
//   h2o-tb     importance = the current step's pre-softmax logit q.k, max over the group's query heads.
//   snapkv-tb  importance = max_pool1d(kernel 7, stride 1, pad 3) over keys of the sum of the softmax rows of the
//              last 32 queries (summed over the group's heads): the prompt's observation queries first, then each
//              step's own query. The running sum subtracts a query's row when it leaves the 32, recomputing it from
//              the stored query over the keys it saw. With a prediction interval > 1 only the steps that select
//              contribute rows.
#include <algorithm>
#include <cmath>
#include <limits>

#include "predictor/token_selector.h"
#include "runtime/status.h"

namespace butler {

namespace {

class GreedyTbSelector : public TokenSelector {
public:
    GreedyTbSelector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok)
        : n_head_kv_(n_head_kv),
          max_tok_(max_tok),
          members_(size_t(int64_t(n_layer) * n_head_kv * max_tok)),
          state_(size_t(n_layer * n_head_kv)),
          importance_(size_t(max_tok)),
          member_(size_t(max_tok)) {
        idx_.reserve(size_t(max_tok));
    }
    bool needs_query() const override { return true; }
    void reset(int64_t) override {
        for (State& s : state_) s = State{};
    }

    void select(const SelectionRequest& r, std::vector<int32_t>& out) override {
        const int64_t pool   = int64_t(r.layer) * n_head_kv_ + r.g;
        State& st            = state_[size_t(pool)];
        int32_t* set         = members_.data() + pool * max_tok_;
        const SinksWindow sw = clip_sinks_window(r);
        const int64_t lo = sw.sinks, hi = r.n_tok - sw.window;
        const int64_t n_pick = std::clamp<int64_t>(std::min(r.budget, r.n_tok) - sw.sinks - sw.window, 0, hi - lo);
        score(r, importance_.data());
        const float* imp = importance_.data();
        if (!st.initialized) {
            select_top(r, imp, idx_, out);  // sinks + window + the n_pick most important candidates
            st.size = 0;
            for (int32_t t : out)
                if (t >= lo && t < hi) set[st.size++] = t;
            st.initialized = true;
        } else {
            for (int64_t t = std::max(lo, st.hi); t < hi; ++t) {  // tokens that left the window since the last step
                if (st.size < n_pick) {
                    set[st.size++] = int32_t(t);
                    continue;
                }
                if (st.size == 0) continue;
                int64_t victim = 0;
                for (int64_t a = 1; a < st.size; ++a)
                    if (imp[set[a]] < imp[set[victim]]) victim = a;
                if (imp[t] > imp[set[victim]]) set[victim] = int32_t(t);
            }
            if (st.size < n_pick) {  // a budget that grew faster than tokens left the window: top up by importance
                std::fill(member_.begin(), member_.begin() + hi, uint8_t(0));
                for (int64_t a = 0; a < st.size; ++a) member_[size_t(set[a])] = 1;
                idx_.clear();
                for (int64_t t = lo; t < hi; ++t)
                    if (!member_[size_t(t)]) idx_.push_back(int32_t(t));
                const int64_t need = std::min<int64_t>(n_pick - st.size, int64_t(idx_.size()));
                std::partial_sort(idx_.begin(), idx_.begin() + need, idx_.end(), [imp](int32_t a, int32_t b) {
                    return imp[a] > imp[b] || (imp[a] == imp[b] && a < b);
                });
                for (int64_t a = 0; a < need; ++a) set[st.size++] = idx_[size_t(a)];
            }
            while (st.size > n_pick) {  // a smaller budget than before: drop the least important
                int64_t victim = 0;
                for (int64_t a = 1; a < st.size; ++a)
                    if (imp[set[a]] < imp[set[victim]]) victim = a;
                set[victim] = set[--st.size];
            }
            out.clear();
            for (int64_t t = 0; t < lo; ++t) out.push_back(int32_t(t));
            const size_t first = out.size();
            out.insert(out.end(), set, set + st.size);
            std::sort(out.begin() + int64_t(first), out.end());
            for (int64_t t = hi; t < r.n_tok; ++t) out.push_back(int32_t(t));
        }
        st.hi = hi;
    }

protected:
    // The importance of every token [0, n_tok) at this step.
    virtual void score(const SelectionRequest& r, float* imp) = 0;

    int32_t n_head_kv_;
    int64_t max_tok_;

private:
    struct State {
        bool initialized = false;
        int64_t hi       = 0;  // the window's first token at the last step
        int64_t size     = 0;  // members of the set
    };
    std::vector<int32_t> members_;  // (n_layer, n_head_kv, max_tok) the set, unordered
    std::vector<State> state_;      // (n_layer, n_head_kv)
    std::vector<float> importance_; // (max_tok)
    std::vector<uint8_t> member_;   // (max_tok) scratch
    std::vector<int32_t> idx_;
};

class H2oTbSelector final : public GreedyTbSelector {
public:
    using GreedyTbSelector::GreedyTbSelector;
    const char* name() const override { return "h2o-tb"; }

private:
    void score(const SelectionRequest& r, float* imp) override {
        const PagedKvView kv = r.store->view(r.layer);
        for (int64_t t = 0; t < r.n_tok; ++t) {
            const uint8_t* k = kv.k_row(r.g, t);
            float best       = -std::numeric_limits<float>::infinity();
            for (int32_t h = 0; h < r.n_group; ++h)
                best = std::max(best, dot_kv_row(kv.type, k, r.q + int64_t(h) * kv.head_dim, kv.head_dim));
            imp[t] = best;
        }
    }
};

class SnapKvTbSelector final : public GreedyTbSelector {
public:
    static constexpr int32_t kWindow = 32;
    SnapKvTbSelector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok, int32_t head_dim, int32_t n_group)
        : GreedyTbSelector(n_layer, n_head_kv, max_tok),
          hd_(head_dim),
          n_group_(n_group),
          sum_(size_t(int64_t(n_layer) * n_head_kv * max_tok)),
          ring_q_(size_t(int64_t(n_layer) * n_head_kv * kWindow * n_group * head_dim)),
          ring_n_(size_t(int64_t(n_layer) * n_head_kv * kWindow)),
          count_(size_t(n_layer * n_head_kv), 0),
          prob_(size_t(max_tok)) {}
    const char* name() const override { return "snapkv-tb"; }
    void reset(int64_t n) override {
        GreedyTbSelector::reset(n);
        std::fill(count_.begin(), count_.end(), int64_t(0));
    }

private:
    void score(const SelectionRequest& r, float* imp) override {
        if (r.n_group != n_group_ || r.store->view(r.layer).head_dim != hd_)
            fail(Status::Internal, "snapkv-tb made for {} x {} queries, asked for {} x {}", n_group_, hd_, r.n_group,
                 r.store->view(r.layer).head_dim);
        const int64_t pool = int64_t(r.layer) * n_head_kv_ + r.g;
        float* sum         = sum_.data() + pool * max_tok_;
        int64_t& count     = count_[size_t(pool)];
        if (count == 0) {
            std::fill(sum, sum + max_tok_, 0.0f);
            // The prompt's observation queries (the last kWindow of them) open the window.
            const int32_t skip = std::max(0, r.n_obs - kWindow);
            for (int32_t o = skip; o < r.n_obs; ++o) {
                const float* q = r.obs_q + int64_t(o) * r.n_head * hd_ + int64_t(r.g) * n_group_ * hd_;
                push(r, pool, q, r.obs_pos0 + o + 1, sum, count);
            }
        }
        push(r, pool, r.q, r.n_tok, sum, count);
        // max_pool1d(kernel 7, stride 1, padding 3) over [0, n_tok)
        for (int64_t t = 0; t < r.n_tok; ++t) {
            float m = -std::numeric_limits<float>::infinity();
            for (int64_t u = std::max<int64_t>(0, t - 3); u <= std::min<int64_t>(r.n_tok - 1, t + 3); ++u)
                m = std::max(m, sum[u]);
            imp[t] = m;
        }
    }

    // Adds the group-summed softmax row of query q (n_group, hd) over keys [0, n_keys) to sum and stores q in the
    // ring; once the ring is full, the row of the query it replaces is subtracted first.
    void push(const SelectionRequest& r, int64_t pool, const float* q, int64_t n_keys, float* sum, int64_t& count) {
        const int64_t slot = count % kWindow;
        float* stored      = ring_q_.data() + (pool * kWindow + slot) * n_group_ * hd_;
        int64_t& stored_n  = ring_n_[size_t(pool * kWindow + slot)];
        if (count >= kWindow) add_row(r, stored, stored_n, -1.0f, sum);
        std::copy(q, q + int64_t(n_group_) * hd_, stored);
        stored_n = n_keys;
        add_row(r, stored, n_keys, 1.0f, sum);
        ++count;
    }

    void add_row(const SelectionRequest& r, const float* q, int64_t n_keys, float sign, float* sum) {
        const PagedKvView kv = r.store->view(r.layer);
        for (int32_t h = 0; h < n_group_; ++h) {
            const float* qh = q + int64_t(h) * hd_;
            for (int64_t t = 0; t < n_keys; ++t) prob_[size_t(t)] = dot_kv_row(kv.type, kv.k_row(r.g, t), qh, hd_);
            add_softmax(prob_.data(), n_keys, sum, sign);
        }
    }

    int32_t hd_, n_group_;
    std::vector<float> sum_;        // (n_layer, n_head_kv, max_tok) running sum of the window's softmax rows
    std::vector<float> ring_q_;     // (n_layer, n_head_kv, kWindow, n_group, head_dim) the window's queries
    std::vector<int64_t> ring_n_;   // (n_layer, n_head_kv, kWindow) the keys each of them saw
    std::vector<int64_t> count_;    // (n_layer, n_head_kv) rows pushed this sequence
    std::vector<float> prob_;       // (max_tok) scratch
};

}  // namespace

std::unique_ptr<TokenSelector> make_h2o_tb_selector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok) {
    return std::make_unique<H2oTbSelector>(n_layer, n_head_kv, max_tok);
}

std::unique_ptr<TokenSelector> make_snapkv_tb_selector(int32_t n_layer, int32_t n_head_kv, int64_t max_tok,
                                                       int32_t head_dim, int32_t n_group) {
    return std::make_unique<SnapKvTbSelector>(n_layer, n_head_kv, max_tok, head_dim, n_group);
}

}  // namespace butler
