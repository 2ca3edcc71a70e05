// SPDX-License-Identifier: MIT
// Integer dot products against 8-bit activations (see quant_dot.h).
// Work mapping: gemv_q quantizes x once on the calling thread, then OpenMP threads take whole rows (static
// schedule). Memory traffic per GEMV: the weight bytes once, x's blocks (a few KiB, cache-resident) per row.
#include "cpu_kernels/quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define BUTLER_QDOT_AVX2 1
#endif

#include "cpu_kernels/quant.h"
#include "cpu_kernels/quant_blocks.h"
#include "cpu_kernels/quant_dot_simd.h"
#include "cpu_kernels/simd_math.h"
#include "runtime/status.h"

#ifdef BUTLER_AVX512_KERNELS
namespace butler::qdot_avx512 {  // quant_dot_avx512.cpp
float q8_0(const void* row, const void* xq, int64_t n);
float q5_0(const void* row, const void* xq, int64_t n);
float q4_k(const void* row, const void* xq, int64_t n);
float q6_k(const void* row, const void* xq, int64_t n);
}  // namespace butler::qdot_avx512
#endif

namespace butler {
namespace {

using namespace quant_blocks;
using namespace qdot;

inline int get_scale(int j, const uint8_t* q) { return j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); }
inline int get_min(int j, const uint8_t* q) { return j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }

int8_t round_clamp(float v) { return static_cast<int8_t>(std::clamp(static_cast<int>(std::lrintf(v)), -127, 127)); }

void quantize_q8_0(const float* x, int64_t n, BlockQ8_0Act* out) {
    for (int64_t b = 0; b < n / kQK; ++b) {
        const float* xb = x + b * kQK;
        float amax = 0;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
        // The scale rounded to f16, as GGML's Q8_0 activation blocks carry it, keeps results closest to llama.cpp.
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        const float id = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int j = 0; j < kQK; ++j) out[b].qs[j] = round_clamp(xb[j] * id);
    }
}

void quantize_q8_k(const float* x, int64_t n, BlockQ8_K* out) {
    for (int64_t b = 0; b < n / kQKK; ++b) {
        const float* xb = x + b * kQKK;
        float amax = 0;
        for (int j = 0; j < kQKK; ++j) amax = std::max(amax, std::fabs(xb[j]));
        // The scale rounded to f16, as GGML's Q8_0 activation blocks carry it, keeps results closest to llama.cpp.
        const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
        const float id = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int j = 0; j < kQKK; ++j) out[b].qs[j] = round_clamp(xb[j] * id);
        for (int k = 0; k < kQKK / 16; ++k) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += out[b].qs[16 * k + j];
            out[b].bsums[k] = static_cast<int16_t>(sum);
        }
    }
}

// --- scalar references -------------------------------------------------------------------------------------

float ref_q8_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQK; ++b) {
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += int(w[b].qs[j]) * int(x[b].qs[j]);
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

float ref_q5_0(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ5_0*>(row);
    const auto* x = static_cast<const BlockQ8_0Act*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQK; ++b) {
        uint32_t qh;
        std::memcpy(&qh, w[b].qh, 4);
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int v0 = ((w[b].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
            const int v1 = ((w[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += v0 * x[b].qs[j] + v1 * x[b].qs[j + 16];
        }
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

float ref_q4_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ4_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            const int c = j / 2, shift = 4 * (j % 2);
            int sumq = 0;
            for (int l = 0; l < 32; ++l) sumq += ((w[b].qs[32 * c + l] >> shift) & 0xF) * x[b].qs[32 * j + l];
            sumi += get_scale(j, w[b].scales) * sumq;
            summ += get_min(j, w[b].scales) * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        acc += x[b].d * (f16_to_f32(w[b].d) * float(sumi) - f16_to_f32(w[b].dmin) * float(summ));
    }
    return acc;
}

float ref_q6_k(const void* row, const void* xq, int64_t n) {
    const auto* w = static_cast<const BlockQ6_K*>(row);
    const auto* x = static_cast<const BlockQ8_K*>(xq);
    float acc = 0;
    for (int64_t b = 0; b < n / kQKK; ++b) {
        int q[kQKK];
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = w[b].ql + 64 * h;
            const uint8_t* qh = w[b].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                q[128 * h + l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                q[128 * h + l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                q[128 * h + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                q[128 * h + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            }
        }
        int sumi = 0;
        for (int g = 0; g < kQKK / 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += q[16 * g + j] * x[b].qs[16 * g + j];
            sumi += w[b].scales[g] * s;
        }
        acc += f16_to_f32(w[b].d) * x[b].d * float(sumi);
    }
    return acc;
}

#ifdef BUTLER_QDOT_AVX2
// --- AVX2 ----------------------------------------------------------------------------------------------------

float avx2_q8_0(const void* row, const void* xq, int64_t n) { return dot_q8_0<false>(row, xq, n); }
float avx2_q5_0(const void* row, const void* xq, int64_t n) { return dot_q5_0<false>(row, xq, n); }
float avx2_q4_k(const void* row, const void* xq, int64_t n) { return dot_q4_k<false>(row, xq, n); }
float avx2_q6_k(const void* row, const void* xq, int64_t n) { return dot_q6_k<false>(row, xq, n); }
#endif

using DotFn = float (*)(const void*, const void*, int64_t);

DotFn reference_fn(DType t) {
    switch (t) {
        case DType::Q8_0: return ref_q8_0;
        case DType::Q5_0: return ref_q5_0;
        case DType::Q4_K: return ref_q4_k;
        case DType::Q6_K: return ref_q6_k;
        default: return nullptr;
    }
}

DotFn isa_fn(DotIsa isa, DType t) {
    switch (isa) {
#ifdef BUTLER_AVX512_KERNELS
        case DotIsa::Avx512Vnni:
            switch (t) {
                case DType::Q8_0: return qdot_avx512::q8_0;
                case DType::Q5_0: return qdot_avx512::q5_0;
                case DType::Q4_K: return qdot_avx512::q4_k;
                case DType::Q6_K: return qdot_avx512::q6_k;
                default: return nullptr;
            }
#endif
#ifdef BUTLER_QDOT_AVX2
        case DotIsa::Avx2:
            switch (t) {
                case DType::Q8_0: return avx2_q8_0;
                case DType::Q5_0: return avx2_q5_0;
                case DType::Q4_K: return avx2_q4_k;
                case DType::Q6_K: return avx2_q6_k;
                default: return nullptr;
            }
#endif
        default: return reference_fn(t);
    }
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

DotIsa choose_isa() {
    DotIsa best = DotIsa::Scalar;
    for (DotIsa isa : {DotIsa::Avx2, DotIsa::Avx512Vnni})
        if (dot_isa_available(isa)) best = isa;
    // $BUTLER_CPU_ISA caps the choice (A/B measurements of one binary on one machine).
    if (const char* env = std::getenv("BUTLER_CPU_ISA")) {
        for (DotIsa isa : {DotIsa::Scalar, DotIsa::Avx2, DotIsa::Avx512Vnni})
            if (std::strcmp(env, dot_isa_name(isa)) == 0 && isa < best) best = isa;
    }
    return best;
}

DotFn fast_fn(DType t) { return isa_fn(dot_isa(), t); }

}  // namespace

DType activation_type(DType weight_type) {
    switch (weight_type) {
        case DType::Q8_0:
        case DType::Q5_0: return DType::Q8_0;
        case DType::Q4_K:
        case DType::Q6_K: return DType::Q8_K;
        default: return DType::F32;
    }
}

int64_t activation_bytes(DType weight_type, int64_t n) {
    switch (activation_type(weight_type)) {
        case DType::Q8_0: return n / kQK * int64_t(sizeof(BlockQ8_0Act));
        case DType::Q8_K: return n / kQKK * int64_t(sizeof(BlockQ8_K));
        default: return n * 4;
    }
}

void quantize_activation(DType weight_type, const float* x, int64_t n, void* xq) {
    switch (activation_type(weight_type)) {
        case DType::Q8_0: quantize_q8_0(x, n, static_cast<BlockQ8_0Act*>(xq)); return;
        case DType::Q8_K: quantize_q8_k(x, n, static_cast<BlockQ8_K*>(xq)); return;
        default: std::memcpy(xq, x, static_cast<size_t>(n) * 4); return;
    }
}

float dot_row_q(DType weight_type, const void* row, const void* xq, int64_t n) {
    const DotFn f = fast_fn(weight_type);
    if (f == nullptr) return dot_row(weight_type, row, static_cast<const float*>(xq), n);
    return f(row, xq, n);
}

bool dot_isa_available(DotIsa isa) {
    switch (isa) {
        case DotIsa::Scalar: return true;
#ifdef BUTLER_QDOT_AVX2
        case DotIsa::Avx2: return true;
#endif
#if defined(BUTLER_QDOT_AVX2) && defined(BUTLER_AVX512_KERNELS)
        case DotIsa::Avx512Vnni: {
            static const bool present = cpu_has_avx512_vnni();
            return present;
        }
#endif
        default: return false;
    }
}

DotIsa dot_isa() {
    static const DotIsa isa = choose_isa();
    return isa;
}

const char* dot_isa_name(DotIsa isa) {
    switch (isa) {
        case DotIsa::Scalar: return "scalar";
        case DotIsa::Avx2: return "avx2";
        case DotIsa::Avx512Vnni: return "avx512vnni";
    }
    return "?";
}

float dot_row_q_isa(DotIsa isa, DType weight_type, const void* row, const void* xq, int64_t n) {
    if (!dot_isa_available(isa))
        fail(Status::Unsupported, "the {} dot-product kernels are not available on this CPU or build", dot_isa_name(isa));
    const DotFn f = isa_fn(isa, weight_type);
    if (f == nullptr) return dot_row(weight_type, row, static_cast<const float*>(xq), n);
    return f(row, xq, n);
}

float dot_row_q_reference(DType weight_type, const void* row, const void* xq, int64_t n) {
    const DotFn f = reference_fn(weight_type);
    if (f == nullptr) return dot_row(weight_type, row, static_cast<const float*>(xq), n);
    return f(row, xq, n);
}

void gemv_q(DType t, const void* w, int64_t n_rows, int64_t n_cols, const float* x, float* y,
            std::vector<uint8_t>& xq_scratch) {
    const DotFn f = fast_fn(t);
    if (f == nullptr) {
        gemv(t, w, n_rows, n_cols, x, y);
        return;
    }
    BUTLER_ASSERT(n_cols % dtype_traits(t).block_elems == 0, "gemv_q: {} columns for type {}", n_cols, dtype_name(t));
    const size_t n_xq = static_cast<size_t>(activation_bytes(t, n_cols));
    if (xq_scratch.size() < n_xq) xq_scratch.resize(n_xq);
    quantize_activation(t, x, n_cols, xq_scratch.data());
    const int64_t stride = row_bytes(t, n_cols);
    const auto* base = static_cast<const uint8_t*>(w);
    const void* xq = xq_scratch.data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = f(base + r * stride, xq, n_cols);
}

void gemv_q_multi(const GemvJob* jobs, int n_jobs, int64_t n_cols, const float* x, std::vector<uint8_t>& xq_scratch) {
    // Activation blocks: Q8_0 first, then Q8_K (each quantized only if some job needs it).
    const int64_t q8_0_bytes = activation_bytes(DType::Q8_0, n_cols);
    const int64_t q8_k_bytes = n_cols % kQKK == 0 ? activation_bytes(DType::Q4_K, n_cols) : 0;
    if (xq_scratch.size() < static_cast<size_t>(q8_0_bytes + q8_k_bytes))
        xq_scratch.resize(static_cast<size_t>(q8_0_bytes + q8_k_bytes));
    bool need_q8_0 = false, need_q8_k = false;
    DotFn fns[8];
    const void* xqs[8];
    BUTLER_ASSERT(n_jobs <= 8, "gemv_q_multi takes at most 8 jobs");
    for (int j = 0; j < n_jobs; ++j) {
        fns[j] = fast_fn(jobs[j].type);
        BUTLER_ASSERT(fns[j] != nullptr, "gemv_q_multi: type {} has no integer path", dtype_name(jobs[j].type));
        const bool k = activation_type(jobs[j].type) == DType::Q8_K;
        need_q8_k |= k;
        need_q8_0 |= !k;
        xqs[j] = xq_scratch.data() + (k ? q8_0_bytes : 0);
    }
    if (need_q8_0) quantize_activation(DType::Q8_0, x, n_cols, xq_scratch.data());
    if (need_q8_k) quantize_activation(DType::Q4_K, x, n_cols, xq_scratch.data() + q8_0_bytes);
#pragma omp parallel
    for (int j = 0; j < n_jobs; ++j) {
        const int64_t stride = row_bytes(jobs[j].type, n_cols);
        const auto* base = static_cast<const uint8_t*>(jobs[j].w);
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < jobs[j].n_rows; ++r) jobs[j].y[r] = fns[j](base + r * stride, xqs[j], n_cols);
    }
}

}  // namespace butler
