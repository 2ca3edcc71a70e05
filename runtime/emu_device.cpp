// SPDX-License-Identifier: MIT
#include "runtime/emu_device.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "runtime/status.h"

namespace butler {

const KernelTable& cpu_kernel_table();

double measured_memcpy_gbps() {
    // A machine constant, so one probe per process is enough (and keeps device creation cheap in tests).
    static const double gbps = [] {
        const size_t n = 32u << 20;
        std::vector<uint8_t> a(n, 1), b(n, 2);
        double best = 0;
        for (int rep = 0; rep < 4; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            std::memcpy(b.data(), a.data(), n);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            best           = std::max(best, double(n) / s / 1e9);
            a[rep]         = b[n - 1 - rep];  // keep the copies observable
        }
        return best;
    }();
    return gbps;
}

double emu_effective_pcie_gbps(const EmuOptions& o) {
    return o.pcie_gbps > 0 ? o.pcie_gbps : 0.54 * measured_memcpy_gbps();
}

namespace {

using Clock = std::chrono::steady_clock;

class EmuEvent final : public Event {
public:
    bool query() const override {
        std::lock_guard lock(m_);
        return completed_ >= recorded_;
    }
    void synchronize() override {
        std::unique_lock lock(m_);
        const uint64_t target = recorded_;
        cv_.wait(lock, [&] { return completed_ >= target; });
    }
    uint64_t next_seq() {
        std::lock_guard lock(m_);
        return ++recorded_;
    }
    uint64_t last_seq() const {
        std::lock_guard lock(m_);
        return recorded_;
    }
    void complete(uint64_t seq) {
        {
            std::lock_guard lock(m_);
            completed_ = std::max(completed_, seq);
        }
        cv_.notify_all();
    }
    void wait_for(uint64_t seq) const {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return completed_ >= seq; });
    }

private:
    mutable std::mutex m_;
    mutable std::condition_variable cv_;
    uint64_t recorded_ = 0, completed_ = 0;
};

struct Op {
    enum class Kind { Copy, Gather, Memset, HostFn, Record, Wait } kind = Kind::Copy;
    void* dst                                                   = nullptr;
    const void* src                                             = nullptr;
    size_t n_bytes                                              = 0;
    const CopyPiece* pieces                                     = nullptr;
    size_t n_pieces                                             = 0;
    int value                                                   = 0;
    HostFn fn                                                   = nullptr;
    void* ctx                                                   = nullptr;
    EmuEvent* event                                             = nullptr;
    const EmuEvent* wait_event                                  = nullptr;
    uint64_t seq                                                = 0;
};

class EmuStream final : public Stream {
public:
    EmuStream(const EmuOptions& o, double gbps, uint64_t seed) : opts_(o), gbps_(gbps), rng_(seed) {
        ring_.resize(kRing);
        // Kernels run as host functions on the worker; their OpenMP regions get the caller's thread count (-t), not
        // the default of one per core, which on a busy machine oversubscribes it.
        const int n_threads = omp_get_max_threads();
        worker_ = std::thread([this, n_threads] {
            omp_set_num_threads(n_threads);
            run();
        });
    }
    ~EmuStream() override {
        synchronize();
        {
            std::lock_guard lock(m_);
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }

    void copy(void* dst, const void* src, size_t n) override {
        Op op;
        op.kind = Op::Kind::Copy, op.dst = dst, op.src = src, op.n_bytes = n;
        push(op);
    }
    void gather(const CopyPiece* pieces, size_t n_pieces) override {
        Op op;
        op.kind = Op::Kind::Gather, op.pieces = pieces, op.n_pieces = n_pieces;
        push(op);
    }
    void memset(void* dst, int value, size_t n) override {
        Op op;
        op.kind = Op::Kind::Memset, op.dst = dst, op.value = value, op.n_bytes = n;
        push(op);
    }
    void host_fn(HostFn fn, void* ctx) override {
        Op op;
        op.kind = Op::Kind::HostFn, op.fn = fn, op.ctx = ctx;
        push(op);
    }
    void record(Event& e) override {
        auto& ev = static_cast<EmuEvent&>(e);
        Op op;
        op.kind = Op::Kind::Record, op.event = &ev, op.seq = ev.next_seq();
        push(op);
    }
    void wait(const Event& e) override {
        const auto& ev = static_cast<const EmuEvent&>(e);
        Op op;
        op.kind = Op::Kind::Wait, op.wait_event = &ev, op.seq = ev.last_seq();
        push(op);
    }
    void synchronize() override {
        std::unique_lock lock(m_);
        const uint64_t target = pushed_;
        done_cv_.wait(lock, [&] { return done_ >= target; });
    }

private:
    static constexpr size_t kRing = 4096;

    void push(const Op& op) {
        std::unique_lock lock(m_);
        done_cv_.wait(lock, [&] { return pushed_ - done_ < kRing; });
        ring_[pushed_ % kRing] = op;
        ++pushed_;
        lock.unlock();
        cv_.notify_all();
    }

    void run() {
        for (;;) {
            Op op;
            {
                std::unique_lock lock(m_);
                cv_.wait(lock, [&] { return stop_ || taken_ < pushed_; });
                if (taken_ == pushed_) return;
                op = ring_[taken_ % kRing];
                ++taken_;
            }
            execute(op);
            {
                std::lock_guard lock(m_);
                ++done_;
            }
            done_cv_.notify_all();
        }
    }

    void execute(const Op& op) {
        switch (op.kind) {
            case Op::Kind::Copy:
                delay();
                std::memcpy(op.dst, op.src, op.n_bytes);
                charge_link(op.n_bytes);
                break;
            case Op::Kind::Gather: {
                // One launch for all pieces, as the cuda gather kernel: the link carries the bytes, the fixed cost
                // is paid once.
                delay();
                uint64_t bytes = 0;
                for (size_t i = 0; i < op.n_pieces; ++i) {
                    std::memcpy(op.pieces[i].dst, op.pieces[i].src, op.pieces[i].n_bytes);
                    bytes += op.pieces[i].n_bytes;
                }
                charge_link(bytes);
                break;
            }
            case Op::Kind::Memset:
                std::memset(op.dst, op.value, op.n_bytes);
                break;
            case Op::Kind::HostFn:
                op.fn(op.ctx);
                break;
            case Op::Kind::Record:
                op.event->complete(op.seq);
                break;
            case Op::Kind::Wait:
                op.wait_event->wait_for(op.seq);
                break;
        }
    }

    // A random late completion of 0..delay_us (seeded), so tests meet copies that land out of step.
    void delay() {
        if (opts_.delay_us <= 0) return;
        std::uniform_real_distribution<double> u(0.0, opts_.delay_us);
        std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(u(rng_)));
    }
    // A virtual clock models the link: a copy may not finish before the link has carried its bytes.
    void charge_link(uint64_t n_bytes) {
        const auto now  = Clock::now();
        const auto cost = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double, std::micro>(opts_.launch_us + double(n_bytes) / (gbps_ * 1e3)));
        link_free_ = std::max(link_free_, now) + cost;
        // Sleeping per small copy would cost more than the copy; only sleep once the clock is well ahead.
        if (link_free_ - now > std::chrono::microseconds(200)) std::this_thread::sleep_until(link_free_);
    }

    EmuOptions opts_;
    double gbps_;
    std::mt19937_64 rng_;
    Clock::time_point link_free_{};
    std::vector<Op> ring_;
    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    uint64_t pushed_ = 0, taken_ = 0, done_ = 0;
    bool stop_ = false;
    std::thread worker_;
};

class EmuDevice final : public Device {
public:
    explicit EmuDevice(const EmuOptions& o) : opts_(o), gbps_(emu_effective_pcie_gbps(o)), cap_(o.capacity_bytes) {
        default_stream_ = std::make_unique<EmuStream>(opts_, gbps_, opts_.seed);
    }
    ~EmuDevice() override { default_stream_.reset(); }

    std::string name() const override {
        return fmt::format("emu (cap {} MiB, {:.1f} GB/s link{})", opts_.capacity_bytes >> 20, gbps_,
                           opts_.delay_us > 0 ? fmt::format(", delays up to {} us", opts_.delay_us) : "");
    }
    bool is_host() const override { return false; }
    MemoryInfo memory_info() const override { return cap_.info(); }
    Stream& default_stream() override { return *default_stream_; }
    std::unique_ptr<Stream> create_stream() override {
        ++n_allocs_;
        return std::make_unique<EmuStream>(opts_, gbps_, opts_.seed + n_allocs_);
    }
    std::unique_ptr<Event> create_event() override {
        ++n_allocs_;
        return std::make_unique<EmuEvent>();
    }
    const KernelTable& kernels() const override { return cpu_kernel_table(); }

protected:
    void* do_alloc(size_t n_bytes, MemKind kind) override {
        if (kind == MemKind::Device) cap_.take(n_bytes, "a device buffer", "the emu device");
        void* p = std::aligned_alloc(64, (n_bytes + 63) / 64 * 64);
        if (!p) {
            if (kind == MemKind::Device) cap_.give(n_bytes);
            fail(Status::Oom, "out of host memory allocating {} bytes", n_bytes);
        }
        if (kind == MemKind::Device && opts_.poison) std::memset(p, kPoisonByte, n_bytes);
        return p;
    }
    void do_reserve(uint64_t n_bytes, std::string_view what) override { cap_.take(n_bytes, what, "the emu device"); }
    void do_unreserve(uint64_t n_bytes) override { cap_.give(n_bytes); }
    void do_free(void* ptr, size_t n_bytes, MemKind kind) override {
        if (kind == MemKind::Device) {
            if (opts_.poison) std::memset(ptr, kPoisonByte, n_bytes);
            cap_.give(n_bytes);
        }
        std::free(ptr);
    }

private:
    EmuOptions opts_;
    double gbps_;
    MemoryCap cap_;
    std::unique_ptr<EmuStream> default_stream_;
};

}  // namespace

std::unique_ptr<Device> make_emu_device(const EmuOptions& options) {
    return std::make_unique<EmuDevice>(options);
}

}  // namespace butler
