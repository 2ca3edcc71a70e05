// SPDX-License-Identifier: MIT
// Token sampling from a logits vector: greedy, or temperature with top-k, top-p and min-p filtering (applied in
// llama.cpp's order: top-k, top-p, min-p, then temperature), drawn with an explicit seed so runs repeat.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "runtime/tokenizer.h"

namespace butler {

struct SamplerParams {
    float temperature = 0.8f;  // <= 0: greedy (argmax)
    int32_t top_k = 40;        // <= 0: off
    float top_p = 0.95f;       // >= 1: off
    float min_p = 0.05f;       // <= 0: off
    uint64_t seed = 0xB07713Bu;
};

class Sampler {
public:
    Sampler(const SamplerParams& params, int32_t n_vocab);
    // Picks the next token; logits (n_vocab) are not modified.
    TokenId sample(std::span<const float> logits);
    const SamplerParams& params() const { return params_; }

private:
    SamplerParams params_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, TokenId>> candidates_;  // reused, sized once
    std::vector<float> probs_;
};

// Index of the largest logit (lowest index on ties).
TokenId argmax(std::span<const float> logits);

}  // namespace butler
