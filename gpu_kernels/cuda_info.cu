// SPDX-License-Identifier: MIT
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_info.h"
#include "gpu_kernels/lse_merge.h"

namespace butler::cuda {
namespace {

// Device memory owned for the duration of a helper call.
struct DeviceArray {
    float* ptr = nullptr;
    explicit DeviceArray(size_t n) { BUTLER_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(float))); }
    ~DeviceArray() { cudaFree(ptr); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
};

}  // namespace

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

std::string device_name(int device) {
    cudaDeviceProp prop{};
    BUTLER_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    char buf[320];
    std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                  double(prop.totalGlobalMem) / double(1ull << 30));
    return buf;
}

void lse_merge_on_device(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head,
                         int32_t head_dim) {
    const size_t n_o = size_t(n_head) * size_t(head_dim);
    DeviceArray d_oa{n_o}, d_ob{n_o}, d_la{static_cast<size_t>(n_head)}, d_lb{static_cast<size_t>(n_head)};
    BUTLER_CUDA_CHECK(cudaMemcpy(d_oa.ptr, o_a, n_o * 4, cudaMemcpyHostToDevice));
    BUTLER_CUDA_CHECK(cudaMemcpy(d_ob.ptr, o_b, n_o * 4, cudaMemcpyHostToDevice));
    BUTLER_CUDA_CHECK(cudaMemcpy(d_la.ptr, lse_a, size_t(n_head) * 4, cudaMemcpyHostToDevice));
    BUTLER_CUDA_CHECK(cudaMemcpy(d_lb.ptr, lse_b, size_t(n_head) * 4, cudaMemcpyHostToDevice));
    lse_merge(d_oa.ptr, d_la.ptr, d_ob.ptr, d_lb.ptr, n_head, head_dim, nullptr);
    BUTLER_CUDA_CHECK(cudaDeviceSynchronize());
    BUTLER_CUDA_CHECK(cudaMemcpy(o_a, d_oa.ptr, n_o * 4, cudaMemcpyDeviceToHost));
    BUTLER_CUDA_CHECK(cudaMemcpy(lse_a, d_la.ptr, size_t(n_head) * 4, cudaMemcpyDeviceToHost));
}

}  // namespace butler::cuda
