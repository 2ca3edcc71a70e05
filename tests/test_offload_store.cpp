// SPDX-License-Identifier: MIT
// Host KV store (rows, pages that never move, key summaries) and the copy engine on the emulated device under
// random delays, with a planted missing wait that the check must catch.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "offload/copy_engine.h"
#include "offload/device_slots.h"
#include "offload/kv_store.h"
#include "runtime/device.h"
#include "runtime/status.h"

using namespace butler;

namespace {

double stored(DType type, const uint8_t* row, int d) {
    switch (type) {
        case DType::F16:
            return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[d]);
        case DType::BF16:
            return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[d]);
        default:
            return reinterpret_cast<const float*>(row)[d];
    }
}

// A store of 2 layers x 2 heads filled with random rows; rows[layer][g][t] keeps the f32 originals.
struct Filled {
    std::unique_ptr<Device> dev;
    std::unique_ptr<HostKvStore> store;
    std::vector<float> k, v;  // (n_layer, n_head_kv, n_tok, head_dim)
    KvStoreShape sh;
    Filled(const std::string& spec, DType type, int64_t n_tok, int32_t page_tok) {
        dev        = make_device(spec);
        sh.n_layer = 2, sh.n_head_kv = 2, sh.head_dim = 16, sh.head_dim_v = 16, sh.page_tok = page_tok;
        sh.max_tok = n_tok, sh.type = type;
        store = std::make_unique<HostKvStore>(*dev, sh);
        store->reserve(n_tok);
        std::mt19937 rng(3);
        std::normal_distribution<float> g(0.f, 1.f);
        k.resize(size_t(2 * 2 * n_tok * 16));
        v.resize(k.size());
        for (auto& x : k) x = g(rng);
        for (auto& x : v) x = g(rng);
        for (int32_t l = 0; l < 2; ++l) {
            for (int64_t t = 0; t < n_tok; ++t)
                for (int32_t h = 0; h < 2; ++h)
                    store->write(l, h, t, &k[size_t(((l * 2 + h) * n_tok + t) * 16)],
                                 &v[size_t(((l * 2 + h) * n_tok + t) * 16)]);
            store->commit(l, 0, n_tok);
        }
    }
};

}  // namespace

TEST_SUITE("offload") {
    TEST_CASE("kv store: rows round-trip, pages do not move as it grows, summaries bound the stored keys") {
        for (DType type : {DType::F32, DType::F16, DType::BF16}) {
            CAPTURE(dtype_name(type));
            Filled f("emu", type, 100, 16);
            const int64_t n = 100;
            CHECK(f.store->n_tok() == n);
            CHECK(f.store->n_pages_allocated() == 7);
            for (int32_t l = 0; l < 2; ++l)
                for (int32_t h = 0; h < 2; ++h)
                    for (int64_t t = 0; t < n; t += 7) {
                        const PagedKvView kv = f.store->view(l);
                        for (int d = 0; d < 16; ++d) {
                            const double want = f.k[size_t(((l * 2 + h) * n + t) * 16 + d)];
                            CHECK(stored(type, kv.k_row(h, t), d) ==
                                  doctest::Approx(want).epsilon(type == DType::F32 ? 1e-7 : 1e-2));
                        }
                    }
            // Summaries: the exact min/max over each page's stored keys, computed here from the rows.
            for (int32_t l = 0; l < 2; ++l)
                for (int32_t h = 0; h < 2; ++h)
                    for (int64_t p = 0; p < 7; ++p)
                        for (int d = 0; d < 16; ++d) {
                            double mn = 1e30, mx = -1e30;
                            for (int64_t t = p * 16; t < std::min<int64_t>(n, (p + 1) * 16); ++t) {
                                const double x = stored(type, f.store->view(l).k_row(h, t), d);
                                mn = std::min(mn, x), mx = std::max(mx, x);
                            }
                            CHECK(f.store->key_min(l, h, p)[d] == mn);
                            CHECK(f.store->key_max(l, h, p)[d] == mx);
                        }
        }
        // Growth: reserving more adds pages and leaves the written ones where they were.
        auto dev = make_device("cpu");
        KvStoreShape sh{1, 1, 8, 8, 4, 64, DType::F32};
        HostKvStore s(*dev, sh);
        s.reserve(8);
        std::vector<float> row(8, 1.5f);
        s.write(0, 0, 5, row.data(), row.data());
        const uint8_t* before = s.view(0).k_row(0, 5);
        s.reserve(64);
        CHECK(s.view(0).k_row(0, 5) == before);
        CHECK(reinterpret_cast<const float*>(before)[3] == 1.5f);
        CHECK_THROWS_AS(s.reserve(65), Error);
    }

    TEST_CASE("copy engine: fetched rows equal the store's under random delays; a planted missing wait is caught") {
        // Both paths; the gather path also with a ring of 5 pieces, so every step wraps it and rewrites slices whose
        // gathers must have run first (a slice reused early would copy another step's rows).
        struct Path {
            CopyPath path;
            size_t ring;
        };
        for (const Path path : {Path{CopyPath::Gather, CopyEngine::kDefaultRingPieces}, Path{CopyPath::Gather, 5},
                                Path{CopyPath::Memcpy, 0}})
        for (const bool with_wait : {true, false}) {
            const std::string path_name = copy_path_name(path.path);
            CAPTURE(path_name);
            CAPTURE(path.ring);
            CAPTURE(with_wait);
            // Without the wait, longer delays (each step queues tens of copies, ~2.5 ms late on average) keep the
            // reader ahead of the copies even when a loaded machine delays its thread by many milliseconds.
            Filled f(with_wait ? "emu:delay_us=1500,seed=9" : "emu:delay_us=5000,seed=9", DType::F16, 300, 16);
            DeviceKvSlots slots(*f.dev, 2, 2, 16, 16, DType::F16, 64, 300);
            CopyEngine engine(*f.dev, *f.store, slots, path.path, path.ring);
            auto compute = f.dev->create_stream();
            std::mt19937 rng(with_wait ? 1 : 2);
            struct Check {
                const uint8_t* slot_k;  // (64, 16) f16 of one pool
                std::vector<int32_t> slot_of;
                std::vector<uint16_t> got;
                static void run(void* ctx) {
                    auto* c = static_cast<Check*>(ctx);
                    for (size_t i = 0; i < c->slot_of.size(); ++i)
                        std::memcpy(&c->got[i * 16], c->slot_k + size_t(c->slot_of[i]) * 32, 32);
                }
            };
            int mismatched_steps = 0;
            for (int step = 0; step < 12; ++step) {
                const int32_t layer = step % 2, g = (step / 2) % 2;
                // A random wanted set, some of it resident from earlier steps.
                std::vector<int32_t> wanted;
                for (int32_t t = 0; t < 300 && wanted.size() < 64; ++t)
                    if (rng() % 5 == 0) wanted.push_back(t);
                engine.fetch(layer, g, wanted);
                engine.finish_layer(layer);
                if (with_wait) engine.make_wait(*compute, layer);
                Check c{slots.k_slot(layer, g, 0), {}, std::vector<uint16_t>(wanted.size() * 16)};
                for (int32_t t : wanted) c.slot_of.push_back(slots.token_slot(layer, g)[size_t(t)]);
                compute->host_fn(&Check::run, &c);
                compute->synchronize();
                bool same            = true;
                const PagedKvView kv = f.store->view(layer);
                for (size_t i = 0; i < wanted.size(); ++i)
                    same = same && std::memcmp(&c.got[i * 16], kv.k_row(g, wanted[i]), 32) == 0;
                mismatched_steps += !same;
                engine.synchronize();
            }
            if (with_wait)
                CHECK(mismatched_steps == 0);
            else
                CHECK(mismatched_steps >= 6);
            const CopyStats& st = engine.stats();
            CHECK(st.hits + st.misses > 0);
            CHECK(st.bytes == st.misses * 64);  // K and V rows of 16 f16 each
            CHECK(st.copies >= 2 * st.runs);    // K and V of each run, more where a run crosses a page
            if (path.path == CopyPath::Memcpy) CHECK(st.gathers == 0);
            else if (path.ring > 100) CHECK(st.gathers <= 12);  // at most one per finish_layer
            else CHECK(st.gathers >= st.copies / 5);            // the small ring sends a gather per 5 pieces
        }
    }

    TEST_CASE("copy engine: fetch_range puts a token range into fixed slots, evicting their tenants consistently") {
        Filled f("emu:delay_us=300,seed=5", DType::F16, 300, 16);
        DeviceKvSlots slots(*f.dev, 2, 2, 16, 16, DType::F16, 40, 300);
        CopyEngine engine(*f.dev, *f.store, slots, CopyPath::Gather, 7);  // a small ring: the range wraps it
        const int32_t layer = 1, g = 0;
        // Planned tokens first (tenants to evict), then two ranges over the two halves, the second across pages and
        // holding a token that was resident in the other half.
        const std::vector<int32_t> planned{3, 50, 51, 52, 90};
        engine.fetch(layer, g, planned);
        const int32_t slot_of_90 = slots.token_slot(layer, g)[90];
        engine.fetch_range(layer, g, 0, 20, 0, layer);
        engine.fetch_range(layer, g, 77, 20, 20, layer);  // tokens 77..96: 90 moves here from its planned slot
        engine.finish_layer(layer);
        engine.synchronize();
        const auto slot_token = slots.slot_token(layer, g);
        const auto token_slot = slots.token_slot(layer, g);
        for (int32_t j = 0; j < 20; ++j) {
            CHECK(slot_token[size_t(j)] == j);
            CHECK(token_slot[size_t(j)] == j);
            CHECK(slot_token[size_t(20 + j)] == 77 + j);
            CHECK(token_slot[size_t(77 + j)] == 20 + j);
        }
        for (int32_t t : {50, 51, 52}) CHECK(token_slot[size_t(t)] == -1);  // their slots went to the ranges
        if (slot_of_90 >= 40 || slot_of_90 < 0) FAIL("token 90 was not resident after fetch");
        // Every slot holds at most one token and the two maps agree.
        for (int32_t s = 0; s < 40; ++s)
            if (slot_token[size_t(s)] >= 0) CHECK(token_slot[size_t(slot_token[size_t(s)])] == s);
        // The rows landed where the maps say.
        std::vector<uint8_t> got(size_t(40) * 32);
        f.dev->default_stream().copy(got.data(), slots.k_slot(layer, g, 0), got.size());
        f.dev->default_stream().synchronize();
        const PagedKvView kv = f.store->view(layer);
        for (int32_t s = 0; s < 40; ++s) {
            CAPTURE(s);
            CHECK(std::memcmp(got.data() + size_t(s) * 32, kv.k_row(g, slot_token[size_t(s)]), 32) == 0);
        }
    }

    TEST_CASE("device slots: a pool larger than the device fails naming both sizes") {
        auto dev = make_device("emu:mem=1MiB");
        try {
            DeviceKvSlots slots(*dev, 3, 1, 256, 256, DType::F16, 4096, 8192);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Oom);
            const std::string msg = e.what();
            CHECK(msg.find("12582912 bytes") != std::string::npos);  // 3 x 4096 x 512 x 2
            CHECK(msg.find("1048576") != std::string::npos);
        }
    }
}
