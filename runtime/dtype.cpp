// SPDX-License-Identifier: MIT
#include "runtime/dtype.h"

#include "runtime/status.h"

namespace butler {
namespace {

struct Row {
    uint32_t id;
    DTypeTraits traits;
};

// Block layouts are GGML's: QK = 32 for the legacy quants, QK_K = 256 for the k-quants.
constexpr Row kTypes[] = {
    {0, {"f32", 1, 4, true}},
    {1, {"f16", 1, 2, true}},
    {2, {"q4_0", 32, 2 + 16, true}},
    {3, {"q4_1", 32, 2 + 2 + 16, true}},
    {6, {"q5_0", 32, 2 + 4 + 16, true}},
    {7, {"q5_1", 32, 2 + 2 + 4 + 16, true}},
    {8, {"q8_0", 32, 2 + 32, true}},
    {9, {"q8_1", 32, 4 + 32, false}},
    {10, {"q2_K", 256, 256 / 16 + 256 / 4 + 2 + 2, false}},
    {11, {"q3_K", 256, 256 / 8 + 256 / 4 + 12 + 2, true}},
    {12, {"q4_K", 256, 2 + 2 + 12 + 256 / 2, true}},
    {13, {"q5_K", 256, 2 + 2 + 12 + 256 / 8 + 256 / 2, true}},
    {14, {"q6_K", 256, 256 / 2 + 256 / 4 + 256 / 16 + 2, true}},
    {15, {"q8_K", 256, 4 + 256 + 256 / 16 * 2, false}},
    {20, {"iq4_nl", 32, 2 + 16, true}},
    {24, {"i8", 1, 1, false}},
    {25, {"i16", 1, 2, false}},
    {26, {"i32", 1, 4, false}},
    {27, {"i64", 1, 8, false}},
    {28, {"f64", 1, 8, false}},
    {30, {"bf16", 1, 2, true}},
};

}  // namespace

const DTypeTraits* find_dtype(uint32_t id) {
    for (const Row& row : kTypes)
        if (row.id == id) return &row.traits;
    return nullptr;
}

const DTypeTraits& dtype_traits(DType t) {
    const DTypeTraits* traits = find_dtype(static_cast<uint32_t>(t));
    BUTLER_ASSERT(traits != nullptr, "unknown dtype id {}", static_cast<uint32_t>(t));
    return *traits;
}

int64_t row_bytes(DType t, int64_t n_elem) {
    const DTypeTraits& tr = dtype_traits(t);
    BUTLER_ASSERT(n_elem % tr.block_elems == 0, "row of {} values is not a multiple of the {} block size {}", n_elem,
               tr.name, tr.block_elems);
    return n_elem / tr.block_elems * tr.block_bytes;
}

}  // namespace butler
