// SPDX-License-Identifier: MIT
// Split attention for one KV group of one decode token: the device partial over resident slots and the CPU
// partial over a host-store index set, each (o, lse), merged once by cpu_kernels/lse_merge.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cpu_kernels/attention.h"

namespace butler {

// Scratch of cpu_partial(), sized once for sets of up to max_tok tokens.
struct CpuPartialScratch {
    static constexpr int64_t kBlock = 512;  // tokens per parallel block
    std::vector<float> o;                   // (n_blocks, n_group, head_dim_v)
    std::vector<float> lse;                 // (n_blocks, n_group)
    std::vector<float> scores;              // (n_blocks, n_group * kBlock)
    void reserve(int64_t max_tok, int32_t n_group, int32_t head_dim_v);
};

// CPU partial attention of the n_group query heads q (n_group, head_dim) of KV head g over the tokens `ids`
// (any order) of the host store view -> out (n_group, head_dim_v), lse (n_group). OpenMP over blocks of kBlock
// tokens, whose partial states merge by LSE. An empty set gives out 0 and lse -inf.
void cpu_partial(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, std::span<const int32_t> ids,
                 float* out, float* lse, CpuPartialScratch& scratch);

// The complement of the sorted unique `ids` in [0, n_tok), into out (capacity n_tok).
void complement_ids(std::span<const int32_t> ids, int64_t n_tok, std::vector<int32_t>& out);

}  // namespace butler
