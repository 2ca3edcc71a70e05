// SPDX-License-Identifier: MIT
// CPU attention over a KV cache held in F32, F16 or BF16 rows.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/dtype.h"

namespace butler {

// The K/V rows of one layer: K (n_head_kv, cap, head_dim), V (n_head_kv, cap, head_dim_v), last index contiguous,
// in `type`. Position p lives in slot p % cap (cap >= the context for global layers; a ring for sliding windows).
struct KvLayerView {
    DType type = DType::F16;
    const uint8_t* k = nullptr;
    const uint8_t* v = nullptr;
    int32_t n_head_kv = 0;
    int64_t cap = 0;
    int32_t head_dim = 0;
    int32_t head_dim_v = 0;
    int64_t elem_bytes = 2;

    const uint8_t* k_row(int32_t g, int64_t pos) const {
        return k + ((int64_t(g) * cap + pos % cap) * head_dim) * elem_bytes;
    }
    const uint8_t* v_row(int32_t g, int64_t pos) const {
        return v + ((int64_t(g) * cap + pos % cap) * head_dim_v) * elem_bytes;
    }
};

// Attention of n_group query heads (one KV group, all reading KV head g) over key positions k_lo..k_hi inclusive.
//   q      (n_group, head_dim), already scaled
//   out    (n_group, head_dim_v), the softmax-weighted sum of V (normalized)
//   lse    (n_group) log-sum-exp of the scores, natural log (may be null)
//   scores scratch of n_group * (k_hi - k_lo + 1) floats
// An empty range (k_hi < k_lo) gives out = 0 and lse = -inf.
void attend_group(const float* q, int32_t n_group, const KvLayerView& kv, int32_t g, int64_t k_lo, int64_t k_hi,
                  float* out, float* lse, float* scores);

// Row conversions between f32 and the KV type (F32, F16, BF16).
void store_kv_row(DType type, const float* src, uint8_t* dst, int64_t n);
float dot_kv_row(DType type, const uint8_t* row, const float* x, int64_t n);
// acc[i] += a * row[i]
void axpy_kv_row(DType type, const uint8_t* row, float a, float* acc, int64_t n);

}  // namespace butler

namespace butler {

// Chunks of at least this many queries use attend_chunk; fewer use the per-task / split-K kernels.
inline constexpr int64_t kBlockedAttnMinTokens = 8;

// Per-thread scratch of attend_chunk (sized once by the session; attend_chunk allocates nothing).
struct AttnChunkScratch {
    static constexpr int64_t kQueryBlock = 64;  // queries per task (times n_group rows)
    static constexpr int64_t kKeyBlock = 256;   // keys per sgemm
    std::vector<float> buf;                     // (n_threads, per_thread floats)
    int64_t per_thread = 0;
    int32_t n_threads = 0;
    void reserve(int32_t n_threads, int32_t n_group, int32_t head_dim, int32_t head_dim_v);
};

// Causal attention of a chunk of queries over one layer's KV, blocked for cache and computed with sgemm
// (flash-attention style online softmax over key blocks). Query i is at position pos0 + i and sees keys at
// positions max(0, pos - n_swa + 1) .. pos (n_swa = 0: no window). All K/V of those positions must be in `kv`.
//   q   (n_q, n_head * head_dim) f32, already scaled; query head h reads KV head h / (n_head / n_head_kv)
//   out (n_q, n_head * head_dim_v) f32
// OpenMP over (KV head, query block); each task's sgemm runs on its own thread.
void attend_chunk(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const KvLayerView& kv, int64_t n_swa,
                  float* out, AttnChunkScratch& scratch);

// Decode-style attention for few queries: each (query, KV head) task's key range is split across threads into
// partial states merged by LSE (cpu_kernels/lse_merge.h), so one long context keeps every core busy.
// Same contract as attend_chunk. `partials` holds (n_threads * 8) x n_group x (head_dim_v + 1) floats and
// `scores` n_threads x n_group x n_ctx floats.
void attend_split(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const KvLayerView& kv, int64_t n_swa,
                  float* out, float* partials, int64_t n_partials, float* scores, int64_t scores_per_thread);

// K/V rows of one layer in host pages (offload/kv_store.h): token t of KV head g lives in page t / page_tok at row
// t % page_tok. Each page holds K (n_head_kv, page_tok, head_dim) and V (n_head_kv, page_tok, head_dim_v).
struct PagedKvView {
    DType type = DType::F16;
    const uint8_t* const* k_pages = nullptr;  // (n_pages)
    const uint8_t* const* v_pages = nullptr;  // (n_pages)
    int32_t page_tok = 0;
    int32_t n_head_kv = 0;
    int32_t head_dim = 0;
    int32_t head_dim_v = 0;
    int64_t elem_bytes = 2;

    const uint8_t* k_row(int32_t g, int64_t t) const {
        return k_pages[t / page_tok] + ((int64_t(g) * page_tok + t % page_tok) * head_dim) * elem_bytes;
    }
    const uint8_t* v_row(int32_t g, int64_t t) const {
        return v_pages[t / page_tok] + ((int64_t(g) * page_tok + t % page_tok) * head_dim_v) * elem_bytes;
    }
};

// attend_chunk over the host store's pages: the same blocks and order of arithmetic as over a KvLayerView, so a
// prefill through the offload pipeline computes exactly what the plain runtime computes.
void attend_chunk(const float* q, int64_t n_q, int64_t pos0, int32_t n_head, const PagedKvView& kv, int64_t n_swa,
                  float* out, AttnChunkScratch& scratch);

// Rows of one KV head packed densely: K (n_rows, head_dim), V (n_rows, head_dim_v) (device slots).
struct DenseKvRows {
    DType type = DType::F16;
    const uint8_t* k = nullptr;
    const uint8_t* v = nullptr;
    int32_t head_dim = 0;
    int32_t head_dim_v = 0;
    int64_t elem_bytes = 2;

    const uint8_t* k_row(int32_t, int64_t r) const { return k + r * head_dim * elem_bytes; }
    const uint8_t* v_row(int32_t, int64_t r) const { return v + r * head_dim_v * elem_bytes; }
};

// Partial attention of n_group query heads (one KV group, head g) over the rows idx[0..n_idx) -> (out, lse), with
// the conventions of attend_group (out normalized over the set, lse natural log, empty set: out 0, lse -inf).
//   scores: scratch of n_group * n_idx floats. Single-threaded; callers parallelize over heads and blocks.
void attend_group_indexed(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, const int32_t* idx,
                          int64_t n_idx, float* out, float* lse, float* scores);
void attend_group_indexed(const float* q, int32_t n_group, const DenseKvRows& kv, const int32_t* idx, int64_t n_idx,
                          float* out, float* lse, float* scores);
// Causal attention of n_q queries over one block of rows (a chunked prefill's block in device slots), merged into
// running partials: the CPU kernel of runtime/device.h PrefillAttnArgs, whose contract it follows. Query i is at
// q_pos0 + i and sees block row j (row idx[j] of kv, position kv_pos0 + j) iff kv_pos0 + j <= q_pos0 + i.
//   q row i at q + i * q_stride (n_group x head_dim, scaled); out row i at out + i * o_stride (n_group x head_dim_v);
//   lse row i at lse + i * lse_stride (n_group). accumulate: merge by log-sum-exp, else overwrite.
// OpenMP over the (query, head) rows; allocates nothing.
void attend_causal_block(const float* q, int64_t q_stride, int64_t n_q, int64_t q_pos0, int32_t n_group,
                         const DenseKvRows& kv, const int32_t* idx, int64_t n_idx, int64_t kv_pos0, float* out,
                         int64_t o_stride, float* lse, int64_t lse_stride, bool accumulate);
// The same over the contiguous token range [t_lo, t_hi] of a paged view (prefill through the host store).
void attend_group_range(const float* q, int32_t n_group, const PagedKvView& kv, int32_t g, int64_t t_lo,
                        int64_t t_hi, float* out, float* lse, float* scores);

}  // namespace butler
