// SPDX-License-Identifier: MIT
#include "cpu_kernels/matmul.h"

#include <dnnl.h>

#include <algorithm>

#include "cpu_kernels/quant.h"
#include "cpu_kernels/quant_dot.h"
#include "runtime/status.h"

namespace butler {

void MatmulScratch::reserve(int64_t n_tile_floats, int64_t rows_per_tile, int64_t max_cols) {
    tile_rows = rows_per_tile;
    n_tile_floats = std::max(n_tile_floats, max_cols);
    if (static_cast<int64_t>(tile.size()) < n_tile_floats) tile.resize(static_cast<size_t>(n_tile_floats));
    // The largest activation format is Q8_K: 292 bytes per 256 values (plus a block of slack).
    const size_t n_xq = static_cast<size_t>((max_cols / 256 + 1) * 292 + max_cols * 4);
    if (xq.size() < n_xq) xq.resize(n_xq);
}

void dequantize_rows(const WeightMatrix& w, int64_t r0, int64_t n, float* dst) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; ++r) dequantize_row(w.type, w.row(r0 + r), dst + r * w.n_cols, w.n_cols);
}

void sgemm_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc) {
    const dnnl_status_t st = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    BUTLER_ASSERT(st == dnnl_success, "dnnl_sgemm failed with status {}", static_cast<int>(st));
}

void sgemm(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const dnnl_status_t st = dnnl_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    BUTLER_ASSERT(st == dnnl_success, "dnnl_sgemm failed with status {}", static_cast<int>(st));
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int64_t ldy, MatmulScratch& scratch) {
    if (n_tok <= kGemvMaxTokens && scratch.float_activations) {
        for (int64_t t = 0; t < n_tok; ++t) gemv(w.type, w.data, w.n_rows, w.n_cols, x + t * w.n_cols, y + t * ldy);
        return;
    }
    if (n_tok <= kGemvMaxTokens) {
        for (int64_t t = 0; t < n_tok; ++t)
            gemv_q(w.type, w.data, w.n_rows, w.n_cols, x + t * w.n_cols, y + t * ldy, scratch.xq);
        return;
    }
    if (scratch.offload != nullptr && scratch.offload->offload_matmul(w, x, n_tok, y, ldy)) return;
    if (w.type == DType::F32) {
        sgemm_nt(n_tok, w.n_rows, w.n_cols, x, w.n_cols, reinterpret_cast<const float*>(w.data), w.n_cols, y, ldy);
        return;
    }
    const int64_t rows_per_tile = std::min(scratch.tile_rows, static_cast<int64_t>(scratch.tile.size()) / w.n_cols);
    BUTLER_ASSERT(rows_per_tile > 0, "matmul scratch too small for a ({}, {}) matrix", w.n_rows, w.n_cols);
    for (int64_t r0 = 0; r0 < w.n_rows; r0 += rows_per_tile) {
        const int64_t n = std::min(rows_per_tile, w.n_rows - r0);
        dequantize_rows(w, r0, n, scratch.tile.data());
        sgemm_nt(n_tok, n, w.n_cols, x, w.n_cols, scratch.tile.data(), w.n_cols, y + r0, ldy);
    }
}

void matmul_many(std::initializer_list<const WeightMatrix*> w, const float* x, int64_t n_tok,
                 std::initializer_list<float*> y, MatmulScratch& scratch) {
    BUTLER_ASSERT(w.size() == y.size() && w.size() <= 8, "matmul_many: {} matrices, {} outputs", w.size(), y.size());
    bool fused = n_tok == 1 && !scratch.float_activations;
    for (const WeightMatrix* m : w)
        fused = fused && m->n_cols == (*w.begin())->n_cols && activation_type(m->type) != DType::F32;
    if (!fused) {
        auto yi = y.begin();
        for (const WeightMatrix* m : w) matmul(*m, x, n_tok, *yi++, scratch);
        return;
    }
    GemvJob jobs[8];
    int n = 0;
    auto yi = y.begin();
    for (const WeightMatrix* m : w) jobs[n++] = GemvJob{m->type, m->data, m->n_rows, *yi++};
    gemv_q_multi(jobs, n, (*w.begin())->n_cols, x, scratch.xq);
}

}  // namespace butler
