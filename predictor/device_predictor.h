// SPDX-License-Identifier: MIT
// DevicePredictor: TokenButler's query MLP run on a device (KernelTable::imp_query), for selection on the device
// (OffloadConfig::select_on): each producer's weights resident in device memory, its importance queries written to
// device memory where the tokenbutler selector's imp_score reads them, so they never come back to the host.
//
// Memory: everything is allocated in the constructor (Error(Oom) naming it when it does not fit); run() allocates
// nothing. Threading: one caller thread; run() returns when the queries are written.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/device.h"

namespace butler {

class TokenButlerPredictor;

class DevicePredictor {
public:
    // `device` and `predictor` must outlive this.
    DevicePredictor(const TokenButlerPredictor& predictor, Device& device);
    ~DevicePredictor();
    DevicePredictor(const DevicePredictor&)            = delete;
    DevicePredictor& operator=(const DevicePredictor&) = delete;

    // The importance queries of producer layer `producer` (a multiple of G) for one token: x (n_embd) its attention
    // input in host memory.
    void run(int32_t producer, const float* x);
    // Device memory: the query heads' queries (n_head, d') of consumer model layer `layer` (>= 1) from the last run()
    // of its producer.
    const float* queries(int32_t layer) const;

private:
    const TokenButlerPredictor& predictor_;
    Device& device_;
    std::unique_ptr<Stream> stream_;
    std::vector<Buffer> weights_;  // per producer: ln_w | ln_b | w1 | w2 in one buffer
    Buffer x_pinned_, out_, scratch_;
    std::vector<ImpQueryArgs> args_;  // per producer
};

}  // namespace butler
