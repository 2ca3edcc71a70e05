// SPDX-License-Identifier: MIT
// The masked-prefill simulation; the rules are in simulate.h. Logits of a layer are computed whole (one (n, n) sgemm
// per query head, the future half wasted), the mask row by row, then the masked softmax and one sgemm with V.
#include "predictor/simulate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu_kernels/matmul.h"
#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "runtime/hparams.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler {

namespace {

enum class Kind { Dense, Oracle, TokenButler, StreamingLlm, Quest, QuestTb, H2o, H2oTb, SnapKv, SnapKvTb };

Kind parse_kind(const std::string& name) {
    if (name == "dense") return Kind::Dense;
    if (name == "oracle") return Kind::Oracle;
    if (name == "tokenbutler" || name.rfind("tokenbutler:", 0) == 0) return Kind::TokenButler;
    if (name == "streamingllm") return Kind::StreamingLlm;
    if (name == "quest") return Kind::Quest;
    if (name == "quest-tb") return Kind::QuestTb;
    if (name == "h2o") return Kind::H2o;
    if (name == "h2o-tb") return Kind::H2oTb;
    if (name == "snapkv") return Kind::SnapKv;
    if (name == "snapkv-tb") return Kind::SnapKvTb;
    fail(Status::Usage, "unknown selector '{}' for the simulate view (known: {})", name, simulate_selector_names());
}

constexpr int64_t kObsWindow = 32;  // SnapKV's observation window (both variants)

// ceil / floor of n * keep, robust to keep's binary representation (0.9 * 10 is 9.000000000000002).
int64_t ceil_share(int64_t n, double keep) { return int64_t(std::ceil(double(n) * keep - 1e-9)); }
int64_t floor_share(int64_t n, double keep) { return int64_t(std::floor(double(n) * keep + 1e-9)); }

}  // namespace

const char* simulate_selector_names() {
    return "dense, oracle, tokenbutler[:PATH], streamingllm, quest, quest-tb, h2o, h2o-tb, snapkv, snapkv-tb";
}

struct MaskedPrefillSimulator::Impl {
    const HParams& hp;
    SimulateParams p;
    Kind kind;
    int64_t max_tok;
    std::vector<float> logits;    // (n_group, n, n) this KV head's logits, then probabilities
    std::vector<float> imp;       // (n_group, n, n) tokenbutler importance logits q'.k'/sqrt(d') per query head
    std::vector<uint8_t> mask;    // (n, n)
    ProducerActivations producer; // the current producer's MLP over all rows; .qp (n, G * n_head * d') the queries
    std::vector<float> k_imp;     // (n, d')
    // Per-row scratch of the sequential (greedy) selectors.
    std::vector<double> acc;      // (n) h2o accumulated attention / snapkv summed softmax rows
    std::vector<float> ring;      // (kObsWindow, n) the last rows' group-summed probabilities (snapkv)
    std::vector<float> pooled;    // (n)
    std::vector<float> page_lo, page_hi;  // (n_pages, hd)

    Impl(const HParams& h, SimulateParams params, int64_t m) : hp(h), p(std::move(params)), kind(parse_kind(p.selector)), max_tok(m) {}

    // --- shared pieces -------------------------------------------------------------------------------------------

    static int64_t row_lo(int64_t i, int64_t n_swa) { return n_swa > 0 ? std::max<int64_t>(0, i - n_swa + 1) : 0; }
    int64_t budget(int64_t n_valid) const {
        return kind == Kind::Dense ? n_valid : std::clamp<int64_t>(ceil_share(n_valid, p.keep), 1, n_valid);
    }
    int64_t budget_tb(int64_t n_valid) const { return std::max<int64_t>(4, floor_share(n_valid, p.keep)); }

    // Row i's group-max logit of key j.
    float group_max(int64_t n, int32_t n_group, int64_t i, int64_t j) const {
        float best = -std::numeric_limits<float>::infinity();
        for (int32_t h = 0; h < n_group; ++h) best = std::max(best, logits[size_t((h * n + i) * n + j)]);
        return best;
    }

    // Score of a key for a mask the group's query heads share: its attention mass summed over the heads,
    // sum_h softmax_h(row i)[j] over [lo, i], from per-head logits l (n_group, n, n). (A max of raw logits over the
    // heads would favour whichever head has the widest logit range.)
    static void group_mass(const float* l, int64_t n, int32_t n_group, int64_t i, int64_t lo, float* score) {
        std::fill(score + lo, score + i + 1, 0.0f);
        for (int32_t h = 0; h < n_group; ++h) add_softmax(l + (h * n + i) * n + lo, i - lo + 1, score + lo);
    }

    // The paper's group score: max_h l_h(row i)[j] over [lo, i], from per-head logits l (n_group, n, n).
    static void group_max_of(const float* l, int64_t n, int32_t n_group, int64_t i, int64_t lo, float* score) {
        std::copy(l + i * n + lo, l + i * n + i + 1, score + lo);
        for (int32_t h = 1; h < n_group; ++h)
            for (int64_t j = lo; j <= i; ++j) score[j] = std::max(score[j], l[(h * n + i) * n + j]);
    }

    // The group-summed causal softmax of row i over [lo, i] into dst (n; zero elsewhere).
    void row_probs(int64_t n, int32_t n_group, int64_t i, int64_t lo, float* dst) const {
        std::fill(dst, dst + n, 0.0f);
        group_mass(logits.data(), n, n_group, i, lo, dst);
    }

    // Marks the top `count` keys of [lo, hi] by score (ties to the lower id) in mask_row. idx: scratch (n).
    static void mark_top(const float* score, int64_t lo, int64_t hi, int64_t count, std::vector<int32_t>& idx,
                         uint8_t* mask_row) {
        idx.clear();
        for (int64_t j = lo; j <= hi; ++j) idx.push_back(int32_t(j));
        count = std::min<int64_t>(count, int64_t(idx.size()));
        if (count <= 0) return;
        auto better = [score](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
        if (count < int64_t(idx.size())) std::nth_element(idx.begin(), idx.begin() + count - 1, idx.end(), better);
        for (int64_t t = 0; t < count; ++t) mask_row[idx[size_t(t)]] = 1;
    }

    // Row i's k_i keys: for the selectors with a recent window (tokenbutler, quest) its min(window, k_i) newest keys,
    // then the top of the older keys [lo, i - w] by score; for the others the top k_i of [lo, i].
    void mark_window_then_top(const float* score, int64_t i, int64_t lo, int64_t k_i, std::vector<int32_t>& idx,
                              uint8_t* mask_row) const {
        const bool windowed = kind == Kind::TokenButler || kind == Kind::Quest;
        const int64_t w     = windowed ? std::min<int64_t>(p.window, k_i) : 0;
        for (int64_t j = i - w + 1; j <= i; ++j) mask_row[j] = 1;
        mark_top(score, lo, i - w, k_i - w, idx, mask_row);
    }

    void add_sinks(int64_t i, int64_t lo, uint8_t* mask_row) const {
        for (int64_t j = lo; j < std::min<int64_t>(p.sinks, i + 1); ++j) mask_row[j] = 1;
    }

    // --- the selection of one (layer, KV head) ----------------------------------------------------------------------

    // Fills mask (n, n) from logits (n_group, n, n) of the group (and imp for tokenbutler).
    void select(int64_t n, int32_t n_group, int32_t hd, int64_t n_swa, const float* q, int64_t ldq, const float* k,
                int64_t ldk, uint8_t* mask_out) {
        std::fill(mask_out, mask_out + n * n, uint8_t(0));
        switch (kind) {
        case Kind::Dense:
        case Kind::Oracle:
        case Kind::TokenButler:
        case Kind::StreamingLlm:
            select_scored(n, n_group, n_swa, mask_out);
            break;
        case Kind::Quest:
        case Kind::QuestTb:
            select_quest(n, n_group, hd, n_swa, q, ldq, k, ldk, mask_out);
            break;
        case Kind::H2o: select_h2o(n, n_group, n_swa, mask_out); break;
        case Kind::H2oTb:
        case Kind::SnapKvTb: select_greedy_tb(n, n_group, n_swa, mask_out); break;
        case Kind::SnapKv: select_snapkv(n, n_group, n_swa, mask_out); break;
        }
    }

    void select_scored(int64_t n, int32_t n_group, int64_t n_swa, uint8_t* mask_out) {
#pragma omp parallel
        {
            std::vector<float> score(static_cast<size_t>(n));  // per thread, per layer: outside any decode loop
            std::vector<int32_t> idx;
            idx.reserve(size_t(n));
#pragma omp for schedule(dynamic, 16)
            for (int64_t i = 0; i < n; ++i) {
                const int64_t lo = row_lo(i, n_swa), n_valid = i - lo + 1;
                uint8_t* row     = mask_out + i * n;
                for (int64_t j = lo; j <= i; ++j) {
                    switch (kind) {
                    case Kind::Oracle:
                    case Kind::TokenButler: break;
                    default: score[size_t(j)] = float(j); break;  // dense, streamingllm: recency
                    }
                }
                if (kind == Kind::Oracle) group_mass(logits.data(), n, n_group, i, lo, score.data());
                if (kind == Kind::TokenButler)
                    (p.group_max_logit ? group_max_of : group_mass)(imp.data(), n, n_group, i, lo, score.data());
                mark_window_then_top(score.data(), i, lo, budget(n_valid), idx, row);
                add_sinks(i, lo, row);
            }
        }
    }

    void select_quest(int64_t n, int32_t n_group, int32_t hd, int64_t n_swa, const float* q, int64_t ldq,
                      const float* k, int64_t ldk, uint8_t* mask_out) {
        const int64_t P = p.page, n_pages = (n + P - 1) / P;
        page_lo.assign(size_t(n_pages * hd), std::numeric_limits<float>::infinity());
        page_hi.assign(size_t(n_pages * hd), -std::numeric_limits<float>::infinity());
        for (int64_t t = 0; t < n; ++t) {
            float* mn = page_lo.data() + (t / P) * hd;
            float* mx = page_hi.data() + (t / P) * hd;
            for (int32_t d = 0; d < hd; ++d) {
                mn[d] = std::min(mn[d], k[t * ldk + d]);
                mx[d] = std::max(mx[d], k[t * ldk + d]);
            }
        }
        const bool tb = kind == Kind::QuestTb;
#pragma omp parallel
        {
            std::vector<float> score(static_cast<size_t>(n)), mn(static_cast<size_t>(hd)), mx(static_cast<size_t>(hd));
            std::vector<int32_t> idx;
            idx.reserve(size_t(n));
#pragma omp for schedule(dynamic, 16)
            for (int64_t i = 0; i < n; ++i) {
                const int64_t lo = row_lo(i, n_swa), n_valid = i - lo + 1;
                for (int64_t pg = lo / P; pg <= i / P; ++pg) {
                    const int64_t a = pg * P, b = std::min(n, a + P) - 1;  // the page's keys [a, b]
                    const float* lo_d = page_lo.data() + pg * hd;
                    const float* hi_d = page_hi.data() + pg * hd;
                    if (!tb && (a < lo || b > i)) {  // Quest bounds cover the row's valid keys of the page only
                        std::fill(mn.begin(), mn.end(), std::numeric_limits<float>::infinity());
                        std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
                        for (int64_t t = std::max(a, lo); t <= std::min(b, i); ++t)
                            for (int32_t d = 0; d < hd; ++d) {
                                mn[size_t(d)] = std::min(mn[size_t(d)], k[t * ldk + d]);
                                mx[size_t(d)] = std::max(mx[size_t(d)], k[t * ldk + d]);
                            }
                        lo_d = mn.data(), hi_d = mx.data();
                    }
                    float best = -std::numeric_limits<float>::infinity();
                    for (int32_t h = 0; h < n_group; ++h) {
                        const float* qh = q + i * ldq + int64_t(h) * hd;
                        float s         = 0;
                        if (tb)
                            for (int32_t d = 0; d < hd; ++d) s += std::fabs(qh[d]) * hi_d[d];
                        else
                            for (int32_t d = 0; d < hd; ++d) s += std::max(qh[d] * lo_d[d], qh[d] * hi_d[d]);
                        best = std::max(best, s);
                    }
                    for (int64_t t = std::max(a, lo); t <= std::min(b, i); ++t) score[size_t(t)] = best;
                }
                uint8_t* row = mask_out + i * n;
                mark_window_then_top(score.data(), i, lo, budget(n_valid), idx, row);
                add_sinks(i, lo, row);
            }
        }
    }

    void select_h2o(int64_t n, int32_t n_group, int64_t n_swa, uint8_t* mask_out) {
        acc.assign(size_t(n), 0.0);
        std::vector<int32_t> active;  // per layer: outside any decode loop
        std::vector<float> probs(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t lo = row_lo(i, n_swa), n_valid = i - lo + 1;
            std::erase_if(active, [lo](int32_t j) { return j < lo; });
            active.push_back(int32_t(i));
            const int64_t keep = budget(n_valid), recent = keep / 2;
            while (int64_t(active.size()) > keep) {
                int64_t victim = -1;
                for (size_t a = 0; a < active.size(); ++a) {
                    const int32_t j = active[a];
                    if (j > i - recent) continue;  // the recent half is kept
                    if (victim < 0 || acc[size_t(j)] < acc[size_t(active[size_t(victim)])]) victim = int64_t(a);
                }
                if (victim < 0) break;
                active.erase(active.begin() + victim);
            }
            uint8_t* row = mask_out + i * n;
            for (int32_t j : active) row[j] = 1;
            add_sinks(i, lo, row);
            // The row's attention over its set, summed over the group, accumulates.
            std::fill(probs.begin(), probs.end(), 0.0f);
            for (int32_t h = 0; h < n_group; ++h) {
                const float* l = logits.data() + (h * n + i) * n;
                float m        = -std::numeric_limits<float>::infinity();
                for (int64_t j = lo; j <= i; ++j)
                    if (row[j]) m = std::max(m, l[j]);
                double s = 0;
                for (int64_t j = lo; j <= i; ++j)
                    if (row[j]) s += std::exp(double(l[j] - m));
                for (int64_t j = lo; j <= i; ++j)
                    if (row[j]) probs[size_t(j)] += float(std::exp(double(l[j] - m)) / s);
            }
            for (int64_t j = lo; j <= i; ++j) acc[size_t(j)] += probs[size_t(j)];
        }
    }

    // The sum of the group-summed causal softmax rows max(0, i - 31) .. i, kept in acc by a ring of rows.
    void advance_window_sum(int64_t n, int32_t n_group, int64_t n_swa, int64_t i) {
        float* slot = ring.data() + (i % kObsWindow) * n;
        if (i >= kObsWindow)
            for (int64_t j = 0; j < n; ++j) acc[size_t(j)] -= slot[j];
        row_probs(n, n_group, i, row_lo(i, n_swa), slot);
        for (int64_t j = 0; j <= i; ++j) acc[size_t(j)] += slot[j];
    }

    void select_greedy_tb(int64_t n, int32_t n_group, int64_t n_swa, uint8_t* mask_out) {
        const bool snap = kind == Kind::SnapKvTb;
        if (snap) {
            acc.assign(size_t(n), 0.0);
            ring.assign(size_t(kObsWindow * n), 0.0f);
            pooled.assign(size_t(n), 0.0f);
        }
        std::vector<int32_t> active{0};  // per layer: outside any decode loop
        for (int64_t i = 0; i < n; ++i) {
            const int64_t lo = row_lo(i, n_swa), n_valid = i - lo + 1;
            std::erase_if(active, [lo](int32_t j) { return j < lo; });
            // Importance of the row's keys: the current logit (h2o-tb) or the pooled window sum (snapkv-tb).
            auto importance = [&](int64_t j) {
                return snap ? pooled[size_t(j)] : group_max(n, n_group, i, j);
            };
            if (snap) {
                advance_window_sum(n, n_group, n_swa, i);
                for (int64_t j = lo; j <= i; ++j) {  // max_pool1d(kernel 7, pad 3) over the valid keys
                    double m = -std::numeric_limits<double>::infinity();
                    for (int64_t t = std::max(lo, j - 3); t <= std::min(i, j + 3); ++t) m = std::max(m, acc[size_t(t)]);
                    pooled[size_t(j)] = float(m);
                }
            }
            if (std::find(active.begin(), active.end(), int32_t(i)) == active.end()) {
                if (int64_t(active.size()) < budget_tb(n_valid)) {
                    active.push_back(int32_t(i));
                } else if (!active.empty()) {
                    size_t victim = 0;
                    for (size_t a = 1; a < active.size(); ++a)
                        if (importance(active[a]) < importance(active[victim])) victim = a;
                    if (importance(i) > importance(active[victim])) active[victim] = int32_t(i);
                } else {
                    active.push_back(int32_t(i));
                }
            }
            uint8_t* row = mask_out + i * n;
            for (int32_t j : active) row[j] = 1;
            add_sinks(i, lo, row);
        }
    }

    void select_snapkv(int64_t n, int32_t n_group, int64_t n_swa, uint8_t* mask_out) {
        acc.assign(size_t(n), 0.0);
        ring.assign(size_t(kObsWindow * n), 0.0f);
        pooled.assign(size_t(n), 0.0f);
        std::vector<int32_t> idx;  // per layer: outside any decode loop
        idx.reserve(size_t(n));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t lo = row_lo(i, n_swa), n_valid = i - lo + 1;
            // Row i is the first generated token after a prompt of rows 0 .. i-1: the votes (in acc) are those of
            // rows i-32 .. i-1, whose keys [w0, i) are the observation window; row i itself is kept as the newest.
            const int64_t w0 = std::max(lo, i - kObsWindow);
            const int64_t keep = budget(n_valid);
            uint8_t* row = mask_out + i * n;
            // The observation window first (most recent first), then the votes for [lo, w0).
            for (int64_t j = i; j >= w0 && i - j < keep; --j) row[j] = 1;
            const int64_t rest = keep - (i - w0 + 1);
            if (rest > 0 && w0 > lo) {
                // avg_pool1d(kernel 5, stride 1, pad 2) with zero padding counted, over the voted keys [lo, w0).
                for (int64_t j = lo; j < w0; ++j) {
                    double s = 0;
                    for (int64_t t = std::max(lo, j - 2); t <= std::min(w0 - 1, j + 2); ++t) s += acc[size_t(t)];
                    pooled[size_t(j)] = float(s / 5.0);
                }
                mark_top(pooled.data(), lo, w0 - 1, rest, idx, row);
            }
            add_sinks(i, lo, row);
            advance_window_sum(n, n_group, n_swa, i);  // row i votes for the rows after it
        }
    }
};

MaskedPrefillSimulator::MaskedPrefillSimulator(const HParams& hp, SimulateParams params, int64_t max_tok)
    : impl_(std::make_unique<Impl>(hp, std::move(params), max_tok)) {
    const SimulateParams& p = impl_->p;
    if (!(p.keep > 0.0 && p.keep <= 1.0)) fail(Status::Usage, "the simulate view keeps a share in (0, 1] (got {})", p.keep);
    if (p.window < 0) fail(Status::Usage, "the simulate view's recent window must be >= 0 (got {})", p.window);
    if (p.page < 1) fail(Status::Usage, "the Quest page size must be positive (got {})", p.page);
    for (int32_t l : p.dense_layers)
        if (l < 1 || l >= hp.n_layer)
            fail(Status::Usage, "--dense-layers: the simulate view sparsifies layers 1 .. {}, not {}", hp.n_layer - 1,
                 l);
    if (p.group_max_logit && impl_->kind != Kind::TokenButler)
        fail(Status::Usage, "the max-logit group score is tokenbutler's (selector '{}')", p.selector);
    if (impl_->kind == Kind::TokenButler && !p.predictor)
        fail(Status::InvalidArg, "the tokenbutler selector needs a predictor");
    const size_t n = size_t(max_tok);
    const int32_t n_group = hp.n_head / hp.n_head_kv;
    impl_->logits.resize(size_t(n_group) * n * n);
    impl_->mask.resize(n * n);
    if (impl_->kind == Kind::TokenButler) {
        const PredictorShape& s = p.predictor->shape();
        impl_->imp.resize(size_t(n_group) * n * n);
        impl_->k_imp.resize(n * size_t(s.d_dash));
    }
}

MaskedPrefillSimulator::~MaskedPrefillSimulator() = default;

const uint8_t* MaskedPrefillSimulator::last_mask() const { return impl_->mask.data(); }

void MaskedPrefillSimulator::select_layer(int64_t n, int32_t n_group, int32_t hd, int64_t n_swa, const float* q,
                                          const float* k, const float* imp, uint8_t* mask) {
    Impl& m = *impl_;
    BUTLER_ASSERT(n <= m.max_tok && n_group * n * n <= int64_t(m.logits.size()), "select_layer beyond max_tok");
    for (int32_t h = 0; h < n_group; ++h)
        sgemm_nt(n, n, hd, q + int64_t(h) * hd, int64_t(n_group) * hd, k, hd, m.logits.data() + h * n * n, n);
    if (m.kind == Kind::TokenButler) {
        BUTLER_ASSERT(imp != nullptr, "tokenbutler select_layer without importance");
        std::copy(imp, imp + n_group * n * n, m.imp.begin());
    }
    m.select(n, n_group, hd, n_swa, q, int64_t(n_group) * hd, k, hd, mask);
}

// TokenButler: a producer layer makes the importance queries of its consumers for every row (LayerNorm, W1, SiLU, W2
// over all rows at once).
void MaskedPrefillSimulator::produce_importance_queries(const LayerAttentionIo& io) {
    Impl& m = *impl_;
    if (m.kind != Kind::TokenButler) return;
    const PredictorShape& s = m.p.predictor->shape();
    if (io.layer % s.group != 0 || io.layer / s.group >= s.n_producers()) return;  // not a producer layer
    producer_forward(m.p.predictor->producers()[size_t(io.layer / s.group)], s, io.x, io.n_tok, m.producer);
}

bool MaskedPrefillSimulator::attend(const LayerAttentionIo& io) {
    Impl& m = *impl_;
    const HParams& hp = m.hp;
    const int64_t n = io.n_tok;
    const int32_t n_group = hp.n_head / hp.n_head_kv, hd = hp.head_dim, hdv = hp.head_dim_v;
    const int64_t ldq = int64_t(hp.n_head) * hd, ldk = int64_t(hp.n_head_kv) * hd, ldv = int64_t(hp.n_head_kv) * hdv;
    if (io.pos0 != 0 || n > m.max_tok)
        fail(Status::InvalidArg, "the simulate view runs a sequence of at most {} tokens in one chunk from position 0 "
                                 "(got {} tokens at position {})", m.max_tok, n, io.pos0);

    if (io.layer == 0 ||
        std::find(m.p.dense_layers.begin(), m.p.dense_layers.end(), io.layer) != m.p.dense_layers.end()) {
        produce_importance_queries(io);  // reads the layer's input only, so before or after its attention is alike
        return false;
    }

    for (int32_t g = 0; g < hp.n_head_kv; ++g) {
        const float* qg = io.q + int64_t(g) * n_group * hd;
        const float* kg = io.k + int64_t(g) * hd;
        for (int32_t h = 0; h < n_group; ++h)
            sgemm_nt(n, n, hd, qg + int64_t(h) * hd, ldq, kg, ldk, m.logits.data() + h * n * n, n);
        if (m.kind == Kind::TokenButler) {
            const TokenButlerPredictor& pred = *m.p.predictor;
            const PredictorShape& s = pred.shape();
            const int32_t d = s.d_dash, slot = s.slot_of(io.layer);
            sgemm_nt(n, d, hd, kg, ldk, pred.key_proj(io.layer, g), hd, m.k_imp.data(), d);
            for (int32_t h = 0; h < n_group; ++h) {
                const float* qh = m.producer.qp.data() + (int64_t(slot) * hp.n_head + g * n_group + h) * d;
                sgemm('N', 'T', n, n, d, 1.0f / std::sqrt(float(d)), qh, s.q_width(), m.k_imp.data(), d, 0.0f,
                      m.imp.data() + h * n * n, n);
            }
        }
        m.select(n, n_group, hd, io.n_swa, qg, ldq, kg, ldk, m.mask.data());

        // Masked softmax per head (in place over the logits), then P . V into the head's output columns.
        double masked = 0;
#pragma omp parallel for schedule(static) reduction(+ : masked)
        for (int64_t i = 0; i < n; ++i) {
            const int64_t lo = Impl::row_lo(i, io.n_swa);
            const uint8_t* row = m.mask.data() + i * n;
            int64_t kept = 0;
            for (int64_t j = lo; j <= i; ++j) kept += row[j];
            masked += double(i - lo + 1 - kept) / double(i - lo + 1);
            for (int32_t h = 0; h < n_group; ++h) {
                float* l = m.logits.data() + (h * n + i) * n;
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = lo; j <= i; ++j)
                    if (row[j]) mx = std::max(mx, l[j]);
                double sum = 0;
                for (int64_t j = 0; j < n; ++j) {
                    const float e = (j >= lo && j <= i && row[j]) ? std::exp(l[j] - mx) : 0.0f;
                    l[j] = e;
                    sum += e;
                }
                const float inv = sum > 0 ? float(1.0 / sum) : 0.0f;
                for (int64_t j = lo; j <= i; ++j) l[j] *= inv;
            }
        }
        masked_sum_ += masked;
        n_masked_rows_ += n;
        for (int32_t h = 0; h < n_group; ++h)
            sgemm('N', 'N', n, hdv, n, 1.0f, m.logits.data() + h * n * n, n, io.v + int64_t(g) * hdv, ldv, 0.0f,
                  io.out + (int64_t(g) * n_group + h) * hdv, int64_t(hp.n_head) * hdv);
    }
    // After the layer's own selection: layer p = 4 is a consumer of producer 0 and the producer of 5 .. 8.
    produce_importance_queries(io);
    return true;
}

}  // namespace butler
