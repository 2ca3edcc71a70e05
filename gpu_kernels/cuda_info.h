// SPDX-License-Identifier: MIT
// What the CUDA runtime sees, without exposing CUDA types. Built only when CUDA is enabled.
#pragma once

#include <cstdint>
#include <string>

namespace butler::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device i.
std::string device_name(int device);

// Test and benchmark helper: runs lse_merge on device 0 over host arrays (copies in, merges, copies back).
void lse_merge_on_device(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head,
                         int32_t head_dim);

}  // namespace butler::cuda
