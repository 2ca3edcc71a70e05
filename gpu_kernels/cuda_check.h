// SPDX-License-Identifier: MIT
// BUTLER_CUDA_CHECK(expr): throws butler::Error(Status::Device) naming the expression, the CUDA error and file:line.
// Include only from gpu_kernels/ (it needs cuda_runtime.h). The throwing half lives in cuda_check.cpp, compiled
// by the host compiler, because fmt's compile-time format checks do not compile under nvcc.
#pragma once

#include <cuda_runtime.h>

namespace butler::cuda {
[[noreturn]] void throw_cuda_error(const char* error_name, const char* error_text, const char* expr, const char* file,
                                   int line);
}  // namespace butler::cuda

#define BUTLER_CUDA_CHECK(expr)                                                                             \
    do {                                                                                                 \
        const cudaError_t butler_cuda_err_ = (expr);                                                        \
        if (butler_cuda_err_ != cudaSuccess)                                                                \
            ::butler::cuda::throw_cuda_error(cudaGetErrorName(butler_cuda_err_), cudaGetErrorString(butler_cuda_err_), \
                                          #expr, __FILE__, __LINE__);                                    \
    } while (0)
