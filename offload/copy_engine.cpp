// SPDX-License-Identifier: MIT
#include "offload/copy_engine.h"

#include <algorithm>

namespace butler {

CopyEngine::CopyEngine(Device& device, const HostKvStore& store, DeviceKvSlots& slots)
    : store_(store), slots_(slots), stream_(device.create_stream()) {
    for (int32_t l = 0; l < store.shape().n_layer; ++l) events_.push_back(device.create_event());
    plan_.reserve(slots.n_slots());
}

void CopyEngine::fetch(int32_t layer, int32_t g, std::span<const int32_t> wanted, int32_t pool_layer) {
    const int32_t pool = pool_layer < 0 ? layer : pool_layer;
    plan_copies(wanted, slots_.slot_token(pool, g), slots_.token_slot(pool, g), plan_);
    apply_plan(plan_, slots_.slot_token(pool, g), slots_.token_slot(pool, g));
    stats_.hits += uint64_t(plan_.n_hit);
    stats_.misses += uint64_t(plan_.n_miss);
    stats_.runs += plan_.runs.size();
    const KvStoreShape& sh = store_.shape();
    const PagedKvView kv   = store_.view(layer);
    const size_t k_row = size_t(sh.head_dim * kv.elem_bytes), v_row = size_t(sh.head_dim_v * kv.elem_bytes);
    for (const CopyRun& r : plan_.runs) {
        // Rows of one head are contiguous within a host page, so a run splits only at page boundaries.
        int32_t done = 0;
        while (done < r.n) {
            const int64_t t = r.token + done;
            const int32_t n = int32_t(std::min<int64_t>(r.n - done, sh.page_tok - t % sh.page_tok));
            stream_->copy(slots_.k_slot(pool, g, r.slot + done), kv.k_row(g, t), n * k_row);
            stream_->copy(slots_.v_slot(pool, g, r.slot + done), kv.v_row(g, t), n * v_row);
            stats_.copies += 2;
            stats_.bytes += uint64_t(n) * (k_row + v_row);
            done += n;
        }
    }
}

void CopyEngine::finish_layer(int32_t layer) {
    stream_->record(*events_[size_t(layer)]);
}

}  // namespace butler
