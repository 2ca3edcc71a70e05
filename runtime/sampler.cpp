// SPDX-License-Identifier: MIT
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "runtime/status.h"

namespace butler {

TokenId argmax(std::span<const float> logits) {
    BUTLER_ASSERT(!logits.empty(), "argmax of no logits");
    return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplerParams& params, int32_t n_vocab) : params_(params), rng_(params.seed) {
    candidates_.reserve(static_cast<size_t>(n_vocab));
    probs_.reserve(static_cast<size_t>(n_vocab));
}

TokenId Sampler::sample(std::span<const float> logits) {
    if (params_.temperature <= 0) return argmax(logits);
    candidates_.clear();
    for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<TokenId>(i));
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t n = candidates_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
        std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), by_logit);
        n = static_cast<size_t>(params_.top_k);
    } else {
        std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    // Probabilities at temperature 1 decide the top-p and min-p cuts, as llama.cpp's sampler chain does.
    probs_.assign(n, 0.0f);
    const float max_logit = candidates_[0].first;
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += probs_[i] = std::exp(candidates_[i].first - max_logit);
    if (params_.top_p < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < n; ++i) {
            cum += probs_[i] / sum;
            if (cum >= params_.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (params_.min_p > 0.0f) {
        // probs_[0] is the largest (1 before normalization): keep p >= min_p * p_max.
        size_t keep = 1;
        while (keep < n && probs_[keep] >= params_.min_p) ++keep;
        n = keep;
    }
    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += probs_[i] = std::exp((candidates_[i].first - max_logit) / params_.temperature);
    std::uniform_real_distribution<double> uniform(0.0, sum);
    double r = uniform(rng_);
    for (size_t i = 0; i < n; ++i) {
        r -= probs_[i];
        if (r <= 0) return candidates_[i].second;
    }
    return candidates_[n - 1].second;
}

}  // namespace butler
