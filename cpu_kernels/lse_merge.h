// SPDX-License-Identifier: MIT
// Exact merge of two partial attention states by log-sum-exp (the CPU twin of gpu_kernels/lse_merge.cu).
// A partial state over a key set S is (o, lse): o = softmax-weighted mean of V over S (normalized), lse =
// log(sum over S of exp(score)), natural log. The empty set is (o = 0, lse = -inf), never a sentinel.
#pragma once

#include <cstdint>

namespace butler {

// Merges (o_b, lse_b) into (o_a, lse_a) in place:
//   m = max(lse_a, lse_b); w_x = exp(lse_x - m); o_a = (w_a o_a + w_b o_b) / (w_a + w_b); lse_a = m + log(w_a + w_b).
// Two empty states merge to (0, -inf) without NaN.
//   o_a, o_b (n_head, head_dim) f32; lse_a, lse_b (n_head) f32.
void lse_merge(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head, int32_t head_dim);

}  // namespace butler
