// SPDX-License-Identifier: MIT
// The device interface: memory kinds, move-only buffers, in-order streams, events and a kernel table.
//
// Implementations: `cpu` (synchronous, device memory is host memory), `emu` (runtime/emu_device.h: capped "VRAM",
// one worker thread per stream, events as sequence numbers, a PCIe throttle, injected copy delays, poisoning), and
// later `cuda:N` (gpu_kernels/). Nothing here names a CUDA type.
//
// Threading: a Device and its streams are driven from one host thread (the session's); stream work runs on the
// stream's own thread (emu) or inline (cpu). Stream operations never allocate: the emu FIFO is a fixed ring and
// host functions are a (function pointer, context) pair whose context the caller keeps alive until completion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace butler {

enum class MemKind { Device, PinnedHost, Host };
const char* mem_kind_name(MemKind k);

class Device;

// Move-only owner of one allocation made by Device::alloc; the destructor gives the memory back to its device.
class Buffer {
public:
    Buffer() = default;
    ~Buffer() { reset(); }
    Buffer(Buffer&& o) noexcept { *this = std::move(o); }
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&)            = delete;
    Buffer& operator=(const Buffer&) = delete;

    void* data() const { return data_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(data_);
    }
    size_t n_bytes() const { return n_bytes_; }
    MemKind kind() const { return kind_; }
    bool empty() const { return data_ == nullptr; }
    void reset();

private:
    friend class Device;
    Buffer(Device* device, void* data, size_t n_bytes, MemKind kind)
        : device_(device), data_(data), n_bytes_(n_bytes), kind_(kind) {}
    Device* device_ = nullptr;
    void* data_     = nullptr;
    size_t n_bytes_ = 0;
    MemKind kind_   = MemKind::Host;
};

// Move-only owner of device memory counted by Device::reserve (no memory behind it here); the destructor gives the
// count back.
class DeviceReservation {
public:
    DeviceReservation() = default;
    ~DeviceReservation() { reset(); }
    DeviceReservation(DeviceReservation&& o) noexcept { *this = std::move(o); }
    DeviceReservation& operator=(DeviceReservation&& o) noexcept;
    DeviceReservation(const DeviceReservation&)            = delete;
    DeviceReservation& operator=(const DeviceReservation&) = delete;

    uint64_t n_bytes() const { return n_bytes_; }
    void reset();

private:
    friend class Device;
    DeviceReservation(Device* device, uint64_t n_bytes) : device_(device), n_bytes_(n_bytes) {}
    Device* device_   = nullptr;
    uint64_t n_bytes_ = 0;
};

// Completion marker of the work a stream had queued when record() was called.
class Event {
public:
    virtual ~Event() = default;
    // True when the recorded work has completed (true for an event never recorded).
    virtual bool query() const = 0;
    // Blocks the calling host thread until the recorded work has completed.
    virtual void synchronize() = 0;
};

// A host function run in stream order: fn(ctx) on the stream's thread. ctx must outlive the call.
using HostFn = void (*)(void* ctx);

// One contiguous piece of a gather: n_bytes from src (host memory the device can read: pinned with Device::pin or
// allocated PinnedHost) to dst (device memory).
struct CopyPiece {
    void* dst;
    const void* src;
    uint64_t n_bytes;
};

// An in-order queue of work. Calls return at once on asynchronous devices.
class Stream {
public:
    virtual ~Stream() = default;
    // Copies n_bytes from src to dst in stream order (host<->device, direction from the pointers' memory kinds).
    virtual void copy(void* dst, const void* src, size_t n_bytes) = 0;
    virtual void memset(void* dst, int value, size_t n_bytes)     = 0;
    // Copies every piece host -> device as one stream operation: on cuda one kernel that reads mapped pinned host
    // memory (many short runs cost one launch, not one cudaMemcpyAsync each), elsewhere a loop of memcpy. `pieces`
    // itself is PinnedHost memory; it and every src must stay valid until the stream ran the gather.
    virtual void gather(const CopyPiece* pieces, size_t n_pieces) = 0;
    virtual void host_fn(HostFn fn, void* ctx)                    = 0;
    // Marks the point in this stream that `event` completes at.
    virtual void record(Event& event) = 0;
    // Later work on this stream starts only after `event`'s recorded work completed (the host does not block).
    virtual void wait(const Event& event) = 0;
    // Blocks the host until everything queued so far has run.
    virtual void synchronize() = 0;
};

// Partial attention of n_group query heads over an index set of rows in one buffer (device slots):
//   q (n_group, head_dim) f32 already scaled; k, v (n_rows, head_dim[_v]) in kv_type; idx (n_idx) row ids;
//   out (n_group, head_dim_v), lse (n_group); scores scratch (n_group * n_idx). Empty set: out 0, lse -inf.
struct AttnPartialArgs {
    const float* q;
    int32_t n_group;
    const uint8_t* k;
    const uint8_t* v;
    uint32_t kv_type;  // DType id
    int32_t head_dim, head_dim_v;
    const int32_t* idx;
    int64_t n_idx;
    float* out;
    float* lse;
    float* scores;
};

// Causal attention of a prefill chunk's queries over one block of K/V rows of one KV head, merged into running
// partials: chunked prefill streams the context through the device slots block by block (flash attention across
// blocks, offload/pipeline.h). Query i (i < n_q) is at position q_pos0 + i; block row j (j < n_idx) is the key at
// position kv_pos0 + j, held in row idx[j] of k, v; query i sees row j iff kv_pos0 + j <= q_pos0 + i.
//   q: row i at q + i * q_stride: n_group heads x head_dim f32, already scaled
//   k, v (rows, head_dim[_v]) in kv_type (F32, F16, BF16); head_dim, head_dim_v <= 256
//   out: row i at out + i * o_stride: n_group x head_dim_v f32; lse: row i at lse + i * lse_stride: n_group f32
// accumulate false: out, lse are overwritten by this block's partial (a query that sees no row: out 0, lse -inf);
// true: the block's partial is merged into them by log-sum-exp (cpu_kernels/lse_merge.h), queries that see no row
// unchanged. Buffers as for AttnPartialArgs (device or pinned host memory).
struct PrefillAttnArgs {
    const float* q;
    int64_t q_stride, n_q, q_pos0;
    int32_t n_group;
    const uint8_t* k;
    const uint8_t* v;
    uint32_t kv_type;  // DType id
    int32_t head_dim, head_dim_v;
    const int32_t* idx;
    int64_t n_idx, kv_pos0;
    float* out;
    int64_t o_stride;
    float* lse;
    int64_t lse_stride;
    bool accumulate;
};

// Matrix-vector product with a weight matrix in its file type: y[r] = sum_c W[r, c] * x[c].
//   w (n_rows, n_cols) of type `type` (DType id: F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K), rows of row_bytes(type,
//   n_cols) back to back, n_cols a multiple of 256 for the k-quants and of 32 otherwise; x (n_cols) f32; y (n_rows)
//   f32. The decode step's projections (one token), with the weights resident on the device.
struct GemvArgs {
    uint32_t type;
    const void* w;
    int64_t n_rows, n_cols;
    const float* x;
    float* y;
};

// Matrix product with a weight matrix in its file type, for many tokens (prefill): y[t, r] = sum_c W[r, c] * x[t, c].
//   w, type, n_rows, n_cols as GemvArgs; x (n_tok, n_cols) f32 row-major; y rows of ldy >= n_rows floats, columns
//   [0, n_rows) written. The device dequantizes W to f32 in tiles of tile_rows rows into `scratch` (tile_rows *
//   n_cols floats of device memory, 16-byte aligned; neither is used for F32 weights) and multiplies each tile with
//   all n_tok rows of x, so the dequantization is paid once per tile, not per token: oneDNN sgemm on cpu/emu; cuBLAS
//   on cuda with TF32 tensor-core inputs (10-bit mantissas, f32 range and accumulation: relative error ~1e-3 of the
//   f32 product, the order of f16 weights). gemm_tile_rows picks tile_rows for a scratch of at most 64 MiB.
struct GemmArgs {
    uint32_t type;
    const void* w;
    int64_t n_rows, n_cols;
    const float* x;
    int64_t n_tok;
    float* y;
    int64_t ldy;
    void* scratch;
    int64_t tile_rows;
};
// At most 16 Mi floats a tile, at least one row, at most n_rows.
int64_t gemm_tile_rows(int64_t n_rows, int64_t n_cols);

// Row-wise RMSNorm: out[r, i] = x[r, i] / sqrt(mean_i x[r, :]^2 + eps) * (w ? w[i] : 1), r < n_rows, i < n.
// out may alias x. (The block norms: one row of n_embd; Gemma's q/k norms: one row per head of head_dim.)
struct RmsNormArgs {
    const float* x;
    const float* w;  // (n) or null
    float* out;
    int64_t n_rows, n;
    float eps;
};

// Rotary embedding of n_heads rows of head_dim, in place, with one position's tables cos, sin (head_dim / 2:
// angle_i = pos * inv_freq_i, as cpu_kernels/ops.h rope_angles computes them). neox: pairs (i, i + head_dim / 2);
// otherwise the interleaved pairs (2i, 2i + 1).
struct RopeArgs {
    float* x;
    const float* cos;
    const float* sin;
    int32_t n_heads, head_dim;
    bool neox;
};

// Gated activation in place: gate[i] = act(gate[i]) * up[i], i < n; act is GELU (tanh approximation) or SiLU.
struct GluArgs {
    float* gate;
    const float* up;
    int64_t n;
    bool gelu;
};

// Element-wise sum in place: y[i] += x[i], i < n (residual adds, bias adds).
struct AddArgs {
    float* y;
    const float* x;
    int64_t n;
};

// Scaling in place: x[i] *= s, i < n (queries by the attention scale).
struct ScaleArgs {
    float* x;
    int64_t n;
    float s;
};

// Conversion of n f32 values to a K/V row of `type` (F32, F16 or BF16: round to nearest even, as
// cpu_kernels/attention.h store_kv_row): the decode step's K/V written into a device cache.
struct StoreRowArgs {
    const float* x;
    void* out;
    uint32_t type;  // DType id
    int64_t n;
};

// TokenButler selection on the device (predictor/tokenbutler.h): the predicted attention mass of each candidate
// token of one (stored layer, KV head), summed over the group's query heads:
//   score[t] = sum_h exp(l_h(t) - max_h) / sum_u exp(l_h(u) - max_h),  l_h(t) = scale * q[h] . keys[t],
// t, u in [lo, hi). keys (>= hi, d) IEEE half rows (the importance keys: f16 halves their memory, which grows with
// the context; the products and sums are f32); q (n_group, d) f32; score (>= hi) f32, written at [lo, hi) only;
// scratch: imp_score_scratch_bytes(hi - lo, n_group) bytes of device memory. Empty range: nothing.
struct ImpScoreArgs {
    const uint16_t* keys;
    const float* q;
    int32_t n_group, d;
    int64_t lo, hi;
    float scale;
    float* score;
    void* scratch;
};
size_t imp_score_scratch_bytes(int64_t n_cand, int32_t n_group);

// The k best candidates of [lo, hi) as ascending token ids: ids (k) = the t with the k largest score[t] (finite
// scores; ties go to the lower id, as predictor/token_selector.h select_top), sorted; 0 <= k <= hi - lo. score as
// ImpScoreArgs writes it; ids: device or pinned host memory; id_scores (k): null or, like ids, the picked scores
// (id_scores[i] = score[ids[i]]); scratch: topk_scratch_bytes(hi - lo) bytes of device memory.
struct TopkArgs {
    const float* score;
    int64_t lo, hi, k;
    int32_t* ids;
    float* id_scores;
    void* scratch;
};
size_t topk_scratch_bytes(int64_t n_cand);
// The check every device's topk makes when it is enqueued: Error(InvalidArg) unless 0 <= k <= hi - lo.
void check_topk_args(const TopkArgs& args, std::string_view device);

// TokenButler's importance queries of one producer for one token (predictor/tokenbutler.h):
//   out = W2 . SiLU(W1 . LayerNorm(x)),  LayerNorm(x) = (x - mean) / sqrt(var + eps) * ln_w + ln_b,
// x (n_embd) f32 (device or pinned host memory); ln_w, ln_b (n_embd), w1 (intdim, n_embd), w2 (q_width, intdim) f32
// row-major; out (q_width) f32; scratch: (n_embd + intdim) floats of device memory.
struct ImpQueryArgs {
    const float* x;
    const float *ln_w, *ln_b, *w1, *w2;
    int64_t n_embd, intdim, q_width;
    float eps;
    float* out;
    float* scratch;
};

// The checks every device's gemv makes when it is enqueued: Error(Unsupported) naming the type when `has_kernel`
// is false for it (or it is unknown), Error(InvalidArg) when n_cols is not a multiple of its block. `device` names
// the device in the message. Returns the type's traits.
struct DTypeTraits;
const DTypeTraits& check_gemv_args(const GemvArgs& args, bool (*has_kernel)(uint32_t type), std::string_view device);

// The check every device's prefill_attn makes when it is enqueued (PrefillAttnArgs' limits); `device` names it.
void check_prefill_attn_args(const PrefillAttnArgs& args, std::string_view device);

// check_gemv_args for a gemm, plus ldy >= n_rows, n_tok >= 0 and tile_rows >= 1 (but for F32 weights); `device`
// as there.
const DTypeTraits& check_gemm_args(const GemmArgs& args, bool (*has_kernel)(uint32_t type), std::string_view device);

// The check every device's store_row makes when it is enqueued: Error(Unsupported) naming the type unless it is
// F32, F16 or BF16.
void check_store_row_args(const StoreRowArgs& args, std::string_view device);

// Kernels a device runs on its streams. The cpu and emu devices fill it with cpu_kernels/ implementations run as
// host functions in stream order; the cuda device launches kernels.
struct KernelTable {
    // Enqueues the partial on `stream`. *args and every buffer it names must stay valid until the stream ran it, and
    // be readable (q, k, v, idx) and writable (out, lse, scores) by the device: device or pinned host memory.
    void (*attn_partial)(Stream& stream, const AttnPartialArgs* args) = nullptr;
    // o_a, lse_a merged with o_b, lse_b in place (cpu_kernels/lse_merge.h).
    void (*lse_merge)(float* o_a, float* lse_a, const float* o_b, const float* lse_b, int32_t n_head,
                      int32_t head_dim) = nullptr;
    // Enqueues y = W x (GemvArgs) on `stream`; *args and its buffers as for attn_partial. Error(Unsupported) naming
    // the type for a type the device has no kernel for.
    void (*gemv)(Stream& stream, const GemvArgs* args) = nullptr;
    // The forward's row and element-wise steps, enqueued like gemv.
    void (*rmsnorm)(Stream& stream, const RmsNormArgs* args) = nullptr;
    void (*rope)(Stream& stream, const RopeArgs* args)       = nullptr;
    void (*glu)(Stream& stream, const GluArgs* args)         = nullptr;
    void (*add)(Stream& stream, const AddArgs* args)         = nullptr;
    void (*scale)(Stream& stream, const ScaleArgs* args)     = nullptr;
    // Error(Unsupported) naming the type for anything but F32, F16 and BF16 (checked when enqueued).
    void (*store_row)(Stream& stream, const StoreRowArgs* args) = nullptr;
    // TokenButler selection on the device (ImpScoreArgs, TopkArgs, ImpQueryArgs), enqueued like gemv.
    void (*imp_score)(Stream& stream, const ImpScoreArgs* args) = nullptr;
    void (*topk)(Stream& stream, const TopkArgs* args)           = nullptr;
    void (*imp_query)(Stream& stream, const ImpQueryArgs* args) = nullptr;
    // Enqueues Y = X W^T (GemmArgs) like gemv; the same type checks (check_gemv_args), and Error(InvalidArg) when
    // ldy < n_rows.
    void (*gemm)(Stream& stream, const GemmArgs* args) = nullptr;
    // Enqueues a chunked-prefill attention block (PrefillAttnArgs) like attn_partial; Error(InvalidArg) for a head
    // dimension over 256 or a KV type other than F32, F16, BF16.
    void (*prefill_attn)(Stream& stream, const PrefillAttnArgs* args) = nullptr;
};

struct MemoryInfo {
    uint64_t total_bytes = 0;  // device memory capacity (the cap on emu)
    uint64_t free_bytes  = 0;
};

// Device memory in use against a capacity (emu's cap, cuda's --device-memory). Thread-safe.
class MemoryCap {
public:
    explicit MemoryCap(uint64_t capacity) : capacity_(capacity) {}
    // Counts n_bytes; Error(Oom) naming `what`, the bytes, what is free, the capacity and `device` when they do
    // not fit (nothing is counted then).
    void take(uint64_t n_bytes, std::string_view what, std::string_view device);
    void give(uint64_t n_bytes);
    MemoryInfo info() const;

private:
    mutable std::mutex m_;
    uint64_t capacity_, used_ = 0;
};

class Device {
public:
    virtual ~Device()                = default;
    virtual std::string name() const = 0;
    // True when device memory is the host's own memory with no copy needed (cpu).
    virtual bool is_host() const           = 0;
    virtual MemoryInfo memory_info() const = 0;

    // Error(Oom) naming the requested and free bytes when device memory is exhausted.
    Buffer alloc(size_t n_bytes, MemKind kind);
    // Counts n_bytes of device memory that lives outside Device::alloc against the capacity: what a GPU run keeps
    // resident besides the K/V slots (the model's weights, the sliding-window layers' K/V). On emu it backs the
    // capacity planning with no memory behind it; cpu has no capacity to count against. Error(Oom) naming `what`,
    // the bytes and the capacity when it does not fit.
    DeviceReservation reserve(uint64_t n_bytes, std::string_view what);
    // Pins host memory for fast device access (a no-op on cpu and emu; cudaHostRegister on cuda).
    virtual void pin(void* ptr, size_t n_bytes) {}
    virtual void unpin(void* ptr) {}

    virtual Stream& default_stream()                = 0;
    virtual std::unique_ptr<Stream> create_stream() = 0;
    virtual std::unique_ptr<Event> create_event()   = 0;
    virtual const KernelTable& kernels() const      = 0;

    // Number of alloc() calls and stream/event creations so far (tests assert the decode loop adds none).
    uint64_t n_allocs() const { return n_allocs_; }

protected:
    virtual void* do_alloc(size_t n_bytes, MemKind kind)          = 0;
    virtual void do_free(void* ptr, size_t n_bytes, MemKind kind) = 0;
    virtual void do_reserve(uint64_t n_bytes, std::string_view what) {}
    virtual void do_unreserve(uint64_t n_bytes) {}
    uint64_t n_allocs_                                            = 0;

private:
    friend class Buffer;
    friend class DeviceReservation;
};

// Options of the emulated device ("emu:mem=64MiB,pcie_gbps=8,delay_us=200,seed=3,poison=1").
struct EmuOptions {
    uint64_t capacity_bytes = 4ull << 30;  // the "VRAM" cap
    double pcie_gbps        = 0;           // 0: 0.54 x the host memcpy bandwidth measured at creation
    double launch_us        = 0;           // fixed cost per copy
    double delay_us         = 0;           // each copy completes late by a random 0..delay_us (seeded)
    uint64_t seed           = 1;
    bool poison             = true;  // NaN bytes in fresh and freed device memory
};

// "cpu", "emu" or "emu:key=value,...". Error(Usage) for an unknown device or option.
std::unique_ptr<Device> make_device(const std::string& spec);
std::unique_ptr<Device> make_emu_device(const EmuOptions& options);
std::unique_ptr<Device> make_cpu_device();
// Parses a byte count: "1048576", "64KiB", "64MiB", "4GiB", "4G", "512M". Error(Usage) on garbage.
uint64_t parse_bytes(const std::string& text);

// The fill value of poisoned memory: every byte 0xFF is a NaN in f32, f16 and bf16.
constexpr uint8_t kPoisonByte = 0xFF;

}  // namespace butler
