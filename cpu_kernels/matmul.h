// SPDX-License-Identifier: MIT
// Matrix products against weight matrices in any computable type.
//   matmul:  Y (n_tok, n_rows) = X (n_tok, n_cols) . W^T,  W (n_rows, n_cols) as stored in the file.
// Few tokens (decode) go through the quantized GEMV (activations quantized to 8 bits once, integer dot per row,
// OpenMP over rows; quant_dot.h).
// Many tokens (prefill) dequantize W in row tiles into `scratch` and call oneDNN's sgemm per tile, so the
// dequantization cost is paid once per tile and amortized over all tokens.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "runtime/weights.h"

namespace butler {

// Somewhere else matmul may compute a product of many tokens: a device holding the weights
// (runtime/device_forward.h, the prefill's matrix products on the GPU).
class MatmulOffload {
public:
    virtual ~MatmulOffload() = default;
    // Writes y (n_tok rows of ldy floats, columns [0, w.n_rows)) = x (n_tok, w.n_cols) . W^T and returns true, or
    // returns false without touching y when it does not take this product (W not held there, too many tokens).
    virtual bool offload_matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int64_t ldy) = 0;
};

// Scratch for dequantized tiles, owned by the caller (a Session) and sized once, so matmul allocates nothing.
struct MatmulScratch {
    std::vector<float> tile;  // dequantized rows of one tile: as many whole rows as fit
    int64_t tile_rows = 0;    // most rows per tile
    std::vector<uint8_t> xq;  // one activation row quantized for the integer GEMV (quant_dot.h)
    // GEMV rows (n_tok <= kGemvMaxTokens) multiply float activations (dot_row) instead of 8-bit quantized ones
    // (dot_row_q, llama.cpp's way, faster): then a decode step computes what a prompt chunk does, to float
    // rounding. On Gemma 3 270M the 8-bit activations cost ~1-2% perplexity and make a decode-view perplexity move
    // by as much under any perturbation (thread count, K/V type), which hides the differences between selectors.
    bool float_activations = false;
    // Products of more than kGemvMaxTokens tokens go here first when set (not owned).
    MatmulOffload* offload = nullptr;
    // Sizes the scratch: tiles of at most rows_per_tile rows and n_tile_floats values (at least one row of
    // max_cols columns), and room for one activation row of up to max_cols values.
    void reserve(int64_t n_tile_floats, int64_t rows_per_tile, int64_t max_cols);
};

// Tokens at or below this count take the GEMV path.
inline constexpr int64_t kGemvMaxTokens = 4;

// y (n_tok, ldy) rows receive W.x for each token row of x (n_tok, n_cols), starting at column 0 of each y row.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int64_t ldy, MatmulScratch& scratch);
inline void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, MatmulScratch& scratch) {
    matmul(w, x, n_tok, y, w.n_rows, scratch);
}

// Several products of the same x (n_tok, n_cols) with matrices of n_cols columns: y[i] (n_tok, w[i]->n_rows).
// A single token with integer-path types runs as one fused GEMV region (gemv_q_multi); otherwise one matmul each.
void matmul_many(std::initializer_list<const WeightMatrix*> w, const float* x, int64_t n_tok,
                 std::initializer_list<float*> y, MatmulScratch& scratch);

// Rows [r0, r0 + n) of W dequantized to f32 into dst (n, n_cols).
void dequantize_rows(const WeightMatrix& w, int64_t r0, int64_t n, float* dst);

// C (m, n) = A (m, k) . B^T with B (n, k), all row-major f32 with the given leading dimensions (oneDNN sgemm).
void sgemm_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc);
// C (m, n) = alpha op(A) . op(B) + beta C, row-major f32; op(X) = X ('N') or X^T ('T'); op(A) is (m, k).
void sgemm(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace butler
