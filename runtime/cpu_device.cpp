// SPDX-License-Identifier: MIT
// CpuDevice: synchronous; device memory is host memory, every stream operation runs inline.
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/device.h"
#include "runtime/status.h"

namespace butler {

const KernelTable& cpu_kernel_table();

namespace {

class CpuEvent final : public Event {
public:
    bool query() const override { return true; }
    void synchronize() override {}
};

class CpuStream final : public Stream {
public:
    void copy(void* dst, const void* src, size_t n_bytes) override { std::memcpy(dst, src, n_bytes); }
    void memset(void* dst, int value, size_t n_bytes) override { std::memset(dst, value, n_bytes); }
    void gather(const CopyPiece* pieces, size_t n_pieces) override {
        for (size_t i = 0; i < n_pieces; ++i) std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].n_bytes);
    }
    void host_fn(HostFn fn, void* ctx) override { fn(ctx); }
    void record(Event&) override {}
    void wait(const Event&) override {}
    void synchronize() override {}
};

class CpuDevice final : public Device {
public:
    std::string name() const override { return "cpu"; }
    bool is_host() const override { return true; }
    MemoryInfo memory_info() const override { return {0, 0}; }
    Stream& default_stream() override { return stream_; }
    std::unique_ptr<Stream> create_stream() override {
        ++n_allocs_;
        return std::make_unique<CpuStream>();
    }
    std::unique_ptr<Event> create_event() override {
        ++n_allocs_;
        return std::make_unique<CpuEvent>();
    }
    const KernelTable& kernels() const override { return cpu_kernel_table(); }

protected:
    void* do_alloc(size_t n_bytes, MemKind) override {
        void* p = std::aligned_alloc(64, (n_bytes + 63) / 64 * 64);
        if (!p) fail(Status::Oom, "out of host memory allocating {} bytes", n_bytes);
        return p;
    }
    void do_free(void* ptr, size_t, MemKind) override { std::free(ptr); }

private:
    CpuStream stream_;
};

}  // namespace

std::unique_ptr<Device> make_cpu_device() {
    return std::make_unique<CpuDevice>();
}

}  // namespace butler
