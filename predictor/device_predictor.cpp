// SPDX-License-Identifier: MIT
#include "predictor/device_predictor.h"

#include <algorithm>

#include "predictor/tokenbutler.h"
#include "runtime/status.h"

namespace butler {

DevicePredictor::DevicePredictor(const TokenButlerPredictor& predictor, Device& device)
    : predictor_(predictor), device_(device) {
    const PredictorShape& ps = predictor.shape();
    const int64_t E = ps.n_embd, I = ps.intdim, QW = ps.q_width();
    const size_t per_producer = sizeof(float) * size_t(2 * E + I * E + QW * I);
    Buffer staging = device.alloc(per_producer, MemKind::PinnedHost);
    stream_        = device.create_stream();
    out_           = device.alloc(sizeof(float) * size_t(ps.n_producers() * QW), MemKind::Device);
    scratch_       = device.alloc(sizeof(float) * size_t(E + I), MemKind::Device);
    x_pinned_      = device.alloc(sizeof(float) * size_t(E), MemKind::PinnedHost);
    for (int32_t p = 0; p < ps.n_producers(); ++p) {
        const TokenButlerPredictor::Producer& pr = predictor.producers()[size_t(p)];
        float* s = staging.as<float>();
        std::copy(pr.ln_w.begin(), pr.ln_w.end(), s);
        std::copy(pr.ln_b.begin(), pr.ln_b.end(), s + E);
        std::copy(pr.w1.begin(), pr.w1.end(), s + 2 * E);
        std::copy(pr.w2.begin(), pr.w2.end(), s + 2 * E + I * E);
        Buffer w = device.alloc(per_producer, MemKind::Device);
        stream_->copy(w.data(), staging.data(), per_producer);
        stream_->synchronize();  // the staging buffer is refilled for the next producer
        const float* d = w.as<float>();
        args_.push_back(ImpQueryArgs{x_pinned_.as<float>(), d, d + E, d + 2 * E, d + 2 * E + I * E, E, I, QW,
                                     TokenButlerPredictor::kLayerNormEps, out_.as<float>() + int64_t(p) * QW,
                                     scratch_.as<float>()});
        weights_.push_back(std::move(w));
    }
}

DevicePredictor::~DevicePredictor() {
    if (stream_) stream_->synchronize();
}

void DevicePredictor::run(int32_t producer, const float* x) {
    const PredictorShape& ps = predictor_.shape();
    BUTLER_ASSERT(producer % ps.group == 0 && producer / ps.group < ps.n_producers(), "layer {} is not a producer",
                  producer);
    std::copy(x, x + ps.n_embd, x_pinned_.as<float>());
    device_.kernels().imp_query(*stream_, &args_[size_t(producer / ps.group)]);
    stream_->synchronize();  // the selection's stream reads the queries next; x_pinned_ is free again
}

const float* DevicePredictor::queries(int32_t layer) const {
    const PredictorShape& ps = predictor_.shape();
    return out_.as<float>() + int64_t(ps.producer_index(layer)) * ps.q_width() +
           int64_t(ps.slot_of(layer)) * ps.n_head * ps.d_dash;
}

}  // namespace butler
