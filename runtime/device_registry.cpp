// SPDX-License-Identifier: MIT
// Buffer, Device::alloc, make_device() and the CPU kernel table shared by the cpu and emu devices.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cpu_kernels/attention.h"
#include "cpu_kernels/lse_merge.h"
#include "cpu_kernels/matmul.h"
#include "cpu_kernels/ops.h"
#include "cpu_kernels/quant.h"
#include "cpu_kernels/select.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/status.h"
#ifdef BUTLER_WITH_CUDA
#include "gpu_kernels/cuda_device.h"
#include "gpu_kernels/cuda_info.h"
#endif

namespace butler {

const char* mem_kind_name(MemKind k) {
    switch (k) {
        case MemKind::Device:
            return "device";
        case MemKind::PinnedHost:
            return "pinned-host";
        case MemKind::Host:
            return "host";
    }
    return "?";
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        reset();
        device_    = o.device_;
        data_      = o.data_;
        n_bytes_   = o.n_bytes_;
        kind_      = o.kind_;
        o.device_  = nullptr;
        o.data_    = nullptr;
        o.n_bytes_ = 0;
    }
    return *this;
}

void Buffer::reset() {
    if (data_ && device_) device_->do_free(data_, n_bytes_, kind_);
    device_  = nullptr;
    data_    = nullptr;
    n_bytes_ = 0;
}

void MemoryCap::take(uint64_t n_bytes, std::string_view what, std::string_view device) {
    std::lock_guard lock(m_);
    const uint64_t free_bytes = capacity_ - used_;
    if (n_bytes > free_bytes)
        fail(Status::Oom,
             "device memory exhausted: {} ({} bytes requested, {:.1f} MiB) do not fit: {} bytes free of the {}-byte "
             "cap of {} (--device-memory)",
             what, n_bytes, double(n_bytes) / (1 << 20), free_bytes, capacity_, device);
    used_ += n_bytes;
}

void MemoryCap::give(uint64_t n_bytes) {
    std::lock_guard lock(m_);
    used_ -= n_bytes;
}

MemoryInfo MemoryCap::info() const {
    std::lock_guard lock(m_);
    return {capacity_, capacity_ - used_};
}

DeviceReservation& DeviceReservation::operator=(DeviceReservation&& o) noexcept {
    if (this != &o) {
        reset();
        device_    = o.device_;
        n_bytes_   = o.n_bytes_;
        o.device_  = nullptr;
        o.n_bytes_ = 0;
    }
    return *this;
}

void DeviceReservation::reset() {
    if (device_ && n_bytes_ > 0) device_->do_unreserve(n_bytes_);
    device_  = nullptr;
    n_bytes_ = 0;
}

DeviceReservation Device::reserve(uint64_t n_bytes, std::string_view what) {
    if (n_bytes > 0) do_reserve(n_bytes, what);
    return DeviceReservation(this, n_bytes);
}

Buffer Device::alloc(size_t n_bytes, MemKind kind) {
    ++n_allocs_;
    if (n_bytes == 0) return Buffer(this, nullptr, 0, kind);
    void* p = do_alloc(n_bytes, kind);
    return Buffer(this, p, n_bytes, kind);
}

namespace {

// The slot rows an attention kernel's arguments name, as the CPU attention kernels read them.
DenseKvRows slot_rows(uint32_t kv_type, const uint8_t* k, const uint8_t* v, int32_t head_dim, int32_t head_dim_v) {
    const auto type = static_cast<DType>(kv_type);
    return DenseKvRows{type, k, v, head_dim, head_dim_v, dtype_traits(type).block_bytes};
}

void cpu_attn_partial_now(const AttnPartialArgs& a) {
    attend_group_indexed(a.q, a.n_group, slot_rows(a.kv_type, a.k, a.v, a.head_dim, a.head_dim_v), a.idx, a.n_idx,
                         a.out, a.lse, a.scores);
}

void cpu_attn_partial_run(void* ctx) { cpu_attn_partial_now(*static_cast<const AttnPartialArgs*>(ctx)); }

void cpu_attn_partial(Stream& stream, const AttnPartialArgs* a) {
    stream.host_fn(&cpu_attn_partial_run, const_cast<AttnPartialArgs*>(a));
}

void cpu_gemv_run(void* ctx) {
    const auto& a = *static_cast<const GemvArgs*>(ctx);
    gemv(static_cast<DType>(a.type), a.w, a.n_rows, a.n_cols, a.x, a.y);
}

bool cpu_gemv_has_kernel(uint32_t type) {
    const DTypeTraits* t = find_dtype(type);
    return t != nullptr && t->computable;
}

void cpu_gemv(Stream& stream, const GemvArgs* a) {
    // Checked here, on the enqueuing thread: an error must not surface on a stream's worker.
    (void)check_gemv_args(*a, &cpu_gemv_has_kernel, "cpu");
    stream.host_fn(&cpu_gemv_run, const_cast<GemvArgs*>(a));
}

void cpu_gemm_run(void* ctx) {
    const auto& a = *static_cast<const GemmArgs*>(ctx);
    const auto type = static_cast<DType>(a.type);
    if (a.n_tok == 0 || a.n_rows == 0) return;
    if (type == DType::F32) {
        sgemm_nt(a.n_tok, a.n_rows, a.n_cols, a.x, a.n_cols, static_cast<const float*>(a.w), a.n_cols, a.y, a.ldy);
        return;
    }
    const int64_t tile = a.tile_rows, stride = row_bytes(type, a.n_cols);
    float* scratch     = static_cast<float*>(a.scratch);
    for (int64_t r0 = 0; r0 < a.n_rows; r0 += tile) {
        const int64_t n = std::min(tile, a.n_rows - r0);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; ++r)
            dequantize_row(type, static_cast<const uint8_t*>(a.w) + (r0 + r) * stride, scratch + r * a.n_cols, a.n_cols);
        sgemm_nt(a.n_tok, n, a.n_cols, a.x, a.n_cols, scratch, a.n_cols, a.y + r0, a.ldy);
    }
}

void cpu_gemm(Stream& stream, const GemmArgs* a) {
    (void)check_gemm_args(*a, &cpu_gemv_has_kernel, "cpu");
    stream.host_fn(&cpu_gemm_run, const_cast<GemmArgs*>(a));
}

void cpu_prefill_attn_run(void* ctx) {
    const auto& a = *static_cast<const PrefillAttnArgs*>(ctx);
    attend_causal_block(a.q, a.q_stride, a.n_q, a.q_pos0, a.n_group,
                        slot_rows(a.kv_type, a.k, a.v, a.head_dim, a.head_dim_v), a.idx, a.n_idx, a.kv_pos0, a.out,
                        a.o_stride, a.lse, a.lse_stride, a.accumulate);
}

void cpu_prefill_attn(Stream& stream, const PrefillAttnArgs* a) {
    check_prefill_attn_args(*a, "cpu");
    stream.host_fn(&cpu_prefill_attn_run, const_cast<PrefillAttnArgs*>(a));
}

void cpu_rmsnorm_run(void* ctx) {
    const auto& a = *static_cast<const RmsNormArgs*>(ctx);
    for (int64_t r = 0; r < a.n_rows; ++r) rmsnorm(a.x + r * a.n, a.w, a.out + r * a.n, a.n, a.eps);
}

void cpu_rmsnorm(Stream& stream, const RmsNormArgs* a) {
    stream.host_fn(&cpu_rmsnorm_run, const_cast<RmsNormArgs*>(a));
}

void cpu_rope_run(void* ctx) {
    const auto& a = *static_cast<const RopeArgs*>(ctx);
    for (int32_t h = 0; h < a.n_heads; ++h) {
        float* x = a.x + int64_t(h) * a.head_dim;
        if (a.neox) rope_neox(x, a.head_dim, a.cos, a.sin);
        else rope_normal(x, a.head_dim, a.cos, a.sin);
    }
}

void cpu_rope(Stream& stream, const RopeArgs* a) {
    stream.host_fn(&cpu_rope_run, const_cast<RopeArgs*>(a));
}

void cpu_glu_run(void* ctx) {
    const auto& a = *static_cast<const GluArgs*>(ctx);
    if (a.gelu) gelu_tanh_mul(a.gate, a.up, a.n);
    else silu_mul(a.gate, a.up, a.n);
}

void cpu_glu(Stream& stream, const GluArgs* a) {
    stream.host_fn(&cpu_glu_run, const_cast<GluArgs*>(a));
}

void cpu_add_run(void* ctx) {
    const auto& a = *static_cast<const AddArgs*>(ctx);
    for (int64_t i = 0; i < a.n; ++i) a.y[i] += a.x[i];
}

void cpu_add(Stream& stream, const AddArgs* a) {
    stream.host_fn(&cpu_add_run, const_cast<AddArgs*>(a));
}

void cpu_scale_run(void* ctx) {
    const auto& a = *static_cast<const ScaleArgs*>(ctx);
    for (int64_t i = 0; i < a.n; ++i) a.x[i] *= a.s;
}

void cpu_scale(Stream& stream, const ScaleArgs* a) {
    stream.host_fn(&cpu_scale_run, const_cast<ScaleArgs*>(a));
}

void cpu_store_row_run(void* ctx) {
    const auto& a = *static_cast<const StoreRowArgs*>(ctx);
    store_kv_row(static_cast<DType>(a.type), a.x, static_cast<uint8_t*>(a.out), a.n);
}

void cpu_store_row(Stream& stream, const StoreRowArgs* a) {
    check_store_row_args(*a, "cpu");
    stream.host_fn(&cpu_store_row_run, const_cast<StoreRowArgs*>(a));
}

void cpu_imp_score_run(void* ctx) {
    const auto& a = *static_cast<const ImpScoreArgs*>(ctx);
    group_softmax_mass(a.keys, a.q, a.n_group, a.d, a.lo, a.hi, a.scale, a.score, static_cast<float*>(a.scratch));
}

void cpu_imp_score(Stream& stream, const ImpScoreArgs* a) {
    stream.host_fn(&cpu_imp_score_run, const_cast<ImpScoreArgs*>(a));
}

void cpu_topk_run(void* ctx) {
    const auto& a = *static_cast<const TopkArgs*>(ctx);
    top_k_ids(a.score, a.lo, a.hi, a.k, a.ids, static_cast<int32_t*>(a.scratch));
    if (a.id_scores)
        for (int64_t i = 0; i < a.k; ++i) a.id_scores[i] = a.score[a.ids[i]];
}

void cpu_topk(Stream& stream, const TopkArgs* a) {
    check_topk_args(*a, "cpu");
    stream.host_fn(&cpu_topk_run, const_cast<TopkArgs*>(a));
}

void cpu_imp_query_run(void* ctx) {
    const auto& a = *static_cast<const ImpQueryArgs*>(ctx);
    importance_query(a.x, a.ln_w, a.ln_b, a.w1, a.w2, a.n_embd, a.intdim, a.q_width, a.eps, a.out, a.scratch);
}

void cpu_imp_query(Stream& stream, const ImpQueryArgs* a) {
    stream.host_fn(&cpu_imp_query_run, const_cast<ImpQueryArgs*>(a));
}

}  // namespace

// The CPU kernels keep one value per candidate (logits, ids); the CUDA kernels need a (max, sum) per head for each of
// at most 1024 blocks and the folded one, and a 256-bin histogram with the radix select's state.
size_t imp_score_scratch_bytes(int64_t n_cand, int32_t n_group) {
    return sizeof(float) * (size_t(std::max<int64_t>(n_cand, 0)) + 2 * 1025 * size_t(std::max(n_group, 1)));
}

void check_topk_args(const TopkArgs& a, std::string_view device) {
    const int64_t n = std::max<int64_t>(0, a.hi - a.lo);
    if (a.k < 0 || a.k > n)
        fail(Status::InvalidArg, "topk on {}: k {} is outside 0 .. {} (the candidates)", device, a.k, n);
}
size_t topk_scratch_bytes(int64_t n_cand) {
    return sizeof(int32_t) * size_t(std::max<int64_t>(n_cand, 0)) + 4096;
}

void check_store_row_args(const StoreRowArgs& a, std::string_view device) {
    const auto type = static_cast<DType>(a.type);
    if (type != DType::F32 && type != DType::F16 && type != DType::BF16)
        fail(Status::Unsupported, "store_row on {}: K/V rows are f32, f16 or bf16, not {}", device,
             find_dtype(a.type) ? std::string(find_dtype(a.type)->name) : std::to_string(a.type));
}

const DTypeTraits& check_gemv_args(const GemvArgs& a, bool (*has_kernel)(uint32_t type), std::string_view device) {
    const DTypeTraits* t = find_dtype(a.type);
    if (t == nullptr || !has_kernel(a.type))
        fail(Status::Unsupported, "gemv on {}: no kernel for tensor type {}", device,
             t ? std::string(t->name) : std::to_string(a.type));
    if (a.n_cols % t->block_elems != 0)
        fail(Status::InvalidArg, "gemv on {}: {} columns is not a multiple of the {}-value {} block", device, a.n_cols,
             t->block_elems, t->name);
    return *t;
}

const DTypeTraits& check_gemm_args(const GemmArgs& a, bool (*has_kernel)(uint32_t type), std::string_view device) {
    const DTypeTraits& t = check_gemv_args(GemvArgs{a.type, a.w, a.n_rows, a.n_cols, a.x, a.y}, has_kernel, device);
    if (a.ldy < a.n_rows)
        fail(Status::InvalidArg, "gemm on {}: output rows of {} floats cannot hold {} columns", device, a.ldy, a.n_rows);
    if (a.n_tok < 0) fail(Status::InvalidArg, "gemm on {}: {} tokens", device, a.n_tok);
    if (a.tile_rows < 1 && static_cast<DType>(a.type) != DType::F32)
        fail(Status::InvalidArg, "gemm on {}: tiles of {} rows", device, a.tile_rows);
    return t;
}

void check_prefill_attn_args(const PrefillAttnArgs& a, std::string_view device) {
    const auto type = static_cast<DType>(a.kv_type);
    if (type != DType::F32 && type != DType::F16 && type != DType::BF16)
        fail(Status::InvalidArg, "prefill attention on {}: K/V type {} (f32, f16 or bf16 only)", device, a.kv_type);
    if (a.head_dim < 1 || a.head_dim > 256 || a.head_dim_v < 1 || a.head_dim_v > 256)
        fail(Status::InvalidArg, "prefill attention on {}: head dimensions {} / {} (1..256)", device, a.head_dim,
             a.head_dim_v);
    if (a.n_q < 0 || a.n_idx < 0 || a.n_group < 1)
        fail(Status::InvalidArg, "prefill attention on {}: {} queries, {} rows, {} heads", device, a.n_q, a.n_idx,
             a.n_group);
}

int64_t gemm_tile_rows(int64_t n_rows, int64_t n_cols) {
    constexpr int64_t kTileFloats = int64_t(1) << 24;
    return std::clamp<int64_t>(kTileFloats / std::max<int64_t>(n_cols, 1), 1, std::max<int64_t>(n_rows, 1));
}
const KernelTable& cpu_kernel_table() {
    static const KernelTable table{&cpu_attn_partial, &lse_merge, &cpu_gemv,      &cpu_rmsnorm,   &cpu_rope,
                                   &cpu_glu,          &cpu_add,   &cpu_scale,     &cpu_store_row, &cpu_imp_score,
                                   &cpu_topk,         &cpu_imp_query, &cpu_gemm,      &cpu_prefill_attn};
    return table;
}

uint64_t parse_bytes(const std::string& text) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == 0) fail(Status::Usage, "'{}' is not a byte count (e.g. 1048576, 64MiB, 4GiB)", text);
    const double value = std::strtod(text.substr(0, i).c_str(), nullptr);
    std::string unit   = text.substr(i);
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    double scale = 1;
    if (unit.empty() || unit == "b")
        scale = 1;
    else if (unit == "k" || unit == "kib" || unit == "kb")
        scale = 1024.0;
    else if (unit == "m" || unit == "mib" || unit == "mb")
        scale = 1024.0 * 1024;
    else if (unit == "g" || unit == "gib" || unit == "gb")
        scale = 1024.0 * 1024 * 1024;
    else
        fail(Status::Usage, "'{}' is not a byte count (unknown unit '{}')", text, unit);
    return static_cast<uint64_t>(value * scale);
}

namespace {

// Calls on_option(key, value) for each "key=value" of a comma-separated device option list; Error(Usage) naming
// `device` for an item without '='.
template <typename OnOption>
void for_each_option(std::string_view rest, std::string_view device, OnOption on_option) {
    while (!rest.empty()) {
        const size_t comma          = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        rest                        = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        const size_t eq             = item.find('=');
        if (eq == std::string_view::npos) fail(Status::Usage, "{} device option '{}' is not key=value", device, item);
        on_option(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    }
}

}  // namespace

std::unique_ptr<Device> make_device(const std::string& spec) {
    if (spec == "cpu") return make_cpu_device();
    if (spec == "emu" || spec.rfind("emu:", 0) == 0) {
        EmuOptions o;
        const std::string_view rest = spec.size() > 4 ? std::string_view(spec).substr(4) : std::string_view();
        for_each_option(rest, "emu", [&o](const std::string& key, const std::string& value) {
            char* end = nullptr;
            if (key == "mem")
                o.capacity_bytes = parse_bytes(value);
            else if (key == "pcie_gbps")
                o.pcie_gbps = std::strtod(value.c_str(), &end);
            else if (key == "launch_us")
                o.launch_us = std::strtod(value.c_str(), &end);
            else if (key == "delay_us")
                o.delay_us = std::strtod(value.c_str(), &end);
            else if (key == "seed")
                o.seed = std::strtoull(value.c_str(), &end, 10);
            else if (key == "poison")
                o.poison = value != "0";
            else
                fail(Status::Usage,
                     "unknown emu device option '{}' (mem, pcie_gbps, launch_us, delay_us, seed, poison)", key);
            if (end && *end) fail(Status::Usage, "emu device option {}: '{}' is not a number", key, value);
        });
        return make_emu_device(o);
    }
    if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
#ifdef BUTLER_WITH_CUDA
        cuda::CudaDeviceOptions o;
        std::string_view rest = spec.size() > 5 ? std::string_view(spec).substr(5) : std::string_view();
        if (!rest.empty() && rest.find_first_not_of("0123456789") == std::string_view::npos) {  // "cuda:N"
            o.ordinal = int(std::strtol(std::string(rest).c_str(), nullptr, 10));
            rest      = {};
        }
        for_each_option(rest, "cuda", [&o](const std::string& key, const std::string& value) {
            if (key == "mem") {
                o.capacity_bytes = parse_bytes(value);
            } else if (key == "device") {
                char* end = nullptr;
                o.ordinal = int(std::strtol(value.c_str(), &end, 10));
                if (value.empty() || *end) fail(Status::Usage, "cuda device option device: '{}' is not a number", value);
            } else {
                fail(Status::Usage, "unknown cuda device option '{}' (mem, device)", key);
            }
        });
        const int n_gpu = cuda::device_count();
        if (o.ordinal >= n_gpu)
            fail(Status::Unsupported, "device '{}': this machine has {} usable CUDA GPU{}", spec, n_gpu,
                 n_gpu == 1 ? "" : "s");
        return cuda::make_cuda_device(o);
#else
        fail(Status::Unsupported, "device '{}': this build has no CUDA device (configure with -DBUTLER_CUDA=ON)", spec);
#endif
    }
    fail(Status::Usage, "unknown device '{}' (cpu, emu or emu:key=value,...)", spec);
}

}  // namespace butler
