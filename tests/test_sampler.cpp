// SPDX-License-Identifier: MIT
// Sampling: greedy is argmax; seeded runs repeat; the empirical distribution after top-k / top-p / min-p /
// temperature matches the distribution computed here in float64 from the definitions.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "runtime/sampler.h"

using namespace butler;

namespace {

// The expected distribution, float64, written from the definitions (llama.cpp's order: top-k, top-p, min-p
// on the temperature-1 probabilities, then temperature).
std::vector<double> expected_probs(const std::vector<float>& logits, const SamplerParams& p) {
    std::vector<int> idx(logits.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int(i);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
    size_t n = idx.size();
    if (p.top_k > 0) n = std::min(n, size_t(p.top_k));
    std::vector<double> pr(n);
    double z = 0;
    for (size_t i = 0; i < n; ++i) z += pr[i] = std::exp(double(logits[size_t(idx[i])]) - double(logits[size_t(idx[0])]));
    if (p.top_p < 1) {
        double cum = 0;
        for (size_t i = 0; i < n; ++i)
            if ((cum += pr[i] / z) >= p.top_p) {
                n = i + 1;
                break;
            }
    }
    if (p.min_p > 0) {
        size_t keep = 1;
        while (keep < n && pr[keep] >= p.min_p * pr[0]) ++keep;
        n = keep;
    }
    std::vector<double> out(logits.size(), 0.0);
    double zt = 0;
    for (size_t i = 0; i < n; ++i) zt += std::exp((double(logits[size_t(idx[i])]) - double(logits[size_t(idx[0])])) / p.temperature);
    for (size_t i = 0; i < n; ++i)
        out[size_t(idx[i])] = std::exp((double(logits[size_t(idx[i])]) - double(logits[size_t(idx[0])])) / p.temperature) / zt;
    return out;
}

}  // namespace

TEST_SUITE("sampler") {
    TEST_CASE("greedy picks the argmax, lowest index on ties") {
        SamplerParams p;
        p.temperature = 0;
        Sampler s(p, 5);
        CHECK(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f, 3.0f}) == 1);
        CHECK(argmax(std::vector<float>{-5.0f, -4.0f}) == 1);
    }

    TEST_CASE("the same seed gives the same tokens; another seed differs") {
        std::vector<float> logits(50);
        for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(std::sin(double(i)) * 2);
        SamplerParams p;
        p.top_k = 0;
        p.top_p = 1;
        p.min_p = 0;
        p.temperature = 1.5f;
        auto draw = [&](uint64_t seed) {
            p.seed = seed;
            Sampler s(p, 50);
            std::vector<TokenId> out;
            for (int i = 0; i < 40; ++i) out.push_back(s.sample(logits));
            return out;
        };
        CHECK(draw(1) == draw(1));
        CHECK(draw(1) != draw(2));
    }

    TEST_CASE("empirical distribution matches the filtered softmax") {
        const std::vector<float> logits = {2.0f, 1.5f, 1.4f, 0.3f, -0.5f, 1.0f, 0.9f, -2.0f, 0.0f, 1.2f};
        struct Case {
            int top_k;
            float top_p, min_p, temp;
        };
        for (const Case c : {Case{0, 1.0f, 0.0f, 1.0f}, Case{3, 1.0f, 0.0f, 0.7f}, Case{0, 0.8f, 0.0f, 1.0f},
                             Case{0, 1.0f, 0.3f, 1.3f}, Case{6, 0.9f, 0.2f, 0.8f}}) {
            CAPTURE(c.top_k);
            CAPTURE(c.top_p);
            CAPTURE(c.min_p);
            SamplerParams p{c.temp, c.top_k, c.top_p, c.min_p, 99};
            Sampler s(p, int32_t(logits.size()));
            const int n = 40000;
            std::vector<int> counts(logits.size(), 0);
            for (int i = 0; i < n; ++i) counts[size_t(s.sample(logits))]++;
            const std::vector<double> want = expected_probs(logits, p);
            for (size_t i = 0; i < logits.size(); ++i) {
                CAPTURE(i);
                const double got = double(counts[i]) / n;
                if (want[i] == 0) CHECK(counts[i] == 0);
                else CHECK(std::abs(got - want[i]) < 4 * std::sqrt(want[i] * (1 - want[i]) / n) + 1e-3);
            }
        }
    }
}
