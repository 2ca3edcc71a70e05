// SPDX-License-Identifier: MIT
#include "offload/split_attention.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "cpu_kernels/lse_merge.h"
#include "runtime/status.h"

namespace butler {

void CpuPartialScratch::reserve(int64_t max_tok, int32_t n_group, int32_t head_dim_v) {
    const int64_t n_blocks = std::max<int64_t>(1, (max_tok + kBlock - 1) / kBlock);
    o.resize(size_t(n_blocks * n_group * head_dim_v));
    lse.resize(size_t(n_blocks * n_group));
    scores.resize(size_t(n_blocks * n_group * kBlock));
}

void cpu_partial(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, std::span<const int32_t> ids,
                 float* out, float* lse, CpuPartialScratch& s) {
    const int64_t n        = int64_t(ids.size());
    const int32_t dv       = kv.head_dim_v;
    const int64_t n_blocks = (n + CpuPartialScratch::kBlock - 1) / CpuPartialScratch::kBlock;
    BUTLER_ASSERT(int64_t(s.lse.size()) >= n_blocks * n_group, "cpu_partial scratch too small for {} tokens", n);
    if (n_blocks <= 1) {
        attend_group_indexed(q, n_group, kv, g, ids.data(), n, out, lse, s.scores.data());
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t lo = b * CpuPartialScratch::kBlock, cnt = std::min(CpuPartialScratch::kBlock, n - lo);
        attend_group_indexed(q, n_group, kv, g, ids.data() + lo, cnt, s.o.data() + b * n_group * dv,
                             s.lse.data() + b * n_group, s.scores.data() + b * n_group * CpuPartialScratch::kBlock);
    }
    std::memcpy(out, s.o.data(), sizeof(float) * size_t(n_group * dv));
    std::memcpy(lse, s.lse.data(), sizeof(float) * size_t(n_group));
    for (int64_t b = 1; b < n_blocks; ++b)
        lse_merge(out, lse, s.o.data() + b * n_group * dv, s.lse.data() + b * n_group, n_group, dv);
}

void complement_ids(std::span<const int32_t> ids, int64_t n_tok, std::vector<int32_t>& out) {
    out.clear();
    size_t j = 0;
    for (int64_t t = 0; t < n_tok; ++t) {
        if (j < ids.size() && ids[j] == t) {
            ++j;
            continue;
        }
        out.push_back(int32_t(t));
    }
}

}  // namespace butler
