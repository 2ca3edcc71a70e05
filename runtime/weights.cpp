// SPDX-License-Identifier: MIT
#include "runtime/weights.h"

#include <fmt/ranges.h>

#include "runtime/arch.h"
#include "runtime/gguf.h"
#include "runtime/hparams.h"
#include "runtime/status.h"

namespace butler {
namespace {

const GgufTensorInfo& find_checked(const GgufFile& file, const std::string& name, std::vector<int64_t> shape) {
    const GgufTensorInfo& t = file.require_tensor(name);
    if (t.shape() != shape)
        fail(Status::Format, "{}: tensor '{}' has shape [{}], expected [{}]", file.path(), name,
             fmt::join(t.shape(), ", "), fmt::join(shape, ", "));
    return t;
}

WeightMatrix matrix(const GgufFile& file, const std::string& name, int64_t n_rows, int64_t n_cols) {
    const GgufTensorInfo& t = find_checked(file, name, {n_rows, n_cols});
    const DTypeTraits& traits = dtype_traits(t.type);
    if (!traits.computable)
        fail(Status::Unsupported, "{}: tensor '{}' has type {}, which Butler cannot compute yet", file.path(), name,
             traits.name);
    return WeightMatrix{t.type, t.data, n_rows, n_cols, row_bytes(t.type, n_cols)};
}

NormWeight norm(const GgufFile& file, const std::string& name, int64_t n) {
    const GgufTensorInfo& t = find_checked(file, name, {n});
    if (t.type != DType::F32)
        fail(Status::Unsupported, "{}: norm/bias tensor '{}' has type {}, expected f32", file.path(), name,
             dtype_name(t.type));
    return NormWeight{reinterpret_cast<const float*>(t.data), n};
}

}  // namespace

ModelWeights ModelWeights::bind(const GgufFile& file, const HParams& hp, const ArchSpec& spec) {
    ModelWeights w;
    const GgufTensorInfo& embd = file.require_tensor(std::string(spec.tok_embd));
    if (embd.n_dims != 2 || embd.ne[0] != hp.n_embd)
        fail(Status::Format, "{}: tensor '{}' has shape [{}], expected [n_vocab, {}]", file.path(), spec.tok_embd,
             fmt::join(embd.shape(), ", "), hp.n_embd);
    if (hp.n_vocab != 0 && embd.ne[1] != hp.n_vocab)
        fail(Status::Format, "{}: tensor '{}' has {} rows but the vocabulary has {} tokens", file.path(), spec.tok_embd,
             embd.ne[1], hp.n_vocab);
    const int64_t n_vocab = embd.ne[1];
    w.tok_embd = matrix(file, std::string(spec.tok_embd), n_vocab, hp.n_embd);
    w.output_norm = norm(file, std::string(spec.output_norm), hp.n_embd);
    if (file.tensor(spec.output) != nullptr) {
        w.output = matrix(file, std::string(spec.output), n_vocab, hp.n_embd);
    } else if (spec.tied_output_default) {
        w.output = w.tok_embd;
        w.tied_output = true;
    } else {
        file.require_tensor(spec.output);  // throws, naming the missing tensor
    }

    w.layers.resize(static_cast<size_t>(hp.n_layer));
    for (int l = 0; l < hp.n_layer; ++l) {
        LayerWeights& L = w.layers[static_cast<size_t>(l)];
        auto name = [l](std::string_view tmpl) { return tensor_name(tmpl, l); };
        L.attn_norm = norm(file, name(spec.attn_norm), hp.n_embd);
        L.wq = matrix(file, name(spec.attn_q), hp.n_embd_q(), hp.n_embd);
        L.wk = matrix(file, name(spec.attn_k), hp.n_embd_k(), hp.n_embd);
        L.wv = matrix(file, name(spec.attn_v), hp.n_embd_v(), hp.n_embd);
        if (spec.qkv_bias) {
            L.bq = norm(file, name(spec.attn_q_bias), hp.n_embd_q());
            L.bk = norm(file, name(spec.attn_k_bias), hp.n_embd_k());
            L.bv = norm(file, name(spec.attn_v_bias), hp.n_embd_v());
        }
        if (spec.qk_norm) {
            L.q_norm = norm(file, name(spec.attn_q_norm), hp.head_dim);
            L.k_norm = norm(file, name(spec.attn_k_norm), hp.head_dim);
        }
        L.wo = matrix(file, name(spec.attn_output), hp.n_embd, int64_t(hp.n_head) * hp.head_dim_v);
        L.ffn_norm = norm(file, name(spec.ffn_norm), hp.n_embd);
        if (spec.sandwich_norm) {
            L.attn_post_norm = norm(file, name(spec.attn_post_norm), hp.n_embd);
            L.ffn_post_norm = norm(file, name(spec.ffn_post_norm), hp.n_embd);
        }
        L.ffn_gate = matrix(file, name(spec.ffn_gate), hp.n_ff, hp.n_embd);
        L.ffn_up = matrix(file, name(spec.ffn_up), hp.n_ff, hp.n_embd);
        L.ffn_down = matrix(file, name(spec.ffn_down), hp.n_embd, hp.n_ff);
    }
    return w;
}

}  // namespace butler
