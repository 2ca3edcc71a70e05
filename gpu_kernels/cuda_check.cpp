// SPDX-License-Identifier: MIT
#include "runtime/status.h"

namespace butler::cuda {

void throw_cuda_error(const char* error_name, const char* error_text, const char* expr, const char* file, int line) {
    fail(Status::Device, "CUDA call `{}` failed: {} ({}) at {}:{}", expr, error_name, error_text, file, line);
}

}  // namespace butler::cuda
