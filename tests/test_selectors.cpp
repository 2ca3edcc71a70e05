// SPDX-License-Identifier: MIT
// Selector properties: budget respected, sorted unique ids, sinks and window kept, deterministic; oracle picks
// the true top q.K (float64 here); streamingllm is exactly sinks + recent; h2o never brings back an evicted token.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "offload/kv_store.h"
#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "runtime/device.h"
#include "runtime/status.h"
#include "tests/reference64.h"

using namespace butler;
using test::add_softmax64;
using test::Vec;

namespace {

constexpr int32_t kHd = 16, kGroup = 2;

struct World {
    std::unique_ptr<Device> dev = make_device("cpu");
    std::unique_ptr<HostKvStore> store;
    std::vector<float> k;  // (n_head_kv=2, max_tok, kHd)
    int64_t max_tok;
    explicit World(int64_t max_tok_, uint32_t seed) : max_tok(max_tok_) {
        store = std::make_unique<HostKvStore>(*dev, KvStoreShape{1, 2, kHd, kHd, 8, max_tok, DType::F32});
        store->reserve(max_tok);
        std::mt19937 rng(seed);
        std::normal_distribution<float> g(0.f, 1.f);
        k.resize(size_t(2 * max_tok * kHd));
        for (auto& x : k) x = g(rng);
        for (int64_t t = 0; t < max_tok; ++t)
            for (int32_t h = 0; h < 2; ++h)
                store->write(0, h, t, &k[size_t((h * max_tok + t) * kHd)], &k[size_t((h * max_tok + t) * kHd)]);
        store->commit(0, 0, max_tok);
    }
};

// A seeded TokenButler predictor for World's one stored layer (model layer 1), 2 KV heads of kGroup query heads.
std::shared_ptr<const TokenButlerPredictor> tiny_predictor(uint64_t seed) {
    PredictorShape ps;
    ps.n_layer = 2, ps.n_embd = 8, ps.n_head = 2 * kGroup, ps.n_head_kv = 2, ps.head_dim = kHd;
    ps.group = 4, ps.d_dash = 8, ps.intdim = 8;
    return std::make_shared<const TokenButlerPredictor>(ps, BaseModelIdentity{}, seed);
}

const char* kNames[] = {"oracle", "streamingllm", "h2o", "h2o-tb", "snapkv", "snapkv-tb", "quest", "quest-tb"};

void check_contract(const SelectionRequest& r, const std::vector<int32_t>& out) {
    CHECK(int64_t(out.size()) <= std::min(r.budget, r.n_tok));
    for (size_t i = 1; i < out.size(); ++i) REQUIRE(out[i - 1] < out[i]);
    for (int32_t t : out) REQUIRE((t >= 0 && t < r.n_tok));
    const SinksWindow sw = clip_sinks_window(r);
    const std::set<int32_t> s(out.begin(), out.end());
    for (int64_t t = 0; t < sw.sinks; ++t) CHECK(s.count(int32_t(t)));
    for (int64_t t = r.n_tok - sw.window; t < r.n_tok; ++t) CHECK(s.count(int32_t(t)));
    CHECK(s.count(int32_t(r.n_tok - 1)));  // the current token
}

}  // namespace

TEST_SUITE("selectors") {
    TEST_CASE("every selector: budget, sorted unique, sinks and window, deterministic") {
        World w(400, 5);
        std::mt19937 rng(8);
        std::normal_distribution<float> g(0.f, 1.f);
        for (const char* name : kNames) {
            CAPTURE(name);
            auto a = make_selector(name, 1, 2, w.max_tok, kHd, nullptr, kGroup);
            auto b = make_selector(name, 1, 2, w.max_tok, kHd, nullptr, kGroup);
            std::vector<int32_t> out_a, out_b;
            out_a.reserve(size_t(w.max_tok));
            out_b.reserve(size_t(w.max_tok));
            std::vector<float> q(kGroup * kHd);
            // A growing sequence (as decode steps are), with budgets of tokens and of shares.
            for (int64_t n = 1; n <= 400; n += 1 + n / 7) {
                for (auto& x : q) x = g(rng);
                SelectionRequest r;
                r.layer = 0, r.g = int32_t(n % 2), r.n_tok = n, r.q = q.data(), r.n_group = kGroup,
                r.store  = w.store.get();
                r.budget = (n % 3 == 0) ? std::max<int64_t>(1, n / 10) : 40;
                r.sinks = 4, r.window = std::max<int64_t>(16, r.budget / 8);
                a->select(r, out_a);
                b->select(r, out_b);
                CAPTURE(n);
                CAPTURE(r.budget);
                check_contract(r, out_a);
                CHECK(out_a == out_b);
                if (std::string(name) != "h2o") CHECK(int64_t(out_a.size()) == std::min(r.budget, n));
            }
        }
        auto dense = make_selector("dense", 1, 2, w.max_tok, kHd);
        std::vector<int32_t> out;
        out.reserve(400);
        SelectionRequest r;
        r.n_tok = 37, r.store = w.store.get(), r.budget = 5;
        dense->select(r, out);
        CHECK(out.size() == 37);
    }

    TEST_CASE("unknown selector names the known ones") {
        try {
            make_selector("magic", 1, 1, 16, kHd);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Usage);
            CHECK(std::string(e.what()).find("oracle") != std::string::npos);
        }
    }

    TEST_CASE("h2o-tb and snapkv-tb keep the greedy set of TOKENBUTLER.md §4 (float64 re-implementation)") {
        World w(200, 11);
        std::mt19937 rng(4);
        std::normal_distribution<float> g(0.f, 1.f);
        for (const std::string name : {"h2o-tb", "snapkv-tb"}) {
            CAPTURE(name);
            auto sel = make_selector(name, 1, 2, w.max_tok, kHd, nullptr, kGroup);
            std::vector<int32_t> out;
            out.reserve(200);
            std::vector<int64_t> set;                       // the reference set
            std::vector<std::pair<std::vector<float>, int64_t>> past;  // snapkv-tb: the last 32 queries, keys seen
            const int32_t grp = 1;
            for (int64_t n = 60; n <= 140; ++n) {
                std::vector<float> q(kGroup * kHd);
                for (auto& x : q) x = g(rng);
                SelectionRequest r;
                r.g = grp, r.n_tok = n, r.q = q.data(), r.n_group = kGroup, r.store = w.store.get();
                r.budget = 40, r.sinks = 4, r.window = 16;
                sel->select(r, out);
                auto logit = [&](const std::vector<float>& qq, int h, int64_t t) {
                    double d = 0;
                    for (int c = 0; c < kHd; ++c) d += double(qq[size_t(h * kHd + c)]) * w.k[size_t((grp * w.max_tok + t) * kHd + c)];
                    return d;
                };
                std::vector<double> imp(static_cast<size_t>(n));
                if (name == "h2o-tb") {
                    for (int64_t t = 0; t < n; ++t) imp[size_t(t)] = std::max(logit(q, 0, t), logit(q, 1, t));
                } else {
                    past.push_back({q, n});
                    if (past.size() > 32) past.erase(past.begin());
                    std::vector<double> sum(static_cast<size_t>(n), 0.0);
                    for (const auto& [qq, nk] : past)
                        for (int h = 0; h < kGroup; ++h) {
                            Vec l(static_cast<size_t>(nk));
                            for (int64_t t = 0; t < nk; ++t) l[size_t(t)] = logit(qq, h, t);
                            add_softmax64(l, 0, size_t(nk), sum);
                        }
                    for (int64_t t = 0; t < n; ++t) {
                        double m = -1e300;
                        for (int64_t u = std::max<int64_t>(0, t - 3); u <= std::min<int64_t>(n - 1, t + 3); ++u) m = std::max(m, sum[size_t(u)]);
                        imp[size_t(t)] = m;
                    }
                }
                const int64_t hi = n - 16;
                if (n == 60) {  // the first step: the 20 most important of [4, hi)
                    std::vector<int64_t> c;
                    for (int64_t t = 4; t < hi; ++t) c.push_back(t);
                    std::stable_sort(c.begin(), c.end(), [&](int64_t a, int64_t b) { return imp[size_t(a)] > imp[size_t(b)]; });
                    set.assign(c.begin(), c.begin() + 20);
                } else {  // token hi - 1 left the window
                    const int64_t t = hi - 1;
                    auto victim = std::min_element(set.begin(), set.end(), [&](int64_t a, int64_t b) { return imp[size_t(a)] < imp[size_t(b)]; });
                    if (imp[size_t(t)] > imp[size_t(*victim)]) *victim = t;
                }
                std::vector<int32_t> want{0, 1, 2, 3};
                std::vector<int64_t> sorted = set;
                std::sort(sorted.begin(), sorted.end());
                for (int64_t t : sorted) want.push_back(int32_t(t));
                for (int64_t t = hi; t < n; ++t) want.push_back(int32_t(t));
                CAPTURE(n);
                REQUIRE(out == want);
            }
        }
    }

    TEST_CASE("oracle picks the top true attention (summed over the group), streamingllm is sinks + recent") {
        World w(300, 9);
        std::mt19937 rng(2);
        std::normal_distribution<float> g(0.f, 1.f);
        auto oracle = make_selector("oracle", 1, 2, w.max_tok, kHd);
        auto stream = make_selector("streamingllm", 1, 2, w.max_tok, kHd);
        std::vector<int32_t> out;
        out.reserve(300);
        std::vector<float> q(kGroup * kHd);
        for (int trial = 0; trial < 10; ++trial) {
            for (auto& x : q) x = g(rng);
            SelectionRequest r;
            r.g = trial % 2, r.n_tok = 100 + trial * 20, r.q = q.data(), r.n_group = kGroup, r.store = w.store.get();
            r.budget = 50, r.sinks = 4, r.window = 16;
            oracle->select(r, out);
            // the true attention of the step, softmax(q.K) over the context, summed over the group's heads
            std::vector<double> score(static_cast<size_t>(r.n_tok), 0.0);
            for (int h = 0; h < kGroup; ++h) {
                std::vector<double> dot(static_cast<size_t>(r.n_tok), 0.0);
                for (int64_t t = 0; t < r.n_tok; ++t)
                    for (int d = 0; d < kHd; ++d)
                        dot[size_t(t)] += double(q[size_t(h * kHd + d)]) * w.k[size_t((r.g * w.max_tok + t) * kHd + d)];
                add_softmax64(dot, 0, dot.size(), score);
            }
            const std::set<int32_t> s(out.begin(), out.end());
            double min_in = 1e300, max_out = -1e300;
            for (int64_t t = 4; t < r.n_tok - 16; ++t)
                (s.count(int32_t(t)) ? min_in : max_out) =
                    s.count(int32_t(t)) ? std::min(min_in, score[size_t(t)]) : std::max(max_out, score[size_t(t)]);
            CHECK(min_in >= max_out - 1e-6);
            stream->select(r, out);
            std::vector<int32_t> want{0, 1, 2, 3};
            for (int64_t t = r.n_tok - 46; t < r.n_tok; ++t) want.push_back(int32_t(t));
            CHECK(out == want);
        }
    }

    TEST_CASE("snapkv: the observation window's pooled votes (float64 here) pick the prefix tokens") {
        World w(200, 12);
        std::mt19937 rng(3);
        std::normal_distribution<float> g(0.f, 1.f);
        const int32_t n_head = 4, n_obs = 8;  // 2 KV heads x kGroup
        const int64_t n_prompt = 150;
        std::vector<float> obs(size_t(n_obs * n_head * kHd));
        for (auto& x : obs) x = g(rng);
        auto snap = make_selector("snapkv", 1, 2, w.max_tok, kHd);
        std::vector<int32_t> out;
        out.reserve(200);
        SelectionRequest r;
        r.g = 1, r.n_tok = n_prompt + 3, r.n_group = kGroup, r.store = w.store.get(), r.budget = 60, r.sinks = 4,
        r.window = 16;
        r.obs_q = obs.data(), r.n_obs = n_obs, r.obs_pos0 = n_prompt - n_obs, r.n_head = n_head;
        snap->select(r, out);
        check_contract(r, out);
        const int64_t prefix = n_prompt - n_obs;
        std::vector<double> vote(size_t(prefix), 0.0), pooled(size_t(prefix), 0.0);
        for (int o = 0; o < n_obs; ++o)
            for (int h = 0; h < kGroup; ++h) {
                const float* q  = &obs[size_t((o * n_head + r.g * kGroup + h) * kHd)];
                const int64_t p = r.obs_pos0 + o;
                Vec s(size_t(p + 1)), attn(size_t(p + 1), 0.0);
                for (int64_t t = 0; t <= p; ++t)
                    for (int d = 0; d < kHd; ++d) s[size_t(t)] += double(q[d]) * w.k[size_t((r.g * w.max_tok + t) * kHd + d)];
                add_softmax64(s, 0, s.size(), attn);
                for (int64_t t = 0; t < prefix; ++t) vote[size_t(t)] += attn[size_t(t)];
            }
        for (int64_t t = 0; t < prefix; ++t) {
            for (int64_t j = t - 2; j <= t + 2; ++j)
                if (j >= 0 && j < prefix) pooled[size_t(t)] += vote[size_t(j)] / 5;
        }
        // The observation window and later tokens are all kept; the rest of the budget goes to the best voted.
        const std::set<int32_t> s(out.begin(), out.end());
        for (int64_t t = r.obs_pos0; t < r.n_tok; ++t) CHECK(s.count(int32_t(t)));
        double min_in = 1e300, max_out = -1e300;
        for (int64_t t = 4; t < std::min<int64_t>(prefix, r.n_tok - r.window); ++t) {  // the candidates
            if (s.count(int32_t(t)))
                min_in = std::min(min_in, pooled[size_t(t)]);
            else
                max_out = std::max(max_out, pooled[size_t(t)]);
        }
        CHECK(min_in >= max_out - 1e-6);
    }

    TEST_CASE("h2o: a token evicted from the heavy set never comes back") {
        World w(300, 4);
        std::mt19937 rng(6);
        std::normal_distribution<float> g(0.f, 1.f);
        auto h2o = make_selector("h2o", 1, 2, w.max_tok, kHd);
        std::vector<int32_t> out, prev;
        out.reserve(300);
        std::vector<float> q(kGroup * kHd);
        int64_t prev_hi = 0;
        std::set<int32_t> evicted;
        for (int64_t n = 80; n < 300; ++n) {
            for (auto& x : q) x = g(rng);
            SelectionRequest r;
            r.g = 1, r.n_tok = n, r.q = q.data(), r.n_group = kGroup, r.store = w.store.get();
            r.budget = 40, r.sinks = 4, r.window = 16;
            h2o->select(r, out);
            check_contract(r, out);
            CHECK(int64_t(out.size()) == 40);
            const std::set<int32_t> s(out.begin(), out.end());
            for (int32_t t : evicted) CHECK(!s.count(t));
            // Middle tokens that were past the window last step and are missing now were evicted.
            for (int64_t t = 4; t < prev_hi; ++t)
                if (!s.count(int32_t(t))) evicted.insert(int32_t(t));
            prev_hi = n - 16;
        }
        CHECK(!evicted.empty());
    }
}

TEST_SUITE("selectors") {
    TEST_CASE("tokenbutler on the emu device picks what it picks on the host, across growth, neighbours and a rewind") {
        World w(400, 12);
        auto pred                = tiny_predictor(9);
        const PredictorShape& ps = pred->shape();
        auto emu = make_device("emu:delay_us=50,seed=6");  // outlives the selector bound to it
        auto host = make_tokenbutler_selector(pred, 1, 2, w.max_tok);
        auto on_dev = make_tokenbutler_selector(pred, 1, 2, w.max_tok);
        REQUIRE(on_dev->bind_device(*emu));
        CHECK_FALSE(make_selector("quest", 1, 2, w.max_tok, kHd)->bind_device(*emu));
        std::mt19937 rng(4);
        std::normal_distribution<float> g(0.f, 1.f);
        std::vector<float> imp_q(size_t(kGroup * ps.d_dash));
        std::vector<int32_t> a, b;
        a.reserve(size_t(w.max_tok));
        b.reserve(size_t(w.max_tok));
        int64_t n_differ = 0, n_calls = 0;
        auto step = [&](int64_t n_tok, int64_t budget, bool neighbours) {
            for (auto& x : imp_q) x = 3.f * g(rng);
            for (int32_t head = 0; head < 2; ++head) {
                SelectionRequest r;
                r.layer = 0, r.g = head, r.n_tok = n_tok, r.n_group = kGroup, r.store = w.store.get();
                r.budget = budget, r.sinks = 4, r.window = 8, r.model_layer = 1, r.imp_q = imp_q.data();
                r.neighbours = neighbours;
                host->select(r, a);
                on_dev->select(r, b);
                check_contract(r, b);
                n_differ += a != b;
                ++n_calls;
            }
        };
        for (int64_t n_tok = 5; n_tok <= 300; n_tok += 7)
            for (const int64_t budget : {int64_t(6), int64_t(20), int64_t(64), n_tok})
                step(n_tok, budget, n_tok % 2 == 0);
        // A rewind to 120 tokens and new rows from there: both must project (and the device upload) them anew.
        host->reset(120);
        on_dev->reset(120);
        for (int64_t t = 120; t < w.max_tok; ++t)
            for (int32_t h = 0; h < 2; ++h) {
                std::vector<float> row(kHd);
                for (auto& x : row) x = g(rng);
                w.store->write(0, h, t, row.data(), row.data());
            }
        w.store->commit(0, 120, w.max_tok);
        for (int64_t n_tok = 121; n_tok <= 400; n_tok += 13) step(n_tok, 40, false);
        CHECK(n_calls > 300);
        CHECK(n_differ == 0);
    }
}

TEST_SUITE("selectors") {
    TEST_CASE("tokenbutler picks the float64 top of its predicted group mass (keys kept in half precision)") {
        World w(400, 21);
        auto pred                = tiny_predictor(5);
        const PredictorShape& ps = pred->shape();
        auto sel  = make_tokenbutler_selector(pred, 1, 2, w.max_tok);
        std::mt19937 rng(8);
        std::normal_distribution<float> g(0.f, 1.f);
        std::vector<float> imp_q(size_t(kGroup * ps.d_dash));
        std::vector<int32_t> out;
        int64_t n_checked = 0, n_clear = 0;
        for (int64_t n_tok = 40; n_tok <= 400; n_tok += 45)
            for (const int64_t budget : {int64_t(20), int64_t(60), int64_t(150)})
                for (int32_t head = 0; head < 2; ++head) {
                    if (budget >= n_tok) continue;
                    for (auto& x : imp_q) x = 3.f * g(rng);
                    SelectionRequest r;
                    r.layer = 0, r.g = head, r.n_tok = n_tok, r.n_group = kGroup, r.store = w.store.get();
                    r.budget = budget, r.sinks = 4, r.window = 8, r.model_layer = 1, r.imp_q = imp_q.data();
                    sel->select(r, out);
                    // float64: k' = K . W_K, the group's softmax mass over the candidates [sinks, n_tok - window).
                    const int64_t lo = 4, hi = n_tok - 8, n_pick = budget - 4 - 8;
                    const float* wk = pred->key_proj(1, head);
                    std::vector<double> score(size_t(hi), 0.0);
                    for (int32_t h = 0; h < kGroup; ++h) {
                        Vec l(static_cast<size_t>(hi));
                        for (int64_t t = lo; t < hi; ++t) {
                            const float* k = &w.k[size_t((head * w.max_tok + t) * kHd)];
                            double dot = 0;
                            for (int32_t e = 0; e < ps.d_dash; ++e) {
                                double kd = 0;
                                for (int32_t j = 0; j < kHd; ++j) kd += double(k[j]) * wk[e * kHd + j];
                                dot += double(imp_q[size_t(h * ps.d_dash + e)]) * kd;
                            }
                            l[size_t(t)] = dot / std::sqrt(double(ps.d_dash));
                        }
                        add_softmax64(l, size_t(lo), size_t(hi), score);
                    }
                    std::vector<double> sorted(score.begin() + lo, score.end());
                    std::sort(sorted.begin(), sorted.end(), std::greater<>());
                    const double kth = sorted[size_t(n_pick - 1)], next = sorted[size_t(n_pick)];
                    const std::set<int32_t> picked(out.begin(), out.end());
                    CHECK(int64_t(out.size()) == budget);
                    // Half-precision keys move a score by well under 1%: only near-ties may go either way.
                    for (int64_t t = lo; t < hi; ++t) {
                        const double s = score[size_t(t)];
                        if (s > 1.01 * next) CHECK(picked.count(int32_t(t)));
                        if (s < 0.99 * kth) CHECK_FALSE(picked.count(int32_t(t)));
                        n_clear += s > 1.01 * next || s < 0.99 * kth;
                    }
                    ++n_checked;
                }
        CHECK(n_checked > 30);
        CHECK(n_clear > 2000);
    }
}
