// SPDX-License-Identifier: MIT
#include "runtime/device_forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels/ops.h"
#include "cpu_kernels/quant.h"
#include "offload/pipeline.h"
#include "runtime/model.h"
#include "runtime/status.h"

namespace butler {
namespace {

// Scratch floats of one token on the device (x, xn, q, k, v, attn, o, gate, up, logits, scores, lse).
int64_t scratch_floats(const HParams& hp, int64_t swa_cap) {
    const int64_t n_group = hp.n_head / hp.n_head_kv;
    return 3 * int64_t(hp.n_embd) + hp.n_embd_q() + hp.n_embd_k() + hp.n_embd_v() +
           int64_t(hp.n_head) * hp.head_dim_v + 2 * int64_t(hp.n_ff) + hp.n_vocab + n_group * swa_cap + hp.n_head;
}

uint64_t matrix_bytes(const WeightMatrix& m) { return uint64_t(m.n_rows) * uint64_t(m.row_stride_bytes); }

// The widest input and output of the layer matrices, and the GEMM tile (floats) that holds the largest of them or
// 16 Mi floats, whichever is less, and at least one row of the widest input. The output projection is left out:
// prompt chunks compute logits for a few rows only (Session's logits path), and its n_vocab outputs per token would
// make the staging hundreds of MiB.
struct PrefillShape {
    int64_t max_cols = 0, max_rows = 0, tile_floats = 0;
};
PrefillShape prefill_shape(const ModelWeights& w) {
    PrefillShape s;
    auto see = [&s](const WeightMatrix& m) {
        s.max_cols    = std::max(s.max_cols, m.n_cols);
        s.max_rows    = std::max(s.max_rows, m.n_rows);
        s.tile_floats = std::max(s.tile_floats, m.n_rows * m.n_cols);
    };
    for (const LayerWeights& L : w.layers)
        for (const WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) see(*m);
    s.tile_floats = std::max(std::min<int64_t>(s.tile_floats, int64_t(1) << 24), s.max_cols);
    return s;
}

uint64_t prefill_bytes(const ModelWeights& w, int64_t prefill_tokens) {
    if (prefill_tokens <= 0) return 0;
    const PrefillShape s = prefill_shape(w);
    return 4 * uint64_t(prefill_tokens * (s.max_cols + s.max_rows) + s.tile_floats);
}

template <typename T>
const T* push(std::vector<T>& arena, const T& args) {
    BUTLER_ASSERT(arena.size() < arena.capacity(), "device forward argument arena overflow");
    arena.push_back(args);
    return &arena.back();
}

}  // namespace

uint64_t DeviceForward::device_bytes(const Model& model, int64_t swa_cap, DType kv_type, int64_t prefill_tokens) {
    const HParams& hp = model.hparams();
    const ModelWeights& w = model.weights();
    uint64_t n = matrix_bytes(w.output) + 4 * uint64_t(w.output_norm.n);
    const uint64_t elem = uint64_t(dtype_traits(kv_type).block_bytes);
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        const LayerWeights& L = w.layers[size_t(l)];
        for (const WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
            n += matrix_bytes(*m);
        for (const NormWeight* v : {&L.attn_norm, &L.q_norm, &L.k_norm, &L.attn_post_norm, &L.ffn_norm,
                                    &L.ffn_post_norm, &L.bq, &L.bk, &L.bv})
            n += 4 * uint64_t(v->n);
        if (hp.is_swa(l)) n += uint64_t(hp.n_head_kv) * uint64_t(swa_cap) * uint64_t(hp.head_dim + hp.head_dim_v) * elem;
    }
    return n + 4 * uint64_t(scratch_floats(hp, swa_cap)) + prefill_bytes(w, prefill_tokens);
}

DeviceForward::~DeviceForward() {
    if (stream_) stream_->synchronize();  // nothing queued may outlive the buffers it names
}

DeviceForward::DeviceForward(const Model& model, OffloadPipeline& pipeline, int64_t swa_cap, DType kv_type,
                             int64_t prefill_tokens)
    : model_(model),
      pipeline_(pipeline),
      device_(pipeline.device()),
      kv_type_(kv_type),
      swa_cap_(swa_cap),
      prefill_tokens_(std::max<int64_t>(prefill_tokens, 0)) {
    const HParams& hp = model.hparams();
    const ModelWeights& w = model.weights();
    stream_ = device_.create_stream();
    output_ = upload_matrix(w.output);
    output_norm_ = upload_floats(w.output_norm.data, w.output_norm.n);
    const int64_t elem = dtype_traits(kv_type).block_bytes;
    layers_.resize(size_t(hp.n_layer));
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        const LayerWeights& L = w.layers[size_t(l)];
        Layer& D = layers_[size_t(l)];
        D.swa = hp.is_swa(l);
        BUTLER_ASSERT(D.swa != pipeline.offloaded(l), "layer {} is neither sliding-window nor offloaded", l);
        D.attn_norm = upload_floats(L.attn_norm.data, L.attn_norm.n);
        D.q_norm = upload_floats(L.q_norm.data, L.q_norm.n);
        D.k_norm = upload_floats(L.k_norm.data, L.k_norm.n);
        D.attn_post_norm = upload_floats(L.attn_post_norm.data, L.attn_post_norm.n);
        D.ffn_norm = upload_floats(L.ffn_norm.data, L.ffn_norm.n);
        D.ffn_post_norm = upload_floats(L.ffn_post_norm.data, L.ffn_post_norm.n);
        D.bq = upload_floats(L.bq.data, L.bq.n);
        D.bk = upload_floats(L.bk.data, L.bk.n);
        D.bv = upload_floats(L.bv.data, L.bv.n);
        D.wq = upload_matrix(L.wq);
        D.wk = upload_matrix(L.wk);
        D.wv = upload_matrix(L.wv);
        D.wo = upload_matrix(L.wo);
        D.gate = upload_matrix(L.ffn_gate);
        D.up = upload_matrix(L.ffn_up);
        D.down = upload_matrix(L.ffn_down);
        if (D.swa) {
            D.k_ring = device_.alloc(size_t(hp.n_head_kv * swa_cap * hp.head_dim * elem), MemKind::Device);
            D.v_ring = device_.alloc(size_t(hp.n_head_kv * swa_cap * hp.head_dim_v * elem), MemKind::Device);
        }
    }
    const int64_t n_group = hp.n_head / hp.n_head_kv;
    auto dev_floats = [this](int64_t n) { return device_.alloc(size_t(4 * std::max<int64_t>(n, 1)), MemKind::Device); };
    auto host_floats = [this](int64_t n) { return device_.alloc(size_t(4 * std::max<int64_t>(n, 1)), MemKind::PinnedHost); };
    x_ = dev_floats(hp.n_embd);
    xn_ = dev_floats(hp.n_embd);
    q_ = dev_floats(hp.n_embd_q());
    k_ = dev_floats(hp.n_embd_k());
    v_ = dev_floats(hp.n_embd_v());
    attn_ = dev_floats(int64_t(hp.n_head) * hp.head_dim_v);
    o_ = dev_floats(hp.n_embd);
    gate_ = dev_floats(hp.n_ff);
    up_ = dev_floats(hp.n_ff);
    logits_ = dev_floats(hp.n_vocab);
    scores_ = dev_floats(n_group * swa_cap);
    lse_ = dev_floats(hp.n_head);
    embd_host_ = host_floats(hp.n_embd);
    rope_host_ = host_floats(2 * int64_t(hp.head_dim));
    window_slots_ = device_.alloc(size_t(4 * std::max<int64_t>(swa_cap, 1)), MemKind::PinnedHost);
    q_host_ = host_floats(hp.n_embd_q());
    k_host_ = host_floats(hp.n_embd_k());
    v_host_ = host_floats(hp.n_embd_v());
    xn_host_ = host_floats(hp.n_embd);
    attn_host_ = host_floats(int64_t(hp.n_head) * hp.head_dim_v);
    inv_freq_global_ = rope_inv_freq(hp.head_dim, hp.rope_base_global, hp.rope_freq_scale, hp.rope_freq_factors);
    inv_freq_local_ = rope_inv_freq(hp.head_dim, hp.rope_base_local, hp.rope_freq_scale, hp.rope_freq_factors);

    if (prefill_tokens_ > 0) {
        const PrefillShape s = prefill_shape(w);
        tile_floats_         = s.tile_floats;
        prefill_cols_        = s.max_cols;
        prefill_rows_        = s.max_rows;
        prefill_x_           = dev_floats(prefill_tokens_ * s.max_cols);
        prefill_y_           = dev_floats(prefill_tokens_ * s.max_rows);
        prefill_tile_        = dev_floats(tile_floats_);
    }

    const size_t nl = size_t(hp.n_layer);
    gemv_args_.reserve(7 * nl + 1);
    rms_args_.reserve(6 * nl + 1);
    rope_args_.reserve(2 * nl);
    glu_args_.reserve(nl);
    add_args_.reserve(5 * nl);
    scale_args_.reserve(nl);
    store_args_.reserve(2 * nl * size_t(hp.n_head_kv));
    attn_args_.reserve(nl * size_t(hp.n_head_kv));
}

const float* DeviceForward::upload_floats(const float* host, int64_t n) {
    if (host == nullptr || n == 0) return nullptr;
    Buffer b = device_.alloc(size_t(4 * n), MemKind::Device);
    stream_->copy(b.data(), host, size_t(4 * n));
    stream_->synchronize();
    weights_.push_back(std::move(b));
    return weights_.back().as<const float>();
}

DeviceForward::Matrix DeviceForward::upload_matrix(const WeightMatrix& m) {
    BUTLER_ASSERT(m.row_stride_bytes == row_bytes(m.type, m.n_cols), "weight rows must be back to back");
    const uint64_t n_bytes = matrix_bytes(m);
    Buffer b = device_.alloc(size_t(n_bytes), MemKind::Device);
    stream_->copy(b.data(), m.data, size_t(n_bytes));
    stream_->synchronize();
    weights_.push_back(std::move(b));
    const Matrix d{uint32_t(m.type), weights_.back().data(), m.n_rows, m.n_cols};
    by_host_.emplace(m.data, d);
    return d;
}

bool DeviceForward::offload_matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int64_t ldy) {
    if (n_tok < 1 || n_tok > prefill_tokens_) return false;
    const auto it = by_host_.find(w.data);
    if (it == by_host_.end()) return false;
    const Matrix& m = it->second;
    if (m.n_cols > prefill_cols_ || m.n_rows > prefill_rows_) return false;  // the output projection
    stream_->copy(prefill_x_.data(), x, size_t(4 * n_tok * m.n_cols));
    const int64_t tile_rows = std::clamp<int64_t>(tile_floats_ / m.n_cols, 1, m.n_rows);
    gemm_args_ = GemmArgs{m.type,   m.w,      m.n_rows, m.n_cols,          prefill_x_.as<float>(), n_tok,
                          prefill_y_.as<float>(), m.n_rows, prefill_tile_.data(), tile_rows};
    device_.kernels().gemm(*stream_, &gemm_args_);
    if (ldy == m.n_rows)
        stream_->copy(y, prefill_y_.data(), size_t(4 * n_tok * m.n_rows));
    else
        for (int64_t t = 0; t < n_tok; ++t)
            stream_->copy(y + t * ldy, prefill_y_.as<float>() + t * m.n_rows, size_t(4 * m.n_rows));
    stream_->synchronize();  // y, and gemm_args_ for the next product
    pipeline_.count_device_product();
    return true;
}

void DeviceForward::upload_ring(int32_t layer, const uint8_t* k, const uint8_t* v) {
    Layer& D = layers_[size_t(layer)];
    BUTLER_ASSERT(D.swa, "layer {} has no device ring", layer);
    stream_->copy(D.k_ring.data(), k, D.k_ring.n_bytes());
    stream_->copy(D.v_ring.data(), v, D.v_ring.n_bytes());
    stream_->synchronize();
}

void DeviceForward::download_ring(int32_t layer, uint8_t* k, uint8_t* v) {
    Layer& D = layers_[size_t(layer)];
    BUTLER_ASSERT(D.swa, "layer {} has no device ring", layer);
    stream_->copy(k, D.k_ring.data(), D.k_ring.n_bytes());
    stream_->copy(v, D.v_ring.data(), D.v_ring.n_bytes());
    stream_->synchronize();
}

void DeviceForward::gemv(const Matrix& m, const float* x, float* y) {
    device_.kernels().gemv(*stream_, push(gemv_args_, GemvArgs{m.type, m.w, m.n_rows, m.n_cols, x, y}));
}

void DeviceForward::rmsnorm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n) {
    device_.kernels().rmsnorm(*stream_,
                              push(rms_args_, RmsNormArgs{x, w, out, n_rows, n, model_.hparams().rms_eps}));
}

void DeviceForward::add(float* y, const float* x, int64_t n) {
    device_.kernels().add(*stream_, push(add_args_, AddArgs{y, x, n}));
}

void DeviceForward::to_host(float* host, const float* dev, int64_t n) {
    stream_->copy(host, dev, size_t(4 * n));
}

void DeviceForward::to_device(float* dev, const float* host, int64_t n) {
    stream_->copy(dev, host, size_t(4 * n));
}

void DeviceForward::step(TokenId token, int64_t pos, float* hidden_out, float* logits_out) {
    const HParams& hp = model_.hparams();
    const ArchSpec& spec = model_.arch();
    const KernelTable& kt = device_.kernels();
    const int64_t n_embd = hp.n_embd, hd = hp.head_dim, hdv = hp.head_dim_v;
    const int32_t n_group = hp.n_head / hp.n_head_kv;
    const int64_t elem = dtype_traits(kv_type_).block_bytes;
    gemv_args_.clear(), rms_args_.clear(), rope_args_.clear(), glu_args_.clear(), add_args_.clear(), scale_args_.clear();
    store_args_.clear(), attn_args_.clear();

    // Host side of the step: the token's embedding row, the RoPE tables of pos, the window's ring slots.
    float* embd = embd_host_.as<float>();
    const WeightMatrix& tok = model_.weights().tok_embd;
    dequantize_row(tok.type, tok.row(token), embd, n_embd);
    if (spec.scale_embeddings) {
        const float s = std::sqrt(float(n_embd));
        for (int64_t j = 0; j < n_embd; ++j) embd[j] *= s;
    }
    float* rope = rope_host_.as<float>();  // global cos | sin, local cos | sin
    rope_angles(pos, inv_freq_global_.data(), int32_t(hd), rope, rope + hd / 2);
    rope_angles(pos, inv_freq_local_.data(), int32_t(hd), rope + hd, rope + hd + hd / 2);
    auto* slots = window_slots_.as<int32_t>();
    int64_t n_window = 0;  // a model without a sliding window has no ring to index
    if (hp.n_swa > 0) {
        const int64_t win_lo = std::max<int64_t>(0, pos - hp.n_swa + 1);
        n_window = pos - win_lo + 1;
        BUTLER_ASSERT(n_window <= swa_cap_, "the sliding window does not fit its ring");
        for (int64_t i = 0; i < n_window; ++i) slots[i] = int32_t((win_lo + i) % swa_cap_);
    }

    float *x = x_.as<float>(), *xn = xn_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(), *v = v_.as<float>();
    float *attn = attn_.as<float>(), *o = o_.as<float>(), *gate = gate_.as<float>(), *up = up_.as<float>();
    to_device(x, embd, n_embd);

    for (int32_t l = 0; l < hp.n_layer; ++l) {
        const Layer& L = layers_[size_t(l)];
        const float* cs = rope + (L.swa ? hd : 0);

        rmsnorm(x, L.attn_norm, xn, 1, n_embd);
        if (pipeline_.wants_hidden(l)) {  // a TokenButler producer reads the attention input on the host
            to_host(xn_host_.as<float>(), xn, n_embd);
            stream_->synchronize();
            pipeline_.observe_hidden(l, pos, xn_host_.as<float>());
        }
        gemv(L.wq, xn, q);
        gemv(L.wk, xn, k);
        gemv(L.wv, xn, v);
        if (spec.qkv_bias) {
            add(q, L.bq, hp.n_embd_q());
            add(k, L.bk, hp.n_embd_k());
            add(v, L.bv, hp.n_embd_v());
        }
        if (spec.qk_norm) {
            rmsnorm(q, L.q_norm, q, hp.n_head, hd);
            rmsnorm(k, L.k_norm, k, hp.n_head_kv, hd);
        }
        const bool neox = spec.rope_style == RopeStyle::Neox;
        kt.rope(*stream_, push(rope_args_, RopeArgs{q, cs, cs + hd / 2, hp.n_head, int32_t(hd), neox}));
        kt.rope(*stream_, push(rope_args_, RopeArgs{k, cs, cs + hd / 2, hp.n_head_kv, int32_t(hd), neox}));
        kt.scale(*stream_, push(scale_args_, ScaleArgs{q, hp.n_embd_q(), hp.attn_scale}));

        if (L.swa) {
            const int64_t slot = pos % swa_cap_;
            for (int32_t g = 0; g < hp.n_head_kv; ++g) {
                uint8_t* k_row = L.k_ring.as<uint8_t>() + ((g * swa_cap_ + slot) * hd) * elem;
                uint8_t* v_row = L.v_ring.as<uint8_t>() + ((g * swa_cap_ + slot) * hdv) * elem;
                kt.store_row(*stream_, push(store_args_, StoreRowArgs{k + g * hd, k_row, uint32_t(kv_type_), hd}));
                kt.store_row(*stream_, push(store_args_, StoreRowArgs{v + g * hdv, v_row, uint32_t(kv_type_), hdv}));
            }
            for (int32_t g = 0; g < hp.n_head_kv; ++g) {
                const AttnPartialArgs a{q + int64_t(g) * n_group * hd,
                                        n_group,
                                        L.k_ring.as<uint8_t>() + g * swa_cap_ * hd * elem,
                                        L.v_ring.as<uint8_t>() + g * swa_cap_ * hdv * elem,
                                        uint32_t(kv_type_),
                                        int32_t(hd),
                                        int32_t(hdv),
                                        slots,
                                        n_window,
                                        attn + int64_t(g) * n_group * hdv,
                                        lse_.as<float>() + int64_t(g) * n_group,
                                        scores_.as<float>()};
                kt.attn_partial(*stream_, push(attn_args_, a));
            }
        } else {
            // The offload pipeline attends from the host: it needs this token's q, k and v there.
            to_host(q_host_.as<float>(), q, hp.n_embd_q());
            to_host(k_host_.as<float>(), k, hp.n_embd_k());
            to_host(v_host_.as<float>(), v, hp.n_embd_v());
            stream_->synchronize();
            pipeline_.store(l, pos, k_host_.as<float>(), v_host_.as<float>());
            pipeline_.attend(l, q_host_.as<float>(), 1, pos, attn_host_.as<float>());
            to_device(attn, attn_host_.as<float>(), int64_t(hp.n_head) * hdv);
        }

        gemv(L.wo, attn, o);
        if (spec.sandwich_norm) rmsnorm(o, L.attn_post_norm, o, 1, n_embd);
        add(x, o, n_embd);
        rmsnorm(x, L.ffn_norm, xn, 1, n_embd);
        gemv(L.gate, xn, gate);
        gemv(L.up, xn, up);
        kt.glu(*stream_, push(glu_args_, GluArgs{gate, up, hp.n_ff, spec.ffn_act == FfnAct::GeluTanh}));
        gemv(L.down, gate, o);
        if (spec.sandwich_norm) rmsnorm(o, L.ffn_post_norm, o, 1, n_embd);
        add(x, o, n_embd);
    }

    rmsnorm(x, output_norm_, xn, 1, n_embd);
    if (hidden_out) to_host(hidden_out, xn, n_embd);
    if (logits_out) {
        gemv(output_, xn, logits_.as<float>());
        to_host(logits_out, logits_.as<float>(), hp.n_vocab);
    }
    stream_->synchronize();
    if (logits_out && hp.final_logit_softcap > 0) {
        const float cap = hp.final_logit_softcap;
        for (int64_t j = 0; j < hp.n_vocab; ++j) logits_out[j] = cap * std::tanh(logits_out[j] / cap);
    }
}

}  // namespace butler
