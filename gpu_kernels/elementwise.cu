// SPDX-License-Identifier: MIT
// The forward's row and element-wise steps on the device (contracts in runtime/device.h): RMSNorm (a block per row,
// sum of squares by a block reduction), RoPE (a thread per rotated pair, both pair layouts), and the gated
// activations (a thread per element; GELU in its tanh form written as x * sigmoid(2z), as the CPU kernel does),
// the residual add, the query scaling and the K/V row store (f32 -> f32/f16/bf16, round to nearest even).
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

__global__ void rmsnorm_kernel(RmsNormArgs a) {
    __shared__ float partial[kThreads / 32];
    const float* x = a.x + int64_t(blockIdx.x) * a.n;
    float* out = a.out + int64_t(blockIdx.x) * a.n;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) ss += x[i] * x[i];
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0.f;
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += partial[w];
    const float scale = rsqrtf(total / float(a.n) + a.eps);
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) out[i] = x[i] * scale * (a.w ? a.w[i] : 1.f);
}

__global__ void rope_kernel(RopeArgs a) {
    const int half = a.head_dim / 2;
    const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t >= int64_t(a.n_heads) * half) return;
    const int h = int(t / half), i = int(t % half);
    float* x = a.x + int64_t(h) * a.head_dim;
    const int i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
    const float x0 = x[i0], x1 = x[i1], c = a.cos[i], s = a.sin[i];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
}

__global__ void glu_kernel(GluArgs a) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= a.n) return;
    const float g = a.gate[i];
    float act;
    if (a.gelu) {
        const float z = 0.79788456080286535588f * g * (1.f + 0.044715f * g * g);
        act = g / (1.f + expf(-2.f * z));  // 0.5 g (1 + tanh z) = g sigmoid(2 z)
    } else {
        act = g / (1.f + expf(-g));
    }
    a.gate[i] = act * a.up[i];
}

__global__ void add_kernel(AddArgs a) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < a.n) a.y[i] += a.x[i];
}

__global__ void scale_kernel(ScaleArgs a) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < a.n) a.x[i] *= a.s;
}

// type: 0 f32, 1 f16, 2 bf16 (mapped from the DType id on the host).
__global__ void store_row_kernel(const float* x, void* out, int type, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (type == 0) static_cast<float*>(out)[i] = x[i];
    else if (type == 1) static_cast<__half*>(out)[i] = __float2half_rn(x[i]);
    else static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(x[i]);
}

unsigned blocks_for(int64_t n) {
    return unsigned((n + kThreads - 1) / kThreads);
}

}  // namespace

void launch_rmsnorm(const RmsNormArgs& a, void* stream) {
    if (a.n_rows == 0) return;
    rmsnorm_kernel<<<unsigned(a.n_rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_rope(const RopeArgs& a, void* stream) {
    const int64_t n = int64_t(a.n_heads) * (a.head_dim / 2);
    if (n == 0) return;
    rope_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_glu(const GluArgs& a, void* stream) {
    if (a.n == 0) return;
    glu_kernel<<<blocks_for(a.n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_add(const AddArgs& a, void* stream) {
    if (a.n == 0) return;
    add_kernel<<<blocks_for(a.n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_scale(const ScaleArgs& a, void* stream) {
    if (a.n == 0) return;
    scale_kernel<<<blocks_for(a.n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

void launch_store_row(const StoreRowArgs& a, void* stream) {
    if (a.n == 0) return;
    const int type = a.type == uint32_t(DType::F32) ? 0 : a.type == uint32_t(DType::F16) ? 1 : 2;
    store_row_kernel<<<blocks_for(a.n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a.x, a.out, type, a.n);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
