// SPDX-License-Identifier: MIT
// TokenButler selection on the device (contracts: runtime/device.h ImpScoreArgs, TopkArgs; the CPU twins are
// cpu_kernels/select.h).
//
// imp_score, three launches over the n = hi - lo candidates:
//   1. partials: up to kMaxBlocks blocks stride over the candidates; each thread keeps an online (max, sum of exp)
//      per query head of the logits it computed (q staged in shared memory), the block combines them;
//   2. combine: one block folds the partials into (max, sum) per head;
//   3. score: a thread per candidate recomputes its logits (d' is small) and sums exp(l - max) / sum over heads.
// topk, a radix select on an order-preserving 32-bit image of the scores (larger float -> larger key): four passes
// of 8 bits, each a histogram of the candidates that match the prefix found so far and a one-thread pick of the
// digit that holds the k-th largest key; then one block walks the candidates in id order and writes every key above
// the threshold and the first `remaining` keys equal to it (ties to the lower id), so the ids come out ascending.
// imp_query: LayerNorm in one block, then a warp per row of W1 (with SiLU) and of W2.
#include <cub/block/block_scan.cuh>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"

namespace butler::cuda {
namespace {

constexpr int kThreads    = 256;
constexpr int kMaxBlocks  = 1024;  // runtime/device_registry.cpp sizes the scratch for this many partials
constexpr int kMaxGroup   = 16;
constexpr int kMaxDim     = 128;
constexpr int kScanThreads = 1024;

__device__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// (m1, s1) and (m2, s2): sum_i exp(x_i - m) of two sets, folded into one; an empty set is (-inf, 0).
__device__ void fold(float& m, float& s, float m2, float s2) {
    const float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return;
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

__global__ void imp_partials_kernel(ImpScoreArgs a, float* partials) {
    __shared__ float q[kMaxGroup * kMaxDim];
    __shared__ float sm[kThreads], ss[kThreads];
    for (int i = threadIdx.x; i < a.n_group * a.d; i += blockDim.x) q[i] = a.q[i];
    __syncthreads();
    float m[kMaxGroup], s[kMaxGroup];
    for (int h = 0; h < kMaxGroup; ++h) {
        m[h] = -INFINITY;
        s[h] = 0.f;
    }
    for (int64_t t = a.lo + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < a.hi;
         t += int64_t(gridDim.x) * blockDim.x) {
        const uint16_t* k = a.keys + t * a.d;
        for (int h = 0; h < a.n_group; ++h) {
            float l = 0.f;
            for (int e = 0; e < a.d; ++e) l += q[h * a.d + e] * half_bits_to_float(k[e]);
            fold(m[h], s[h], l * a.scale, 1.f);
        }
    }
    for (int h = 0; h < a.n_group; ++h) {
        sm[threadIdx.x] = m[h];
        ss[threadIdx.x] = s[h];
        __syncthreads();
        for (int half = blockDim.x / 2; half > 0; half >>= 1) {
            if (threadIdx.x < half) {
                float mm = sm[threadIdx.x], sss = ss[threadIdx.x];
                fold(mm, sss, sm[threadIdx.x + half], ss[threadIdx.x + half]);
                sm[threadIdx.x] = mm;
                ss[threadIdx.x] = sss;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            partials[(int64_t(blockIdx.x) * a.n_group + h) * 2]     = sm[0];
            partials[(int64_t(blockIdx.x) * a.n_group + h) * 2 + 1] = ss[0];
        }
        __syncthreads();
    }
}

__global__ void imp_combine_kernel(int n_blocks, int n_group, const float* partials, float* stats) {
    for (int h = threadIdx.x; h < n_group; h += blockDim.x) {
        float m = -INFINITY, s = 0.f;
        for (int b = 0; b < n_blocks; ++b)
            fold(m, s, partials[(int64_t(b) * n_group + h) * 2], partials[(int64_t(b) * n_group + h) * 2 + 1]);
        stats[h * 2]     = m;
        stats[h * 2 + 1] = s;
    }
}

__global__ void imp_score_kernel(ImpScoreArgs a, const float* stats) {
    __shared__ float q[kMaxGroup * kMaxDim];
    for (int i = threadIdx.x; i < a.n_group * a.d; i += blockDim.x) q[i] = a.q[i];
    __syncthreads();
    const int64_t t = a.lo + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t >= a.hi) return;
    const uint16_t* k = a.keys + t * a.d;
    float score       = 0.f;
    for (int h = 0; h < a.n_group; ++h) {
        float l = 0.f;
        for (int e = 0; e < a.d; ++e) l += q[h * a.d + e] * half_bits_to_float(k[e]);
        score += expf(l * a.scale - stats[h * 2]) / stats[h * 2 + 1];
    }
    a.score[t] = score;
}

// --- radix select --------------------------------------------------------------------------------------------

struct TopkState {
    uint32_t hist[256];
    uint32_t prefix, mask;
    unsigned long long remaining;  // keys still to take at the prefix's level
};

__device__ uint32_t order_key(float x) {
    const uint32_t b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__global__ void topk_init_kernel(TopkState* st, int64_t k) {
    st->prefix    = 0;
    st->mask      = 0;
    st->remaining = static_cast<unsigned long long>(k);
}

__global__ void topk_hist_kernel(TopkArgs a, TopkState* st, int shift) {
    __shared__ uint32_t hist[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = st->prefix, mask = st->mask;
    for (int64_t t = a.lo + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < a.hi;
         t += int64_t(gridDim.x) * blockDim.x) {
        const uint32_t key = order_key(a.score[t]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        if (hist[i] != 0) atomicAdd(&st->hist[i], hist[i]);
}

// The digit at `shift` that holds the remaining-th largest key among those matching the prefix.
__global__ void topk_pick_kernel(TopkState* st, int shift) {
    unsigned long long above = 0;
    for (int d = 255; d >= 0; --d) {
        const unsigned long long c = st->hist[d];
        if (above + c >= st->remaining) {
            st->prefix |= uint32_t(d) << shift;
            st->mask |= 255u << shift;
            st->remaining -= above;
            break;
        }
        above += c;
    }
    for (int d = 0; d < 256; ++d) st->hist[d] = 0;  // ready for the next pass
}

__global__ void topk_write_kernel(TopkArgs a, const TopkState* st) {
    using Scan = cub::BlockScan<unsigned int, kScanThreads>;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ unsigned long long eq_taken, written;
    const uint32_t threshold          = st->prefix;
    const unsigned long long eq_quota = st->remaining;
    if (threadIdx.x == 0) {
        eq_taken = 0;
        written  = 0;
    }
    __syncthreads();
    for (int64_t base = a.lo; base < a.hi; base += kScanThreads) {
        const int64_t t     = base + threadIdx.x;
        const uint32_t key  = t < a.hi ? order_key(a.score[t]) : 0u;
        const bool in       = t < a.hi;
        const unsigned eq   = in && key == threshold;
        unsigned eq_rank = 0, eq_total = 0;
        Scan(scan_tmp).ExclusiveSum(eq, eq_rank, eq_total);
        __syncthreads();
        const unsigned sel = in && (key > threshold || (eq && eq_taken + eq_rank < eq_quota));
        unsigned sel_rank = 0, sel_total = 0;
        Scan(scan_tmp).ExclusiveSum(sel, sel_rank, sel_total);
        if (sel) {
            a.ids[written + sel_rank] = int32_t(t);
            if (a.id_scores) a.id_scores[written + sel_rank] = a.score[t];
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            eq_taken += eq_total;
            written += sel_total;
        }
        __syncthreads();
    }
}

// --- the predictor's query MLP -------------------------------------------------------------------------------

__device__ float block_sum(float x, float* shared) {
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = x;
    __syncthreads();
    float total = 0.f;
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += shared[w];
    __syncthreads();
    return total;
}

// One block: y = LayerNorm(x) into the scratch (two passes: mean, then the centred variance).
__global__ void imp_layernorm_kernel(ImpQueryArgs a) {
    __shared__ float partial[kThreads / 32];
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < a.n_embd; j += blockDim.x) s += a.x[j];
    const float mean = block_sum(s, partial) / float(a.n_embd);
    float v = 0.f;
    for (int64_t j = threadIdx.x; j < a.n_embd; j += blockDim.x) v += (a.x[j] - mean) * (a.x[j] - mean);
    const float inv = rsqrtf(block_sum(v, partial) / float(a.n_embd) + a.eps);
    for (int64_t j = threadIdx.x; j < a.n_embd; j += blockDim.x)
        a.scratch[j] = (a.x[j] - mean) * inv * a.ln_w[j] + a.ln_b[j];
}

// A warp per output row: out[r] = act(w[r] . in), act = SiLU or the identity.
__global__ void imp_rows_kernel(const float* w, const float* in, float* out, int64_t n_rows, int64_t n_cols,
                                bool silu) {
    const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= n_rows) return;
    const int lane = threadIdx.x % 32;
    const float* row = w + r * n_cols;
    float s = 0.f;
    for (int64_t c = lane; c < n_cols; c += 32) s += row[c] * in[c];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) out[r] = silu ? s / (1.f + expf(-s)) : s;
}

int blocks_for(int64_t n) {
    const int64_t b = (n + kThreads - 1) / kThreads;
    return int(b < kMaxBlocks ? (b > 0 ? b : 1) : kMaxBlocks);
}

}  // namespace

bool imp_score_supported(int32_t n_group, int32_t d) {
    return n_group >= 1 && n_group <= kMaxGroup && d >= 1 && d <= kMaxDim;
}

void launch_imp_score(const ImpScoreArgs& a, void* stream) {
    const int64_t n = a.hi - a.lo;
    if (n <= 0) return;
    auto s           = static_cast<cudaStream_t>(stream);
    const int blocks = blocks_for(n);
    float* partials  = static_cast<float*>(a.scratch);
    float* stats     = partials + int64_t(kMaxBlocks) * a.n_group * 2;
    imp_partials_kernel<<<blocks, kThreads, 0, s>>>(a, partials);
    BUTLER_CUDA_CHECK(cudaGetLastError());
    imp_combine_kernel<<<1, 32, 0, s>>>(blocks, a.n_group, partials, stats);
    BUTLER_CUDA_CHECK(cudaGetLastError());
    imp_score_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, s>>>(a, stats);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_imp_query(const ImpQueryArgs& a, void* stream) {
    auto s              = static_cast<cudaStream_t>(stream);
    float* y            = a.scratch;
    float* act          = a.scratch + a.n_embd;
    constexpr int kRows = kThreads / 32;  // rows per block, a warp each
    imp_layernorm_kernel<<<1, kThreads, 0, s>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
    imp_rows_kernel<<<unsigned((a.intdim + kRows - 1) / kRows), kThreads, 0, s>>>(a.w1, y, act, a.intdim, a.n_embd,
                                                                                 true);
    BUTLER_CUDA_CHECK(cudaGetLastError());
    imp_rows_kernel<<<unsigned((a.q_width + kRows - 1) / kRows), kThreads, 0, s>>>(a.w2, act, a.out, a.q_width,
                                                                                  a.intdim, false);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_topk(const TopkArgs& a, void* stream) {
    const int64_t n = a.hi - a.lo;
    if (a.k <= 0 || n <= 0) return;
    static_assert(sizeof(TopkState) <= 4096, "topk_scratch_bytes reserves 4096 bytes for the radix state");
    auto s      = static_cast<cudaStream_t>(stream);
    auto* state = static_cast<TopkState*>(a.scratch);
    BUTLER_CUDA_CHECK(cudaMemsetAsync(state->hist, 0, sizeof(state->hist), s));
    topk_init_kernel<<<1, 1, 0, s>>>(state, a.k);
    BUTLER_CUDA_CHECK(cudaGetLastError());
    for (int shift = 24; shift >= 0; shift -= 8) {
        topk_hist_kernel<<<blocks_for(n), kThreads, 0, s>>>(a, state, shift);
        BUTLER_CUDA_CHECK(cudaGetLastError());
        topk_pick_kernel<<<1, 1, 0, s>>>(state, shift);
        BUTLER_CUDA_CHECK(cudaGetLastError());
    }
    topk_write_kernel<<<1, kScanThreads, 0, s>>>(a, state);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
