// SPDX-License-Identifier: MIT
// HostKvStore: post-RoPE K and V of the offloaded (global-attention) layers, in host pages.
//
// Layout: for each stored layer, a page table of pages of page_tok tokens; a page holds
//   K (n_head_kv, page_tok, head_dim) and V (n_head_kv, page_tok, head_dim_v) in the KV type (f16/bf16/f32).
// Pages are allocated in chunks of ~2 MiB, NUMA-local through hwloc, and pinned through Device::pin (a no-op on
// cpu/emu), never moved: the store grows by adding pages to the table, so pointers to written rows stay valid.
// reserve() allocates ahead (the session reserves its whole context at creation, so the decode loop allocates nothing).
// Key summary per (layer, KV head, page): the min and max of every key dimension over the page's rows, kept on
// commit() for Quest (recomputed from the stored rows, so a rewrite after truncate() is exact).
// Threading: write() for distinct (layer, head, token) may run concurrently; reads need writes to have finished.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "cpu_kernels/attention.h"
#include "runtime/device.h"
#include "runtime/dtype.h"

struct hwloc_topology;

namespace butler {

struct KvStoreShape {
    int32_t n_layer    = 0;  // stored layers (the offload pipeline's index, not the model's)
    int32_t n_head_kv  = 0;
    int32_t head_dim   = 0;
    int32_t head_dim_v = 0;
    int32_t page_tok   = 16;  // tokens per page (also Quest's page)
    int64_t max_tok    = 0;   // capacity in tokens
    DType type         = DType::F16;
};

class HostKvStore {
public:
    // Error(InvalidArg) for a bad shape or KV type; Error(Oom) when host memory runs out.
    HostKvStore(Device& device, const KvStoreShape& shape);
    ~HostKvStore();
    HostKvStore(const HostKvStore&)            = delete;
    HostKvStore& operator=(const HostKvStore&) = delete;

    const KvStoreShape& shape() const { return shape_; }
    // Tokens written so far (the highest written position + 1, or what truncate() set).
    int64_t n_tok() const { return n_tok_; }
    int64_t n_pages_allocated() const { return static_cast<int64_t>(k_pages_[0].size()); }
    uint64_t bytes_allocated() const;

    // Makes room for n_tok tokens (allocates pages). Error(InvalidArg) past max_tok.
    void reserve(int64_t n_tok);
    // Stores token t's K row (head_dim) and V row (head_dim_v), f32, for (layer, g). t <= n_tok(): an append or an
    // overwrite. The page must be reserved (asserted).
    void write(int32_t layer, int32_t g, int64_t t, const float* k, const float* v);
    // Ends a batch of writes to tokens [t0, t1) of one layer: recomputes the key summaries of the pages it touched
    // (exactly, from the stored rows) and sets n_tok() to t1. Single-threaded; call after the writes finished.
    void commit(int32_t layer, int64_t t0, int64_t t1);
    void truncate(int64_t n) { n_tok_ = std::min(n_tok_, n); }

    PagedKvView view(int32_t layer) const;
    // (head_dim) per-dimension bounds of page p's keys for (layer, g).
    const float* key_min(int32_t layer, int32_t g, int64_t page) const { return summary(kmin_, layer, g, page); }
    const float* key_max(int32_t layer, int32_t g, int64_t page) const { return summary(kmax_, layer, g, page); }

private:
    const float* summary(const std::vector<float>& s, int32_t layer, int32_t g, int64_t page) const {
        return s.data() + ((int64_t(layer) * shape_.n_head_kv + g) * max_pages_ + page) * shape_.head_dim;
    }
    float* summary(std::vector<float>& s, int32_t layer, int32_t g, int64_t page) {
        return s.data() + ((int64_t(layer) * shape_.n_head_kv + g) * max_pages_ + page) * shape_.head_dim;
    }

    Device& device_;
    KvStoreShape shape_;
    int64_t elem_bytes_   = 2;
    int64_t max_pages_    = 0;
    size_t page_bytes_    = 0;
    int64_t n_tok_        = 0;
    hwloc_topology* topo_ = nullptr;
    std::vector<std::vector<const uint8_t*>> k_pages_, v_pages_;  // (n_layer)(n_pages): the page tables
    std::vector<std::pair<void*, size_t>> allocations_;           // chunks of pages from hwloc, freed in the destructor
    std::vector<float> kmin_, kmax_;                              // (n_layer, n_head_kv, max_pages, head_dim)
};

}  // namespace butler
