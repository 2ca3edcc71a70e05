// SPDX-License-Identifier: MIT
#include "cpu_kernels/lse_merge.h"

#include <cmath>
#include <limits>

namespace butler {

void lse_merge(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head, int32_t head_dim) {
    for (int32_t h = 0; h < n_head; ++h) {
        const float la = lse_a[h], lb = lse_b[h];
        const float m = std::max(la, lb);
        float* oa = o_a + int64_t(h) * head_dim;
        const float* ob = o_b + int64_t(h) * head_dim;
        if (m == -std::numeric_limits<float>::infinity()) {  // both empty: exp(-inf - -inf) would be NaN
            for (int32_t d = 0; d < head_dim; ++d) oa[d] = 0.0f;
            lse_a[h] = m;
            continue;
        }
        const float wa = std::exp(la - m), wb = std::exp(lb - m);
        const float inv = 1.0f / (wa + wb);
        for (int32_t d = 0; d < head_dim; ++d) oa[d] = (wa * oa[d] + wb * ob[d]) * inv;
        lse_a[h] = m + std::log(wa + wb);
    }
}

}  // namespace butler
