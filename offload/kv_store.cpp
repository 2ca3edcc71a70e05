// SPDX-License-Identifier: MIT
#include "offload/kv_store.h"

#include <hwloc.h>

#include <algorithm>
#include <limits>

#include "runtime/status.h"

namespace butler {

HostKvStore::HostKvStore(Device& device, const KvStoreShape& shape) : device_(device), shape_(shape) {
    if (shape_.n_layer <= 0 || shape_.n_head_kv <= 0 || shape_.head_dim <= 0 || shape_.head_dim_v <= 0 ||
        shape_.page_tok <= 0 || shape_.max_tok <= 0)
        fail(Status::InvalidArg, "bad KV store shape: {} layers, {} KV heads, head dims {}/{}, page {}, {} tokens",
             shape_.n_layer, shape_.n_head_kv, shape_.head_dim, shape_.head_dim_v, shape_.page_tok, shape_.max_tok);
    if (shape_.type != DType::F16 && shape_.type != DType::BF16 && shape_.type != DType::F32)
        fail(Status::InvalidArg, "KV store type {} is not supported (f16, bf16 or f32)", dtype_name(shape_.type));
    elem_bytes_ = dtype_traits(shape_.type).block_bytes;
    max_pages_  = (shape_.max_tok + shape_.page_tok - 1) / shape_.page_tok;
    page_bytes_ = static_cast<size_t>(int64_t(shape_.n_head_kv) * shape_.page_tok *
                                      (shape_.head_dim + shape_.head_dim_v) * elem_bytes_);
    k_pages_.resize(static_cast<size_t>(shape_.n_layer));
    v_pages_.resize(static_cast<size_t>(shape_.n_layer));
    for (int32_t l = 0; l < shape_.n_layer; ++l) {
        k_pages_[size_t(l)].reserve(size_t(max_pages_));
        v_pages_[size_t(l)].reserve(size_t(max_pages_));
    }
    allocations_.reserve(size_t(max_pages_ * shape_.n_layer));
    const size_t n_summary = size_t(int64_t(shape_.n_layer) * shape_.n_head_kv * max_pages_ * shape_.head_dim);
    kmin_.assign(n_summary, std::numeric_limits<float>::infinity());
    kmax_.assign(n_summary, -std::numeric_limits<float>::infinity());
    if (hwloc_topology_init(&topo_) != 0 || hwloc_topology_load(topo_) != 0) {
        if (topo_) hwloc_topology_destroy(topo_);
        topo_ = nullptr;  // without a topology, pages come from plain malloc (still correct, maybe not NUMA-local)
    }
}

HostKvStore::~HostKvStore() {
    for (const auto& [p, n_bytes] : allocations_) {
        device_.unpin(p);
        if (topo_)
            hwloc_free(topo_, p, n_bytes);
        else
            std::free(p);
    }
    if (topo_) hwloc_topology_destroy(topo_);
}

uint64_t HostKvStore::bytes_allocated() const {
    uint64_t n = 0;
    for (const auto& a : allocations_) n += a.second;
    return n;
}

void HostKvStore::reserve(int64_t n_tok) {
    if (n_tok > shape_.max_tok)
        fail(Status::InvalidArg, "KV store: {} tokens exceed its capacity of {}", n_tok, shape_.max_tok);
    const int64_t want    = (n_tok + shape_.page_tok - 1) / shape_.page_tok;
    hwloc_bitmap_t cpuset = topo_ ? hwloc_bitmap_alloc() : nullptr;
    const bool bound      = cpuset && hwloc_get_cpubind(topo_, cpuset, HWLOC_CPUBIND_THREAD) == 0;
    for (int32_t l = 0; l < shape_.n_layer; ++l) {
        while (int64_t(k_pages_[size_t(l)].size()) < want) {
            // Pages come in chunks of about 2 MiB: one mapping per page would cost a TLB entry (and an mmap) per
            // page_tok tokens, which the CPU attention pass over long contexts feels.
            const int64_t have = int64_t(k_pages_[size_t(l)].size());
            const int64_t n_pages =
                std::min<int64_t>(max_pages_ - have, std::max<int64_t>(1, (2 << 20) / int64_t(page_bytes_)));
            const size_t chunk_bytes = size_t(n_pages) * page_bytes_;
            void* p                  = nullptr;
            // NUMA-local to the thread that will fill the store; fall back to any memory when binding is refused.
            if (topo_ && bound) p = hwloc_alloc_membind(topo_, chunk_bytes, cpuset, HWLOC_MEMBIND_BIND, 0);
            if (!p && topo_) p = hwloc_alloc(topo_, chunk_bytes);
            if (!p && !topo_) p = std::aligned_alloc(4096, (chunk_bytes + 4095) / 4096 * 4096);
            if (!p) {
                if (cpuset) hwloc_bitmap_free(cpuset);
                fail(Status::Oom, "out of host memory for the KV store ({} bytes)", chunk_bytes);
            }
            allocations_.push_back({p, chunk_bytes});
            device_.pin(p, chunk_bytes);
            for (int64_t i = 0; i < n_pages; ++i) {
                auto* base = static_cast<uint8_t*>(p) + i * int64_t(page_bytes_);
                k_pages_[size_t(l)].push_back(base);
                v_pages_[size_t(l)].push_back(base + int64_t(shape_.n_head_kv) * shape_.page_tok * shape_.head_dim *
                                                         elem_bytes_);
            }
        }
    }
    if (cpuset) hwloc_bitmap_free(cpuset);
}

void HostKvStore::write(int32_t layer, int32_t g, int64_t t, const float* k, const float* v) {
    const int64_t page = t / shape_.page_tok;
    BUTLER_ASSERT(layer >= 0 && layer < shape_.n_layer && g >= 0 && g < shape_.n_head_kv, "bad layer/head");
    BUTLER_ASSERT(page < int64_t(k_pages_[size_t(layer)].size()), "KV store page {} not reserved", page);
    const int64_t r = t % shape_.page_tok;
    auto* kp        = const_cast<uint8_t*>(k_pages_[size_t(layer)][size_t(page)]);
    auto* vp        = const_cast<uint8_t*>(v_pages_[size_t(layer)][size_t(page)]);
    store_kv_row(shape_.type, k, kp + ((int64_t(g) * shape_.page_tok + r) * shape_.head_dim) * elem_bytes_,
                 shape_.head_dim);
    store_kv_row(shape_.type, v, vp + ((int64_t(g) * shape_.page_tok + r) * shape_.head_dim_v) * elem_bytes_,
                 shape_.head_dim_v);
}

void HostKvStore::commit(int32_t layer, int64_t t0, int64_t t1) {
    BUTLER_ASSERT(t0 >= 0 && t0 <= t1 && t1 <= shape_.max_tok, "bad commit range [{}, {})", t0, t1);
    n_tok_ = t1;
    if (t1 == t0) return;
    // Bounds of the stored (rounded) values, so they bound exactly what attention reads.
    {
        const int32_t l      = layer;
        const PagedKvView kv = view(l);
        for (int32_t g = 0; g < shape_.n_head_kv; ++g) {
            for (int64_t page = t0 / shape_.page_tok; page * shape_.page_tok < t1; ++page) {
                float* mn         = summary(kmin_, l, g, page);
                float* mx         = summary(kmax_, l, g, page);
                const int64_t end = std::min(t1, (page + 1) * shape_.page_tok);
                for (int64_t t = page * shape_.page_tok; t < end; ++t) {
                    const uint8_t* k = kv.k_row(g, t);
                    for (int32_t d = 0; d < shape_.head_dim; ++d) {
                        float x;
                        switch (shape_.type) {
                            case DType::F16:
                                x = f16_to_f32(reinterpret_cast<const uint16_t*>(k)[d]);
                                break;
                            case DType::BF16:
                                x = bf16_to_f32(reinterpret_cast<const uint16_t*>(k)[d]);
                                break;
                            default:
                                x = reinterpret_cast<const float*>(k)[d];
                        }
                        const bool first = t == page * shape_.page_tok;
                        mn[d]            = first ? x : std::min(mn[d], x);
                        mx[d]            = first ? x : std::max(mx[d], x);
                    }
                }
            }
        }
    }
}

PagedKvView HostKvStore::view(int32_t layer) const {
    return PagedKvView{shape_.type,
                       k_pages_[size_t(layer)].data(),
                       v_pages_[size_t(layer)].data(),
                       shape_.page_tok,
                       shape_.n_head_kv,
                       shape_.head_dim,
                       shape_.head_dim_v,
                       elem_bytes_};
}

}  // namespace butler
