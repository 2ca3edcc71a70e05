// SPDX-License-Identifier: MIT
// Copy planning, a pure function: which tokens must travel to the device and into which slots.
//   wanted (sorted unique token ids) minus resident -> misses; misses go to free slots first, then to victims
//   (resident tokens not wanted, lowest slot first); consecutive tokens landing in consecutive slots coalesce
//   into one CopyRun.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace butler {

// Tokens token .. token + n - 1 go to slots slot .. slot + n - 1.
struct CopyRun {
    int32_t token = 0;
    int32_t slot  = 0;
    int32_t n     = 0;
};

struct CopyPlan {
    std::vector<int32_t> victims;  // slots whose resident token is evicted, ascending
    std::vector<CopyRun> runs;     // ascending by token
    int64_t n_hit  = 0;            // wanted tokens already resident
    int64_t n_miss = 0;            // wanted tokens copied
    std::vector<int32_t> scratch;  // free-slot list (internal)

    // Capacity for a pool of n_slots, so later plans allocate nothing.
    void reserve(int32_t n_slots);
};

// slot_token (n_slots): the token held by each slot, -1 when free. token_slot (>= max token + 1): the slot of each
// token, -1 when not resident. Both describe the same map (asserted on the wanted tokens). wanted.size() must not
// exceed n_slots (asserted).
void plan_copies(std::span<const int32_t> wanted, std::span<const int32_t> slot_token,
                 std::span<const int32_t> token_slot, CopyPlan& out);

// Applies a plan to the maps: victims' tokens leave, the runs' tokens arrive.
void apply_plan(const CopyPlan& plan, std::span<int32_t> slot_token, std::span<int32_t> token_slot);

}  // namespace butler
