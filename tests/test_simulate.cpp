// SPDX-License-Identifier: MIT
// The masked-prefill simulation (predictor/simulate.h) against a float64 re-implementation of its rules written
// here (TOKENBUTLER.md §2.2 and §4): the masks of the ranked selectors and of a greedy one, the attention output given
// the masks, sliding windows, and at model level: keeping everything equals the plain forward, keeping less does not.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "predictor/simulate.h"
#include "predictor/tokenbutler.h"
#include "runtime/hparams.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

using Mask = std::vector<uint8_t>;

struct Problem {
    int64_t n;
    int32_t n_group, hd;
    std::vector<float> q, k, v;  // q (n, n_group, hd); k, v (n, hd)
};

Problem make_problem(int64_t n, int32_t n_group, int32_t hd, uint64_t seed) {
    std::mt19937_64 rng(seed);
    return {n, n_group, hd, gaussian(rng, size_t(n * n_group * hd), 1.0f), gaussian(rng, size_t(n * hd), 1.0f),
            gaussian(rng, size_t(n * hd), 1.0f)};
}

double logit64(const Problem& p, int64_t i, int32_t h, int64_t j) {
    double s = 0;
    for (int32_t d = 0; d < p.hd; ++d) s += double(p.q[size_t((i * p.n_group + h) * p.hd + d)]) * p.k[size_t(j * p.hd + d)];
    return s;
}

int64_t lo_of(int64_t i, int64_t n_swa) { return n_swa > 0 ? std::max<int64_t>(0, i - n_swa + 1) : 0; }

// The reference rules, written from the spec: ranked selectors keep the top ceil(n_i * keep) by their score, then the
// sinks; h2o-tb is the greedy set of §4.
// window: the recent keys quest ranks first (SimulateParams::window).
Mask reference_mask(const std::string& sel, const Problem& p, double keep, int64_t sinks, int64_t n_swa, int page,
                    int64_t window = 0) {
    const int64_t n = p.n;
    Mask m(size_t(n * n), 0);
    std::vector<int64_t> active{0};
    for (int64_t i = 0; i < n; ++i) {
        const int64_t lo = lo_of(i, n_swa), n_valid = i - lo + 1;
        uint8_t* row = m.data() + i * n;
        if (sel == "h2o-tb") {
            std::erase_if(active, [lo](int64_t j) { return j < lo; });
            auto imp = [&](int64_t j) {
                double b = -1e300;
                for (int32_t h = 0; h < p.n_group; ++h) b = std::max(b, logit64(p, i, h, j));
                return b;
            };
            const int64_t budget = std::max<int64_t>(4, int64_t(std::floor(double(n_valid) * keep + 1e-9)));
            if (std::find(active.begin(), active.end(), i) == active.end()) {
                if (int64_t(active.size()) < budget) {
                    active.push_back(i);
                } else {
                    auto victim = std::min_element(active.begin(), active.end(),
                                                   [&](int64_t a, int64_t b) { return imp(a) < imp(b); });
                    if (imp(i) > imp(*victim)) *victim = i;
                }
            }
            for (int64_t j : active) row[j] = 1;
        } else {
            const int64_t k_i = std::min<int64_t>(n_valid, int64_t(std::ceil(double(n_valid) * keep - 1e-9)));
            std::vector<double> score(static_cast<size_t>(n), 0.0);
            for (int64_t j = lo; j <= i; ++j) {
                if (sel == "oracle") {
                    // attention mass summed over the group: sum_h softmax_h(row i)[j] over the valid keys
                    for (int32_t h = 0; h < p.n_group; ++h) {
                        double mx = -1e300, sum = 0;
                        for (int64_t t = lo; t <= i; ++t) mx = std::max(mx, logit64(p, i, h, t));
                        for (int64_t t = lo; t <= i; ++t) sum += std::exp(logit64(p, i, h, t) - mx);
                        score[size_t(j)] += std::exp(logit64(p, i, h, j) - mx) / sum;
                    }
                } else if (sel == "streamingllm") {
                    score[size_t(j)] = double(j);
                } else if (sel == "quest-tb") {
                    // sum_d |q_d| * (max over the whole page of k_d), max over the group
                    const int64_t a = (j / page) * page, b_end = std::min<int64_t>(n, a + page);
                    double best = -1e300;
                    for (int32_t h = 0; h < p.n_group; ++h) {
                        double s = 0;
                        for (int32_t d = 0; d < p.hd; ++d) {
                            double mx = -1e300;
                            for (int64_t t = a; t < b_end; ++t) mx = std::max(mx, double(p.k[size_t(t * p.hd + d)]));
                            s += std::fabs(double(p.q[size_t((i * p.n_group + h) * p.hd + d)])) * mx;
                        }
                        best = std::max(best, s);
                    }
                    score[size_t(j)] = best;
                } else if (sel == "quest") {
                    // sum_d max(q_d min_d, q_d max_d), min / max over the page's keys valid for row i; max over the group
                    const int64_t a = std::max(lo, (j / page) * page), b_end = std::min<int64_t>(i + 1, (j / page) * page + page);
                    double best = -1e300;
                    for (int32_t h = 0; h < p.n_group; ++h) {
                        double s = 0;
                        for (int32_t d = 0; d < p.hd; ++d) {
                            double mn = 1e300, mx = -1e300;
                            for (int64_t t = a; t < b_end; ++t) {
                                mn = std::min(mn, double(p.k[size_t(t * p.hd + d)]));
                                mx = std::max(mx, double(p.k[size_t(t * p.hd + d)]));
                            }
                            const double qd = p.q[size_t((i * p.n_group + h) * p.hd + d)];
                            s += std::max(qd * mn, qd * mx);
                        }
                        best = std::max(best, s);
                    }
                    score[size_t(j)] = best;
                    if (j > i - std::min(window, k_i)) score[size_t(j)] = 1e300;  // the newest min(window, K_i) first
                }
            }
            std::vector<int64_t> order;
            for (int64_t j = lo; j <= i; ++j) order.push_back(j);
            std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] > score[size_t(b)]; });
            for (int64_t t = 0; t < k_i; ++t) row[order[size_t(t)]] = 1;
        }
        for (int64_t j = lo; j < std::min<int64_t>(sinks, i + 1); ++j) row[j] = 1;
    }
    return m;
}

HParams tiny_hparams(int32_t n_group, int32_t hd) {
    HParams hp;
    hp.n_layer = 2, hp.n_embd = 16, hp.n_head = n_group, hp.n_head_kv = 1, hp.head_dim = hd, hp.head_dim_v = hd;
    hp.layer_is_swa.assign(2, 0);
    return hp;
}

}  // namespace

TEST_SUITE("simulate") {
    TEST_CASE("ranked selectors' masks equal the float64 rules, with and without a sliding window") {
        const Problem p = make_problem(70, 2, 8, 5);
        const HParams hp = tiny_hparams(2, 8);
        for (const std::string sel : {"oracle", "streamingllm", "quest", "quest-tb", "h2o-tb"}) {
            for (const double keep : {0.9, 0.5, 0.2}) {
                for (const int64_t n_swa : {int64_t(0), int64_t(24)}) {
                  for (const int32_t window : {0, 5}) {
                    CAPTURE(sel);
                    CAPTURE(keep);
                    CAPTURE(n_swa);
                    CAPTURE(window);
                    SimulateParams sp;
                    sp.selector = sel, sp.keep = keep, sp.sinks = 3, sp.page = 8, sp.window = window;
                    MaskedPrefillSimulator sim(hp, sp, p.n);
                    Mask got(size_t(p.n * p.n));
                    sim.select_layer(p.n, p.n_group, p.hd, n_swa, p.q.data(), p.k.data(), nullptr, got.data());
                    // only quest (and tokenbutler, below) keep the recent window
                    const Mask want = reference_mask(sel, p, keep, 3, n_swa, 8, sel == "quest" ? window : 0);
                    int64_t diff = 0;
                    for (size_t t = 0; t < got.size(); ++t) diff += got[t] != want[t];
                    CHECK(diff == 0);
                  }
                }
            }
        }
    }

    TEST_CASE("every selector keeps about the share asked for, never a future key, always the sinks") {
        const Problem p = make_problem(96, 2, 8, 9);
        const HParams hp = tiny_hparams(2, 8);
        for (const std::string sel : {"oracle", "streamingllm", "quest", "quest-tb", "h2o", "h2o-tb", "snapkv", "snapkv-tb"}) {
            CAPTURE(sel);
            SimulateParams sp;
            sp.selector = sel, sp.keep = 0.5, sp.sinks = 4;
            MaskedPrefillSimulator sim(hp, sp, p.n);
            Mask m(size_t(p.n * p.n));
            sim.select_layer(p.n, p.n_group, p.hd, 0, p.q.data(), p.k.data(), nullptr, m.data());
            double share = 0;
            for (int64_t i = 0; i < p.n; ++i) {
                int64_t kept = 0;
                for (int64_t j = 0; j < p.n; ++j) {
                    if (j > i) CHECK(m[size_t(i * p.n + j)] == 0);
                    kept += m[size_t(i * p.n + j)];
                }
                for (int64_t j = 0; j < std::min<int64_t>(4, i + 1); ++j) CHECK(m[size_t(i * p.n + j)] == 1);
                share += double(kept) / double(i + 1);
            }
            share /= double(p.n);
            CHECK(share > 0.45);
            CHECK(share < 0.70);  // K_i plus up to 4 sinks: 4 / (i + 1) more on the short rows
        }
    }

    TEST_CASE("the layer output is softmax over the kept keys times V (float64), per query head") {
        const int32_t n_group = 2, hd = 8;
        const Problem p = make_problem(40, n_group, hd, 13);
        const HParams hp = tiny_hparams(n_group, hd);
        SimulateParams sp;
        sp.selector = "oracle", sp.keep = 0.3, sp.sinks = 2;
        MaskedPrefillSimulator sim(hp, sp, p.n);
        std::vector<float> out(static_cast<size_t>(p.n * n_group * hd));
        std::vector<float> x(static_cast<size_t>(p.n * hp.n_embd), 0.0f);
        const LayerAttentionIo io{1, 0, p.n, 0, x.data(), p.q.data(), p.k.data(), p.v.data(), out.data()};
        REQUIRE(sim.attend(io));
        const Mask m = reference_mask("oracle", p, 0.3, 2, 0, 16);
        double max_err = 0, max_ref = 0;
        for (int64_t i = 0; i < p.n; ++i)
            for (int32_t h = 0; h < n_group; ++h) {
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j <= i; ++j)
                    if (m[size_t(i * p.n + j)]) mx = std::max(mx, logit64(p, i, h, j));
                std::vector<double> o(static_cast<size_t>(hd), 0.0);
                for (int64_t j = 0; j <= i; ++j) {
                    if (!m[size_t(i * p.n + j)]) continue;
                    const double w = std::exp(logit64(p, i, h, j) - mx);
                    sum += w;
                    for (int32_t d = 0; d < hd; ++d) o[size_t(d)] += w * p.v[size_t(j * hd + d)];
                }
                for (int32_t d = 0; d < hd; ++d) {
                    const double ref = o[size_t(d)] / sum;
                    max_ref = std::max(max_ref, std::fabs(ref));
                    max_err = std::max(max_err, std::fabs(ref - out[size_t((i * n_group + h) * hd + d)]));
                }
            }
        CHECK(max_err < 1e-4 * max_ref);
        CHECK(sim.masked_share() > 0.5);  // 30% kept (+2 sinks): most keys masked
        // Layer 0 stays dense: the session attends itself.
        const LayerAttentionIo io0{0, 0, p.n, 0, x.data(), p.q.data(), p.k.data(), p.v.data(), out.data()};
        CHECK_FALSE(sim.attend(io0));
    }

    TEST_CASE("model level: keeping every key equals the plain forward; keeping half changes it; dense layers") {
        TinyGemma3Spec spec;
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 31)));
        auto model        = Model::load(mf.path());
        const HParams& hp = model->hparams();
        std::vector<TokenId> tokens{model->tokenizer().bos()};
        for (int i = 1; i < 40; ++i) tokens.push_back((i * 11 + 3) % hp.n_vocab);
        std::vector<int32_t> rows(20);
        std::iota(rows.begin(), rows.end(), 20);
        SessionParams sp;
        sp.n_ctx = 40, sp.n_ubatch = 40, sp.kv_type = DType::F32;
        auto run = [&](const char* sel, double keep, double* masked, std::vector<int32_t> dense_layers = {}) {
            Session s(model, sp);
            std::unique_ptr<MaskedPrefillSimulator> sim;
            if (sel) {
                SimulateParams p;
                p.selector = sel, p.keep = keep, p.dense_layers = std::move(dense_layers);
                sim = std::make_unique<MaskedPrefillSimulator>(hp, p, 40);
                s.set_attention_override([&sim](const LayerAttentionIo& io) { return sim->attend(io); });
            }
            std::vector<float> hidden(rows.size() * size_t(hp.n_embd));
            s.eval(tokens, rows, hidden.data());
            if (masked) *masked = sim->masked_share();
            return hidden;
        };
        const std::vector<float> plain = run(nullptr, 1, nullptr);
        auto rel = [&](const std::vector<float>& a) { return rel_diff(a, plain); };
        double masked = -1;
        CHECK(rel(run("oracle", 1.0, &masked)) < 1e-4);
        CHECK(masked == 0.0);
        CHECK(rel(run("dense", 0.3, &masked)) < 1e-4);
        const std::vector<float> sparse = run("streamingllm", 0.5, &masked);
        CHECK(rel(sparse) > 1e-3);
        CHECK(masked > 0.3);
        // Every sparsified layer named dense: the plain forward again, nothing masked.
        std::vector<int32_t> all_layers;
        for (int32_t l = 1; l < hp.n_layer; ++l) all_layers.push_back(l);
        CHECK(rel(run("streamingllm", 0.5, &masked, all_layers)) < 1e-4);
        CHECK(masked == 0.0);
        // One layer dense: neither the plain forward nor the all-sparse one, and the other layers still masked.
        REQUIRE(hp.n_layer >= 3);
        double masked_some            = -1;
        const std::vector<float> some = run("streamingllm", 0.5, &masked_some, {1});
        CHECK(rel(some) > 1e-4);
        CHECK(rel_diff(some, sparse) > 1e-4);
        CHECK(masked_some > 0.0);
    }

    TEST_CASE("compare_rows: log-probabilities, KL(ref || this) and argmaxes equal float64 over the tied output") {
        TinyGemma3Spec spec;
        const TinyGemma3 tiny = make_tiny_gemma3(spec, 41);
        TempFile mf;
        mf.write(tiny_gemma3_gguf(tiny));
        auto model        = Model::load(mf.path());
        const HParams& hp = model->hparams();
        REQUIRE(hp.final_logit_softcap == 0.0f);
        SessionParams sp;
        sp.n_ctx = 8, sp.kv_type = DType::F32;
        Session s(model, sp);
        std::mt19937_64 rng(3);
        const int64_t n_rows = 3, E = hp.n_embd, V = hp.n_vocab;
        const std::vector<float> a = gaussian(rng, size_t(n_rows * E), 1.0f), b = gaussian(rng, size_t(n_rows * E), 1.0f);
        const std::vector<TokenId> targets{1, 7, TokenId(V - 1)};
        std::vector<RowComparison> got(static_cast<size_t>(n_rows));
        s.compare_rows(a.data(), b.data(), n_rows, targets.data(), got.data());
        for (int64_t r = 0; r < n_rows; ++r) {
            // float64 logits against the tied embedding (tok_embd is the output matrix of this fixture)
            auto log_softmax = [&](const std::vector<float>& h, TokenId* argmax) {
                std::vector<double> l(static_cast<size_t>(V));
                for (int64_t v = 0; v < V; ++v) {
                    double z = 0;
                    for (int64_t e = 0; e < E; ++e) z += double(h[size_t(r * E + e)]) * tiny.tok_embd[size_t(v * E + e)];
                    l[size_t(v)] = z;
                }
                *argmax = TokenId(std::max_element(l.begin(), l.end()) - l.begin());
                const double m = *std::max_element(l.begin(), l.end());
                double sum = 0;
                for (double z : l) sum += std::exp(z - m);
                for (double& z : l) z -= m + std::log(sum);
                return l;
            };
            TokenId am = -1, am_ref = -1;
            const std::vector<double> la = log_softmax(a, &am), lb = log_softmax(b, &am_ref);
            double kl = 0;
            for (int64_t v = 0; v < V; ++v) kl += std::exp(lb[size_t(v)]) * (lb[size_t(v)] - la[size_t(v)]);
            const RowComparison& c = got[size_t(r)];
            CHECK(c.logprob == doctest::Approx(la[size_t(targets[size_t(r)])]).epsilon(1e-4));
            CHECK(c.logprob_ref == doctest::Approx(lb[size_t(targets[size_t(r)])]).epsilon(1e-4));
            CHECK(c.kl == doctest::Approx(kl).epsilon(1e-3));
            CHECK(kl > 0.01);  // two random rows: the check is not vacuous
            CHECK(c.argmax == am);
            CHECK(c.argmax_ref == am_ref);
        }
    }

    TEST_CASE("tokenbutler: each layer ranks keys by its producer's q' . k' mass (float64), layer G included, "
              "after a recent window; or by the group's max predicted logit") {
      int64_t max_vs_mass = 0;  // mask entries where the two group scores disagree (the fixture has 2 heads a group)
      std::map<int32_t, std::vector<Mask>> mass_masks;  // window -> the mass rule's masks of layers 1 .. n_layer-1
      for (const bool group_max : {false, true})
      for (const int32_t window : {0, 5}) {
        CAPTURE(group_max);
        CAPTURE(window);
        TinyGemma3Spec spec;  // 6 layers; G = 2: producers 0, 2, 4 serve layers 1-2, 3-4, 5
        TempFile mf;
        mf.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 17)));
        auto model        = Model::load(mf.path());
        const HParams& hp = model->hparams();
        auto pred = std::make_shared<TokenButlerPredictor>(PredictorShape::of(hp, 2, 8, 24), BaseModelIdentity::of(*model), 5);
        const PredictorShape& ps = pred->shape();
        const int64_t n = 36;
        std::vector<TokenId> tokens{model->tokenizer().bos()};
        for (int i = 1; i < n; ++i) tokens.push_back((i * 13 + 5) % hp.n_vocab);
        SessionParams sp;
        sp.n_ctx = int32_t(n), sp.n_ubatch = int32_t(n), sp.kv_type = DType::F32;
        Session s(model, sp);
        SimulateParams p;
        p.selector = "tokenbutler", p.keep = 0.4, p.sinks = 2, p.window = window, p.predictor = pred;
        p.group_max_logit = group_max;
        MaskedPrefillSimulator sim(hp, p, n);
        std::vector<std::vector<float>> xs(size_t(hp.n_layer)), ks(size_t(hp.n_layer));
        std::vector<Mask> masks(size_t(hp.n_layer));
        s.set_attention_override([&](const LayerAttentionIo& io) {
            xs[size_t(io.layer)].assign(io.x, io.x + n * hp.n_embd);
            ks[size_t(io.layer)].assign(io.k, io.k + n * hp.n_head_kv * hp.head_dim);
            const bool done = sim.attend(io);
            if (done) masks[size_t(io.layer)].assign(sim.last_mask(), sim.last_mask() + n * n);
            return done;
        });
        std::vector<float> hidden(static_cast<size_t>(hp.n_embd));
        const int32_t last = int32_t(n - 1);
        s.eval(tokens, std::span<const int32_t>(&last, 1), hidden.data());
        const int32_t g = hp.n_head_kv - 1, n_group = hp.n_head / hp.n_head_kv, d = ps.d_dash, hd = hp.head_dim;
        for (int32_t l = 1; l < hp.n_layer; ++l) {
            CAPTURE(l);
            const int32_t prod = ((l - 1) / 2) * 2, slot = (l - 1) % 2;
            const auto& P = pred->producers()[size_t(prod / 2)];
            // q' (n, n_group, d') of this group in float64
            std::vector<double> qi(static_cast<size_t>(n * n_group * d));
            for (int64_t i = 0; i < n; ++i) {
                const float* x = xs[size_t(prod)].data() + i * hp.n_embd;
                double mean = 0, var = 0;
                for (int e = 0; e < hp.n_embd; ++e) mean += x[e];
                mean /= hp.n_embd;
                for (int e = 0; e < hp.n_embd; ++e) var += (x[e] - mean) * (x[e] - mean);
                const double inv = 1.0 / std::sqrt(var / hp.n_embd + 1e-5);
                std::vector<double> a(static_cast<size_t>(ps.intdim));
                for (int r = 0; r < ps.intdim; ++r) {
                    double z = 0;
                    for (int e = 0; e < hp.n_embd; ++e)
                        z += double(P.w1[size_t(r * hp.n_embd + e)]) * ((x[e] - mean) * inv * P.ln_w[size_t(e)] + P.ln_b[size_t(e)]);
                    a[size_t(r)] = z / (1 + std::exp(-z));
                }
                for (int32_t h = 0; h < n_group; ++h)
                    for (int32_t e = 0; e < d; ++e) {
                        const int64_t row = (int64_t(slot) * hp.n_head + g * n_group + h) * d + e;
                        double z = 0;
                        for (int r = 0; r < ps.intdim; ++r) z += double(P.w2[size_t(row * ps.intdim + r)]) * a[size_t(r)];
                        qi[size_t((i * n_group + h) * d + e)] = z;
                    }
            }
            const float* wk = pred->key_proj(l, g);
            const int64_t n_swa = hp.is_swa(l) ? hp.n_swa : 0;
            Mask want(static_cast<size_t>(n * n), 0);
            for (int64_t i = 0; i < n; ++i) {
                const int64_t lo = lo_of(i, n_swa), n_valid = i - lo + 1;
                // predicted logits z_h(j) = q'_h . k'_j / sqrt(d'); score = sum_h softmax_h(z)[j] over the valid keys
                std::vector<std::vector<double>> z(static_cast<size_t>(n_group));
                for (int32_t h = 0; h < n_group; ++h)
                    for (int64_t j = lo; j <= i; ++j) {
                        const float* k = ks[size_t(l)].data() + (j * hp.n_head_kv + g) * hd;
                        double dot = 0;
                        for (int32_t e = 0; e < d; ++e) {
                            double kp = 0;
                            for (int32_t c = 0; c < hd; ++c) kp += double(wk[e * hd + c]) * k[c];
                            dot += qi[size_t((i * n_group + h) * d + e)] * kp;
                        }
                        z[size_t(h)].push_back(dot / std::sqrt(double(d)));
                    }
                // the window's keys first, then the older keys by predicted mass
                const int64_t k_i = int64_t(std::ceil(double(n_valid) * 0.4 - 1e-9));
                const int64_t w   = std::min<int64_t>(window, k_i);
                std::vector<std::pair<double, int64_t>> sc;
                for (int64_t j = lo; j <= i; ++j) sc.push_back({group_max ? -1e300 : 0.0, j});
                for (int32_t h = 0; h < n_group; ++h) {
                    const auto& zh = z[size_t(h)];
                    const double mx = *std::max_element(zh.begin(), zh.end());
                    double sum = 0;
                    for (double v : zh) sum += std::exp(v - mx);
                    for (size_t t = 0; t < zh.size(); ++t) {
                        if (group_max) sc[t].first = std::max(sc[t].first, zh[t]);  // negated below
                        else sc[t].first -= std::exp(zh[t] - mx) / sum;
                    }
                }
                if (group_max)
                    for (auto& e : sc) e.first = -e.first;
                for (auto& [score, j] : sc)
                    if (j > i - w) score = -1e300;  // ranks first
                std::stable_sort(sc.begin(), sc.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
                for (int64_t t = 0; t < k_i; ++t) want[size_t(i * n + sc[size_t(t)].second)] = 1;
                for (int64_t j = lo; j < std::min<int64_t>(2, i + 1); ++j) want[size_t(i * n + j)] = 1;
            }
            REQUIRE(masks[size_t(l)].size() == want.size());
            int64_t diff = 0;
            for (size_t t = 0; t < want.size(); ++t) diff += masks[size_t(l)][t] != want[t];
            CHECK(diff == 0);
            if (!group_max) mass_masks[window].push_back(masks[size_t(l)]);
            else
                for (size_t t = 0; t < want.size(); ++t)
                    max_vs_mass += masks[size_t(l)][t] != mass_masks[window][size_t(l - 1)][t];
        }
      }
      CHECK(max_vs_mass > 0);  // the two rules pick differently here, so each branch above is tested
    }

    TEST_CASE("bad parameters are refused") {
        const HParams hp = tiny_hparams(2, 8);
        SimulateParams sp;
        sp.selector = "nonesuch";
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.selector = "oracle", sp.keep = 0;
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.selector = "tokenbutler", sp.keep = 0.5;
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.selector = "oracle", sp.window = -1;
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.window = 32, sp.dense_layers = {0};  // layer 0 is always dense: naming it is a mistake
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.dense_layers = {hp.n_layer};
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
        sp.dense_layers = {hp.n_layer - 1};
        CHECK_NOTHROW(MaskedPrefillSimulator(hp, sp, 8));
        sp.group_max_logit = true;  // tokenbutler's group score only
        CHECK_THROWS_AS(MaskedPrefillSimulator(hp, sp, 8), Error);
    }
}
