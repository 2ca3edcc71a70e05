// SPDX-License-Identifier: MIT
// Partial attention + LSE merge == dense attention, against float64 attention written here; the CPU attention
// kernel over a ring-addressed KV layer; the CUDA merge against the CPU one when a GPU is present.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu_kernels/attention.h"
#include "cpu_kernels/lse_merge.h"
#ifdef BUTLER_WITH_CUDA
#include "gpu_kernels/cuda_info.h"
#endif

using namespace butler;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Element i of a K/V row as the cache holds it.
double stored(DType type, const uint8_t* row, int32_t i) {
    const auto* h = reinterpret_cast<const uint16_t*>(row);
    switch (type) {
        case DType::F16: return f16_to_f32(h[i]);
        case DType::BF16: return bf16_to_f32(h[i]);
        default: return reinterpret_cast<const float*>(row)[i];
    }
}

// Attention of one head over the keys in `set` (indices into k/v rows), float64: (o, lse).
void attention64(const std::vector<double>& q, const std::vector<std::vector<double>>& k,
                 const std::vector<std::vector<double>>& v, const std::vector<int>& set, std::vector<double>& o,
                 double& lse) {
    const size_t d = q.size();
    o.assign(v.empty() ? d : v[0].size(), 0.0);
    if (set.empty()) {
        lse = -INFINITY;
        return;
    }
    std::vector<double> s;
    double m = -INFINITY;
    for (int j : set) {
        double dot = 0;
        for (size_t i = 0; i < d; ++i) dot += q[i] * k[static_cast<size_t>(j)][i];
        s.push_back(dot);
        m = std::max(m, dot);
    }
    double sum = 0;
    for (double& e : s) sum += (e = std::exp(e - m));
    for (size_t t = 0; t < set.size(); ++t)
        for (size_t i = 0; i < o.size(); ++i) o[i] += s[t] / sum * v[static_cast<size_t>(set[t])][i];
    lse = m + std::log(sum);
}

}  // namespace

TEST_SUITE("attention") {
    TEST_CASE("indexed attention over scattered rows equals float64 attention for every group size, type and shape") {
        // Covers the blocked AVX2 kernel (group sizes 1..8, head dims multiples of 8, key sets shorter and longer
        // than its 32-row blocks, rows in shuffled order) and the generic body (group 9, head dims 36 and 20).
        std::mt19937_64 rng(5);
        std::normal_distribution<float> g(0.0f, 1.0f);
        struct Shape {
            int32_t dk, dv;
        };
        for (DType type : {DType::F32, DType::F16, DType::BF16}) {
            const int64_t elem = dtype_traits(type).block_bytes;
            for (const Shape sh : {Shape{64, 64}, Shape{256, 256}, Shape{40, 24}, Shape{36, 36}, Shape{16, 20}}) {
                const int64_t n_rows = 300;
                std::vector<uint8_t> kbuf(static_cast<size_t>(n_rows * sh.dk * elem));
                std::vector<uint8_t> vbuf(static_cast<size_t>(n_rows * sh.dv * elem));
                const DenseKvRows rows{type, kbuf.data(), vbuf.data(), sh.dk, sh.dv, elem};
                std::vector<std::vector<double>> k64(n_rows), v64(n_rows);  // the values as stored
                for (int64_t r = 0; r < n_rows; ++r) {
                    std::vector<float> k(static_cast<size_t>(sh.dk)), v(static_cast<size_t>(sh.dv));
                    for (auto& x : k) x = g(rng);
                    for (auto& x : v) x = g(rng);
                    store_kv_row(type, k.data(), const_cast<uint8_t*>(rows.k_row(0, r)), sh.dk);
                    store_kv_row(type, v.data(), const_cast<uint8_t*>(rows.v_row(0, r)), sh.dv);
                    for (int32_t i = 0; i < sh.dk; ++i) k64[static_cast<size_t>(r)].push_back(stored(type, rows.k_row(0, r), i));
                    for (int32_t i = 0; i < sh.dv; ++i) v64[static_cast<size_t>(r)].push_back(stored(type, rows.v_row(0, r), i));
                }
                for (int32_t n_group : {1, 2, 3, 4, 5, 8, 9}) {
                    for (int64_t n_idx : {1, 7, 33, 64, 300}) {
                        CAPTURE(dtype_name(type));
                        CAPTURE(sh.dk);
                        CAPTURE(sh.dv);
                        CAPTURE(n_group);
                        CAPTURE(n_idx);
                        std::vector<int32_t> idx(static_cast<size_t>(n_rows));
                        for (int32_t i = 0; i < n_rows; ++i) idx[static_cast<size_t>(i)] = i;
                        std::shuffle(idx.begin(), idx.end(), rng);
                        idx.resize(static_cast<size_t>(n_idx));
                        std::vector<float> q(static_cast<size_t>(n_group * sh.dk));
                        for (auto& x : q) x = g(rng) * 0.3f;
                        std::vector<float> out(static_cast<size_t>(n_group * sh.dv), 7.0f), lse(static_cast<size_t>(n_group));
                        std::vector<float> scores(static_cast<size_t>(n_group * n_idx));
                        attend_group_indexed(q.data(), n_group, rows, idx.data(), n_idx, out.data(), lse.data(),
                                             scores.data());
                        for (int32_t h = 0; h < n_group; ++h) {
                            std::vector<double> q64(q.begin() + h * sh.dk, q.begin() + (h + 1) * sh.dk);
                            std::vector<std::vector<double>> ks, vs;
                            std::vector<int> set;
                            for (int64_t j = 0; j < n_idx; ++j) {
                                ks.push_back(k64[static_cast<size_t>(idx[static_cast<size_t>(j)])]);
                                vs.push_back(v64[static_cast<size_t>(idx[static_cast<size_t>(j)])]);
                                set.push_back(static_cast<int>(j));
                            }
                            std::vector<double> o64;
                            double lse64;
                            attention64(q64, ks, vs, set, o64, lse64);
                            double err = 0, ref = 0;
                            for (int32_t i = 0; i < sh.dv; ++i) {
                                err = std::max(err, std::abs(out[static_cast<size_t>(h * sh.dv + i)] - o64[static_cast<size_t>(i)]));
                                ref = std::max(ref, std::abs(o64[static_cast<size_t>(i)]));
                            }
                            CHECK(err <= 2e-6 * std::max(ref, 1.0));
                            CHECK(std::abs(lse[static_cast<size_t>(h)] - lse64) <= 2e-6 * std::max(std::abs(lse64), 1.0));
                        }
                    }
                }
            }
        }
    }

    TEST_CASE("any partition merged by LSE equals dense attention") {
        std::mt19937_64 rng(7);
        std::normal_distribution<double> g(0.0, 1.0);
        for (int trial = 0; trial < 50; ++trial) {
            const int n_head = 1 + trial % 4, head_dim = 8 << (trial % 3), n_keys = 1 + trial * 3;
            std::vector<float> o_a(static_cast<size_t>(n_head * head_dim)), o_b(o_a.size()), lse_a(static_cast<size_t>(n_head)), lse_b(lse_a.size());
            std::vector<std::vector<double>> dense_o(static_cast<size_t>(n_head));
            for (int h = 0; h < n_head; ++h) {
                std::vector<double> q(static_cast<size_t>(head_dim));
                std::vector<std::vector<double>> k(static_cast<size_t>(n_keys), std::vector<double>(static_cast<size_t>(head_dim))), v = k;
                for (auto& x : q) x = g(rng) * 2;
                for (auto& row : k)
                    for (auto& x : row) x = g(rng);
                for (auto& row : v)
                    for (auto& x : row) x = g(rng);
                std::vector<int> all, a, b;
                for (int j = 0; j < n_keys; ++j) {
                    all.push_back(j);
                    // Some trials put everything on one side, so empty partials are covered.
                    const bool to_a = trial % 5 == 0 ? true : trial % 5 == 1 ? false : (rng() & 1);
                    (to_a ? a : b).push_back(j);
                }
                double lse_dense, la, lb;
                std::vector<double> oa, ob;
                attention64(q, k, v, all, dense_o[static_cast<size_t>(h)], lse_dense);
                attention64(q, k, v, a, oa, la);
                attention64(q, k, v, b, ob, lb);
                for (int i = 0; i < head_dim; ++i) {
                    o_a[static_cast<size_t>(h * head_dim + i)] = float(oa[static_cast<size_t>(i)]);
                    o_b[static_cast<size_t>(h * head_dim + i)] = float(ob[static_cast<size_t>(i)]);
                }
                lse_a[static_cast<size_t>(h)] = float(la);
                lse_b[static_cast<size_t>(h)] = float(lb);
                dense_o[static_cast<size_t>(h)].push_back(lse_dense);
            }
#ifdef BUTLER_WITH_CUDA
            std::vector<float> gpu_o = o_a, gpu_lse = lse_a;
#endif
            lse_merge(o_a.data(), lse_a.data(), o_b.data(), lse_b.data(), n_head, head_dim);
            for (int h = 0; h < n_head; ++h) {
                for (int i = 0; i < head_dim; ++i)
                    CHECK(o_a[static_cast<size_t>(h * head_dim + i)] == doctest::Approx(dense_o[static_cast<size_t>(h)][static_cast<size_t>(i)]).epsilon(1e-5));
                CHECK(lse_a[static_cast<size_t>(h)] == doctest::Approx(dense_o[static_cast<size_t>(h)].back()).epsilon(1e-5));
            }
#ifdef BUTLER_WITH_CUDA
            if (cuda::device_count() > 0) {
                cuda::lse_merge_on_device(gpu_o.data(), gpu_lse.data(), o_b.data(), lse_b.data(), n_head, head_dim);
                for (size_t i = 0; i < gpu_o.size(); ++i) CHECK(gpu_o[i] == doctest::Approx(o_a[i]).epsilon(1e-5));
                for (size_t i = 0; i < gpu_lse.size(); ++i) CHECK(gpu_lse[i] == doctest::Approx(lse_a[i]).epsilon(1e-5));
            }
#endif
        }
    }

    TEST_CASE("two empty partials merge to (0, -inf) without NaN") {
        std::vector<float> o_a = {1, 2, 3, 4}, o_b = {5, 6, 7, 8}, lse_a = {kNegInf}, lse_b = {kNegInf};
        lse_merge(o_a.data(), lse_a.data(), o_b.data(), lse_b.data(), 1, 4);
        CHECK(lse_a[0] == kNegInf);
        for (float x : o_a) CHECK(x == 0.0f);
        // One empty side leaves the other unchanged.
        std::vector<float> o_c = {1, 2, 3, 4}, lse_c = {0.5f}, o_e = {9, 9, 9, 9}, lse_e = {kNegInf};
        lse_merge(o_c.data(), lse_c.data(), o_e.data(), lse_e.data(), 1, 4);
        CHECK(lse_c[0] == doctest::Approx(0.5f));
        CHECK(o_c[2] == doctest::Approx(3.0f));
    }

    TEST_CASE("CUDA merge matches the CPU merge (skipped without a GPU)") {
#ifdef BUTLER_WITH_CUDA
        if (cuda::device_count() == 0) {
            MESSAGE("skipped: CUDA is built but no GPU is present");
            return;
        }
        MESSAGE("GPU: ", cuda::device_name(0));
        std::vector<float> o_a = {1, 2, 3, 4}, o_b = {5, 6, 7, 8}, lse_a = {kNegInf}, lse_b = {kNegInf};
        cuda::lse_merge_on_device(o_a.data(), lse_a.data(), o_b.data(), lse_b.data(), 1, 4);
        CHECK(lse_a[0] == kNegInf);
        for (float x : o_a) CHECK(x == 0.0f);
#else
        MESSAGE("skipped: built without CUDA");
#endif
    }

    TEST_CASE("attend_group over a ring-addressed KV layer equals float64 attention") {
        std::mt19937_64 rng(11);
        std::normal_distribution<float> g(0.0f, 1.0f);
        const int32_t n_group = 3, head_dim = 40, n_kv = 2, cap = 16;
        for (DType type : {DType::F32, DType::F16, DType::BF16}) {
            CAPTURE(dtype_name(type));
            const int64_t elem = dtype_traits(type).block_bytes;
            std::vector<uint8_t> kbuf(static_cast<size_t>(n_kv * cap * head_dim * elem)), vbuf(kbuf.size());
            // Positions 0..29 written through a ring of 16 slots: 14..29 survive.
            std::vector<std::vector<float>> k_at(30), v_at(30);
            KvLayerView kv{type, kbuf.data(), vbuf.data(), n_kv, cap, head_dim, head_dim, elem};
            const int32_t gkv = 1;
            for (int p = 0; p < 30; ++p) {
                k_at[static_cast<size_t>(p)].resize(static_cast<size_t>(head_dim));
                v_at[static_cast<size_t>(p)].resize(static_cast<size_t>(head_dim));
                for (auto& x : k_at[static_cast<size_t>(p)]) x = g(rng);
                for (auto& x : v_at[static_cast<size_t>(p)]) x = g(rng);
                store_kv_row(type, k_at[static_cast<size_t>(p)].data(), const_cast<uint8_t*>(kv.k_row(gkv, p)), head_dim);
                store_kv_row(type, v_at[static_cast<size_t>(p)].data(), const_cast<uint8_t*>(kv.v_row(gkv, p)), head_dim);
            }
            std::vector<float> q(static_cast<size_t>(n_group * head_dim)), out(q.size()), lse(static_cast<size_t>(n_group)), scores(static_cast<size_t>(n_group * 16));
            for (auto& x : q) x = g(rng) * 0.5f;
            attend_group(q.data(), n_group, kv, gkv, 20, 29, out.data(), lse.data(), scores.data());
            const double tol = type == DType::F32 ? 1e-5 : type == DType::F16 ? 2e-3 : 2e-2;
            for (int h = 0; h < n_group; ++h) {
                std::vector<double> q64(q.begin() + h * head_dim, q.begin() + (h + 1) * head_dim);
                std::vector<std::vector<double>> k64, v64;
                std::vector<int> set;
                for (int p = 20; p <= 29; ++p) {
                    k64.emplace_back(k_at[static_cast<size_t>(p)].begin(), k_at[static_cast<size_t>(p)].end());
                    v64.emplace_back(v_at[static_cast<size_t>(p)].begin(), v_at[static_cast<size_t>(p)].end());
                    set.push_back(p - 20);
                }
                std::vector<double> o64;
                double lse64;
                attention64(q64, k64, v64, set, o64, lse64);
                for (int i = 0; i < head_dim; ++i) CHECK(out[static_cast<size_t>(h * head_dim + i)] == doctest::Approx(o64[static_cast<size_t>(i)]).epsilon(tol).scale(1.0));
                CHECK(lse[static_cast<size_t>(h)] == doctest::Approx(lse64).epsilon(tol));
            }
            // An empty range gives (0, -inf).
            attend_group(q.data(), n_group, kv, gkv, 5, 4, out.data(), lse.data(), scores.data());
            CHECK(lse[0] == kNegInf);
            CHECK(out[0] == 0.0f);
        }
    }
}

TEST_SUITE("attention") {
    TEST_CASE("blocked (sgemm) and split-K attention equal float64 causal attention, with and without a window") {
        std::mt19937_64 rng(21);
        std::normal_distribution<float> g(0.0f, 1.0f);
        const int32_t n_kv = 2, n_group = 2, n_head = n_kv * n_group, hd = 64;
        const int64_t cap = 1200;
        const DType type = DType::F16;
        const int64_t elem = 2;
        std::vector<uint8_t> kbuf(static_cast<size_t>(n_kv * cap * hd * elem)), vbuf(kbuf.size());
        KvLayerView kv{type, kbuf.data(), vbuf.data(), n_kv, cap, hd, hd, elem};
        // Keys/values as the f16 cache holds them, kept in double for the reference.
        std::vector<std::vector<double>> kref(static_cast<size_t>(n_kv * cap)), vref(kref.size());
        for (int32_t gk = 0; gk < n_kv; ++gk)
            for (int64_t p = 0; p < cap; ++p) {
                std::vector<float> k(hd), v(hd);
                for (auto& x : k) x = g(rng);
                for (auto& x : v) x = g(rng);
                store_kv_row(type, k.data(), const_cast<uint8_t*>(kv.k_row(gk, p)), hd);
                store_kv_row(type, v.data(), const_cast<uint8_t*>(kv.v_row(gk, p)), hd);
                auto& kr = kref[static_cast<size_t>(gk * cap + p)];
                auto& vr = vref[static_cast<size_t>(gk * cap + p)];
                const auto* kh = reinterpret_cast<const uint16_t*>(kv.k_row(gk, p));
                const auto* vh = reinterpret_cast<const uint16_t*>(kv.v_row(gk, p));
                for (int i = 0; i < hd; ++i) {
                    kr.push_back(f16_to_f32(kh[i]));
                    vr.push_back(f16_to_f32(vh[i]));
                }
            }
        AttnChunkScratch scratch;
        scratch.reserve(omp_get_max_threads(), n_group, hd, hd);
        const int64_t n_partials = int64_t(omp_get_max_threads()) * 8;
        std::vector<float> partials(static_cast<size_t>(n_partials * n_group * (hd + 1)));
        std::vector<float> scores(static_cast<size_t>(omp_get_max_threads() * n_group * cap));
        struct Case {
            int64_t n_q, pos0, n_swa;
        };
        for (const Case c : {Case{1, 1100, 0}, Case{3, 1000, 0}, Case{1, 1100, 300}, Case{70, 1000, 0},
                             Case{70, 1000, 100}, Case{40, 0, 16}, Case{33, 5, 0}}) {
            CAPTURE(c.n_q);
            CAPTURE(c.pos0);
            CAPTURE(c.n_swa);
            std::vector<float> q(static_cast<size_t>(c.n_q * n_head * hd));
            for (auto& x : q) x = g(rng) * 0.2f;
            std::vector<float> out_chunk(static_cast<size_t>(c.n_q * n_head * hd)), out_split(out_chunk.size());
            attend_chunk(q.data(), c.n_q, c.pos0, n_head, kv, c.n_swa, out_chunk.data(), scratch);
            attend_split(q.data(), c.n_q, c.pos0, n_head, kv, c.n_swa, out_split.data(), partials.data(), n_partials,
                         scores.data(), n_group * cap);
            for (int64_t i = 0; i < c.n_q; ++i)
                for (int32_t h = 0; h < n_head; ++h) {
                    const int32_t gk = h / n_group;
                    const int64_t pos = c.pos0 + i;
                    const int64_t lo = c.n_swa > 0 ? std::max<int64_t>(0, pos - c.n_swa + 1) : 0;
                    std::vector<double> q64(q.begin() + (i * n_head + h) * hd, q.begin() + (i * n_head + h + 1) * hd);
                    std::vector<std::vector<double>> k64, v64;
                    std::vector<int> set;
                    for (int64_t p = lo; p <= pos; ++p) {
                        k64.push_back(kref[static_cast<size_t>(gk * cap + p)]);
                        v64.push_back(vref[static_cast<size_t>(gk * cap + p)]);
                        set.push_back(static_cast<int>(p - lo));
                    }
                    std::vector<double> o64;
                    double lse64;
                    attention64(q64, k64, v64, set, o64, lse64);
                    for (int32_t d = 0; d < hd; ++d) {
                        const size_t at = static_cast<size_t>((i * n_head + h) * hd + d);
                        CHECK(out_chunk[at] == doctest::Approx(o64[static_cast<size_t>(d)]).epsilon(1e-4).scale(1.0));
                        CHECK(out_split[at] == doctest::Approx(o64[static_cast<size_t>(d)]).epsilon(1e-4).scale(1.0));
                    }
                }
        }
    }
}
