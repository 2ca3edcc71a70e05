// SPDX-License-Identifier: MIT
#include "runtime/session.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "cpu_kernels/attention.h"
#include "cpu_kernels/ops.h"
#include "cpu_kernels/quant.h"
#include "offload/pipeline.h"
#include "predictor/tokenbutler.h"
#include "runtime/device_forward.h"
#include "runtime/status.h"

namespace butler {
namespace {

constexpr int64_t kVocabTile = 4096;  // output-projection rows dequantized per sgemm in target_logprobs
constexpr int64_t kLogitRows = 512;   // hidden rows per target_logprobs block

float softcap(float x, float cap) { return cap > 0 ? cap * std::tanh(x / cap) : x; }

// One row's log-sum-exp, argmax (the first on ties) and target logit, accumulated over tiles of the vocabulary.
struct OnlineLogits {
    double max = -std::numeric_limits<double>::infinity(), sum = 0, target = 0;
    TokenId argmax = -1;

    // l: the row's (uncapped) logits of vocabulary entries v0 .. v0 + nv - 1.
    void add_tile(const float* l, int64_t nv, int64_t v0, float cap, int64_t target_id) {
        double m = max;
        for (int64_t j = 0; j < nv; ++j) {
            const double x = softcap(l[j], cap);
            if (x > m) m = x, argmax = TokenId(v0 + j);
        }
        double s = sum * std::exp(max - m);
        for (int64_t j = 0; j < nv; ++j) s += std::exp(double(softcap(l[j], cap)) - m);
        max = m, sum = s;
        if (target_id >= v0 && target_id < v0 + nv) target = softcap(l[target_id - v0], cap);
    }
    double lse() const { return max + std::log(sum); }
};

void add_bias(float* x, const float* b, int64_t n) {
    for (int64_t j = 0; j < n; ++j) x[j] += b[j];
}


}  // namespace

struct Session::LayerCache {
    std::vector<uint8_t> k;  // (n_head_kv, cap, head_dim) in kv_type
    std::vector<uint8_t> v;  // (n_head_kv, cap, head_dim_v)
    int64_t cap = 0;
    bool swa = false;

    // Writes KV head g's K and V rows of token pos into its ring slot, converted to type.
    void store(DType type, int64_t g, int64_t pos, const float* k_row, const float* v_row, int64_t hd, int64_t hdv) {
        const int64_t slot = pos % cap, elem = dtype_traits(type).block_bytes;
        store_kv_row(type, k_row, k.data() + ((g * cap + slot) * hd) * elem, hd);
        store_kv_row(type, v_row, v.data() + ((g * cap + slot) * hdv) * elem, hdv);
    }
};

Session::~Session() = default;

Session::Session(std::shared_ptr<const Model> model, const SessionParams& params)
    : model_(std::move(model)), params_(params) {
    const HParams& hp = model_->hparams();
    if (params_.n_ctx <= 0) fail(Status::InvalidArg, "context size must be positive (got {})", params_.n_ctx);
    if (params_.n_ctx > hp.n_ctx_train)
        fail(Status::InvalidArg, "context of {} tokens exceeds the model's training context of {} tokens", params_.n_ctx,
             hp.n_ctx_train);
    if (params_.n_ubatch <= 0) fail(Status::InvalidArg, "n_ubatch must be positive (got {})", params_.n_ubatch);
    params_.n_ubatch = std::min(params_.n_ubatch, params_.n_ctx);
    if (params_.kv_type != DType::F16 && params_.kv_type != DType::BF16 && params_.kv_type != DType::F32)
        fail(Status::InvalidArg, "KV cache type {} is not supported (f16, bf16 or f32)", dtype_name(params_.kv_type));
    n_threads_ = std::max(1, omp_get_max_threads());

    const int64_t ub = params_.n_ubatch;
    const int64_t elem = dtype_traits(params_.kv_type).block_bytes;
    const int64_t swa_cap = std::min<int64_t>(params_.n_ctx, int64_t(hp.n_swa) + ub);  // a sliding-window ring
    if (params_.offload.enabled) {
        if (is_tokenbutler_selector(params_.offload.selector) && !params_.offload.predictor)
            params_.offload.predictor = load_predictor_for(params_.offload.selector, *model_);
        // What a GPU run keeps on the device besides the K/V slots: the weights and the sliding-window K/V (and, with
        // the device forward, its scratch: exactly what it allocates).
        uint64_t resident = model_->n_weight_bytes();
        for (int l = 0; l < hp.n_layer; ++l)
            if (hp.is_swa(l))
                resident += uint64_t(hp.n_head_kv * swa_cap * (hp.head_dim + hp.head_dim_v) * elem);
        const int64_t prefill_tokens = params_.offload.device_prefill ? ub : 0;
        params_.offload.prefill_tokens = prefill_tokens;
        if (params_.offload.device_prefill && !params_.offload.device_forward)
            fail(Status::Usage, "device prefill needs the device forward (the weights resident on the device)");
        if (params_.offload.device_forward)
            resident = DeviceForward::device_bytes(*model_, swa_cap, params_.kv_type, prefill_tokens);
        params_.offload.device_resident_bytes = resident;
        offload_ = std::make_unique<OffloadPipeline>(hp, params_.offload, params_.n_ctx, params_.kv_type);
        if (params_.offload.device_forward) {
            offload_->release_resident();
            device_forward_ =
                std::make_unique<DeviceForward>(*model_, *offload_, swa_cap, params_.kv_type, prefill_tokens);
        }
    }
    try {
        cache_.resize(static_cast<size_t>(hp.n_layer));
        for (int l = 0; l < hp.n_layer; ++l) {
            LayerCache& c = cache_[static_cast<size_t>(l)];
            c.swa = hp.is_swa(l);
            c.cap = c.swa ? swa_cap : params_.n_ctx;
            if (offload_ && offload_->offloaded(l)) c.cap = 0;  // these K/V live in the offload host store
            c.k.resize(static_cast<size_t>(hp.n_head_kv * c.cap * hp.head_dim * elem));
            c.v.resize(static_cast<size_t>(hp.n_head_kv * c.cap * hp.head_dim_v * elem));
        }
        x_.resize(static_cast<size_t>(ub * hp.n_embd));
        xn_.resize(x_.size());
        o_.resize(x_.size());
        q_.resize(static_cast<size_t>(ub * hp.n_embd_q()));
        k_.resize(static_cast<size_t>(ub * hp.n_embd_k()));
        v_.resize(static_cast<size_t>(ub * hp.n_embd_v()));
        attn_.resize(static_cast<size_t>(ub * hp.n_head * hp.head_dim_v));
        gate_.resize(static_cast<size_t>(ub * hp.n_ff));
        up_.resize(gate_.size());
        const int64_t n_group = hp.n_head / hp.n_head_kv;
        scores_.resize(static_cast<size_t>(n_threads_ * n_group * params_.n_ctx));
        partials_.resize(static_cast<size_t>(int64_t(n_threads_) * 8 * n_group * (hp.head_dim_v + 1)));
        chunk_attn_.reserve(n_threads_, static_cast<int32_t>(n_group), hp.head_dim, hp.head_dim_v);
        hidden_last_.resize(static_cast<size_t>(hp.n_embd));
        rope_cs_.resize(static_cast<size_t>(2 * ub * hp.head_dim));
        logits_tile_.resize(static_cast<size_t>(kLogitRows * kVocabTile));
        const int64_t max_cols = std::max({int64_t(hp.n_embd), int64_t(hp.n_ff), hp.n_embd_q(),
                                           int64_t(hp.n_head) * hp.head_dim_v});
        // Tiles hold a whole layer matrix, or kVocabTile rows of the output projection.
        int64_t tile_floats = kVocabTile * hp.n_embd;
        for (const LayerWeights& L : model_->weights().layers)
            for (const WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                tile_floats = std::max(tile_floats, std::min(m->n_rows, kVocabTile) * m->n_cols);
        mm_.reserve(tile_floats, kVocabTile, max_cols);
        mm_.float_activations = params_.float_activations;
        if (params_.offload.device_prefill) mm_.offload = device_forward_.get();
    } catch (const std::bad_alloc&) {
        fail(Status::Oom, "out of memory allocating the KV cache and scratch for a context of {} tokens", params_.n_ctx);
    }
    inv_freq_global_ = rope_inv_freq(hp.head_dim, hp.rope_base_global, hp.rope_freq_scale, hp.rope_freq_factors);
    inv_freq_local_ = rope_inv_freq(hp.head_dim, hp.rope_base_local, hp.rope_freq_scale, hp.rope_freq_factors);
}

uint64_t Session::kv_bytes() const {
    uint64_t n = 0;
    for (const LayerCache& c : cache_) n += c.k.size() + c.v.size();
    return n;
}

void Session::truncate(int32_t n) {
    if (n < 0 || n > n_past_) fail(Status::InvalidArg, "cannot truncate {} positions to {}", n_past_, n);
    if (n != 0 && n_past_ - n > params_.n_ubatch && model_->hparams().n_swa > 0)
        fail(Status::InvalidArg, "cannot rewind {} positions: sliding-window caches keep only {} positions beyond the window",
             n_past_ - n, params_.n_ubatch);
    n_past_ = n;
    if (offload_) offload_->truncate(n);
}

void Session::reset() {
    n_past_ = 0;
    if (offload_) offload_->truncate(0);
}

void Session::fill_synthetic_kv(int32_t n, uint64_t seed) {
    const HParams& hp = model_->hparams();
    if (n < 1 || n >= params_.n_ctx)
        fail(Status::InvalidArg, "{} synthetic positions do not leave room to decode in a context of {} tokens", n,
             params_.n_ctx);
    reset();
    const DType kv_type = params_.kv_type;
    const int64_t hd = hp.head_dim, hdv = hp.head_dim_v, n_kv = hp.n_head_kv;
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        LayerCache& cache = cache_[size_t(l)];
        const int64_t first = cache.cap > 0 ? std::max<int64_t>(0, n - cache.cap) : 0;  // a ring keeps the last cap
#pragma omp parallel
        {
            std::vector<float> k(size_t(n_kv * hd)), v(size_t(n_kv * hdv));  // per thread, outside any decode loop
#pragma omp for schedule(static)
            for (int64_t pos = first; pos < n; ++pos) {
                // splitmix64 per (seed, layer, position): the same K/V whatever the thread count.
                uint64_t state = seed ^ (uint64_t(l) << 40) ^ uint64_t(pos) * 0x9E3779B97F4A7C15ull;
                auto uniform   = [&state] {
                    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
                    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                    z ^= z >> 31;
                    return float(double(z >> 11) * 0x1.0p-53 * 2.0 - 1.0) * 1.7320508f;  // U(-sqrt3, sqrt3)
                };
                for (float& x : k) x = uniform();
                for (float& x : v) x = uniform();
                if (cache.cap == 0 && offload_) {
                    offload_->store(l, pos, k.data(), v.data());
                    continue;
                }
                for (int64_t g = 0; g < n_kv; ++g)
                    cache.store(kv_type, g, pos, k.data() + g * hd, v.data() + g * hdv, hd, hdv);
            }
        }
    }
    if (offload_) offload_->mark_prefilled(n);
    n_past_ = n;
    rings_on_device_ = false;  // the host rings hold the synthetic K/V now
}

void Session::rings_to_device(bool device) {
    if (!device_forward_ || rings_on_device_ == device) return;
    for (int32_t l = 0; l < model_->hparams().n_layer; ++l) {
        LayerCache& c = cache_[size_t(l)];
        if (c.cap == 0) continue;  // offloaded: the host store is the only copy
        if (device) device_forward_->upload_ring(l, c.k.data(), c.v.data());
        else device_forward_->download_ring(l, c.k.data(), c.v.data());
    }
    rings_on_device_ = device;
}

void Session::check_tokens(std::span<const TokenId> tokens) const {
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n_past_ + n > params_.n_ctx)
        fail(Status::InvalidArg, "{} tokens at position {} exceed the context of {} tokens (-c/--ctx)", n, n_past_,
             params_.n_ctx);
    const int32_t n_vocab = model_->hparams().n_vocab;
    for (TokenId t : tokens)
        if (t < 0 || t >= n_vocab) fail(Status::InvalidArg, "token id {} is outside the vocabulary (0..{})", t, n_vocab - 1);
}

void Session::eval(std::span<const TokenId> tokens, std::span<const int32_t> out_rows, float* hidden_out) {
    const HParams& hp = model_->hparams();
    const int64_t n = static_cast<int64_t>(tokens.size());
    check_tokens(tokens);
    size_t next_row = 0;
    for (int64_t c0 = 0; c0 < n; c0 += params_.n_ubatch) {
        const int64_t n_chunk = std::min<int64_t>(params_.n_ubatch, n - c0);
        if (n_chunk == 1 && device_step()) {
            rings_to_device(true);
            const bool want_row = next_row < out_rows.size() && out_rows[next_row] == c0;
            device_forward_->step(tokens[size_t(c0)], n_past_,
                                  want_row ? hidden_out + static_cast<int64_t>(next_row) * hp.n_embd : nullptr, nullptr);
            n_past_ += 1;
            next_row += want_row ? 1 : 0;
            continue;
        }
        rings_to_device(false);
        forward_chunk(tokens.data() + c0, n_chunk, n_past_);
        n_past_ += static_cast<int32_t>(n_chunk);
        // Final norm of the rows the caller asked for in this chunk.
        while (next_row < out_rows.size() && out_rows[next_row] < c0 + n_chunk) {
            const int64_t r = out_rows[next_row];
            BUTLER_ASSERT(r >= c0, "out_rows must be ascending");
            rmsnorm(x_.data() + (r - c0) * hp.n_embd, model_->weights().output_norm.data,
                    hidden_out + static_cast<int64_t>(next_row) * hp.n_embd, hp.n_embd, hp.rms_eps);
            ++next_row;
        }
    }
    BUTLER_ASSERT(next_row == out_rows.size(), "out_rows index out of range");
}

void Session::forward_chunk(const TokenId* tokens, int64_t n_tok, int64_t pos0) {
    const HParams& hp = model_->hparams();
    const ArchSpec& spec = model_->arch();
    const ModelWeights& w = model_->weights();
    const int64_t n_embd = hp.n_embd, hd = hp.head_dim, hdv = hp.head_dim_v;
    const int32_t n_group = hp.n_head / hp.n_head_kv;
    const DType kv_type = params_.kv_type;
    const int64_t elem = dtype_traits(kv_type).block_bytes;

    const float embd_scale = spec.scale_embeddings ? std::sqrt(static_cast<float>(n_embd)) : 1.0f;
#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
    for (int64_t i = 0; i < n_tok; ++i) {
        float* x = x_.data() + i * n_embd;
        dequantize_row(w.tok_embd.type, w.tok_embd.row(tokens[i]), x, n_embd);
        if (embd_scale != 1.0f)
            for (int64_t j = 0; j < n_embd; ++j) x[j] *= embd_scale;
    }

    // RoPE tables of the chunk's positions: [0] the global base, [1] the local (sliding-window) base.
    for (int64_t i = 0; i < n_tok; ++i) {
        float* global = rope_cs_.data() + i * hd;
        float* local = rope_cs_.data() + (params_.n_ubatch + i) * hd;
        rope_angles(pos0 + i, inv_freq_global_.data(), int32_t(hd), global, global + hd / 2);
        rope_angles(pos0 + i, inv_freq_local_.data(), int32_t(hd), local, local + hd / 2);
    }

    for (int l = 0; l < hp.n_layer; ++l) {
        const LayerWeights& L = w.layers[static_cast<size_t>(l)];
        LayerCache& cache = cache_[static_cast<size_t>(l)];
        const float* rope_cs = rope_cs_.data() + (hp.is_swa(l) ? 1 : 0) * params_.n_ubatch * hd;

        // --- attention ---
#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
        for (int64_t i = 0; i < n_tok; ++i)
            rmsnorm(x_.data() + i * n_embd, L.attn_norm.data, xn_.data() + i * n_embd, n_embd, hp.rms_eps);
        if (n_tok == 1 && offload_ && offload_->wants_hidden(l)) offload_->observe_hidden(l, pos0, xn_.data());
        matmul_many({&L.wq, &L.wk, &L.wv}, xn_.data(), n_tok, {q_.data(), k_.data(), v_.data()}, mm_);

#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
        for (int64_t i = 0; i < n_tok; ++i) {
            const int64_t pos = pos0 + i;
            const float* cs = rope_cs + i * hd;  // cos (hd/2) then sin (hd/2) of this position
            if (spec.qkv_bias) {
                add_bias(q_.data() + i * hp.n_embd_q(), L.bq.data, hp.n_embd_q());
                add_bias(k_.data() + i * hp.n_embd_k(), L.bk.data, hp.n_embd_k());
                add_bias(v_.data() + i * hp.n_embd_v(), L.bv.data, hp.n_embd_v());
            }
            for (int32_t h = 0; h < hp.n_head; ++h) {
                float* q = q_.data() + i * hp.n_embd_q() + h * hd;
                if (spec.qk_norm) rmsnorm(q, L.q_norm.data, q, hd, hp.rms_eps);
                if (spec.rope_style == RopeStyle::Neox) rope_neox(q, int32_t(hd), cs, cs + hd / 2);
                else rope_normal(q, int32_t(hd), cs, cs + hd / 2);
                for (int64_t d = 0; d < hd; ++d) q[d] *= hp.attn_scale;
            }
            for (int32_t g = 0; g < hp.n_head_kv; ++g) {
                float* k = k_.data() + i * hp.n_embd_k() + g * hd;
                if (spec.qk_norm) rmsnorm(k, L.k_norm.data, k, hd, hp.rms_eps);
                if (spec.rope_style == RopeStyle::Neox) rope_neox(k, int32_t(hd), cs, cs + hd / 2);
                else rope_normal(k, int32_t(hd), cs, cs + hd / 2);
                if (cache.cap == 0) continue;  // an offloaded layer: K/V go to the host store below
                cache.store(kv_type, g, pos, k, v_.data() + i * hp.n_embd_v() + g * hdv, hd, hdv);
            }
            if (cache.cap == 0) offload_->store(l, pos, k_.data() + i * hp.n_embd_k(), v_.data() + i * hp.n_embd_v());
        }

        if (tap_) tap_(LayerTap{l, pos0, n_tok, xn_.data(), q_.data(), k_.data()});

        const KvLayerView kv{kv_type, cache.k.data(), cache.v.data(), hp.n_head_kv, cache.cap,
                             int32_t(hd),  int32_t(hdv),   elem};
        const int64_t n_swa = cache.swa ? hp.n_swa : 0;
        if (attention_override_ && attention_override_(LayerAttentionIo{l, pos0, n_tok, n_swa, xn_.data(), q_.data(),
                                                                        k_.data(), v_.data(), attn_.data()})) {
            // the override wrote attn_
        } else if (cache.cap == 0) {
            offload_->attend(l, q_.data(), n_tok, pos0, attn_.data());
        } else if (n_tok >= kBlockedAttnMinTokens) {
            attend_chunk(q_.data(), n_tok, pos0, hp.n_head, kv, n_swa, attn_.data(), chunk_attn_);
        } else {
            attend_split(q_.data(), n_tok, pos0, hp.n_head, kv, n_swa, attn_.data(), partials_.data(),
                         int64_t(n_threads_) * 8, scores_.data(), int64_t(n_group) * params_.n_ctx);
        }
        matmul(L.wo, attn_.data(), n_tok, o_.data(), mm_);
#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
        for (int64_t i = 0; i < n_tok; ++i) {
            float* o = o_.data() + i * n_embd;
            if (spec.sandwich_norm) rmsnorm(o, L.attn_post_norm.data, o, n_embd, hp.rms_eps);
            float* x = x_.data() + i * n_embd;
            for (int64_t j = 0; j < n_embd; ++j) x[j] += o[j];
            rmsnorm(x, L.ffn_norm.data, xn_.data() + i * n_embd, n_embd, hp.rms_eps);
        }

        // --- feed-forward ---
        matmul_many({&L.ffn_gate, &L.ffn_up}, xn_.data(), n_tok, {gate_.data(), up_.data()}, mm_);
#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
        for (int64_t i = 0; i < n_tok; ++i) {
            float* g = gate_.data() + i * hp.n_ff;
            const float* u = up_.data() + i * hp.n_ff;
            if (spec.ffn_act == FfnAct::GeluTanh) gelu_tanh_mul(g, u, hp.n_ff);
            else silu_mul(g, u, hp.n_ff);
        }
        matmul(L.ffn_down, gate_.data(), n_tok, o_.data(), mm_);
#pragma omp parallel for schedule(static) if (n_tok > 1)  // one token: a fork/join costs more than the work
        for (int64_t i = 0; i < n_tok; ++i) {
            float* o = o_.data() + i * n_embd;
            if (spec.sandwich_norm) rmsnorm(o, L.ffn_post_norm.data, o, n_embd, hp.rms_eps);
            float* x = x_.data() + i * n_embd;
            for (int64_t j = 0; j < n_embd; ++j) x[j] += o[j];
        }
    }
}

void Session::logits(const float* hidden, int64_t n_rows, float* out) {
    const HParams& hp = model_->hparams();
    const WeightMatrix& wout = model_->weights().output;
    for (int64_t r = 0; r < n_rows; ++r) {
        float* y = out + r * wout.n_rows;
        matmul(wout, hidden + r * hp.n_embd, 1, y, mm_);
        if (hp.final_logit_softcap > 0)
            for (int64_t j = 0; j < wout.n_rows; ++j) y[j] = softcap(y[j], hp.final_logit_softcap);
    }
}

void Session::target_logprobs(const float* hidden, int64_t n_rows, const TokenId* targets, double* out,
                              TokenId* argmax_out) {
    const HParams& hp = model_->hparams();
    const WeightMatrix& wout = model_->weights().output;
    std::vector<OnlineLogits> row(static_cast<size_t>(kLogitRows));  // small, outside any decode loop
    for (int64_t r0 = 0; r0 < n_rows; r0 += kLogitRows) {
        const int64_t nr = std::min(kLogitRows, n_rows - r0);
        std::fill(row.begin(), row.end(), OnlineLogits{});
        for (int64_t v0 = 0; v0 < wout.n_rows; v0 += kVocabTile) {
            const int64_t nv = std::min(kVocabTile, wout.n_rows - v0);
            dequantize_rows(wout, v0, nv, mm_.tile.data());
            sgemm_nt(nr, nv, hp.n_embd, hidden + r0 * hp.n_embd, hp.n_embd, mm_.tile.data(), hp.n_embd,
                     logits_tile_.data(), nv);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < nr; ++r)
                row[size_t(r)].add_tile(logits_tile_.data() + r * nv, nv, v0, hp.final_logit_softcap, targets[r0 + r]);
        }
        for (int64_t r = 0; r < nr; ++r) {
            out[r0 + r] = row[size_t(r)].target - row[size_t(r)].lse();
            if (argmax_out) argmax_out[r0 + r] = row[size_t(r)].argmax;
        }
    }
}

void Session::compare_rows(const float* hidden, const float* hidden_ref, int64_t n_rows, const TokenId* targets,
                           RowComparison* out) {
    const HParams& hp = model_->hparams();
    const WeightMatrix& wout = model_->weights().output;
    const float cap = hp.final_logit_softcap;
    // Both runs accumulate as target_logprobs does; KL also needs, per row, sum exp(l_ref - max_ref) (l_ref - l),
    // which gives KL = that / sum_ref - lse_ref + lse.
    std::vector<OnlineLogits> run(static_cast<size_t>(kLogitRows)), ref(static_cast<size_t>(kLogitRows));  // outside any decode loop
    std::vector<double> cross(static_cast<size_t>(kLogitRows));
    std::vector<float> ref_tile(logits_tile_.size());
    for (int64_t r0 = 0; r0 < n_rows; r0 += kLogitRows) {
        const int64_t nr = std::min(kLogitRows, n_rows - r0);
        std::fill(run.begin(), run.end(), OnlineLogits{});
        std::fill(ref.begin(), ref.end(), OnlineLogits{});
        std::fill(cross.begin(), cross.end(), 0.0);
        for (int64_t v0 = 0; v0 < wout.n_rows; v0 += kVocabTile) {
            const int64_t nv = std::min(kVocabTile, wout.n_rows - v0);
            dequantize_rows(wout, v0, nv, mm_.tile.data());
            sgemm_nt(nr, nv, hp.n_embd, hidden + r0 * hp.n_embd, hp.n_embd, mm_.tile.data(), hp.n_embd,
                     logits_tile_.data(), nv);
            sgemm_nt(nr, nv, hp.n_embd, hidden_ref + r0 * hp.n_embd, hp.n_embd, mm_.tile.data(), hp.n_embd,
                     ref_tile.data(), nv);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < nr; ++r) {
                const float* l  = logits_tile_.data() + r * nv;
                const float* lr = ref_tile.data() + r * nv;
                OnlineLogits& b = ref[size_t(r)];
                run[size_t(r)].add_tile(l, nv, v0, cap, targets[r0 + r]);
                const double prev_max = b.max;
                b.add_tile(lr, nv, v0, cap, targets[r0 + r]);
                double c = cross[size_t(r)] * std::exp(prev_max - b.max);
                for (int64_t j = 0; j < nv; ++j) {
                    const double x = softcap(l[j], cap), y = softcap(lr[j], cap);
                    c += std::exp(y - b.max) * (y - x);
                }
                cross[size_t(r)] = c;
            }
        }
        for (int64_t r = 0; r < nr; ++r) {
            const OnlineLogits& a = run[size_t(r)];
            const OnlineLogits& b = ref[size_t(r)];
            RowComparison& o = out[r0 + r];
            o.logprob     = a.target - a.lse();
            o.logprob_ref = b.target - b.lse();
            o.kl          = std::max(0.0, cross[size_t(r)] / b.sum - b.lse() + a.lse());
            o.argmax      = a.argmax;
            o.argmax_ref  = b.argmax;
        }
    }
}

void Session::eval_last(std::span<const TokenId> tokens, float* logits_out) {
    BUTLER_ASSERT(!tokens.empty(), "eval_last needs at least one token");
    if (tokens.size() == 1 && device_step()) {  // the logits too come from the device
        check_tokens(tokens);
        rings_to_device(true);
        device_forward_->step(tokens[0], n_past_, nullptr, logits_out);
        n_past_ += 1;
        return;
    }
    const int32_t last = static_cast<int32_t>(tokens.size() - 1);
    eval(tokens, std::span<const int32_t>(&last, 1), hidden_last_.data());
    logits(hidden_last_.data(), 1, logits_out);
}

}  // namespace butler
