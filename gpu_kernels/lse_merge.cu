// SPDX-License-Identifier: MIT
// LSE merge of two partial attention states, in place into the first.
// Work mapping: one block per head, threads stride over head_dim. Traffic per call: 3 x n_head x head_dim x 4 B
// plus the lse vectors; negligible next to attention itself.
#include <cuda_runtime.h>

#include <cmath>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/lse_merge.h"

namespace butler::cuda {
namespace {

__global__ void lse_merge_kernel(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int head_dim) {
    const int h = blockIdx.x;
    const float la = lse_a[h];
    const float lb = lse_b[h];
    const float m = fmaxf(la, lb);
    // Both empty: keep o = 0, lse = -inf; computing exp(-inf - -inf) would give NaN.
    const bool empty = (m == -INFINITY);
    const float wa = empty ? 0.f : __expf(la - m);
    const float wb = empty ? 0.f : __expf(lb - m);
    const float inv = empty ? 0.f : 1.f / (wa + wb);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        const size_t i = size_t(h) * head_dim + d;
        o_a[i] = empty ? 0.f : (wa * o_a[i] + wb * o_b[i]) * inv;
    }
    __syncthreads();
    if (threadIdx.x == 0) lse_a[h] = empty ? -INFINITY : m + logf(wa + wb);
}

}  // namespace

void lse_merge(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head, int32_t head_dim,
               void* stream) {
    if (n_head == 0) return;
    lse_merge_kernel<<<n_head, 128, 0, static_cast<cudaStream_t>(stream)>>>(o_a, lse_a, o_b, lse_b, head_dim);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
