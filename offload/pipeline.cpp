// SPDX-License-Identifier: MIT
#include "offload/pipeline.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include "cpu_kernels/lse_merge.h"
#include "predictor/device_predictor.h"
#include "predictor/tokenbutler.h"
#include "runtime/status.h"

namespace butler {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

OffloadPipeline::OffloadPipeline(const HParams& hp, const OffloadConfig& config, int64_t n_ctx, DType kv_type)
    : config_(config),
      n_head_(hp.n_head),
      n_head_kv_(hp.n_head_kv),
      n_group_(hp.n_head / hp.n_head_kv),
      head_dim_(hp.head_dim),
      head_dim_v_(hp.head_dim_v),
      n_ctx_(n_ctx) {
    if (config_.budget_tokens <= 0 && !(config_.budget_fraction > 0))
        fail(Status::Usage, "the offload budget must be positive (--budget N or P%)");
    if (config_.sinks < 0) fail(Status::Usage, "--sinks must be >= 0 (got {})", config_.sinks);
    if (config_.interval < 1) fail(Status::Usage, "--interval must be >= 1 (got {})", config_.interval);
    int32_t n_stored = 0;
    store_index_.assign(size_t(hp.n_layer), -1);
    for (int32_t l = 0; l < hp.n_layer; ++l)
        if (!hp.is_swa(l)) store_index_[size_t(l)] = n_stored++;
    if (n_stored == 0) fail(Status::InvalidArg, "the model has no global-attention layer to offload");

    std::string spec = config_.device;
    if (config_.device_memory > 0) {
        const bool emu = spec.rfind("emu", 0) == 0, cuda = spec.rfind("cuda", 0) == 0;
        if (!emu && !cuda)
            fail(Status::Usage, "--device-memory caps the emu and cuda devices only (got --device {})", spec);
        spec += fmt::format("{}mem={}", spec == "emu" || spec == "cuda" ? ":" : ",", config_.device_memory);
    }
    selector_ = make_selector(config_.selector, n_stored, hp.n_head_kv, n_ctx, hp.head_dim, config_.predictor,
                              hp.n_head / hp.n_head_kv);
    for (int32_t l = 0; l < hp.n_layer; ++l)
        if (store_index_[size_t(l)] >= 0) stored_model_layer_.push_back(l);
    exact_layer_.assign(size_t(n_stored), config_.attn == AttnMode::Exact);
    for (int32_t l : config_.dense_layers) {
        if (l < 0 || l >= hp.n_layer || store_index_[size_t(l)] < 0)
            fail(Status::Usage, "--dense-layers: layer {} is not one the offload runtime sparsifies ({})", l,
                 fmt::join(stored_model_layer_, ", "));
        exact_layer_[size_t(store_index_[size_t(l)])] = 1;
    }
    if (const TokenButlerPredictor* pred = selector_->predictor()) {
        const PredictorShape& ps = pred->shape();
        if (ps.n_layer != hp.n_layer || ps.n_embd != hp.n_embd || ps.n_head != hp.n_head || ps.head_dim != hp.head_dim)
            fail(Status::Format, "the predictor's shape ({} layers, {} wide, {} heads x {}) is not the model's",
                 ps.n_layer, ps.n_embd, ps.n_head, ps.head_dim);
        producer_consumers_.resize(size_t(hp.n_layer));
        for (int32_t layer = 0; layer < n_stored; ++layer) {
            const int32_t ml = stored_model_layer_[size_t(layer)];
            if (ml >= 1) producer_consumers_[size_t(PredictorShape::producer_of(ml, ps.group))].push_back(layer);
        }
        imp_q_.resize(size_t(int64_t(n_stored) * hp.n_head * ps.d_dash));
        imp_q_pos_.assign(size_t(n_stored), -1);
        pred_out_.resize(size_t(ps.q_width()));
        pred_scratch_.resize(size_t(ps.n_embd + ps.intdim));
    }
    device_   = make_device(spec);
    resident_ = device_->reserve(config_.device_resident_bytes,
                                 "the model's weights and the sliding-window layers' K/V (resident on a GPU)");
    const bool on_device = config_.select_on == SelectOn::Device ||
                           (config_.select_on == SelectOn::Auto && device_->name().rfind("cuda", 0) == 0);
    if (on_device && selector_->predictor() == nullptr && config_.select_on == SelectOn::Device)
        fail(Status::Usage, "--select-on device: the {} selector has no device path (tokenbutler has one)",
             selector_->name());
    if (on_device && selector_->predictor() != nullptr) {
        // What selection keeps on the device (the importance keys: n_stored x n_head_kv x n_ctx x d' halves) may
        // not fit beside the weights and slots; asked for explicitly that is an error, by default the host selects.
        try {
            device_predictor_  = std::make_unique<DevicePredictor>(*selector_->predictor(), *device_);
            selects_on_device_ = selector_->bind_device(*device_);
        } catch (const Error& e) {
            if (e.status() != Status::Oom || config_.select_on == SelectOn::Device) throw;
            device_predictor_.reset();
            select_on_device_note_ = e.what();
        }
    }

    KvStoreShape shape;
    shape.n_layer    = n_stored;
    shape.n_head_kv  = hp.n_head_kv;
    shape.head_dim   = hp.head_dim;
    shape.head_dim_v = hp.head_dim_v;
    // Stream mode copies whole layers: large pages make each (layer, KV head) a few long copies.
    shape.page_tok   = config_.attn == AttnMode::Stream ? kStreamPageTok : config_.page_tok;
    shape.max_tok    = n_ctx;
    shape.type       = kv_type;
    store_           = std::make_unique<HostKvStore>(*device_, shape);
    store_->reserve(n_ctx);

    // The pool holds the largest budget any step of this context can ask for (dense: everything); in stream mode
    // two staging layers of the whole context.
    const bool stream = config_.attn == AttnMode::Stream;
    if (stream && config_.selector != "dense")
        fail(Status::Usage, "--attn stream is dense attention over the whole K/V; it takes no selector (got '{}')",
             config_.selector);
    const int64_t n_slots = config_.selector == "dense" ? n_ctx : config_.budget_at(n_ctx);
    const int32_t n_pool_layers = stream ? std::min(2, n_stored) : n_stored;
    stage_owner_.assign(size_t(n_pool_layers), {-1, -1});
    slots_   = std::make_unique<DeviceKvSlots>(*device_, n_pool_layers, hp.n_head_kv, hp.head_dim, hp.head_dim_v,
                                             kv_type, int32_t(n_slots), n_ctx);
    engine_  = std::make_unique<CopyEngine>(*device_, *store_, *slots_, config_.copy_path);
    compute_ = device_->create_stream();

    const size_t kv = size_t(hp.n_head_kv);
    wanted_.resize(kv);
    complement_.resize(kv);
    for (size_t g = 0; g < kv; ++g) {
        wanted_[g].reserve(size_t(n_ctx));
        complement_[g].reserve(size_t(n_ctx));
    }
    wanted_next_.resize(kv);
    for (auto& w : wanted_next_) w.reserve(size_t(n_ctx));
    prefetched_pos_.assign(size_t(n_stored), -1);
    picks_.resize(size_t(n_stored) * kv);
    for (auto& p : picks_) p.reserve(size_t(n_ctx));
    picked_pos_.assign(size_t(n_stored), -1);
    obs_q_.resize(size_t(int64_t(n_stored) * kObsWindow * hp.n_head * hp.head_dim));
    obs_count_.assign(size_t(n_stored), 0);
    obs_end_.assign(size_t(n_stored), 0);
    tasks_.resize(kv);
    q_dev_        = device_->alloc(sizeof(float) * kv * size_t(n_group_ * head_dim_), MemKind::PinnedHost);
    slot_ids_dev_ = device_->alloc(sizeof(int32_t) * kv * size_t(n_slots), MemKind::PinnedHost);
    o_dev_        = device_->alloc(sizeof(float) * kv * size_t(n_group_ * head_dim_v_), MemKind::PinnedHost);
    lse_dev_      = device_->alloc(sizeof(float) * kv * size_t(n_group_), MemKind::PinnedHost);
    dev_scores_   = device_->alloc(sizeof(float) * kv * size_t(n_group_ * n_slots), MemKind::Device);
    o_cpu_.resize(kv * size_t(n_group_ * head_dim_v_));
    lse_cpu_.resize(kv * size_t(n_group_));
    cpu_scratch_.resize(kv);
    for (auto& s : cpu_scratch_) s.reserve(n_ctx, n_group_, head_dim_v_);
    n_threads_ = std::max(1, omp_get_max_threads());
    dense_scores_.resize(size_t(int64_t(n_threads_) * n_group_ * n_ctx));
    chunk_attn_.reserve(n_threads_, n_group_, head_dim_, head_dim_v_);
    if (config_.device_prefill && config_.prefill_tokens > 0) {
        const size_t ub = size_t(config_.prefill_tokens), heads = size_t(n_head_);
        pre_q_dev_    = device_->alloc(sizeof(float) * ub * heads * size_t(head_dim_), MemKind::Device);
        pre_o_dev_    = device_->alloc(sizeof(float) * ub * heads * size_t(head_dim_v_), MemKind::Device);
        pre_lse_dev_  = device_->alloc(sizeof(float) * ub * heads, MemKind::Device);
        pre_q_host_   = device_->alloc(pre_q_dev_.n_bytes(), MemKind::PinnedHost);
        pre_o_host_   = device_->alloc(pre_o_dev_.n_bytes(), MemKind::PinnedHost);
        pre_slot_ids_ = device_->alloc(sizeof(int32_t) * size_t(n_slots), MemKind::PinnedHost);
        std::iota(pre_slot_ids_.as<int32_t>(), pre_slot_ids_.as<int32_t>() + n_slots, 0);
        pre_args_.resize(2 * kv);
        for (auto& e : pre_done_) e = device_->create_event();
    }
}

OffloadPipeline::~OffloadPipeline() {
    if (compute_) compute_->synchronize();
    if (engine_) engine_->synchronize();
}

const OffloadStats& OffloadPipeline::stats() const {
    stats_.copy = engine_->stats();
    return stats_;
}

void OffloadPipeline::reset_stats() {
    stats_ = {};
    engine_->reset_stats();
}

void OffloadPipeline::store(int32_t model_layer, int64_t pos, const float* k, const float* v) {
    const int32_t layer = store_index_[size_t(model_layer)];
    for (int32_t g = 0; g < n_head_kv_; ++g)
        store_->write(layer, g, pos, k + int64_t(g) * head_dim_, v + int64_t(g) * head_dim_v_);
}

void OffloadPipeline::truncate(int64_t n) {
    compute_->synchronize();
    engine_->synchronize();
    store_->truncate(n);
    slots_->invalidate_from(n);
    selector_->reset(n);
    prefill_end_ = -1;
    std::fill(prefetched_pos_.begin(), prefetched_pos_.end(), -1);
    std::fill(picked_pos_.begin(), picked_pos_.end(), -1);
    std::fill(imp_q_pos_.begin(), imp_q_pos_.end(), -1);
    std::fill(obs_count_.begin(), obs_count_.end(), 0);
    std::fill(obs_end_.begin(), obs_end_.end(), 0);
    std::fill(stage_owner_.begin(), stage_owner_.end(), std::pair<int32_t, int64_t>{-1, -1});
}

void OffloadPipeline::mark_prefilled(int64_t n) {
    for (int32_t l = 0; l < store_->shape().n_layer; ++l) store_->commit(l, 0, n);
    prefill_end_ = n;
}

int32_t OffloadPipeline::slot_layer(int32_t layer, int64_t pos) {
    if (config_.attn != AttnMode::Stream) return layer;
    const int32_t stage = layer % int32_t(stage_owner_.size());
    if (stage_owner_[size_t(stage)] != std::pair<int32_t, int64_t>{layer, pos}) {
        slots_->invalidate_layer(stage);
        stage_owner_[size_t(stage)] = {layer, pos};
    }
    return stage;
}

void OffloadPipeline::attend(int32_t model_layer, const float* q, int64_t n_tok, int64_t pos0, float* out) {
    const int32_t layer = store_index_[size_t(model_layer)];
    store_->commit(layer, pos0, pos0 + n_tok);
    // Every offloaded layer sees the same chunk; the first one decides whether it is prefill.
    if (layer == 0) {
        if (n_tok > 1 || prefill_end_ < 0) prefill_end_ = pos0 + n_tok;
    }
    const bool sparse = n_tok == 1 && prefill_end_ >= 0 && pos0 > prefill_end_;
    if (sparse) {
        attend_sparse(layer, q, pos0, out);
        return;
    }
    attend_dense(layer, q, n_tok, pos0, out);
    if (!(n_tok == 1 && pos0 == prefill_end_)) {  // a prompt chunk (not the first decode token): keep its last queries
        const int64_t row = int64_t(n_head_) * head_dim_;
        float* buf        = obs_q_.data() + int64_t(layer) * kObsWindow * row;
        int32_t& count    = obs_count_[size_t(layer)];
        if (obs_end_[size_t(layer)] != pos0) count = 0;  // not contiguous with what we kept: start over
        const int64_t take = std::min<int64_t>(n_tok, kObsWindow);
        const int64_t keep = std::min<int64_t>(count, kObsWindow - take);
        std::memmove(buf, buf + (count - keep) * row, sizeof(float) * size_t(keep * row));
        std::memcpy(buf + keep * row, q + (n_tok - take) * row, sizeof(float) * size_t(take * row));
        count                   = int32_t(keep + take);
        obs_end_[size_t(layer)] = pos0 + n_tok;
    }
}

void OffloadPipeline::attend_prefill_device(int32_t layer, const float* q, int64_t n_tok, int64_t pos0,
                                           float* out) {
    const KernelTable& kt = device_->kernels();
    const int32_t pool    = slot_layer(layer, pos0);
    slots_->invalidate_layer(pool);
    const int64_t n_keys  = pos0 + n_tok;
    const int32_t n_bufs  = slots_->n_slots() >= 2 ? 2 : 1;
    const int32_t block   = slots_->n_slots() / n_bufs;
    const size_t q_bytes  = sizeof(float) * size_t(n_tok * n_head_ * head_dim_);
    const size_t o_bytes  = sizeof(float) * size_t(n_tok * n_head_ * head_dim_v_);
    std::memcpy(pre_q_host_.data(), q, q_bytes);
    compute_->copy(pre_q_dev_.data(), pre_q_host_.data(), q_bytes);
    const DType kv_type = store_->shape().type;
    int64_t b = 0;
    for (int64_t t0 = 0; t0 < n_keys; t0 += block, ++b) {
        const int32_t half = int32_t(b % n_bufs), n = int32_t(std::min<int64_t>(block, n_keys - t0));
        // The block n_bufs back read these slots and arguments: its attention must have run before they change.
        if (b >= n_bufs) pre_done_[half]->synchronize();
        for (int32_t g = 0; g < n_head_kv_; ++g) engine_->fetch_range(layer, g, int32_t(t0), n, half * block, pool);
        engine_->finish_layer(pool);
        engine_->make_wait(*compute_, pool);
        for (int32_t g = 0; g < n_head_kv_; ++g) {
            PrefillAttnArgs& a = pre_args_[size_t(half * n_head_kv_ + g)];
            a = PrefillAttnArgs{pre_q_dev_.as<float>() + int64_t(g) * n_group_ * head_dim_,
                                int64_t(n_head_) * head_dim_,
                                n_tok,
                                pos0,
                                n_group_,
                                slots_->k_slot(pool, g, 0),
                                slots_->v_slot(pool, g, 0),
                                uint32_t(kv_type),
                                head_dim_,
                                head_dim_v_,
                                pre_slot_ids_.as<int32_t>() + half * block,
                                n,
                                t0,
                                pre_o_dev_.as<float>() + int64_t(g) * n_group_ * head_dim_v_,
                                int64_t(n_head_) * head_dim_v_,
                                pre_lse_dev_.as<float>() + int64_t(g) * n_group_,
                                n_head_,
                                b > 0};
            kt.prefill_attn(*compute_, &a);
        }
        compute_->record(*pre_done_[half]);
        ++stats_.prefill_blocks;
    }
    compute_->copy(pre_o_host_.data(), pre_o_dev_.data(), o_bytes);
    compute_->synchronize();
    std::memcpy(out, pre_o_host_.data(), o_bytes);
}

void OffloadPipeline::attend_dense(int32_t layer, const float* q, int64_t n_tok, int64_t pos0, float* out) {
    if (n_tok > 1 && n_tok <= config_.prefill_tokens && !pre_args_.empty()) {
        attend_prefill_device(layer, q, n_tok, pos0, out);
        ++stats_.dense_steps;
        return;
    }
    const PagedKvView kv  = store_->view(layer);
    // Prompt chunks take the plain runtime's blocked kernel (same blocks, same order), so prefill through the
    // pipeline computes exactly what the plain runtime computes; single tokens keep the per-task kernel.
    if (n_tok >= kBlockedAttnMinTokens) {
        attend_chunk(q, n_tok, pos0, n_head_, kv, 0, out, chunk_attn_);
        ++stats_.dense_steps;
        return;
    }
    const int64_t n_tasks = n_tok * n_head_kv_;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
        const int64_t i = task / n_head_kv_;
        const int32_t g = int32_t(task % n_head_kv_);
        float* scores   = dense_scores_.data() + int64_t(omp_get_thread_num()) * n_group_ * n_ctx_;
        attend_group_range(q + i * n_head_ * head_dim_ + int64_t(g) * n_group_ * head_dim_, n_group_, kv, g, 0,
                           pos0 + i, out + i * n_head_ * head_dim_v_ + int64_t(g) * n_group_ * head_dim_v_, nullptr,
                           scores);
    }
    ++stats_.dense_steps;
}

void OffloadPipeline::select_layer(int32_t layer, const float* q, int64_t pos, std::vector<std::vector<int32_t>>& out) {
    const int64_t n      = pos + 1;
    const int64_t budget = config_.budget_at(n);
    // Between predictions each (layer, KV head) keeps its last picks; sinks and window follow the current step.
    const bool fresh = picked_pos_[size_t(layer)] < 0 || prediction_due(pos);
    const TokenButlerPredictor* pred = selector_->predictor();
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        SelectionRequest r;
        r.layer       = layer;
        r.g           = g;
        r.n_tok       = n;
        r.q           = q ? q + int64_t(g) * n_group_ * head_dim_ : nullptr;
        r.n_group     = n_group_;
        r.store       = store_.get();
        r.budget      = budget;
        r.sinks       = config_.sinks;
        r.window      = config_.window_for(budget);
        r.n_head      = n_head_;
        r.n_obs       = obs_count_[size_t(layer)];
        r.obs_q       = obs_q_.data() + int64_t(layer) * kObsWindow * n_head_ * head_dim_;
        r.obs_pos0    = obs_end_[size_t(layer)] - r.n_obs;
        r.model_layer = stored_model_layer_[size_t(layer)];
        r.neighbours  = config_.neighbours;
        std::vector<int32_t>& o     = out[size_t(g)];
        std::vector<int32_t>& picks = picks_[size_t(layer) * size_t(n_head_kv_) + size_t(g)];
        const SinksWindow sw        = clip_sinks_window(r);
        const int64_t hi            = n - sw.window;
        if (fresh) {
            if (pred) {
                BUTLER_ASSERT(imp_q_pos_[size_t(layer)] == pos, "no importance queries for layer {} at {}",
                              r.model_layer, pos);
                const int64_t head_offset = int64_t(g) * n_group_ * pred->shape().d_dash;
                r.imp_q_on_device         = device_predictor_ != nullptr;
                r.imp_q = r.imp_q_on_device ? device_predictor_->queries(r.model_layer) + head_offset
                                            : imp_q_.data() + int64_t(layer) * n_head_ * pred->shape().d_dash +
                                                  head_offset;
            }
            selector_->select(r, o);
            picks.clear();
            for (int32_t t : o)
                if (t >= sw.sinks && t < hi) picks.push_back(t);
        } else {
            // The kept picks that are still outside sinks and window, cut to the room the budget leaves.
            const int64_t room = std::max<int64_t>(0, std::min(budget, n) - sw.sinks - sw.window);
            o.clear();
            for (int64_t t = 0; t < sw.sinks; ++t) o.push_back(int32_t(t));
            int64_t kept = 0;
            for (int32_t t : picks)
                if (t >= sw.sinks && t < hi && kept < room) {
                    o.push_back(t);
                    ++kept;
                }
            for (int64_t t = hi; t < n; ++t) o.push_back(int32_t(t));
        }
    }
    if (fresh) {
        picked_pos_[size_t(layer)] = pos;
        ++stats_.fresh_selections;
    }
}

void OffloadPipeline::observe_hidden(int32_t model_layer, int64_t pos, const float* x) {
    if (!wants_hidden(model_layer) || !sparse_step(pos)) return;
    const TokenButlerPredictor& pred = *selector_->predictor();
    const PredictorShape& ps         = pred.shape();
    if (prediction_due(pos)) {
        const auto t0 = std::chrono::steady_clock::now();
        if (device_predictor_) device_predictor_->run(model_layer, x);
        else pred.query(model_layer, x, pred_out_.data(), pred_scratch_.data());
        for (int32_t layer : producer_consumers_[size_t(model_layer)]) {
            imp_q_pos_[size_t(layer)] = pos;
            if (device_predictor_) continue;  // selection reads them from device memory
            const int32_t slot = ps.slot_of(stored_model_layer_[size_t(layer)]);
            std::memcpy(imp_q_.data() + int64_t(layer) * n_head_ * ps.d_dash,
                        pred_out_.data() + int64_t(slot) * n_head_ * ps.d_dash,
                        sizeof(float) * size_t(n_head_ * ps.d_dash));
        }
        stats_.predict_ms += ms_since(t0);
        ++stats_.predictor_runs;
    }
    // The next offloaded layer to run; fetch it now when this producer serves it (a stored producer runs first).
    const int32_t next = producer_consumers_[size_t(model_layer)].front();
    for (int32_t layer = 0; layer < int32_t(stored_model_layer_.size()); ++layer) {
        if (stored_model_layer_[size_t(layer)] < model_layer) continue;
        if (layer == next && prefetched_pos_[size_t(layer)] != pos) prefetch(layer, pos);
        break;
    }
}

void OffloadPipeline::prefetch(int32_t layer, int64_t pos) {
    const auto t0 = std::chrono::steady_clock::now();
    select_layer(layer, nullptr, pos, wanted_next_);
    stats_.select_ms += ms_since(t0);
    const int32_t pool = slot_layer(layer, pos);
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        // The current token's row of that layer is not computed yet; it follows when the layer runs.
        std::vector<int32_t>& w = wanted_next_[size_t(g)];
        const bool has_current  = !w.empty() && w.back() == pos;
        if (has_current) w.pop_back();
        engine_->fetch(layer, g, w, pool);
        if (has_current) w.push_back(int32_t(pos));
    }
    engine_->finish_layer(pool);
    prefetched_pos_[size_t(layer)] = pos;
    ++stats_.prefetches;
}

void OffloadPipeline::attend_sparse(int32_t layer, const float* q, int64_t pos, float* out) {
    const int64_t n      = pos + 1;
    const PagedKvView kv = store_->view(layer);
    const DType type     = store_->shape().type;

    auto t0 = std::chrono::steady_clock::now();
    if (prefetched_pos_[size_t(layer)] == pos)
        std::swap(wanted_, wanted_next_);  // selected a layer ahead
    else
        select_layer(layer, q, pos, wanted_);
    prefetched_pos_[size_t(layer)] = -1;
    stats_.select_ms += ms_since(t0);

    // Copies on the copy stream; the compute stream waits on the layer's event, the host does not.
    // The previous step's device partials ran (attend_sparse ends with a synchronize), so the pinned query and
    // slot-id buffers are free to rewrite.
    const int32_t pool     = slot_layer(layer, pos);
    const int64_t n_slots  = slots_->n_slots();
    int32_t* const ids_all = slot_ids_dev_.as<int32_t>();
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        const std::vector<int32_t>& want = wanted_[size_t(g)];
        engine_->fetch(layer, g, want, pool);
        const std::span<int32_t> token_slot = slots_->token_slot(pool, g);
        int32_t* ids                        = ids_all + int64_t(g) * n_slots;
        for (size_t i = 0; i < want.size(); ++i) ids[i] = token_slot[size_t(want[i])];
    }
    std::memcpy(q_dev_.data(), q, sizeof(float) * size_t(n_head_ * head_dim_));
    engine_->finish_layer(pool);
    if (!config_.skip_copy_wait) engine_->make_wait(*compute_, pool);
    const KernelTable& kernels = device_->kernels();
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        AttnPartialArgs& task = tasks_[size_t(g)];
        task                  = AttnPartialArgs{q_dev_.as<float>() + int64_t(g) * n_group_ * head_dim_,
                                 n_group_,
                                 slots_->k_slot(pool, g, 0),
                                 slots_->v_slot(pool, g, 0),
                                 uint32_t(type),
                                 head_dim_,
                                 head_dim_v_,
                                 ids_all + int64_t(g) * n_slots,
                                 int64_t(wanted_[size_t(g)].size()),
                                 o_dev_.as<float>() + int64_t(g) * n_group_ * head_dim_v_,
                                 lse_dev_.as<float>() + int64_t(g) * n_group_,
                                 dev_scores_.as<float>() + int64_t(g) * n_group_ * n_slots};
        kernels.attn_partial(*compute_, &task);
        stats_.device_tokens += wanted_[size_t(g)].size();
    }

    // The next layer a step ahead, when its selection needs nothing this step has not produced yet.
    if (!selector_->needs_query() && layer + 1 < store_->shape().n_layer &&
        (!selector_->predictor() || imp_q_pos_[size_t(layer + 1)] == pos || !prediction_due(pos)))
        prefetch(layer + 1, pos);

    // Meanwhile the CPU attends over the complement (exact mode).
    const bool exact = exact_layer_[size_t(layer)] != 0;
    if (exact) {
        t0 = std::chrono::steady_clock::now();
        for (int32_t g = 0; g < n_head_kv_; ++g) {
            complement_ids(wanted_[size_t(g)], n, complement_[size_t(g)]);
            cpu_partial(q + int64_t(g) * n_group_ * head_dim_, n_group_, kv, g, complement_[size_t(g)],
                        o_cpu_.data() + int64_t(g) * n_group_ * head_dim_v_, lse_cpu_.data() + int64_t(g) * n_group_,
                        cpu_scratch_[size_t(g)]);
            stats_.cpu_tokens += complement_[size_t(g)].size();
        }
        stats_.cpu_attn_ms += ms_since(t0);
    }
    t0 = std::chrono::steady_clock::now();
    compute_->synchronize();
    stats_.wait_ms += ms_since(t0);

    const size_t group_bytes = sizeof(float) * size_t(n_group_ * head_dim_v_);
    for (int32_t g = 0; g < n_head_kv_; ++g) {
        float* o_dev = o_dev_.as<float>() + int64_t(g) * n_group_ * head_dim_v_;
        float* dst   = out + int64_t(g) * n_group_ * head_dim_v_;
        if (exact) {
            float* o_cpu = o_cpu_.data() + int64_t(g) * n_group_ * head_dim_v_;
            lse_merge(o_cpu, lse_cpu_.data() + int64_t(g) * n_group_, o_dev, lse_dev_.as<float>() + int64_t(g) * n_group_,
                      n_group_, head_dim_v_);
            std::memcpy(dst, o_cpu, group_bytes);
        } else {
            std::memcpy(dst, o_dev, group_bytes);
        }
    }
    ++stats_.sparse_steps;
}

}  // namespace butler
