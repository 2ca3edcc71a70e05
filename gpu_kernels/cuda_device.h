// SPDX-License-Identifier: MIT
// The cuda device behind the Device interface (built only with BUTLER_WITH_CUDA). No CUDA type appears here.
//   memory: Device = cudaMalloc counted against a cap (--device-memory; default the GPU's free memory at creation),
//           PinnedHost = cudaHostAlloc (portable, mapped: kernels read and write it over PCIe), Host = plain;
//           pin()/unpin() = cudaHostRegister/Unregister (mapped), so the host KV store's pages are gatherable.
//   streams: non-blocking CUDA streams; copy = cudaMemcpyAsync (direction from the pointers), gather = the row
//           gather kernel (gpu_kernels/gather_rows.cu) where the GPU reads registered host memory through its host
//           pointer (cudaDevAttrCanUseHostPointerForRegisteredMem), else one cudaMemcpyAsync per piece; host_fn =
//           cudaLaunchHostFunc, record/wait = cudaEventRecord/cudaStreamWaitEvent. Events without timing.
//   kernels: attn_partial = gpu_kernels/attn_partial.cu, gemv = gpu_kernels/gemv.cu, gemm = gpu_kernels/gemm.cu
//           (dequantized tiles into cuBLAS; each stream makes its cuBLAS handle on its first gemm), rmsnorm/rope/glu/add/scale/
//           store_row = gpu_kernels/elementwise.cu, imp_score/topk = gpu_kernels/select.cu; lse_merge stays on
//           the host (the pipeline merges there).
// Every CUDA failure is Error(Device) naming the call and the CUDA error; exhausting the cap is Error(Oom).
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/device.h"

namespace butler::cuda {

struct CudaDeviceOptions {
    int ordinal             = 0;
    uint64_t capacity_bytes = 0;  // 0: the GPU's free memory when the device is created
};

// Error(Device) when there is no usable GPU (naming the CUDA error), Error(Usage) for an ordinal out of range
// (make_device("cuda[:N|:mem=..,device=N]") checks both first and reports Error(Unsupported) naming the spec).
std::unique_ptr<Device> make_cuda_device(const CudaDeviceOptions& options);

// Enqueues the attention partial (AttnPartialArgs' contract in runtime/device.h) on a CUDA stream given as void*.
// head_dim and head_dim_v at most 256; kv_type f32, f16 or bf16.
void launch_attn_partial(const AttnPartialArgs& args, void* stream);

// Enqueues a chunked-prefill attention block (PrefillAttnArgs' contract in runtime/device.h) on a CUDA stream given
// as void*; the caller has checked the arguments (check_prefill_attn_args, at most 32 query heads per KV head).
void launch_prefill_attn(const PrefillAttnArgs& args, void* stream);

// True for the weight types gemv.cu has a kernel for (F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K).
bool gemv_has_kernel(uint32_t type);
// Enqueues y = W x (GemvArgs' contract in runtime/device.h) on a CUDA stream given as void*; the caller has checked
// the type (gemv_has_kernel) and the width (a multiple of the type's block).
void launch_gemv(const GemvArgs& args, void* stream);

// A cuBLAS handle bound to a CUDA stream given as void* (Error(Device) naming the cuBLAS status when it cannot be
// made), and its release (null: nothing).
void* create_blas_handle(void* stream);
void destroy_blas_handle(void* handle);
// Whether every size of a gemm fits cuBLAS's int arguments.
bool gemm_fits_int(const GemmArgs& args);
// Enqueues Y = X W^T (GemmArgs' contract in runtime/device.h; gpu_kernels/gemm.cu) on a CUDA stream given as void*
// through the stream's cuBLAS handle; the caller has checked the arguments (check_gemm_args, gemm_fits_int).
// scratch must be 16-byte aligned.
void launch_gemm(const GemmArgs& args, void* stream, void* blas_handle);

// Enqueue the forward's row and element-wise steps (RmsNormArgs, RopeArgs, GluArgs in runtime/device.h) on a CUDA
// stream given as void* (gpu_kernels/elementwise.cu).
void launch_rmsnorm(const RmsNormArgs& args, void* stream);
void launch_rope(const RopeArgs& args, void* stream);
void launch_glu(const GluArgs& args, void* stream);
void launch_add(const AddArgs& args, void* stream);
void launch_scale(const ScaleArgs& args, void* stream);
// The caller has checked the type (check_store_row_args).
void launch_store_row(const StoreRowArgs& args, void* stream);

// TokenButler selection (ImpScoreArgs, TopkArgs, ImpQueryArgs in runtime/device.h; gpu_kernels/select.cu). imp_score handles up
// to 16 query heads per group and d' up to 128 (imp_score_supported); the caller has checked topk's k.
bool imp_score_supported(int32_t n_group, int32_t d);
void launch_imp_score(const ImpScoreArgs& args, void* stream);
void launch_topk(const TopkArgs& args, void* stream);
void launch_imp_query(const ImpQueryArgs& args, void* stream);

// Enqueues the row gather (Stream::gather's contract in runtime/device.h) on a CUDA stream given as void*: `pieces`
// and every src must be mapped pinned host memory whose host pointer the device can use (UVA).
void launch_gather(const CopyPiece* pieces, size_t n_pieces, void* stream);

}  // namespace butler::cuda
