// SPDX-License-Identifier: MIT
// The TokenButler predictor: forward against a float64 forward written here; the training loss against a float64
// loss written here and its gradient against central differences of that loss; training lowers the loss on a
// fixture model; predictor files round-trip and a foreign one is refused; neighbour fetching on hand-worked
// examples; the prediction interval inside the pipeline (fresh selections and predictor runs counted; exact mode
// still equals the plain runtime).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <set>

#include "offload/pipeline.h"
#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "predictor/train.h"
#include "runtime/hparams.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

// --- float64 reference -----------------------------------------------------------------------------------------

std::vector<double> ref_query(const TokenButlerPredictor& p, int32_t producer, const float* x) {
    const PredictorShape& s                  = p.shape();
    const TokenButlerPredictor::Producer& pr = p.producers()[size_t(producer / s.group)];
    const size_t E = size_t(s.n_embd), I = size_t(s.intdim);
    double mean = 0;
    for (size_t j = 0; j < E; ++j) mean += x[j];
    mean /= double(E);
    double var = 0;
    for (size_t j = 0; j < E; ++j) var += (x[j] - mean) * (x[j] - mean);
    var /= double(E);
    std::vector<double> y(E), a(I), out(size_t(s.q_width()));
    for (size_t j = 0; j < E; ++j) y[j] = (x[j] - mean) / std::sqrt(var + 1e-5) * pr.ln_w[j] + pr.ln_b[j];
    for (size_t i = 0; i < I; ++i) {
        double z = 0;
        for (size_t j = 0; j < E; ++j) z += double(pr.w1[i * E + j]) * y[j];
        a[i] = z / (1.0 + std::exp(-z));
    }
    for (size_t r = 0; r < out.size(); ++r) {
        double v = 0;
        for (size_t i = 0; i < I; ++i) v += double(pr.w2[r * I + i]) * a[i];
        out[r] = v;
    }
    return out;
}

std::vector<double> ref_key(const TokenButlerPredictor& p, int32_t layer, int32_t g, const float* k) {
    const PredictorShape& s = p.shape();
    std::vector<double> out(size_t(s.d_dash), 0.0);
    const float* w = p.key_proj(layer, g);
    for (int32_t e = 0; e < s.d_dash; ++e)
        for (int32_t d = 0; d < s.head_dim; ++d) out[size_t(e)] += double(w[e * s.head_dim + d]) * k[d];
    return out;
}

// The training loss of TOKENBUTLER.md §3.2 (cross-entropy to the model's attention softmax), mean over
// (consumer layer, query head, row); keys causal and, on sliding-window layers, within the window; with
// sinks / window > 0 only the keys at positions >= sinks and at least `window` positions older than the row, rows
// without one skipped.
double ref_loss(const TokenButlerPredictor& p, const HParams& hp, const TrainSample& smp,
                const std::vector<int32_t>& only_layers = {}, int32_t sinks = 0, int32_t window = 0) {
    const PredictorShape& s = p.shape();
    const int64_t R = int64_t(smp.rows.size()), n = smp.n_tok, H = s.n_head, Hkv = s.n_head_kv, D = s.head_dim;
    const int64_t ng = H / Hkv;
    double total = 0;
    int64_t count = 0;
    for (int32_t l = 1; l < s.n_layer; ++l) {
        if (!only_layers.empty() && std::find(only_layers.begin(), only_layers.end(), l) == only_layers.end()) continue;
        const int32_t prod = PredictorShape::producer_of(l, s.group), slot = (l - 1) % s.group;
        for (int64_t r = 0; r < R; ++r) {
            const std::vector<double> qp =
                ref_query(p, prod, smp.x.data() + (int64_t(prod / s.group) * R + r) * s.n_embd);
            const int64_t pos = smp.rows[size_t(r)];
            const int64_t lo  = std::max<int64_t>(sinks, hp.is_swa(l) ? pos - hp.n_swa + 1 : 0);
            if (pos - window < lo) continue;
            for (int64_t h = 0; h < H; ++h) {
                const int64_t g = h / ng;
                std::vector<double> t, st;
                for (int64_t j = lo; j + window <= pos; ++j) {
                    const float* k = smp.k.data() + ((int64_t(l) * n + j) * Hkv + g) * D;
                    const float* q = smp.q.data() + ((int64_t(l) * R + r) * H + h) * D;
                    double tl = 0;
                    for (int64_t d = 0; d < D; ++d) tl += double(q[d]) * k[d];
                    const std::vector<double> kp = ref_key(p, l, int32_t(g), k);
                    double sl                    = 0;
                    for (int32_t e = 0; e < s.d_dash; ++e) sl += qp[size_t((slot * H + h) * s.d_dash + e)] * kp[size_t(e)];
                    t.push_back(tl);
                    st.push_back(sl / std::sqrt(double(s.d_dash)));
                }
                const double tm = *std::max_element(t.begin(), t.end()), sm = *std::max_element(st.begin(), st.end());
                double tz = 0, sz = 0;
                for (size_t j = 0; j < t.size(); ++j) {
                    tz += std::exp(t[j] - tm);
                    sz += std::exp(st[j] - sm);
                }
                for (size_t j = 0; j < t.size(); ++j) total -= std::exp(t[j] - tm) / tz * (st[j] - sm - std::log(sz));
                ++count;
            }
        }
    }
    return total / double(count);
}

// Checks grads[i] of each listed parameter i against central differences of `loss` at 6 random entries.
void check_central_differences(std::vector<std::vector<float>*>& params, const std::vector<std::vector<float>>& grads,
                               const std::vector<size_t>& which, const std::function<double()>& loss, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t i : which) {
        std::vector<float>& w = *params[i];
        double gmax = 1e-12;
        for (float g : grads[i]) gmax = std::max(gmax, double(std::fabs(g)));
        for (int probe = 0; probe < 6; ++probe) {
            const size_t j  = size_t(rng() % w.size());
            const float w0  = w[j];
            const float wp  = w0 + 1e-3f * std::max(1.0f, std::fabs(w0)), wm = w0 - 1e-3f * std::max(1.0f, std::fabs(w0));
            w[j]            = wp;
            const double lp = loss();
            w[j]            = wm;
            const double lm = loss();
            w[j]            = w0;
            const double fd = (lp - lm) / (double(wp) - double(wm));
            CAPTURE(i);
            CAPTURE(j);
            CHECK(std::fabs(double(grads[i][j]) - fd) <= 2e-3 * gmax + 1e-6);
        }
    }
}

// A small predictor problem: 4 layers (layer 2 global, the others with a 5-token window), 2 producers (0, 2).
struct Problem {
    PredictorShape shape;
    HParams hp;
    BaseModelIdentity base;
    TrainSample sample;
    Problem() {
        shape.n_layer = 4, shape.n_embd = 12, shape.n_head = 4, shape.n_head_kv = 2, shape.head_dim = 8;
        shape.group = 2, shape.d_dash = 4, shape.intdim = 6;
        hp.n_layer      = 4;
        hp.n_swa        = 5;
        hp.layer_is_swa = {1, 1, 0, 1};
        base.arch = "test", base.n_layer = 4, base.n_embd = 12, base.n_head = 4, base.n_head_kv = 2, base.head_dim = 8;
        std::mt19937_64 rng(5);
        sample.n_tok = 16;
        sample.rows  = {8, 11, 13, 15};
        sample.x     = gaussian(rng, size_t(shape.n_producers() * 4 * shape.n_embd), 1.0f);
        sample.q     = gaussian(rng, size_t(shape.n_layer * 4 * shape.n_head * shape.head_dim), 0.6f);
        sample.k     = gaussian(rng, size_t(shape.n_layer * 16 * shape.n_head_kv * shape.head_dim), 0.6f);
    }
};

}  // namespace

TEST_SUITE("tokenbutler") {
    TEST_CASE("predictor forward equals a float64 forward; parameter count") {
        Problem pb;
        TokenButlerPredictor p(pb.shape, pb.base, 3);
        std::mt19937_64 rng(9);
        for (auto& pr : p.producers()) {  // non-trivial LayerNorm affine
            pr.ln_w = uniform(rng, pr.ln_w.size(), 0.5f, 1.5f);
            pr.ln_b = gaussian(rng, pr.ln_b.size(), 0.2f);
        }
        std::vector<float> out(size_t(pb.shape.q_width())), scratch(size_t(pb.shape.n_embd + pb.shape.intdim));
        for (int32_t prod : {0, 2}) {
            const std::vector<float> x = gaussian(rng, size_t(pb.shape.n_embd), 2.0f);
            p.query(prod, x.data(), out.data(), scratch.data());
            const std::vector<double> want = ref_query(p, prod, x.data());
            for (size_t i = 0; i < out.size(); ++i) CHECK(std::fabs(out[i] - want[i]) <= 1e-4 * (1 + std::fabs(want[i])));
        }
        const std::vector<float> k = gaussian(rng, size_t(pb.shape.head_dim), 1.0f);
        std::vector<float> kp(size_t(pb.shape.d_dash));
        p.project_key(3, 1, k.data(), kp.data());
        const std::vector<double> want = ref_key(p, 3, 1, k.data());
        for (size_t i = 0; i < kp.size(); ++i) CHECK(std::fabs(kp[i] - want[i]) <= 1e-5 * (1 + std::fabs(want[i])));
        // 2 producers x (2E + E*I + (G*H*d')*I) + layers * KV heads * head_dim * d'
        CHECK(pb.shape.n_params() == 2u * (24 + 72 + 32 * 6) + 4u * 2 * 8 * 4);
        CHECK(pb.shape.n_producers() == 2);
        CHECK(PredictorShape::producer_of(5, 4) == 4);
        CHECK(PredictorShape::producer_of(11, 4) == 8);
        CHECK(PredictorShape::producer_of(17, 4) == 16);
        CHECK(PredictorShape::producer_of(1, 4) == 0);
    }

    TEST_CASE("reshaped(): split producers start from their parent's slots; narrowing keeps the strongest units") {
        PredictorShape shape;
        shape.n_layer = 9, shape.n_embd = 12, shape.n_head = 4, shape.n_head_kv = 2, shape.head_dim = 8;
        shape.group = 4, shape.d_dash = 4, shape.intdim = 10;
        BaseModelIdentity base;
        base.arch = "test", base.n_layer = 9, base.n_embd = 12, base.n_head = 4, base.n_head_kv = 2, base.head_dim = 8;
        TokenButlerPredictor p(shape, base, 23);
        std::mt19937_64 rng(29);
        for (auto& pr : p.producers()) pr.ln_b = gaussian(rng, pr.ln_b.size(), 0.2f);
        // Hidden units 2, 5 and 7 of every producer feed nothing (zero W2 columns), so dropping them changes no query.
        const int64_t I = shape.intdim;
        for (auto& pr : p.producers())
            for (int64_t r = 0; r < shape.q_width(); ++r)
                for (int64_t j : {2, 5, 7}) pr.w2[size_t(r * I + j)] = 0.0f;
        const TokenButlerPredictor q = p.reshaped(2, 7, 4, 1);
        CHECK(q.shape().group == 2);
        CHECK(q.shape().intdim == 7);
        CHECK(q.shape().n_producers() == 4);  // 0, 2, 4, 6 serve layers 1..8
        CHECK(q.key_proj_all() == p.key_proj_all());
        const int64_t slot_rows = int64_t(shape.n_head) * shape.d_dash;
        for (int32_t prod : {0, 2, 4, 6}) {
            const std::vector<float> x = gaussian(rng, size_t(shape.n_embd), 2.0f);
            // The new producer's consumers prod+1, prod+2 were the old producer's slots (prod % 4), (prod % 4) + 1.
            const std::vector<double> old_q = ref_query(p, PredictorShape::producer_of(prod + 1, 4), x.data());
            const std::vector<double> new_q = ref_query(q, prod, x.data());
            REQUIRE(int64_t(new_q.size()) == 2 * slot_rows);
            const int64_t first = (prod % 4) * slot_rows;
            for (int64_t r = 0; r < 2 * slot_rows; ++r)
                CHECK(new_q[size_t(r)] == doctest::Approx(old_q[size_t(first + r)]).epsilon(1e-6));
        }
        // Unchanged shape: the same weights.
        const TokenButlerPredictor same = p.reshaped(4, 10, 4, 1);
        CHECK(same.producers()[1].w1 == p.producers()[1].w1);
        CHECK(same.producers()[1].w2 == p.producers()[1].w2);
        CHECK(same.key_proj_all() == p.key_proj_all());
        // A wider d': every score q'.k' / sqrt(d') stays what it was.
        const TokenButlerPredictor wide = p.reshaped(4, 10, 7, 1);
        CHECK(wide.shape().d_dash == 7);
        const std::vector<float> x = gaussian(rng, size_t(shape.n_embd), 2.0f);
        const std::vector<float> k = gaussian(rng, size_t(shape.head_dim), 1.0f);
        for (int32_t layer = 1; layer < shape.n_layer; ++layer) {
            const int32_t prod = PredictorShape::producer_of(layer, 4), slot = shape.slot_of(layer);
            const std::vector<double> qo = ref_query(p, prod, x.data()), qw = ref_query(wide, prod, x.data());
            for (int32_t g = 0; g < shape.n_head_kv; ++g) {
                const std::vector<double> ko = ref_key(p, layer, g, k.data()), kw = ref_key(wide, layer, g, k.data());
                for (int32_t h = 0; h < shape.n_head; ++h) {
                    double so = 0, sw = 0;
                    for (int32_t e = 0; e < 4; ++e) so += qo[size_t((slot * shape.n_head + h) * 4 + e)] * ko[size_t(e)];
                    for (int32_t e = 0; e < 7; ++e) sw += qw[size_t((slot * shape.n_head + h) * 7 + e)] * kw[size_t(e)];
                    CHECK(sw / std::sqrt(7.0) == doctest::Approx(so / 2.0).epsilon(1e-5));
                }
            }
        }
        CHECK_THROWS_WITH_AS(p.reshaped(3, 10, 4, 1), doctest::Contains("divide"), Error);
        CHECK_THROWS_WITH_AS(p.reshaped(4, 11, 4, 1), doctest::Contains("widened"), Error);
        CHECK_THROWS_WITH_AS(p.reshaped(4, 10, 3, 1), doctest::Contains("grow"), Error);
        CHECK_THROWS_WITH_AS(p.reshaped(4, 10, 9, 1), doctest::Contains("grow"), Error);
    }

    TEST_CASE("training loss equals a float64 loss; gradient equals central differences") {
        Problem pb;
        TokenButlerPredictor p(pb.shape, pb.base, 11);
        std::vector<std::vector<float>*> params = predictor_params(p);
        std::vector<std::vector<float>> grads(params.size());
        for (size_t i = 0; i < params.size(); ++i) grads[i].assign(params[i]->size(), 0.0f);
        const double loss = predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, &grads);
        const double want = ref_loss(p, pb.hp, pb.sample);
        CHECK(loss == doctest::Approx(want).epsilon(1e-5));
        std::vector<size_t> every(params.size());
        std::iota(every.begin(), every.end(), size_t(0));
        check_central_differences(params, grads, every, [&] { return ref_loss(p, pb.hp, pb.sample); }, 1);
        // The MSE option: its gradient also matches its own loss's finite differences (through predictor_loss).
        for (size_t i = 0; i < params.size(); ++i) grads[i].assign(params[i]->size(), 0.0f);
        predictor_loss(p, pb.hp, pb.sample, LossKind::LogitMse, &grads);
        std::vector<float>& w2 = *params[3];
        const float w0         = w2[5];
        w2[5]                  = w0 + 1e-2f;
        const double lp        = predictor_loss(p, pb.hp, pb.sample, LossKind::LogitMse, nullptr);
        w2[5]                  = w0 - 1e-2f;
        const double lm        = predictor_loss(p, pb.hp, pb.sample, LossKind::LogitMse, nullptr);
        w2[5]                  = w0;
        CHECK(grads[3][5] == doctest::Approx((lp - lm) / 2e-2).epsilon(2e-2));
    }

    TEST_CASE("a loss restricted to the runtime's sparse layers equals the float64 loss over them; its gradient too") {
        Problem pb;
        const std::vector<int32_t> sparse = runtime_sparse_layers(pb.hp);
        CHECK(sparse == std::vector<int32_t>{2});  // the one global layer of the problem
        TokenButlerPredictor p(pb.shape, pb.base, 13);
        std::vector<std::vector<float>*> params = predictor_params(p);
        std::vector<std::vector<float>> grads(params.size());
        for (size_t i = 0; i < params.size(); ++i) grads[i].assign(params[i]->size(), 0.0f);
        const double loss = predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, &grads, sparse);
        CHECK(loss == doctest::Approx(ref_loss(p, pb.hp, pb.sample, sparse)).epsilon(1e-5));
        CHECK(std::fabs(loss - ref_loss(p, pb.hp, pb.sample)) > 1e-3);  // not the all-layer loss
        // Layer 2 is served by producer 0 (slot 1): producer 1's weights and the other layers' key projections get
        // no gradient; a parameter that does is checked against central differences.
        for (float g : grads[6]) CHECK(g == 0.0f);  // producer 1's W1
        const std::vector<float>& dwk = grads[8];   // W_K (layer, KV head, d', head_dim)
        const size_t per_layer = size_t(pb.shape.n_head_kv * pb.shape.d_dash * pb.shape.head_dim);
        for (size_t i = 0; i < dwk.size(); ++i)
            if (i / per_layer != 2) CHECK(dwk[i] == 0.0f);
        std::vector<float>& w = *params[2];  // producer 0's W1
        const size_t j = 7;
        const float w0 = w[j];
        w[j] = w0 + 1e-3f;
        const double lp = ref_loss(p, pb.hp, pb.sample, sparse);
        w[j] = w0 - 1e-3f;
        const double lm = ref_loss(p, pb.hp, pb.sample, sparse);
        w[j] = w0;
        CHECK(std::fabs(grads[2][j]) > 1e-6);
        CHECK(grads[2][j] == doctest::Approx((lp - lm) / 2e-3).epsilon(2e-3).scale(1e-4));
        CHECK_THROWS(predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, nullptr, {4}));
    }

    TEST_CASE("a loss leaving out sinks and a recent window equals the float64 loss; its gradient too") {
        Problem pb;  // rows 8, 11, 13, 15; sliding window 5 on layers 1 and 3
        TokenButlerPredictor p(pb.shape, pb.base, 17);
        std::vector<std::vector<float>*> params = predictor_params(p);
        std::vector<std::vector<float>> grads(params.size());
        // {0, 3}: every row keeps 2 keys on the sliding-window layers and pos - 2 on the global one. {2, 3}: the
        // global layer's rows also lose keys 0 and 1. {0, 9}: only the global layer's rows 11, 13, 15 keep any key
        // (2, 4, 6 of them); row 8 and the sliding-window layers drop out.
        for (const LossKeys keys : {LossKeys{0, 3}, LossKeys{2, 3}, LossKeys{0, 9}}) {
            CAPTURE(keys.sinks);
            CAPTURE(keys.window);
            for (size_t i = 0; i < params.size(); ++i) grads[i].assign(params[i]->size(), 0.0f);
            const double loss = predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, &grads, {}, keys);
            CHECK(loss == doctest::Approx(ref_loss(p, pb.hp, pb.sample, {}, keys.sinks, keys.window)).epsilon(1e-5));
            CHECK(std::fabs(loss - ref_loss(p, pb.hp, pb.sample)) > 1e-3);  // not the loss over every key
            check_central_differences(params, grads, {2, 3, params.size() - 1},  // producer 0's W1, W2; W_K
                                      [&] { return ref_loss(p, pb.hp, pb.sample, {}, keys.sinks, keys.window); },
                                      uint64_t(keys.sinks * 16 + keys.window));
        }
        // {0, 9}, the last: the sliding-window layers' key projections get no gradient (none of their keys is left).
        const size_t per_layer = size_t(pb.shape.n_head_kv * pb.shape.d_dash * pb.shape.head_dim);
        for (size_t i = 0; i < grads.back().size(); ++i)
            if (i / per_layer != 2) CHECK(grads.back()[i] == 0.0f);
        CHECK_THROWS(predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, nullptr, {}, {0, 16}));  // no key left
        CHECK_THROWS(predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, nullptr, {}, {12, 4}));
        CHECK_THROWS(predictor_loss(p, pb.hp, pb.sample, LossKind::CrossEntropy, nullptr, {}, {0, -1}));
    }

    TEST_CASE("rows are sampled from the second half, unique, with the last row") {
        const std::vector<int32_t> rows = sample_rows(100, 20, 0.5, 3);
        CHECK(rows.size() == 20);
        CHECK(std::is_sorted(rows.begin(), rows.end()));
        CHECK(std::set<int32_t>(rows.begin(), rows.end()).size() == rows.size());
        CHECK(rows.front() >= 50);
        CHECK(rows.back() == 99);
        CHECK(sample_rows(10, 50, 0.5, 1).size() == 5);  // only 5 positions in the second half
        // A larger tail reaches earlier positions: the last 3/4 of 100 tokens start at 25.
        CHECK(first_sampled_row(100, 0.75) == 25);
        CHECK(first_sampled_row(100, 1.0) == 0);
        CHECK(first_sampled_row(100, 1e-9) == 99);  // the last row is always there
        const std::vector<int32_t> wide = sample_rows(100, 75, 0.75, 3);
        CHECK(wide.size() == 75);
        CHECK(wide.front() == 25);  // all 75 positions 25..99 drawn
        CHECK(sample_rows(100, 200, 0.75, 3).size() == 75);
    }

    TEST_CASE("epoch order: file order, or a seeded permutation of its own per epoch") {
        const std::vector<size_t> plain = epoch_order(40, 3, 7, false);
        for (size_t i = 0; i < plain.size(); ++i) CHECK(plain[i] == i);
        const std::vector<size_t> e0 = epoch_order(40, 0, 7, true), e1 = epoch_order(40, 1, 7, true);
        for (const auto* order : {&e0, &e1}) {
            std::vector<size_t> sorted = *order;
            std::sort(sorted.begin(), sorted.end());
            CHECK(sorted == plain);  // every sequence exactly once
        }
        CHECK(e0 == epoch_order(40, 0, 7, true));  // a resumed run sees the same order
        CHECK(e0 != e1);
        CHECK(e0 != epoch_order(40, 0, 8, true));
        CHECK(e0 != plain);
        // The point of shuffling: a short run (--max-steps) draws from the whole list, not only its first files.
        const auto from_back = std::count_if(e0.begin(), e0.begin() + 10, [](size_t i) { return i >= 20; });
        CHECK(from_back >= 1);
        CHECK(from_back <= 9);
        CHECK(epoch_order(0, 0, 1, true).empty());
        CHECK(epoch_order(1, 5, 1, true) == std::vector<size_t>{0});
    }

    TEST_CASE("learning-rate schedule: linear warm-up, cosine to zero") {
        CHECK(lr_at(0, 100, 1.0f, 0.1f) == doctest::Approx(0.1));
        CHECK(lr_at(9, 100, 1.0f, 0.1f) == doctest::Approx(1.0));
        CHECK(lr_at(10, 100, 1.0f, 0.1f) == doctest::Approx(1.0));
        CHECK(lr_at(55, 100, 1.0f, 0.1f) == doctest::Approx(0.5));
        CHECK(lr_at(99, 100, 1.0f, 0.1f) < 0.01);
    }

    TEST_CASE("training a few steps on a fixture model lowers the loss; files round-trip") {
        TinyGemma3Spec spec;
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 21)));
        auto model        = Model::load(mf.path());
        const HParams& hp = model->hparams();
        const PredictorShape shape = PredictorShape::of(hp, 2, 8, 32);
        TokenButlerPredictor p(shape, BaseModelIdentity::of(*model), 1);
        std::vector<std::vector<int32_t>> seqs;
        for (int s = 0; s < 3; ++s) {
            std::vector<int32_t> t{model->tokenizer().bos()};
            for (int i = 1; i < 48; ++i) t.push_back((i * (7 + s) + s * 13) % hp.n_vocab);
            seqs.push_back(t);
        }
        SessionParams sp;
        sp.n_ctx = 48, sp.n_ubatch = 16, sp.kv_type = DType::F32;  // 3 chunks: the tap sees every one
        Session session(model, sp);
        TrainSample fixed;
        collect_sample(session, seqs[0], sample_rows(48, 12, 0.5, 99), shape, fixed);
        // The tap saw what the model computed: the keys of the last layer are not all zero at every position.
        for (int64_t t = 0; t < 48; t += 47) {
            const float* k = fixed.k.data() + ((int64_t(hp.n_layer - 1) * 48 + t) * hp.n_head_kv) * hp.head_dim;
            CHECK(std::any_of(k, k + hp.head_dim, [](float v) { return v != 0.0f; }));
        }
        const double before = predictor_loss(p, hp, fixed, LossKind::CrossEntropy, nullptr);
        TempFile out(".gguf");
        TrainOptions o;
        o.seq_len          = 48;
        o.rows             = 12;
        o.epochs           = 10;
        o.lr               = 1e-2f;
        o.progress         = false;
        o.checkpoint_every = 7;
        const TrainReport r = train_predictor(p, session, seqs, {seqs[2]}, o, out.path());
        const double after  = predictor_loss(p, hp, fixed, LossKind::CrossEntropy, nullptr);
        CHECK(r.steps == 30);
        CHECK(after < 0.9 * before);
        CHECK(r.last_loss < r.first_loss);
        CHECK(r.eval_loss > 0);

        const BaseModelIdentity id = BaseModelIdentity::of(*model);
        auto back                  = TokenButlerPredictor::load(out.path(), &id);
        CHECK(back->shape().d_dash == 8);
        CHECK(back->key_proj_all() == p.key_proj_all());
        CHECK(back->producers()[1].w2 == p.producers()[1].w2);
    }

    TEST_CASE("train-predictor --init fine-tunes the given predictor; a foreign one is refused") {
        TempDir dir;
        TempFile mf, other;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 21)));
        TinyGemma3Spec wide;
        wide.n_embd = 96;
        other.write(tiny_gemma3_gguf(make_tiny_gemma3(wide, 21)));
        {
            std::ofstream text(dir.file("t.txt"));
            text << random_words(600, 4);
        }
        auto train = [&](const std::string& model, const std::string& out, std::vector<std::string> extra) {
            std::vector<std::string> args{"train-predictor", "-m",      model,    "--text", dir.file("t.txt"),
                                          "--out",           out,       "--seq-len", "32",  "--rows",
                                          "8",               "-G",      "2",      "--d-dash", "8",
                                          "--intdim",        "16",      "--held-out", "0"};
            args.insert(args.end(), extra.begin(), extra.end());
            return run_cli(args);
        };
        REQUIRE(train(mf.path(), dir.file("p1.gguf"), {"--max-steps", "4", "--lr", "1e-2"}).exit_code == 0);
        // A vanishing learning rate: fine-tuning from p1 keeps p1's weights; a fresh start keeps the seeded ones.
        REQUIRE(train(mf.path(), dir.file("p2.gguf"), {"--max-steps", "1", "--lr", "1e-30", "--init", dir.file("p1.gguf")})
                    .exit_code == 0);
        REQUIRE(train(mf.path(), dir.file("p3.gguf"), {"--max-steps", "1", "--lr", "1e-30"}).exit_code == 0);
        auto model = Model::load(mf.path());
        const BaseModelIdentity id = BaseModelIdentity::of(*model);
        auto p1 = TokenButlerPredictor::load(dir.file("p1.gguf"), &id);
        auto p2 = TokenButlerPredictor::load(dir.file("p2.gguf"), &id);
        auto p3 = TokenButlerPredictor::load(dir.file("p3.gguf"), &id);
        auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
            double d = 0;
            for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
            return d;
        };
        CHECK(max_diff(p2->producers()[0].w1, p1->producers()[0].w1) < 1e-6);
        CHECK(max_diff(p2->key_proj_all(), p1->key_proj_all()) < 1e-6);
        CHECK(max_diff(p3->producers()[0].w1, p1->producers()[0].w1) > 1e-4);
        const CliResult foreign = train(other.path(), dir.file("p4.gguf"), {"--max-steps", "1", "--init", dir.file("p1.gguf")});
        CHECK(foreign.exit_code == 1);
        CHECK(foreign.err.find("p1.gguf") != std::string::npos);
        // --loss-layers: 'sparse' trains (the provenance names it); a layer that is not a consumer is a usage error.
        REQUIRE(train(mf.path(), dir.file("p5.gguf"), {"--max-steps", "1", "--loss-layers", "sparse"}).exit_code == 0);
        CHECK(TokenButlerPredictor::load(dir.file("p5.gguf"), &id)->provenance.find("--loss-layers sparse") !=
              std::string::npos);
        const CliResult bad = train(mf.path(), dir.file("p6.gguf"), {"--max-steps", "1", "--loss-layers", "1,0"});
        CHECK(bad.exit_code == 2);
        CHECK(bad.err.find("--loss-layers") != std::string::npos);
        // --loss-sinks / --loss-window: they train (the provenance names them); leaving no key is a usage error.
        REQUIRE(train(mf.path(), dir.file("p7.gguf"), {"--max-steps", "1", "--loss-sinks", "2", "--loss-window", "4"})
                    .exit_code == 0);
        CHECK(TokenButlerPredictor::load(dir.file("p7.gguf"), &id)->provenance.find("--loss-sinks 2 --loss-window 4") !=
              std::string::npos);
        // --init with a smaller -G and --intdim and a larger --d-dash reshapes the file it starts from; a G that does
        // not divide its G, a smaller d' or a wider MLP is a usage error.
        auto reshape = [&](const std::string& out, std::vector<std::string> shape_args) {
            std::vector<std::string> args{"train-predictor", "-m", mf.path(), "--text", dir.file("t.txt"), "--out", out,
                                          "--seq-len", "32", "--rows", "8", "--held-out", "0", "--max-steps", "1",
                                          "--init", dir.file("p1.gguf")};
            args.insert(args.end(), shape_args.begin(), shape_args.end());
            return run_cli(args);
        };
        REQUIRE(reshape(dir.file("p10.gguf"), {"-G", "1", "--intdim", "12", "--d-dash", "12"}).exit_code == 0);
        const auto p10 = TokenButlerPredictor::load(dir.file("p10.gguf"), &id);
        CHECK(p10->shape().group == 1);
        CHECK(p10->shape().intdim == 12);
        CHECK(p10->shape().d_dash == 12);
        for (const std::vector<std::string>& wrong :
             {std::vector<std::string>{"-G", "3"}, {"--d-dash", "4"}, {"--intdim", "32"}}) {
            const CliResult r = reshape(dir.file("p11.gguf"), wrong);
            CHECK(r.exit_code == 2);
            CHECK(!std::filesystem::exists(dir.file("p11.gguf")));
        }
        // --shuffle trains and is named with its seed (the order depends on it).
        REQUIRE(train(mf.path(), dir.file("p9.gguf"), {"--max-steps", "2", "--shuffle", "--seed", "5"}).exit_code == 0);
        CHECK(TokenButlerPredictor::load(dir.file("p9.gguf"), &id)->provenance.find("--shuffle --seed 5") !=
              std::string::npos);
        // --row-tail: rows from the last 3/4 of each sequence train and are named; outside (0, 1] it is refused.
        REQUIRE(train(mf.path(), dir.file("p12.gguf"), {"--max-steps", "1", "--row-tail", "0.75"}).exit_code == 0);
        CHECK(TokenButlerPredictor::load(dir.file("p12.gguf"), &id)->provenance.find("--row-tail 0.75") !=
              std::string::npos);
        CHECK(TokenButlerPredictor::load(dir.file("p9.gguf"), &id)->provenance.find("--row-tail") == std::string::npos);
        for (const char* tail : {"0", "1.5", "-0.5"}) {
            const CliResult r = train(mf.path(), dir.file("p13.gguf"), {"--max-steps", "1", "--row-tail", tail});
            CHECK(r.exit_code == 2);
            CHECK(r.err.find("--row-tail") != std::string::npos);
            CHECK(!std::filesystem::exists(dir.file("p13.gguf")));
        }
        // The keys left out must leave some to the first sampled row, wherever --row-tail puts it: 2 sinks + 9 recent
        // keys fit the rows from position 16 (tail 0.5) but not those from position 8 (tail 0.75).
        REQUIRE(train(mf.path(), dir.file("p14.gguf"), {"--max-steps", "1", "--loss-sinks", "2", "--loss-window", "9"})
                    .exit_code == 0);
        const CliResult early = train(mf.path(), dir.file("p15.gguf"),
                                      {"--max-steps", "1", "--loss-sinks", "2", "--loss-window", "9", "--row-tail", "0.75"});
        CHECK(early.exit_code == 2);
        CHECK(early.err.find("--loss-window") != std::string::npos);
        CHECK(!std::filesystem::exists(dir.file("p15.gguf")));
        for (const char* window : {"-1", "15"}) {  // 15 + 2 sinks: the first row (position 16 of 32) keeps nothing
            const CliResult none = train(mf.path(), dir.file("p8.gguf"), {"--loss-sinks", "2", "--loss-window", window});
            CHECK(none.exit_code == 2);
            CHECK(none.err.find("--loss-window") != std::string::npos);
            CHECK(!std::filesystem::exists(dir.file("p8.gguf")));
        }
    }

    TEST_CASE("a predictor made for another model is refused, naming both") {
        TinyGemma3Spec a_spec, b_spec;
        b_spec.n_layer = 12;
        TempFile fa, fb, pf(".gguf");
        fa.write(tiny_gemma3_gguf(make_tiny_gemma3(a_spec, 1)));
        fb.write(tiny_gemma3_gguf(make_tiny_gemma3(b_spec, 1)));
        auto a = Model::load(fa.path()), b = Model::load(fb.path());
        PredictorShape shape;
        shape.n_layer = 6, shape.n_embd = 64, shape.n_head = 4, shape.n_head_kv = 2, shape.head_dim = 32;
        shape.d_dash = 8, shape.intdim = 16;
        TokenButlerPredictor(shape, BaseModelIdentity::of(*a), 1).save(pf.path());
        const BaseModelIdentity ib = BaseModelIdentity::of(*b);
        try {
            TokenButlerPredictor::load(pf.path(), &ib);
            FAIL("a foreign predictor was accepted");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Format);
            const std::string msg = e.what();
            CHECK(msg.find("6 layers") != std::string::npos);
            CHECK(msg.find("12 layers") != std::string::npos);
        }
        // Through the CLI: exit code 1 (bad input) and one line naming the predictor.
        const CliResult r = run_cli({"generate", "-m", fb.path(), "-p", "hello", "-n", "2", "--selector",
                                     "tokenbutler:" + pf.path(), "--budget", "8"});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find(pf.path()) != std::string::npos);
        // A model file is not a predictor.
        const CliResult r2 = run_cli({"generate", "-m", fb.path(), "-p", "hello", "-n", "2", "--selector",
                                      "tokenbutler:" + fa.path(), "--budget", "8"});
        CHECK(r2.exit_code == 1);
        CHECK(r2.err.find("not a TokenButler predictor") != std::string::npos);
    }

    TEST_CASE("neighbour fetching: hand-worked examples") {
        // 20 tokens, 2 sinks, a window of 3, budget 11: 6 picks from the candidates [2, 17).
        SelectionRequest r;
        r.n_tok = 20, r.budget = 11, r.sinks = 2, r.window = 3, r.neighbours = true;
        std::vector<float> score(20);
        for (int t = 0; t < 20; ++t) score[size_t(t)] = -0.01f * float(t);
        std::vector<int32_t> idx, out;
        idx.reserve(20), out.reserve(20);
        // Top 3 = {5, 6, 10}: the run 5-6 (length 2) brings 7, 8; the run 10 brings 11.
        score[5] = 9, score[6] = 8, score[10] = 7, score[16] = 6, score[15] = 5;
        select_top(r, score.data(), idx, out);
        CHECK(out == std::vector<int32_t>{0, 1, 5, 6, 7, 8, 10, 11, 17, 18, 19});
        // Top 3 = {15, 16, 3}: 15-16 would bring 17, 18, but they are the window's (clamped); 3 brings 4. Two picks
        // short: the best remaining candidates, 2 and then 5 (4 is in already).
        for (int t = 0; t < 20; ++t) score[size_t(t)] = -0.01f * float(t);
        score[15] = 9, score[16] = 8, score[3] = 7;
        select_top(r, score.data(), idx, out);
        CHECK(out == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 15, 16, 17, 18, 19});
        // Without neighbours, the first scores give the plain top 6: 5, 6, 10, 16, 15 and then 2.
        for (int t = 0; t < 20; ++t) score[size_t(t)] = -0.01f * float(t);
        score[5] = 9, score[6] = 8, score[10] = 7, score[16] = 6, score[15] = 5;
        r.neighbours = false;
        select_top(r, score.data(), idx, out);
        CHECK(out == std::vector<int32_t>{0, 1, 2, 5, 6, 10, 15, 16, 17, 18, 19});
    }

    TEST_CASE("prediction interval in the pipeline: fresh selections, predictor runs, exact mode equals plain; dense layers") {
        TinyGemma3Spec spec;
        spec.n_layer = 12;  // global layers 5 and 11, served by producers 4 and 8 (G = 4)
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 77)));
        auto model = Model::load(mf.path());
        const HParams& hp = model->hparams();
        const PredictorShape shape = PredictorShape::of(hp, 4, 8, 16);
        auto pred = std::make_shared<const TokenButlerPredictor>(shape, BaseModelIdentity::of(*model), 5);
        std::vector<TokenId> tokens;
        for (int i = 0; i < 70; ++i) tokens.push_back((i * 53 + 7) % hp.n_vocab);

        auto run = [&](SessionParams sp, OffloadStats* stats) {
            Session s(model, sp);
            std::vector<float> logits(size_t(hp.n_vocab));
            std::vector<std::vector<float>> out;
            s.eval_last(std::span(tokens).first(60), logits.data());
            for (size_t i = 60; i < tokens.size(); ++i) {
                s.eval_last(std::span(tokens).subspan(i, 1), logits.data());
                out.push_back(logits);
            }
            if (stats) *stats = s.offload()->stats();
            return out;
        };
        SessionParams plain;
        plain.n_ctx     = 128;
        plain.n_ubatch  = 32;
        const auto want = run(plain, nullptr);
        auto offloaded  = [&](const std::string& device) {
            SessionParams sp         = plain;
            sp.offload.enabled       = true;
            sp.offload.device        = device;
            sp.offload.selector      = "tokenbutler";
            sp.offload.predictor     = pred;
            sp.offload.budget_tokens = 24;
            sp.offload.window        = 4;
            return sp;
        };
        // The largest error of any logit against the plain run's, relative to that step's largest logit.
        auto worst_rel_err = [&](const std::vector<std::vector<float>>& got) {
            double worst = 0;
            for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, rel_diff(got[i], want[i]));
            return worst;
        };
        for (int interval : {1, 3}) {
            for (bool neighbours : {false, true}) {
                CAPTURE(interval);
                CAPTURE(neighbours);
                SessionParams sp      = offloaded("emu:delay_us=100,seed=2");
                sp.offload.interval   = interval;
                sp.offload.neighbours = neighbours;
                sp.offload.attn       = AttnMode::Exact;
                OffloadStats st;
                const auto got = run(sp, &st);
                // Positions 60 (the first decode token, dense) .. 69: 9 sparse steps, fresh at steps 1, 1+i, ...
                const uint64_t fresh = uint64_t((9 + interval - 1) / interval);
                CHECK(st.sparse_steps == 2 * 9);
                CHECK(st.fresh_selections == 2 * fresh);
                CHECK(st.predictor_runs == 2 * fresh);  // producers 4 and 8
                CHECK(st.prefetches >= 9);               // layer 5 fetched while layer 4 computes, each step
                CHECK(worst_rel_err(got) < 1e-4);
            }
        }
        // Sparse mode with --dense-layers: both sparsified layers listed equals plain; one of them alone does not.
        auto dense_layers_err = [&](const std::vector<int32_t>& dense_layers) {
            SessionParams sp        = offloaded("emu");
            sp.offload.dense_layers = dense_layers;
            return worst_rel_err(run(sp, nullptr));
        };
        CHECK(dense_layers_err({5, 11}) < 1e-4);
        CHECK(dense_layers_err({5}) > 1e-3);
        CHECK(dense_layers_err({11}) > 1e-3);
    }
}

TEST_SUITE("tokenbutler") {
    TEST_CASE("selection on the emu device: the same logits as on the host; a selector without a device path is refused") {
        TinyGemma3Spec spec;
        spec.n_layer = 12;
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 78)));
        auto model = Model::load(mf.path());
        const HParams& hp = model->hparams();
        auto pred = std::make_shared<const TokenButlerPredictor>(PredictorShape::of(hp, 4, 8, 16),
                                                                 BaseModelIdentity::of(*model), 6);
        std::vector<TokenId> tokens;
        for (int i = 0; i < 80; ++i) tokens.push_back((i * 29 + 3) % hp.n_vocab);
        auto run = [&](SelectOn where, bool neighbours, int interval, bool* on_device) {
            SessionParams sp;
            sp.n_ctx                 = 128;
            sp.n_ubatch              = 32;
            sp.offload.enabled       = true;
            sp.offload.device        = "emu:delay_us=50,seed=3";
            sp.offload.selector      = "tokenbutler";
            sp.offload.predictor     = pred;
            sp.offload.budget_tokens = 20;
            sp.offload.window        = 4;
            sp.offload.neighbours    = neighbours;
            sp.offload.interval      = interval;
            sp.offload.select_on     = where;
            Session s(model, sp);
            std::vector<float> logits(size_t(hp.n_vocab));
            std::vector<std::vector<float>> out;
            s.eval_last(std::span(tokens).first(50), logits.data());
            for (size_t i = 50; i < tokens.size(); ++i) {
                s.eval_last(std::span(tokens).subspan(i, 1), logits.data());
                out.push_back(logits);
            }
            *on_device = s.offload()->selects_on_device();
            return out;
        };
        for (bool neighbours : {false, true})
            for (int interval : {1, 4}) {
                CAPTURE(neighbours);
                CAPTURE(interval);
                bool host_dev = true, dev_dev = false, auto_dev = true;
                const auto want = run(SelectOn::Host, neighbours, interval, &host_dev);
                const auto got  = run(SelectOn::Device, neighbours, interval, &dev_dev);
                run(SelectOn::Auto, neighbours, interval, &auto_dev);
                CHECK_FALSE(host_dev);
                CHECK(dev_dev);
                CHECK_FALSE(auto_dev);  // auto selects on the device on cuda only
                CHECK(got == want);     // the same picks: bit-equal logits
            }
        SessionParams sp;
        sp.n_ctx                 = 128;
        sp.offload.enabled       = true;
        sp.offload.device        = "emu";
        sp.offload.selector      = "quest";
        sp.offload.budget_tokens = 20;
        sp.offload.select_on     = SelectOn::Device;
        CHECK_THROWS_WITH_AS(Session(model, sp), doctest::Contains("no device path"), Error);
    }

    TEST_CASE("the shipped predictors: the runtime file by default, the every-layer file for the simulate view") {
        // The library looks in the source tree's predictors/ (a compile definition of butler_core).
        if (const char* env = std::getenv("BUTLER_PREDICTOR"); env && *env) {
            MESSAGE("skipped: $BUTLER_PREDICTOR overrides the lookup");
            return;
        }
        auto ends_with = [](const std::string& s, const std::string& tail) {
            return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
        };
        const std::string model = "/models/gemma-3-270m-q4_k_m.gguf";  // only the file name's stem matters
        CHECK(ends_with(default_predictor_path(model), "/gemma-3-270m-q4_k_m.tokenbutler.gguf"));
        CHECK(ends_with(default_predictor_path(model, PredictorUse::EveryLayer),
                        "/gemma-3-270m-q4_k_m.tokenbutler-all-layers.gguf"));
        // A model without any shipped predictor: the error names both files looked for.
        try {
            default_predictor_path("/models/no-such-model.gguf", PredictorUse::EveryLayer);
            FAIL("expected an error");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("no-such-model.tokenbutler-all-layers.gguf") != std::string::npos);
            CHECK(std::string(e.what()).find("no-such-model.tokenbutler.gguf") != std::string::npos);
        }
    }
}

TEST_SUITE("model") {
    TEST_CASE("default model: the shipped predictor loads by default and decodes through the pipeline") {
        const std::string path = default_model_or_skip();
        if (path.empty()) return;
        const CliResult r = run_cli({"generate", "-m", path, "-p", "The capital of France is", "-n", "8", "--selector",
                                     "tokenbutler", "--budget", "4", "--window", "2", "--sinks", "1", "--json"});
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("\"predictor_runs\"") != std::string::npos);
        CHECK(r.out.find("\"predictor_runs\": 0") == std::string::npos);
    }
}
