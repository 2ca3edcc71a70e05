// SPDX-License-Identifier: MIT
// The cuda device (gpu_kernels/cuda_device.h): host code, compiled by the host compiler against the CUDA runtime.
#include "gpu_kernels/cuda_device.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "cpu_kernels/lse_merge.h"
#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_info.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

namespace butler::cuda {
namespace {

// Calls made from destructors and frees: an error there cannot be thrown; it stays sticky for the next checked call.
void ignore_error(cudaError_t) {}

class CudaEvent final : public Event {
public:
    explicit CudaEvent(int ordinal) {
        BUTLER_CUDA_CHECK(cudaSetDevice(ordinal));
        BUTLER_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    }
    ~CudaEvent() override { ignore_error(cudaEventDestroy(event_)); }
    bool query() const override {
        const cudaError_t e = cudaEventQuery(event_);
        if (e == cudaErrorNotReady) return false;
        BUTLER_CUDA_CHECK(e);
        return true;
    }
    void synchronize() override { BUTLER_CUDA_CHECK(cudaEventSynchronize(event_)); }
    cudaEvent_t handle() const { return event_; }

private:
    cudaEvent_t event_ = nullptr;
};

class CudaStream final : public Stream {
public:
    CudaStream(int ordinal, bool gather_kernel) : gather_kernel_(gather_kernel) {
        BUTLER_CUDA_CHECK(cudaSetDevice(ordinal));
        BUTLER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }
    ~CudaStream() override {
        ignore_error(cudaStreamSynchronize(stream_));
        destroy_blas_handle(blas_);
        ignore_error(cudaStreamDestroy(stream_));
    }
    void copy(void* dst, const void* src, size_t n_bytes) override {
        BUTLER_CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDefault, stream_));
    }
    void memset(void* dst, int value, size_t n_bytes) override {
        BUTLER_CUDA_CHECK(cudaMemsetAsync(dst, value, n_bytes, stream_));
    }
    void gather(const CopyPiece* pieces, size_t n_pieces) override {
        if (gather_kernel_) {
            launch_gather(pieces, n_pieces, stream_);
            return;
        }
        for (size_t i = 0; i < n_pieces; ++i)
            BUTLER_CUDA_CHECK(
                cudaMemcpyAsync(pieces[i].dst, pieces[i].src, pieces[i].n_bytes, cudaMemcpyHostToDevice, stream_));
    }
    void host_fn(HostFn fn, void* ctx) override { BUTLER_CUDA_CHECK(cudaLaunchHostFunc(stream_, fn, ctx)); }
    void record(Event& event) override {
        BUTLER_CUDA_CHECK(cudaEventRecord(checked_event(event).handle(), stream_));
    }
    void wait(const Event& event) override {
        BUTLER_CUDA_CHECK(cudaStreamWaitEvent(stream_, checked_event(event).handle(), 0));
    }
    void synchronize() override { BUTLER_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
    cudaStream_t handle() const { return stream_; }
    // Made on first use: only streams that run a gemm pay for a cuBLAS handle (and its workspace, which cuBLAS
    // allocates outside the --device-memory cap).
    void* blas_handle() {
        if (blas_ == nullptr) blas_ = create_blas_handle(stream_);
        return blas_;
    }

private:
    static const CudaEvent& checked_event(const Event& e) {
        const auto* ce = dynamic_cast<const CudaEvent*>(&e);
        if (ce == nullptr) fail(Status::Internal, "a cuda stream was given an event of another device");
        return *ce;
    }
    bool gather_kernel_;
    cudaStream_t stream_ = nullptr;
    void* blas_          = nullptr;
};

CudaStream& checked_cuda_stream(Stream& stream, const char* kernel) {
    auto* cs = dynamic_cast<CudaStream*>(&stream);
    if (cs == nullptr) fail(Status::Internal, "the cuda {} kernel was given a stream of another device", kernel);
    return *cs;
}
cudaStream_t checked_stream(Stream& stream, const char* kernel) { return checked_cuda_stream(stream, kernel).handle(); }

void cuda_attn_partial(Stream& stream, const AttnPartialArgs* args) {
    launch_attn_partial(*args, checked_stream(stream, "attention"));
}

void cuda_gemv(Stream& stream, const GemvArgs* args) {
    const cudaStream_t handle = checked_stream(stream, "gemv");
    const DTypeTraits& t = check_gemv_args(*args, &gemv_has_kernel, "cuda");
    if (args->n_cols % 32 != 0)  // the kernel works in 32-value chunks (F32/F16/BF16 blocks are single values)
        fail(Status::InvalidArg, "gemv on cuda: {} columns of {} is not a multiple of 32", args->n_cols, t.name);
    launch_gemv(*args, handle);
}

void cuda_prefill_attn(Stream& stream, const PrefillAttnArgs* args) {
    check_prefill_attn_args(*args, "cuda");
    if (args->n_group > 32 || args->n_q > int64_t(1) << 32)
        fail(Status::InvalidArg, "prefill attention on cuda: {} heads per KV head (at most 32), {} queries",
             args->n_group, args->n_q);
    launch_prefill_attn(*args, checked_stream(stream, "prefill attention"));
}

void cuda_gemm(Stream& stream, const GemmArgs* args) {
    CudaStream& cs = checked_cuda_stream(stream, "gemm");
    (void)check_gemm_args(*args, &gemv_has_kernel, "cuda");
    if (!gemm_fits_int(*args))
        fail(Status::InvalidArg, "gemm on cuda: {} x {} weights and {} tokens exceed cuBLAS's 32-bit sizes",
             args->n_rows, args->n_cols, args->n_tok);
    if (args->n_cols % 32 != 0)
        fail(Status::InvalidArg, "gemm on cuda: {} columns is not a multiple of 32", args->n_cols);
    launch_gemm(*args, cs.handle(), cs.blas_handle());
}

void cuda_rmsnorm(Stream& stream, const RmsNormArgs* args) {
    launch_rmsnorm(*args, checked_stream(stream, "rmsnorm"));
}
void cuda_rope(Stream& stream, const RopeArgs* args) {
    launch_rope(*args, checked_stream(stream, "rope"));
}
void cuda_glu(Stream& stream, const GluArgs* args) {
    launch_glu(*args, checked_stream(stream, "glu"));
}
void cuda_add(Stream& stream, const AddArgs* args) {
    launch_add(*args, checked_stream(stream, "add"));
}
void cuda_scale(Stream& stream, const ScaleArgs* args) {
    launch_scale(*args, checked_stream(stream, "scale"));
}
void cuda_store_row(Stream& stream, const StoreRowArgs* args) {
    const cudaStream_t handle = checked_stream(stream, "store_row");
    check_store_row_args(*args, "cuda");
    launch_store_row(*args, handle);
}

void cuda_imp_score(Stream& stream, const ImpScoreArgs* args) {
    const cudaStream_t handle = checked_stream(stream, "imp_score");
    if (!imp_score_supported(args->n_group, args->d))
        fail(Status::Unsupported, "imp_score on cuda: {} query heads per group of d' {} (at most 16 and 128)",
             args->n_group, args->d);
    launch_imp_score(*args, handle);
}
void cuda_imp_query(Stream& stream, const ImpQueryArgs* args) {
    launch_imp_query(*args, checked_stream(stream, "imp_query"));
}
void cuda_topk(Stream& stream, const TopkArgs* args) {
    const cudaStream_t handle = checked_stream(stream, "topk");
    check_topk_args(*args, "cuda");
    launch_topk(*args, handle);
}

class CudaDevice final : public Device {
public:
    explicit CudaDevice(const CudaDeviceOptions& o) : ordinal_(o.ordinal) {
        const int n = device_count();
        if (n == 0) {
            int ignored = 0;
            BUTLER_CUDA_CHECK(cudaGetDeviceCount(&ignored));  // names the driver's error
            fail(Status::Device, "no CUDA device is present");
        }
        if (o.ordinal < 0 || o.ordinal >= n)
            fail(Status::Usage, "cuda device {} does not exist ({} present)", o.ordinal, n);
        BUTLER_CUDA_CHECK(cudaSetDevice(ordinal_));
        size_t free_bytes = 0, total_bytes = 0;
        BUTLER_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        if (o.capacity_bytes > free_bytes)
            fail(Status::Oom, "--device-memory {} bytes is more than the {} bytes free on {}", o.capacity_bytes,
                 free_bytes, device_name(ordinal_));
        const uint64_t capacity = o.capacity_bytes > 0 ? o.capacity_bytes : free_bytes;
        cap_  = std::make_unique<MemoryCap>(capacity);
        name_ = fmt::format("cuda:{} {} (cap {} MiB)", ordinal_, device_name(ordinal_), capacity >> 20);
        int host_pointer_ok = 0;
        BUTLER_CUDA_CHECK(
            cudaDeviceGetAttribute(&host_pointer_ok, cudaDevAttrCanUseHostPointerForRegisteredMem, ordinal_));
        gather_kernel_  = host_pointer_ok != 0;
        default_stream_ = std::make_unique<CudaStream>(ordinal_, gather_kernel_);
    }
    ~CudaDevice() override { default_stream_.reset(); }

    std::string name() const override { return name_; }
    bool is_host() const override { return false; }
    MemoryInfo memory_info() const override { return cap_->info(); }
    void pin(void* ptr, size_t n_bytes) override {
        BUTLER_CUDA_CHECK(cudaHostRegister(ptr, n_bytes, cudaHostRegisterPortable | cudaHostRegisterMapped));
    }
    void unpin(void* ptr) override { ignore_error(cudaHostUnregister(ptr)); }
    Stream& default_stream() override { return *default_stream_; }
    std::unique_ptr<Stream> create_stream() override {
        ++n_allocs_;
        return std::make_unique<CudaStream>(ordinal_, gather_kernel_);
    }
    std::unique_ptr<Event> create_event() override {
        ++n_allocs_;
        return std::make_unique<CudaEvent>(ordinal_);
    }
    const KernelTable& kernels() const override {
        static const KernelTable table{&cuda_attn_partial, &butler::lse_merge, &cuda_gemv,
                                       &cuda_rmsnorm,      &cuda_rope,         &cuda_glu,
                                       &cuda_add,          &cuda_scale,        &cuda_store_row,
                                       &cuda_imp_score,    &cuda_topk,         &cuda_imp_query,
                                       &cuda_gemm,         &cuda_prefill_attn};
        return table;
    }

protected:
    void* do_alloc(size_t n_bytes, MemKind kind) override {
        void* p = nullptr;
        switch (kind) {
            case MemKind::Device: {
                cap_->take(n_bytes, "a device buffer", name_);
                const cudaError_t e = cudaMalloc(&p, n_bytes);
                if (e != cudaSuccess) {
                    cap_->give(n_bytes);
                    if (e == cudaErrorMemoryAllocation) {
                        ignore_error(cudaGetLastError());
                        fail(Status::Oom, "device memory exhausted: cudaMalloc of {} bytes failed on {}", n_bytes,
                             name_);
                    }
                    BUTLER_CUDA_CHECK(e);
                }
                return p;
            }
            case MemKind::PinnedHost: {
                const cudaError_t e = cudaHostAlloc(&p, n_bytes, cudaHostAllocPortable | cudaHostAllocMapped);
                if (e == cudaErrorMemoryAllocation) {
                    ignore_error(cudaGetLastError());
                    fail(Status::Oom, "out of pinned host memory allocating {} bytes", n_bytes);
                }
                BUTLER_CUDA_CHECK(e);
                return p;
            }
            case MemKind::Host:
                break;
        }
        p = std::aligned_alloc(64, (n_bytes + 63) / 64 * 64);
        if (!p) fail(Status::Oom, "out of host memory allocating {} bytes", n_bytes);
        return p;
    }
    void do_free(void* ptr, size_t n_bytes, MemKind kind) override {
        switch (kind) {
            case MemKind::Device:
                ignore_error(cudaFree(ptr));
                cap_->give(n_bytes);
                return;
            case MemKind::PinnedHost:
                ignore_error(cudaFreeHost(ptr));
                return;
            case MemKind::Host:
                std::free(ptr);
                return;
        }
    }
    void do_reserve(uint64_t n_bytes, std::string_view what) override { cap_->take(n_bytes, what, name_); }
    void do_unreserve(uint64_t n_bytes) override { cap_->give(n_bytes); }

private:
    int ordinal_;
    bool gather_kernel_ = false;  // the GPU reads registered host memory through its host pointer
    std::unique_ptr<MemoryCap> cap_;  // made once the GPU's free memory is known
    std::string name_;
    std::unique_ptr<CudaStream> default_stream_;
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(const CudaDeviceOptions& options) {
    return std::make_unique<CudaDevice>(options);
}

}  // namespace butler::cuda
