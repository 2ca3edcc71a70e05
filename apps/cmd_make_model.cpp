// SPDX-License-Identifier: MIT
// butler make-random-model: a GGUF file with the exact tensors, hparams and names of a real model and random
// weights (runtime/random_model.h), streamed to disk.
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/common.h"
#include "predictor/tokenbutler.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/random_model.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct MakeModelOptions {
    std::string like;
    std::string type = "Q4_K";
    std::string out;
    int32_t n_layer = 0;
    int32_t n_vocab = 0;
    uint64_t seed = 1;
    bool predictor = false;
};

DType parse_type(const std::string& name) {
    for (uint32_t id = 0; id < 64; ++id) {
        const DTypeTraits* t = find_dtype(id);
        if (t == nullptr) continue;
        std::string a(t->name), b(name);
        for (char& c : a) c = char(std::tolower(static_cast<unsigned char>(c)));
        for (char& c : b) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (a == b) return static_cast<DType>(id);
    }
    fail(Status::InvalidArg, "--type '{}' is not a tensor type (Q4_K, Q4_0, Q8_0, F16, BF16, ...)", name);
}

int run_make_model(const MakeModelOptions& o) {
    RandomModelOptions ro;
    ro.like = o.like;
    ro.type = parse_type(o.type);
    ro.n_layer = o.n_layer;
    ro.n_vocab = o.n_vocab;
    ro.seed = o.seed;
    const auto t0 = std::chrono::steady_clock::now();
    const GgufWriter w = random_model_writer(ro);
    uint64_t n_bytes = 0;
    for (const PlannedTensor& t : random_model_tensors(ro)) {
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        n_bytes += uint64_t(row_bytes(t.type, t.shape.back()) * (n / t.shape.back()));
    }
    std::fprintf(stderr, "writing %s: %s, %s, %.2f GB of tensor data\n", o.out.c_str(), o.like.c_str(),
                 std::string(dtype_name(ro.type)).c_str(), double(n_bytes) / 1e9);
    w.write(o.out);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "wrote %s in %.1f s\n", o.out.c_str(), s);
    if (o.predictor) {
        // Seeded, untrained: its picks are arbitrary, its cost is a trained predictor's (latency measurements).
        const auto model       = Model::load(o.out);
        const PredictorShape ps = PredictorShape::of(model->hparams(), 4, 16, 512);
        const TokenButlerPredictor pred(ps, BaseModelIdentity::of(*model), o.seed);
        const std::filesystem::path out(o.out);
        const std::string path = (out.parent_path() / (out.stem().string() + ".tokenbutler.gguf")).string();
        pred.save(path);
        std::fprintf(stderr, "wrote %s: an untrained TokenButler predictor (%llu parameters) for timing runs\n",
                     path.c_str(), static_cast<unsigned long long>(ps.n_params()));
    }
    return 0;
}

}  // namespace

Action register_make_model(CLI::App& sub) {
    auto o = std::make_shared<MakeModelOptions>();
    sub.add_option("--like", o->like, fmt::format("model shape: {}", fmt::join(random_model_names(), ", ")))
        ->required();
    sub.add_option("--type", o->type, "matrix type: Q4_K, Q4_0, Q8_0, F16, BF16 (or another computable type)")
        ->capture_default_str();
    sub.add_option("--out", o->out, "output GGUF file")->required();
    sub.add_option("--n-layer", o->n_layer, "override the layer count (0: the real one; for tests)");
    sub.add_option("--n-vocab", o->n_vocab, "override the vocabulary size (0: the real one; for tests)");
    sub.add_option("--seed", o->seed, "random seed")->capture_default_str();
    sub.add_flag("--predictor", o->predictor,
                 "also write an untrained (seeded) TokenButler predictor beside it, OUT-STEM.tokenbutler.gguf, which "
                 "the tokenbutler selector finds by default: its picks are arbitrary, its cost is real (benchmarks)");
    return [o] { return run_make_model(*o); };
}

}  // namespace butler::cli
