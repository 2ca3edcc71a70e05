// SPDX-License-Identifier: MIT
// Selection arithmetic shared by the host selectors (predictor/) and the cpu/emu devices' selection kernels
// (runtime/device.h ImpScoreArgs, TopkArgs), so that selecting on the host and on an emulated device give the same
// tokens bit for bit. Single-threaded; nothing allocates.
#pragma once

#include <cstdint>

namespace butler {

// acc[t] += scale * softmax(logit)[t] for t in [0, n): the per-head attention mass that oracle and tokenbutler sum
// over a KV group (one shared selection serves every query head of the group), and snapkv-tb adds and removes.
// The sum runs in double.
void add_softmax(const float* logit, int64_t n, float* acc, float scale = 1.0f);

// TokenButler's group mass over candidates [lo, hi): score[t] = sum over the n_group heads h of
// softmax_t(scale * q[h] . keys[t]), keys (>= hi, d) IEEE half rows, q (n_group, d). Writes score[lo, hi) only;
// logit: scratch of hi - lo floats. AVX2 dot products (keys widened by F16C) and exp (relative error ~1e-7), the
// softmax sums in double.
void group_softmax_mass(const uint16_t* keys, const float* q, int32_t n_group, int32_t d, int64_t lo, int64_t hi,
                        float scale, float* score, float* logit);

// ids (k) = the candidates t in [lo, hi) with the k largest score[t] (ties to the lower id), ascending; 0 <= k <=
// hi - lo. idx: scratch of hi - lo ids.
void top_k_ids(const float* score, int64_t lo, int64_t hi, int64_t k, int32_t* ids, int32_t* idx);

// TokenButler's query MLP for one token: out (q_width) = W2 . SiLU(W1 . LayerNorm(x)) (runtime/device.h
// ImpQueryArgs); LayerNorm's mean and variance in double, the products by the threaded row gemv. scratch: n_embd +
// intdim floats.
void importance_query(const float* x, const float* ln_w, const float* ln_b, const float* w1, const float* w2,
                      int64_t n_embd, int64_t intdim, int64_t q_width, float eps, float* out, float* scratch);

}  // namespace butler
