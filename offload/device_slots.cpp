// SPDX-License-Identifier: MIT
#include "offload/device_slots.h"

#include "runtime/status.h"

namespace butler {

uint64_t DeviceKvSlots::bytes_needed(int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v,
                                     DType type, int32_t n_slots) {
    return uint64_t(n_layer) * uint64_t(n_head_kv) * uint64_t(n_slots) * uint64_t(head_dim + head_dim_v) *
           uint64_t(dtype_traits(type).block_bytes);
}

DeviceKvSlots::DeviceKvSlots(Device& device, int32_t n_layer, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v,
                             DType type, int32_t n_slots, int64_t max_tok)
    : n_layer_(n_layer),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      head_dim_v_(head_dim_v),
      n_slots_(n_slots),
      max_tok_(max_tok),
      elem_bytes_(dtype_traits(type).block_bytes) {
    const uint64_t need  = bytes_needed(n_layer, n_head_kv, head_dim, head_dim_v, type, n_slots);
    const MemoryInfo mem = device.memory_info();
    if (!device.is_host() && need > mem.free_bytes)
        fail(Status::Oom,
             "a budget of {} tokens needs {} bytes of device memory for the K/V slots ({} layers x {} KV heads); the "
             "device has {} bytes free of {} (--device-memory)",
             n_slots, need, n_layer, n_head_kv, mem.free_bytes, mem.total_bytes);
    k_ = device.alloc(size_t(int64_t(n_layer) * n_head_kv * n_slots * head_dim * elem_bytes_), MemKind::Device);
    v_ = device.alloc(size_t(int64_t(n_layer) * n_head_kv * n_slots * head_dim_v * elem_bytes_), MemKind::Device);
    slot_token_.assign(size_t(int64_t(n_layer) * n_head_kv * n_slots), -1);
    token_slot_.assign(size_t(int64_t(n_layer) * n_head_kv * max_tok), -1);
}

void DeviceKvSlots::invalidate_layer(int32_t layer) {
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        const std::span<int32_t> st = slot_token(layer, g), ts = token_slot(layer, g);
        for (int32_t& t : st) {
            if (t >= 0) ts[size_t(t)] = -1;
            t = -1;
        }
    }
}

void DeviceKvSlots::invalidate_from(int64_t n) {
    for (int64_t p = 0; p < int64_t(n_layer_) * n_head_kv_; ++p) {
        for (int32_t s = 0; s < n_slots_; ++s) {
            int32_t& t = slot_token_[size_t(p * n_slots_ + s)];
            if (t >= n) {
                token_slot_[size_t(p * max_tok_ + t)] = -1;
                t                                     = -1;
            }
        }
    }
}

}  // namespace butler
