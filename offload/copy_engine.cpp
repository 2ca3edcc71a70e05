// SPDX-License-Identifier: MIT
#include "offload/copy_engine.h"

#include <algorithm>

#include "runtime/status.h"

namespace butler {

namespace {
constexpr size_t kFences = 64;
}

CopyEngine::CopyEngine(Device& device, const HostKvStore& store, DeviceKvSlots& slots, CopyPath path,
                       size_t ring_pieces)
    : store_(store), slots_(slots), path_(path), stream_(device.create_stream()) {
    for (int32_t l = 0; l < store.shape().n_layer; ++l) events_.push_back(device.create_event());
    plan_.reserve(slots.n_slots());
    if (path_ == CopyPath::Gather) {
        ring_cap_ = std::max<size_t>(ring_pieces, 1);
        ring_     = device.alloc(sizeof(CopyPiece) * ring_cap_, MemKind::PinnedHost);
        fences_.resize(kFences);
        for (Fence& f : fences_) f.event = device.create_event();
    }
}

void CopyEngine::fetch(int32_t layer, int32_t g, std::span<const int32_t> wanted, int32_t pool_layer) {
    const int32_t pool = pool_layer < 0 ? layer : pool_layer;
    plan_copies(wanted, slots_.slot_token(pool, g), slots_.token_slot(pool, g), plan_);
    apply_plan(plan_, slots_.slot_token(pool, g), slots_.token_slot(pool, g));
    stats_.hits += uint64_t(plan_.n_hit);
    stats_.misses += uint64_t(plan_.n_miss);
    stats_.runs += plan_.runs.size();
    for (const CopyRun& r : plan_.runs) add_run(layer, g, pool, r.token, r.slot, r.n);
}

void CopyEngine::fetch_range(int32_t layer, int32_t g, int32_t t0, int32_t n, int32_t slot0, int32_t pool_layer) {
    std::span<int32_t> slot_token = slots_.slot_token(pool_layer, g), token_slot = slots_.token_slot(pool_layer, g);
    BUTLER_ASSERT(slot0 >= 0 && slot0 + n <= slots_.n_slots(), "fetch_range: slots {}..{} outside the pool", slot0,
                  slot0 + n - 1);
    for (int32_t j = 0; j < n; ++j) {
        const int32_t s = slot0 + j, t = t0 + j;
        if (slot_token[size_t(s)] >= 0) token_slot[size_t(slot_token[size_t(s)])] = -1;
        if (token_slot[size_t(t)] >= 0) slot_token[size_t(token_slot[size_t(t)])] = -1;
        slot_token[size_t(s)] = t;
        token_slot[size_t(t)] = s;
    }
    stats_.misses += uint64_t(n);
    stats_.runs += 1;
    add_run(layer, g, pool_layer, t0, slot0, n);
}

void CopyEngine::add_run(int32_t layer, int32_t g, int32_t pool, int32_t token, int32_t slot, int32_t n_tok) {
    const KvStoreShape& sh = store_.shape();
    const PagedKvView kv   = store_.view(layer);
    const size_t k_row = size_t(sh.head_dim * kv.elem_bytes), v_row = size_t(sh.head_dim_v * kv.elem_bytes);
    // Rows of one head are contiguous within a host page, so a run splits only at page boundaries.
    int32_t done = 0;
    while (done < n_tok) {
        const int64_t t = token + done;
        const int32_t n = int32_t(std::min<int64_t>(n_tok - done, sh.page_tok - t % sh.page_tok));
        add_piece(slots_.k_slot(pool, g, slot + done), kv.k_row(g, t), n * k_row);
        add_piece(slots_.v_slot(pool, g, slot + done), kv.v_row(g, t), n * v_row);
        stats_.bytes += uint64_t(n) * (k_row + v_row);
        done += n;
    }
}

void CopyEngine::add_piece(void* dst, const void* src, uint64_t n_bytes) {
    ++stats_.copies;
    if (path_ == CopyPath::Memcpy) {
        stream_->copy(dst, src, n_bytes);
        return;
    }
    if (queued_ % ring_cap_ == 0 && queued_ > sent_) flush();  // a gather reads one contiguous slice: none wraps
    while (queued_ - freed_ == ring_cap_) {
        if (queued_ > sent_) flush();
        reclaim_oldest();
    }
    ring_.as<CopyPiece>()[queued_ % ring_cap_] = CopyPiece{dst, src, n_bytes};
    ++queued_;
}

void CopyEngine::flush() {
    if (queued_ == sent_) return;
    if (n_fences_ == fences_.size()) reclaim_oldest();
    stream_->gather(ring_.as<CopyPiece>() + sent_ % ring_cap_, size_t(queued_ - sent_));
    Fence& f = fences_[(fence_first_ + n_fences_) % fences_.size()];
    f.end    = queued_;
    stream_->record(*f.event);
    ++n_fences_;
    sent_ = queued_;
    ++stats_.gathers;
}

void CopyEngine::reclaim_oldest() {
    if (n_fences_ == 0) fail(Status::Internal, "copy engine: the gather ring is full with nothing in flight");
    Fence& f = fences_[fence_first_];
    f.event->synchronize();
    freed_       = f.end;
    fence_first_ = (fence_first_ + 1) % fences_.size();
    --n_fences_;
}

void CopyEngine::finish_layer(int32_t layer) {
    if (path_ == CopyPath::Gather) flush();
    stream_->record(*events_[size_t(layer)]);
}

void CopyEngine::synchronize() {
    if (path_ == CopyPath::Gather) flush();
    stream_->synchronize();
    while (n_fences_ > 0) reclaim_oldest();  // all complete: no blocking
}

}  // namespace butler
