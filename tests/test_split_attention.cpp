// SPDX-License-Identifier: MIT
// Split attention: any partition of the tokens between device slots and the host store, each side's partial
// merged by LSE, equals dense attention computed here in float64 (including empty sides).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cpu_kernels/lse_merge.h"
#include "offload/kv_store.h"
#include "offload/split_attention.h"
#include "runtime/device.h"

using namespace butler;

TEST_SUITE("offload") {
    TEST_CASE("random partitions device | host merged by LSE equal dense attention (f32, rel err < 1e-5)") {
        std::mt19937 rng(21);
        std::normal_distribution<float> gauss(0.f, 1.f);
        auto dev              = make_device("cpu");
        const int32_t n_group = 2, hd = 32;
        for (int trial = 0; trial < 24; ++trial) {
            const int64_t n_tok = 1 + (trial * 97) % 1500;  // several CPU blocks of 512 for the larger ones
            KvStoreShape sh{1, 2, hd, hd, 16, n_tok, DType::F32};
            HostKvStore store(*dev, sh);
            store.reserve(n_tok);
            std::vector<float> k(static_cast<size_t>(2 * n_tok * hd)), v(k.size()), q(size_t(n_group * hd));
            for (auto& x : k) x = gauss(rng);
            for (auto& x : v) x = gauss(rng);
            for (auto& x : q) x = gauss(rng) * 0.5f;
            for (int64_t t = 0; t < n_tok; ++t)
                for (int32_t g = 0; g < 2; ++g)
                    store.write(0, g, t, &k[size_t((g * n_tok + t) * hd)], &v[size_t((g * n_tok + t) * hd)]);
            store.commit(0, 0, n_tok);
            const int32_t g = trial % 2;
            // The partition: all device, all host, or random.
            std::vector<int32_t> on_device, on_host;
            for (int64_t t = 0; t < n_tok; ++t) {
                const bool d = trial % 6 == 0 ? true : trial % 6 == 1 ? false : (rng() % 3 == 0);
                (d ? on_device : on_host).push_back(int32_t(t));
            }
            // Device side: rows gathered into slots in a shuffled order, attended by index.
            std::vector<int32_t> slot_of(on_device.size());
            for (size_t i = 0; i < slot_of.size(); ++i) slot_of[i] = int32_t(i);
            std::shuffle(slot_of.begin(), slot_of.end(), rng);
            std::vector<float> slot_k(on_device.size() * hd), slot_v(slot_k.size());
            for (size_t i = 0; i < on_device.size(); ++i)
                for (int d = 0; d < hd; ++d) {
                    slot_k[size_t(slot_of[i]) * hd + d] = k[size_t((g * n_tok + on_device[i]) * hd + d)];
                    slot_v[size_t(slot_of[i]) * hd + d] = v[size_t((g * n_tok + on_device[i]) * hd + d)];
                }
            const DenseKvRows rows{DType::F32,
                                   reinterpret_cast<const uint8_t*>(slot_k.data()),
                                   reinterpret_cast<const uint8_t*>(slot_v.data()),
                                   hd,
                                   hd,
                                   4};
            std::vector<float> o_dev(static_cast<size_t>(n_group * hd)), lse_dev(n_group), o_cpu(o_dev.size()),
                lse_cpu(n_group);
            std::vector<float> scores(n_group * on_device.size() + 1);
            attend_group_indexed(q.data(), n_group, rows, slot_of.data(), int64_t(slot_of.size()), o_dev.data(),
                                 lse_dev.data(), scores.data());
            CpuPartialScratch scratch;
            scratch.reserve(n_tok, n_group, hd);
            cpu_partial(q.data(), n_group, store.view(0), g, on_host, o_cpu.data(), lse_cpu.data(), scratch);
            lse_merge(o_cpu.data(), lse_cpu.data(), o_dev.data(), lse_dev.data(), n_group, hd);
            // float64 dense reference.
            for (int h = 0; h < n_group; ++h) {
                std::vector<double> s(static_cast<size_t>(n_tok));
                double m = -INFINITY;
                for (int64_t t = 0; t < n_tok; ++t) {
                    double dot = 0;
                    for (int d = 0; d < hd; ++d)
                        dot += double(q[size_t(h * hd + d)]) * k[size_t((g * n_tok + t) * hd + d)];
                    s[size_t(t)] = dot;
                    m            = std::max(m, dot);
                }
                double sum = 0;
                for (double& x : s) sum += (x = std::exp(x - m));
                double err = 0, ref_norm = 0;
                for (int d = 0; d < hd; ++d) {
                    double o = 0;
                    for (int64_t t = 0; t < n_tok; ++t) o += s[size_t(t)] / sum * v[size_t((g * n_tok + t) * hd + d)];
                    const double e = std::fabs(o - o_cpu[size_t(h * hd + d)]);
                    err            = std::isnan(e) ? INFINITY : std::max(err, e);  // std::max alone would swallow a NaN
                    ref_norm       = std::max(ref_norm, std::fabs(o));
                }
                CAPTURE(trial);
                CAPTURE(n_tok);
                CHECK(err / ref_norm < 1e-5);
                CHECK(std::fabs(lse_cpu[size_t(h)] - (m + std::log(sum))) < 1e-5 * std::max(1.0, std::fabs(m)));
            }
        }
    }

    TEST_CASE("complement_ids") {
        std::vector<int32_t> out;
        out.reserve(10);
        complement_ids(std::vector<int32_t>{0, 3, 4, 9}, 10, out);
        CHECK(out == std::vector<int32_t>{1, 2, 5, 6, 7, 8});
        complement_ids(std::vector<int32_t>{}, 3, out);
        CHECK(out == std::vector<int32_t>{0, 1, 2});
    }
}
