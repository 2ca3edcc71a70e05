// SPDX-License-Identifier: MIT
// Views of a model's weights inside the mapped GGUF file (never copied). Shapes are outermost-first: a matrix
// (n_rows, n_cols) multiplies an activation of n_cols values and yields n_rows values, each row contiguous in
// the file's type.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/dtype.h"

namespace butler {

class GgufFile;
struct ArchSpec;
struct HParams;

struct WeightMatrix {
    DType type = DType::F32;
    const uint8_t* data = nullptr;  // n_rows rows of row_bytes(type, n_cols) bytes
    int64_t n_rows = 0;
    int64_t n_cols = 0;
    int64_t row_stride_bytes = 0;

    const uint8_t* row(int64_t r) const { return data + r * row_stride_bytes; }
};

// A norm weight or bias vector (F32 in every file Butler loads; others are refused at load).
struct NormWeight {
    const float* data = nullptr;  // (n)
    int64_t n = 0;
};

struct LayerWeights {
    NormWeight attn_norm;       // (n_embd)
    WeightMatrix wq;            // (n_head * head_dim, n_embd)
    WeightMatrix wk;            // (n_head_kv * head_dim, n_embd)
    WeightMatrix wv;            // (n_head_kv * head_dim_v, n_embd)
    NormWeight bq;              // (n_head * head_dim), when qkv_bias
    NormWeight bk;              // (n_head_kv * head_dim), when qkv_bias
    NormWeight bv;              // (n_head_kv * head_dim_v), when qkv_bias
    NormWeight q_norm;          // (head_dim), when qk_norm
    NormWeight k_norm;          // (head_dim), when qk_norm
    WeightMatrix wo;            // (n_embd, n_head * head_dim_v)
    NormWeight attn_post_norm;  // (n_embd), when sandwich_norm
    NormWeight ffn_norm;        // (n_embd)
    WeightMatrix ffn_gate;      // (n_ff, n_embd)
    WeightMatrix ffn_up;        // (n_ff, n_embd)
    WeightMatrix ffn_down;      // (n_embd, n_ff)
    NormWeight ffn_post_norm;   // (n_embd), when sandwich_norm
};

struct ModelWeights {
    WeightMatrix tok_embd;  // (n_vocab, n_embd)
    NormWeight output_norm; // (n_embd)
    WeightMatrix output;    // (n_vocab, n_embd); the same view as tok_embd when tied
    bool tied_output = false;
    std::vector<LayerWeights> layers;

    // Binds every tensor the architecture needs, checking presence, shape and type; Error(Format) names the
    // tensor, the expected and the found shape; Error(Unsupported) names a tensor type Butler cannot compute.
    static ModelWeights bind(const GgufFile& file, const HParams& hp, const ArchSpec& spec);
};

}  // namespace butler
