// SPDX-License-Identifier: MIT
// CopyEngine: moves K/V rows from the host store into device slots on its own stream.
//   fetch(layer, g, wanted): plan (pure, copy_plan.h), update the slot maps, and queue one piece per coalesced run
//   and host page (K and V). finish_layer(layer) sends the layer's pieces and records the layer's event; the compute
//   stream waits on it with make_wait() (the host never blocks on copies). Fetches for layer l+1 may be issued while
//   layer l's device work runs: the copy stream is separate and in order.
// Paths: `gather` (default) sends a layer's pieces as one Stream::gather (on cuda one kernel reading mapped pinned
//   memory); `memcpy` issues one Stream::copy per piece (cudaMemcpyAsync per run: the baseline the gather is
//   measured against). Gather pieces live in a pinned ring; a slice of it is rewritten only after the event fenced
//   behind its gather completed, so the host blocks only when the whole ring is in flight.
// Threading: the session's thread only. No allocation after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "offload/budget.h"
#include "offload/copy_plan.h"
#include "offload/device_slots.h"
#include "offload/kv_store.h"
#include "runtime/device.h"

namespace butler {

struct CopyStats {
    uint64_t bytes   = 0;  // host -> device
    uint64_t runs    = 0;  // coalesced runs
    uint64_t copies  = 0;  // contiguous pieces (a run split at pages, K and V): one Stream::copy each on memcpy
    uint64_t gathers = 0;  // Stream::gather calls (gather path)
    uint64_t hits   = 0;  // wanted tokens already resident
    uint64_t misses = 0;  // wanted tokens copied
    double hit_rate() const { return hits + misses ? double(hits) / double(hits + misses) : 0.0; }
};

class CopyEngine {
public:
    static constexpr size_t kDefaultRingPieces = size_t(1) << 16;  // 1.5 MiB of pinned CopyPiece

    CopyEngine(Device& device, const HostKvStore& store, DeviceKvSlots& slots, CopyPath path = CopyPath::Gather,
               size_t ring_pieces = kDefaultRingPieces);

    // Makes the sorted unique tokens `wanted` of the store's (layer, g) resident (asynchronously) in the slot pool
    // of pool_layer (-1: layer's own; stream mode stages several store layers through one pool layer).
    void fetch(int32_t layer, int32_t g, std::span<const int32_t> wanted, int32_t pool_layer = -1);
    // Copies tokens t0 .. t0 + n - 1 of the store's (layer, g) into slots slot0 .. slot0 + n - 1 of pool_layer,
    // evicting what those slots held, without planning: chunked prefill streams the context in consecutive blocks
    // through fixed halves of the pool. A token of the range resident in another slot leaves it (one slot each).
    void fetch_range(int32_t layer, int32_t g, int32_t t0, int32_t n, int32_t slot0, int32_t pool_layer);
    // Sends what was queued and marks the end of a pool layer's fetches on the copy stream.
    void finish_layer(int32_t layer);
    // Later work on `stream` waits for pool layer `layer`'s copies.
    void make_wait(Stream& stream, int32_t layer) { stream.wait(*events_[size_t(layer)]); }
    // Blocks the host until every copy issued so far landed (tests, teardown).
    void synchronize();

    const CopyStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }
    const CopyPlan& last_plan() const { return plan_; }

private:
    // Queues the rows of tokens token .. token + n - 1 of (layer, g) into slots slot .. slot + n - 1 of pool: one
    // piece per host page, K and V.
    void add_run(int32_t layer, int32_t g, int32_t pool, int32_t token, int32_t slot, int32_t n);
    // One contiguous host -> device piece: a ring entry on the gather path, a stream copy on the memcpy path.
    void add_piece(void* dst, const void* src, uint64_t n_bytes);
    // Sends the ring's queued pieces as one gather and fences them with an event.
    void flush();
    // Blocks until the oldest fenced gather ran and frees its slice of the ring.
    void reclaim_oldest();

    struct Fence {
        uint64_t end = 0;  // ring counter after the fenced gather's last piece
        std::unique_ptr<Event> event;
    };

    const HostKvStore& store_;
    DeviceKvSlots& slots_;
    CopyPath path_;
    std::unique_ptr<Stream> stream_;
    Buffer ring_;  // PinnedHost CopyPiece[ring_cap_] (gather path)
    size_t ring_cap_ = 0;
    uint64_t queued_ = 0, sent_ = 0, freed_ = 0;  // ring counters: pieces written, sent, free to rewrite
    std::vector<Fence> fences_;                   // a ring of in-flight gathers, oldest at fence_first_
    size_t fence_first_ = 0, n_fences_ = 0;
    std::vector<std::unique_ptr<Event>> events_;  // (n_layer)
    CopyPlan plan_;
    CopyStats stats_;
};

}  // namespace butler
