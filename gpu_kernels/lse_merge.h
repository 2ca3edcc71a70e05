// SPDX-License-Identifier: MIT
// Merge of two partial attention states on the device (the CUDA twin of cpu_kernels/lse_merge.h).
// No CUDA type appears here: pointers are device pointers and `stream` is a cudaStream_t passed as void*.
#pragma once

#include <cstdint>

namespace butler::cuda {

// o_a (n_head, head_dim) f32, lse_a (n_head) f32, natural log; the same for b. Writes the merge into (o_a, lse_a).
// An empty partial has lse = -inf and o = 0; two empty partials merge to lse = -inf, o = 0 (no NaN).
void lse_merge(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head, int32_t head_dim,
               void* stream);

}  // namespace butler::cuda
