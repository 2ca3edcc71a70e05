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

// Chunked-prefill attention block (PrefillAttnArgs): one warp per query head and kQueriesPerWarp consecutive
// queries, so each K and V row read serves that many queries. Lane l holds dimensions l, l + 32, ... of the queries
// and the accumulators (head dimensions <= 256: at most 8 per lane). Keys are walked once with an online softmax
// (running max, rescaled accumulator); a query's invisible keys (the causal mask) are skipped.
constexpr int kQueriesPerWarp = 4;
constexpr int kDimsPerLane    = kMaxHeadDim / 32;

__global__ void prefill_attn_kernel(PrefillAttnArgs a, int elem_bytes) {
    const int h = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t i0 = int64_t(blockIdx.x) * kQueriesPerWarp;
    const int nq = a.n_q - i0 < kQueriesPerWarp ? int(a.n_q - i0) : kQueriesPerWarp;
    float q[kQueriesPerWarp][kDimsPerLane], acc[kQueriesPerWarp][kDimsPerLane];
    float m[kQueriesPerWarp], sum[kQueriesPerWarp];
    int64_t n_seen[kQueriesPerWarp];
    for (int r = 0; r < kQueriesPerWarp; ++r) {
        m[r] = -INFINITY;
        sum[r] = 0.f;
        const int64_t visible = a.q_pos0 + i0 + r - a.kv_pos0 + 1;  // rows at positions <= the query's
        n_seen[r] = r >= nq || visible < 0 ? 0 : (visible < a.n_idx ? visible : a.n_idx);
        const float* qr = a.q + (i0 + (r < nq ? r : 0)) * a.q_stride + int64_t(h) * a.head_dim;
        for (int c = 0; c < kDimsPerLane; ++c) {
            const int d = lane + 32 * c;
            q[r][c] = d < a.head_dim && r < nq ? qr[d] : 0.f;
            acc[r][c] = 0.f;
        }
    }
    const int64_t k_row = int64_t(a.head_dim) * elem_bytes, v_row = int64_t(a.head_dim_v) * elem_bytes;
    const int64_t n_keys = n_seen[nq - 1];  // the last query sees the most rows
    for (int64_t j = 0; j < n_keys; ++j) {
        const uint8_t* k = a.k + int64_t(a.idx[j]) * k_row;
        const uint8_t* v = a.v + int64_t(a.idx[j]) * v_row;
        float kd[kDimsPerLane], vd[kDimsPerLane];
        for (int c = 0; c < kDimsPerLane; ++c) {
            const int d = lane + 32 * c;
            kd[c] = d < a.head_dim ? load_elem(k, d, a.kv_type) : 0.f;
            vd[c] = d < a.head_dim_v ? load_elem(v, d, a.kv_type) : 0.f;
        }
        for (int r = 0; r < kQueriesPerWarp; ++r) {
            if (j >= n_seen[r]) continue;  // warp-uniform: every lane has the same n_seen
            float s = 0.f;
            for (int c = 0; c < kDimsPerLane; ++c) s += q[r][c] * kd[c];
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            const float m_new = fmaxf(m[r], s);
            const float shrink = __expf(m[r] - m_new), p = __expf(s - m_new);
            sum[r] = sum[r] * shrink + p;
            for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] = acc[r][c] * shrink + p * vd[c];
            m[r] = m_new;
        }
    }
    for (int r = 0; r < nq; ++r) {
        float* o = a.out + (i0 + r) * a.o_stride + int64_t(h) * a.head_dim_v;
        float* lse = a.lse + (i0 + r) * a.lse_stride + h;
        const bool seen = n_seen[r] > 0;
        const float block_lse = seen ? m[r] + logf(sum[r]) : -INFINITY;
        float w_old = 0.f, w_new = 1.f, merged = block_lse;
        if (a.accumulate) {
            const float old = *lse;
            const float top = fmaxf(old, block_lse);
            if (top == -INFINITY) continue;  // both empty: (0, -inf) stays
            w_old = __expf(old - top);
            w_new = __expf(block_lse - top);
            merged = top + logf(w_old + w_new);
            const float norm = 1.f / (w_old + w_new);
            w_old *= norm;
            w_new *= norm;
        }
        const float inv = seen ? 1.f / sum[r] : 0.f;
        for (int c = 0; c < kDimsPerLane; ++c) {
            const int d = lane + 32 * c;
            if (d >= a.head_dim_v) continue;
            const float block_o = acc[r][c] * inv;
            o[d] = a.accumulate ? w_old * o[d] + w_new * block_o : block_o;
        }
        __syncwarp();
        if (lane == 0) *lse = merged;
    }
}

}  // namespace

void launch_attn_partial(const AttnPartialArgs& a, void* stream) {
    if (a.n_group == 0) return;
    const int elem_bytes = a.kv_type == uint32_t(DType::F32) ? 4 : 2;
    attn_partial_kernel<<<a.n_group, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, elem_bytes);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_prefill_attn(const PrefillAttnArgs& a, void* stream) {
    if (a.n_q == 0) return;
    const int elem_bytes = a.kv_type == uint32_t(DType::F32) ? 4 : 2;
    const int64_t n_blocks = (a.n_q + kQueriesPerWarp - 1) / kQueriesPerWarp;
    prefill_attn_kernel<<<unsigned(n_blocks), 32 * a.n_group, 0, static_cast<cudaStream_t>(stream)>>>(a, elem_bytes);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
