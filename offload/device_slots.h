// SPDX-License-Identifier: MIT
// DeviceKvSlots: a fixed pool of n_slots token rows per (stored layer, KV head) in device memory, and the
// token <-> slot map of each pool. Sized once from the budget; the decode loop never allocates.
//   K: (n_layer, n_head_kv, n_slots, head_dim), V: (n_layer, n_head_kv, n_slots, head_dim_v), in the KV type.
// The maps live on the host (the planner reads them); the rows live on the device.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"

namespace butler {

class DeviceKvSlots {
public:
    // Error(Oom) naming the bytes the pool needs and the device's free bytes when it does not fit.
    DeviceKvSlots(Device& device, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v, DType type,
                  int32_t n_slots, int64_t max_tok);

    // Bytes of device memory a pool of this shape takes.
    static uint64_t bytes_needed(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v, DType type,
                                 int32_t n_slots);

    int32_t n_slots() const { return n_slots_; }
    uint8_t* k_slot(int32_t layer, int32_t g, int32_t slot) const {
        return k_.as<uint8_t>() + ((pool(layer, g) * n_slots_ + slot) * head_dim_) * elem_bytes_;
    }
    uint8_t* v_slot(int32_t layer, int32_t g, int32_t slot) const {
        return v_.as<uint8_t>() + ((pool(layer, g) * n_slots_ + slot) * head_dim_v_) * elem_bytes_;
    }
    std::span<int32_t> slot_token(int32_t layer, int32_t g) {
        return {slot_token_.data() + pool(layer, g) * n_slots_, size_t(n_slots_)};
    }
    std::span<int32_t> token_slot(int32_t layer, int32_t g) {
        return {token_slot_.data() + pool(layer, g) * max_tok_, size_t(max_tok_)};
    }
    // Forgets every resident token at position >= n (after a rewind those rows are stale).
    void invalidate_from(int64_t n);
    // Forgets every resident token of one layer's pools (their slots are about to hold another layer's rows).
    void invalidate_layer(int32_t layer);

private:
    int64_t pool(int32_t layer, int32_t g) const { return int64_t(layer) * n_head_kv_ + g; }

    int32_t n_layer_, n_head_kv_, head_dim_, head_dim_v_, n_slots_;
    int64_t max_tok_, elem_bytes_;
    Buffer k_, v_;
    std::vector<int32_t> slot_token_;  // (n_layer, n_head_kv, n_slots)
    std::vector<int32_t> token_slot_;  // (n_layer, n_head_kv, max_tok)
};

}  // namespace butler
