// SPDX-License-Identifier: MIT
// The AVX-512 VNNI build of quant_dot.h's dot products: the kernels of quant_dot_simd.h with Vnni = true (vpdpbusd
// and vpdpwssd on 256-bit vectors, AVX512VL), this file alone compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni (CMakeLists.txt). quant_dot.cpp calls these only where the CPU reports those extensions.
#include "cpu_kernels/quant_dot_simd.h"

namespace butler::qdot_avx512 {

float q8_0(const void* row, const void* xq, int64_t n) { return qdot::dot_q8_0<true>(row, xq, n); }
float q5_0(const void* row, const void* xq, int64_t n) { return qdot::dot_q5_0<true>(row, xq, n); }
float q4_k(const void* row, const void* xq, int64_t n) { return qdot::dot_q4_k<true>(row, xq, n); }
float q6_k(const void* row, const void* xq, int64_t n) { return qdot::dot_q6_k<true>(row, xq, n); }

}  // namespace butler::qdot_avx512
