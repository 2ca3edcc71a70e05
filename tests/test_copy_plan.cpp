// SPDX-License-Identifier: MIT
// Copy planning (pure): diffing wanted against resident, victim choice, run coalescing.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "offload/copy_plan.h"

using namespace butler;

namespace {

struct Maps {
    std::vector<int32_t> slot_token, token_slot;
    Maps(int32_t n_slots, int32_t n_tok) : slot_token(size_t(n_slots), -1), token_slot(size_t(n_tok), -1) {}
    void put(int32_t t, int32_t s) {
        slot_token[size_t(s)] = t;
        token_slot[size_t(t)] = s;
    }
};

}  // namespace

TEST_SUITE("copy_plan") {
    TEST_CASE("empty pool: misses fill the lowest slots and consecutive tokens coalesce") {
        Maps m(8, 32);
        CopyPlan p;
        const std::vector<int32_t> wanted{3, 4, 5, 9, 20, 21};
        plan_copies(wanted, m.slot_token, m.token_slot, p);
        CHECK(p.n_hit == 0);
        CHECK(p.n_miss == 6);
        CHECK(p.victims.empty());
        REQUIRE(p.runs.size() == 3);
        CHECK((p.runs[0].token == 3 && p.runs[0].slot == 0 && p.runs[0].n == 3));
        CHECK((p.runs[1].token == 9 && p.runs[1].slot == 3 && p.runs[1].n == 1));
        CHECK((p.runs[2].token == 20 && p.runs[2].slot == 4 && p.runs[2].n == 2));
    }

    TEST_CASE("all resident: nothing to copy") {
        Maps m(4, 16);
        m.put(2, 3), m.put(7, 0), m.put(8, 1);
        CopyPlan p;
        const std::vector<int32_t> wanted{2, 7, 8};
        plan_copies(wanted, m.slot_token, m.token_slot, p);
        CHECK(p.n_hit == 3);
        CHECK(p.n_miss == 0);
        CHECK(p.runs.empty());
        CHECK(p.victims.empty());
    }

    TEST_CASE("full pool: free slots first, then the lowest unwanted slots are evicted") {
        Maps m(6, 32);
        for (int32_t s = 0; s < 5; ++s) m.put(s, s);  // tokens 0..4 in slots 0..4, slot 5 free
        CopyPlan p;
        const std::vector<int32_t> wanted{0, 1, 10, 11, 12};
        plan_copies(wanted, m.slot_token, m.token_slot, p);
        CHECK(p.n_hit == 2);
        CHECK(p.n_miss == 3);
        CHECK(p.victims == std::vector<int32_t>{2, 3});
        // Slots 2, 3 (victims) and 5 (free), in slot order: 10->2, 11->3 coalesce; 12->5 does not.
        REQUIRE(p.runs.size() == 2);
        CHECK((p.runs[0].token == 10 && p.runs[0].slot == 2 && p.runs[0].n == 2));
        CHECK((p.runs[1].token == 12 && p.runs[1].slot == 5 && p.runs[1].n == 1));
        apply_plan(p, m.slot_token, m.token_slot);
        CHECK(m.token_slot[2] == -1);
        CHECK(m.token_slot[3] == -1);
        CHECK(m.token_slot[4] == 4);  // evicted only what was needed
        CHECK(m.token_slot[12] == 5);
    }

    TEST_CASE("random maps: after applying, exactly the wanted are added, maps agree, runs are maximal") {
        std::mt19937 rng(11);
        for (int trial = 0; trial < 300; ++trial) {
            const int32_t n_slots = 1 + int32_t(rng() % 40), n_tok = n_slots + int32_t(rng() % 80);
            Maps m(n_slots, n_tok);
            // A random resident set.
            std::vector<int32_t> perm(static_cast<size_t>(n_tok), 0);
            for (int32_t t = 0; t < n_tok; ++t) perm[size_t(t)] = t;
            std::shuffle(perm.begin(), perm.end(), rng);
            for (int32_t s = 0; s < n_slots; ++s)
                if (rng() % 3) m.put(perm[size_t(s)], s);
            const std::vector<int32_t> before = m.slot_token;
            std::shuffle(perm.begin(), perm.end(), rng);
            std::vector<int32_t> wanted(perm.begin(), perm.begin() + (rng() % (n_slots + 1)));
            std::sort(wanted.begin(), wanted.end());
            CopyPlan p;
            plan_copies(wanted, m.slot_token, m.token_slot, p);
            int64_t hits = 0;
            for (int32_t t : wanted) hits += m.token_slot[size_t(t)] >= 0;
            CHECK(p.n_hit == hits);
            CHECK(p.n_hit + p.n_miss == int64_t(wanted.size()));
            int64_t copied = 0;
            for (size_t i = 0; i < p.runs.size(); ++i) {
                copied += p.runs[i].n;
                if (i > 0) {  // maximal: the next run never continues the previous one
                    const CopyRun& a = p.runs[i - 1];
                    CHECK(!(a.token + a.n == p.runs[i].token && a.slot + a.n == p.runs[i].slot));
                    CHECK(a.token + a.n <= p.runs[i].token);
                }
            }
            CHECK(copied == p.n_miss);
            for (int32_t s : p.victims) {
                CHECK(before[size_t(s)] >= 0);
                CHECK(!std::binary_search(wanted.begin(), wanted.end(), before[size_t(s)]));
            }
            apply_plan(p, m.slot_token, m.token_slot);
            for (int32_t t : wanted) {
                const int32_t s = m.token_slot[size_t(t)];
                REQUIRE(s >= 0);
                CHECK(m.slot_token[size_t(s)] == t);
            }
            // Resident tokens that were hits did not move.
            for (int32_t s = 0; s < n_slots; ++s)
                if (before[size_t(s)] >= 0 && std::binary_search(wanted.begin(), wanted.end(), before[size_t(s)]))
                    CHECK(m.slot_token[size_t(s)] == before[size_t(s)]);
            // The two maps describe the same relation.
            for (int32_t t = 0; t < n_tok; ++t)
                if (m.token_slot[size_t(t)] >= 0) CHECK(m.slot_token[size_t(m.token_slot[size_t(t)])] == t);
        }
    }
}
