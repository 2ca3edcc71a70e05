// SPDX-License-Identifier: MIT
// Partial attention of n_group query heads over an index set of K/V rows (device slots): (o, lse) per head.
// Work mapping: one block per query head. Pass 1: threads stride over the indexed rows, score = q . k (q staged in
// shared memory), kept in the scores scratch, block max. Pass 2: p = exp(score - max) in place, block sum. Pass 3:
// threads stride over the output dimensions, o[d] = sum_i p_i v_i[d] / sum. Reads each selected K row once and each
// V row once per output dimension group; the simple first version the CPU reference checks (tests/test_cuda_device).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"
#include "runtime/dtype.h"

namespace butler::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHeadDim = 256;

__device__ float load_elem(const uint8_t* row, int d, uint32_t type) {
    if (type == uint32_t(DType::F16)) return __half2float(reinterpret_cast<const __half*>(row)[d]);
    if (type == uint32_t(DType::BF16)) return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[d]);
    return reinterpret_cast<const float*>(row)[d];
}

__device__ float block_reduce(float x, float* shared, bool take_max) {
    for (int off = 16; off > 0; off >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, off);
        x = take_max ? fmaxf(x, y) : x + y;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    if (warp == 0) {
        x = lane < int(blockDim.x / 32) ? shared[lane] : (take_max ? -INFINITY : 0.f);
        for (int off = 16; off > 0; off >>= 1) {
            const float y = __shfl_xor_sync(0xffffffffu, x, off);
            x = take_max ? fmaxf(x, y) : x + y;
        }
        if (lane == 0) shared[0] = x;
    }
    __syncthreads();
    const float r = shared[0];
    __syncthreads();
    return r;
}

__global__ void attn_partial_kernel(AttnPartialArgs a, int elem_bytes) {
    __shared__ float q_s[kMaxHeadDim];
    __shared__ float red[kThreads / 32];
    const int h = blockIdx.x;
    const float* q = a.q + int64_t(h) * a.head_dim;
    for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x) q_s[d] = q[d];
    __syncthreads();
    float* scores = a.scores + int64_t(h) * a.n_idx;
    const int64_t k_row = int64_t(a.head_dim) * elem_bytes, v_row = int64_t(a.head_dim_v) * elem_bytes;

    float local_max = -INFINITY;
    for (int64_t i = threadIdx.x; i < a.n_idx; i += blockDim.x) {
        const uint8_t* k = a.k + int64_t(a.idx[i]) * k_row;
        float s = 0.f;
        for (int d = 0; d < a.head_dim; ++d) s += q_s[d] * load_elem(k, d, a.kv_type);
        scores[i] = s;
        local_max = fmaxf(local_max, s);
    }
    const float m = block_reduce(local_max, red, true);
    float local_sum = 0.f;
    for (int64_t i = threadIdx.x; i < a.n_idx; i += blockDim.x) {
        const float p = __expf(scores[i] - m);
        scores[i] = p;
        local_sum += p;
    }
    const float sum = block_reduce(local_sum, red, false);  // also orders the p writes before pass 3
    float* out = a.out + int64_t(h) * a.head_dim_v;
    if (a.n_idx == 0) {  // empty set: o = 0, lse = -inf, no NaN
        for (int d = threadIdx.x; d < a.head_dim_v; d += blockDim.x) out[d] = 0.f;
        if (threadIdx.x == 0) a.lse[h] = -INFINITY;
        return;
    }
    const float inv = 1.f / sum;
    for (int d = threadIdx.x; d < a.head_dim_v; d += blockDim.x) {
        float acc = 0.f;
        for (int64_t i = 0; i < a.n_idx; ++i) acc += scores[i] * load_elem(a.v + int64_t(a.idx[i]) * v_row, d, a.kv_type);
        out[d] = acc * inv;
    }
    if (threadIdx.x == 0) a.lse[h] = m + logf(sum);
}

}  // namespace

void launch_attn_partial(const AttnPartialArgs& a, void* stream) {
    if (a.n_group == 0) return;
    const int elem_bytes = a.kv_type == uint32_t(DType::F32) ? 4 : 2;
    attn_partial_kernel<<<a.n_group, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, elem_bytes);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
