// SPDX-License-Identifier: MIT
// Element-wise and row-wise CPU operations of the forward pass. All work on contiguous f32 rows.
#pragma once

#include <cstdint>
#include <vector>

namespace butler {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i < n. out may alias x. w may be null (no weight).
void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps);

// Rotary position embedding. rope_angles fills the tables of one position once (cos, sin: head_dim / 2 each,
// angle_i = pos * inv_freq[i], computed in double); every head of every layer sharing those frequencies reuses them.
// inv_freq (head_dim / 2): base^(-2i/head_dim), already multiplied by any linear frequency scale.
// Neox style rotates the pairs (i, i + head_dim/2); Normal style the pairs (2i, 2i + 1). x is rotated in place.
// The inverse frequencies (head_dim / 2) of a RoPE base: freq_scale * base^(-2i/head_dim) / factors[i] (factors:
// empty, or head_dim / 2 divisors as HParams::rope_freq_factors).
std::vector<float> rope_inv_freq(int32_t head_dim, float base, float freq_scale, const std::vector<float>& factors);
void rope_angles(int64_t pos, const float* inv_freq, int32_t head_dim, float* cos_out, float* sin_out);
void rope_neox(float* x, int32_t head_dim, const float* cos, const float* sin);
void rope_normal(float* x, int32_t head_dim, const float* cos, const float* sin);

// gate[i] = act(gate[i]) * up[i], i < n. GELU is the tanh approximation (as Gemma and GGML use).
void gelu_tanh_mul(float* gate, const float* up, int64_t n);
void silu_mul(float* gate, const float* up, int64_t n);

}  // namespace butler
