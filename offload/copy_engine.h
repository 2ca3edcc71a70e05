// SPDX-License-Identifier: MIT
// CopyEngine: moves K/V rows from the host store into device slots on its own stream.
//   fetch(layer, g, wanted): plan (pure, copy_plan.h), update the slot maps, enqueue one copy per coalesced run
//   and host page (K and V) on the copy stream. finish_layer(layer) records the layer's event; the compute stream
//   waits on it with make_wait() (the host never blocks on copies). Fetches for layer l+1 may be issued while
//   layer l's device work runs: the copy stream is separate and in order.
// Threading: the session's thread only. No allocation after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "offload/copy_plan.h"
#include "offload/device_slots.h"
#include "offload/kv_store.h"
#include "runtime/device.h"

namespace butler {

struct CopyStats {
    uint64_t bytes  = 0;  // host -> device
    uint64_t runs   = 0;  // coalesced runs
    uint64_t copies = 0;  // stream copy calls (a run split at pages, K and V)
    uint64_t hits   = 0;  // wanted tokens already resident
    uint64_t misses = 0;  // wanted tokens copied
    double hit_rate() const { return hits + misses ? double(hits) / double(hits + misses) : 0.0; }
};

class CopyEngine {
public:
    CopyEngine(Device& device, const HostKvStore& store, DeviceKvSlots& slots);

    // Makes the sorted unique tokens `wanted` of the store's (layer, g) resident (asynchronously) in the slot pool
    // of pool_layer (-1: layer's own; stream mode stages several store layers through one pool layer).
    void fetch(int32_t layer, int32_t g, std::span<const int32_t> wanted, int32_t pool_layer = -1);
    // Marks the end of a pool layer's fetches on the copy stream.
    void finish_layer(int32_t layer);
    // Later work on `stream` waits for pool layer `layer`'s copies.
    void make_wait(Stream& stream, int32_t layer) { stream.wait(*events_[size_t(layer)]); }
    // Blocks the host until every copy issued so far landed (tests, teardown).
    void synchronize() { stream_->synchronize(); }

    const CopyStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }
    const CopyPlan& last_plan() const { return plan_; }

private:
    const HostKvStore& store_;
    DeviceKvSlots& slots_;
    std::unique_ptr<Stream> stream_;
    std::vector<std::unique_ptr<Event>> events_;  // (n_layer)
    CopyPlan plan_;
    CopyStats stats_;
};

}  // namespace butler
