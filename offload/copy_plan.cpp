// SPDX-License-Identifier: MIT
#include "offload/copy_plan.h"

#include <algorithm>

#include "runtime/status.h"

namespace butler {

void CopyPlan::reserve(int32_t n_slots) {
    victims.reserve(size_t(n_slots));
    runs.reserve(size_t(n_slots));
    scratch.reserve(size_t(n_slots));
}

void plan_copies(std::span<const int32_t> wanted, std::span<const int32_t> slot_token,
                 std::span<const int32_t> token_slot, CopyPlan& out) {
    const int32_t n_slots = static_cast<int32_t>(slot_token.size());
    BUTLER_ASSERT(int64_t(wanted.size()) <= n_slots, "{} wanted tokens exceed the pool of {} slots", wanted.size(),
                  n_slots);
    out.victims.clear();
    out.runs.clear();
    out.n_hit = out.n_miss = 0;
    for (size_t i = 0; i < wanted.size(); ++i) {
        const int32_t t = wanted[i];
        BUTLER_ASSERT(i == 0 || wanted[i - 1] < t, "wanted tokens must be sorted and unique");
        BUTLER_ASSERT(t >= 0 && size_t(t) < token_slot.size(), "token {} outside the map", t);
        const int32_t s = token_slot[size_t(t)];
        BUTLER_ASSERT(s < 0 || slot_token[size_t(s)] == t, "slot map out of sync at token {}", t);
        if (s >= 0)
            ++out.n_hit;
        else
            ++out.n_miss;
    }
    if (out.n_miss == 0) return;
    // Free slots first (no eviction), then victims; a victim is a resident token not wanted now.
    std::vector<int32_t>& free_slots = out.scratch;
    free_slots.clear();
    for (int32_t s = 0; s < n_slots && int64_t(free_slots.size()) < out.n_miss; ++s)
        if (slot_token[size_t(s)] < 0) free_slots.push_back(s);
    for (int32_t s = 0; s < n_slots && int64_t(free_slots.size()) < out.n_miss; ++s) {
        const int32_t t = slot_token[size_t(s)];
        if (t < 0) continue;
        // Wanted? Binary search the sorted list.
        size_t lo = 0, hi = wanted.size();
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (wanted[mid] < t)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < wanted.size() && wanted[lo] == t) continue;
        out.victims.push_back(s);
        free_slots.push_back(s);
    }
    BUTLER_ASSERT(int64_t(free_slots.size()) == out.n_miss, "slot pool accounting is broken");
    // Victims were appended after the free slots, each list ascending; assign in slot order so runs coalesce.
    std::sort(free_slots.begin(), free_slots.end());
    size_t next = 0;
    for (const int32_t t : wanted) {
        if (token_slot[size_t(t)] >= 0) continue;
        const int32_t s = free_slots[next++];
        if (!out.runs.empty()) {
            CopyRun& r = out.runs.back();
            if (r.token + r.n == t && r.slot + r.n == s) {
                ++r.n;
                continue;
            }
        }
        out.runs.push_back(CopyRun{t, s, 1});
    }
}

void apply_plan(const CopyPlan& plan, std::span<int32_t> slot_token, std::span<int32_t> token_slot) {
    for (const int32_t s : plan.victims) {
        const int32_t t = slot_token[size_t(s)];
        if (t >= 0 && size_t(t) < token_slot.size() && token_slot[size_t(t)] == s) token_slot[size_t(t)] = -1;
        slot_token[size_t(s)] = -1;
    }
    for (const CopyRun& r : plan.runs)
        for (int32_t i = 0; i < r.n; ++i) {
            slot_token[size_t(r.slot + i)]  = r.token + i;
            token_slot[size_t(r.token + i)] = r.slot + i;
        }
}

}  // namespace butler
