// SPDX-License-Identifier: MIT
#include "predictor/tokenbutler.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "cpu_kernels/matmul.h"
#include "cpu_kernels/select.h"
#include "runtime/gguf.h"
#include "runtime/hparams.h"
#include "runtime/model.h"
#include "runtime/status.h"

namespace butler {

namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime  = 1099511628211ull;

void fnv(uint64_t& h, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
}

std::string key(const char* name) { return fmt::format("{}.{}", TokenButlerPredictor::kArch, name); }

std::span<const uint8_t> bytes_of(const std::vector<float>& v) {
    return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

void xavier(std::vector<float>& w, int64_t fan_out, int64_t fan_in, std::mt19937_64& rng) {
    const float a = std::sqrt(6.0f / float(fan_in + fan_out));
    std::uniform_real_distribution<float> u(-a, a);
    w.resize(size_t(fan_out * fan_in));
    for (float& x : w) x = u(rng);
}

}  // namespace

BaseModelIdentity BaseModelIdentity::of(const Model& model) {
    const HParams& hp = model.hparams();
    BaseModelIdentity id;
    id.arch      = std::string(model.arch().name);
    id.n_layer   = hp.n_layer;
    id.n_embd    = hp.n_embd;
    id.n_head    = hp.n_head;
    id.n_head_kv = hp.n_head_kv;
    id.head_dim  = hp.head_dim;
    uint64_t h   = kFnvOffset;
    for (const GgufTensorInfo& t : model.file().tensors()) {
        fnv(h, t.name.data(), t.name.size());
        const uint32_t type = uint32_t(t.type);
        fnv(h, &type, sizeof(type));
        fnv(h, t.ne, sizeof(t.ne));
    }
    id.shape_hash = h;
    id.name       = model.file().get<std::string>("general.name").value_or(
        std::filesystem::path(model.path()).stem().string());
    return id;
}

bool BaseModelIdentity::matches(const BaseModelIdentity& o) const {
    return arch == o.arch && n_layer == o.n_layer && n_embd == o.n_embd && n_head == o.n_head &&
           n_head_kv == o.n_head_kv && head_dim == o.head_dim && shape_hash == o.shape_hash;
}

std::string BaseModelIdentity::describe() const {
    return fmt::format("'{}' ({}, {} layers, {} wide, {}/{} heads x {}, tensor shapes {:016x})", name, arch, n_layer,
                       n_embd, n_head, n_head_kv, head_dim, shape_hash);
}

PredictorShape PredictorShape::of(const HParams& hp, int32_t group, int32_t d_dash, int32_t intdim) {
    PredictorShape s;
    s.n_layer   = hp.n_layer;
    s.n_embd    = hp.n_embd;
    s.n_head    = hp.n_head;
    s.n_head_kv = hp.n_head_kv;
    s.head_dim  = hp.head_dim;
    s.group     = group;
    s.d_dash    = d_dash;
    s.intdim    = intdim;
    return s;
}

uint64_t PredictorShape::n_params() const {
    const uint64_t per_producer = 2ull * n_embd + uint64_t(intdim) * n_embd + uint64_t(q_width()) * intdim;
    return uint64_t(n_producers()) * per_producer + uint64_t(n_layer) * n_head_kv * head_dim * d_dash;
}

TokenButlerPredictor::TokenButlerPredictor(const PredictorShape& shape, const BaseModelIdentity& base, uint64_t seed)
    : shape_(shape), base_(base) {
    if (shape.n_layer < 2 || shape.group < 1 || shape.d_dash < 1 || shape.intdim < 1 || shape.n_head_kv < 1 ||
        shape.n_head % shape.n_head_kv != 0 || shape.d_dash > shape.head_dim)
        fail(Status::InvalidArg, "bad TokenButler predictor shape (layers {}, G {}, d' {}, intdim {}, head_dim {})",
             shape.n_layer, shape.group, shape.d_dash, shape.intdim, shape.head_dim);
    std::mt19937_64 rng(seed);
    producers_.resize(size_t(shape.n_producers()));
    for (Producer& p : producers_) {
        p.ln_w.assign(size_t(shape.n_embd), 1.0f);
        p.ln_b.assign(size_t(shape.n_embd), 0.0f);
        xavier(p.w1, shape.intdim, shape.n_embd, rng);
        xavier(p.w2, shape.q_width(), shape.intdim, rng);
    }
    // Xavier over (head_dim -> d') per (layer, KV head), as the reference initializes key_cache_proj.
    key_proj_.resize(size_t(int64_t(shape.n_layer) * shape.n_head_kv * shape.d_dash * shape.head_dim));
    const float a = std::sqrt(6.0f / float(shape.head_dim + shape.d_dash));
    std::uniform_real_distribution<float> u(-a, a);
    for (float& x : key_proj_) x = u(rng);
}

TokenButlerPredictor TokenButlerPredictor::reshaped(int32_t group, int32_t intdim, int32_t d_dash,
                                                    uint64_t seed) const {
    const PredictorShape& s = shape_;
    if (group < 1 || s.group % group != 0)
        fail(Status::Usage, "a predictor with producers every {} layers can be split into groups that divide {}, not "
             "{}", s.group, s.group, group);
    if (intdim < 1 || intdim > s.intdim)
        fail(Status::Usage, "a predictor's query MLP can be narrowed from {} hidden units, not widened to {}",
             s.intdim, intdim);
    if (d_dash < s.d_dash || d_dash > s.head_dim)
        fail(Status::Usage, "a predictor's importance dimension can grow from {} up to head_dim {}, not become {}",
             s.d_dash, s.head_dim, d_dash);
    TokenButlerPredictor out;
    out.shape_        = s;
    out.shape_.group  = group;
    out.shape_.intdim = intdim;
    out.shape_.d_dash = d_dash;
    out.base_         = base_;
    out.provenance    = provenance;
    const int64_t E = s.n_embd, I = s.intdim, D = s.head_dim, d_old = s.d_dash;
    const float q_scale = std::sqrt(float(d_dash) / float(d_old));
    std::mt19937_64 rng(seed);
    // W_K (n_layer, n_head_kv, d', head_dim): the old rows, then new ones.
    out.key_proj_.assign(size_t(int64_t(s.n_layer) * s.n_head_kv * d_dash * D), 0.0f);
    const float a = std::sqrt(6.0f / float(D + d_dash));
    std::uniform_real_distribution<float> u(-a, a);
    for (int64_t lg = 0; lg < int64_t(s.n_layer) * s.n_head_kv; ++lg) {
        std::copy_n(key_proj_.begin() + lg * d_old * D, d_old * D, out.key_proj_.begin() + lg * d_dash * D);
        for (int64_t i = d_old * D; i < d_dash * D; ++i) out.key_proj_[size_t(lg * d_dash * D + i)] = u(rng);
    }
    out.producers_.resize(size_t(out.shape_.n_producers()));
    for (size_t i = 0; i < out.producers_.size(); ++i) {
        const int32_t first  = int32_t(i) * group + 1;  // the new producer's first consumer layer
        const Producer& from = producers_[size_t(shape_.producer_index(first))];
        const int32_t slot0  = shape_.slot_of(first);
        // W2 rows are (slot, head, e); the new producer's slots are the old slot0 .. slot0 + group - 1.
        const int64_t rows = int64_t(group) * s.n_head;  // (slot, head) pairs served
        auto old_row = [&](int64_t sh, int64_t e) { return (int64_t(slot0) * s.n_head + sh) * d_old + e; };
        // Hidden units ranked by how much they feed this producer's slots.
        std::vector<double> weight(size_t(I), 0.0);
        for (int64_t j = 0; j < I; ++j) {
            double w1 = 0, w2 = 0;
            for (int64_t e = 0; e < E; ++e) w1 += double(from.w1[size_t(j * E + e)]) * from.w1[size_t(j * E + e)];
            for (int64_t sh = 0; sh < rows; ++sh)
                for (int64_t e = 0; e < d_old; ++e) {
                    const double w = from.w2[size_t(old_row(sh, e) * I + j)];
                    w2 += w * w;
                }
            weight[size_t(j)] = std::sqrt(w1 * w2);
        }
        std::vector<int64_t> units(static_cast<size_t>(I));
        for (int64_t j = 0; j < I; ++j) units[size_t(j)] = j;
        std::stable_sort(units.begin(), units.end(),
                         [&](int64_t x, int64_t y) { return weight[size_t(x)] > weight[size_t(y)]; });
        units.resize(size_t(intdim));
        std::sort(units.begin(), units.end());  // kept in their old order
        Producer& to = out.producers_[i];
        to.ln_w      = from.ln_w;
        to.ln_b      = from.ln_b;
        to.w1.resize(size_t(int64_t(intdim) * E));
        to.w2.assign(size_t(out.shape_.q_width() * intdim), 0.0f);
        for (int64_t k = 0; k < intdim; ++k) {
            const int64_t j = units[size_t(k)];
            std::copy_n(from.w1.begin() + j * E, E, to.w1.begin() + k * E);
            for (int64_t sh = 0; sh < rows; ++sh)
                for (int64_t e = 0; e < d_old; ++e)
                    to.w2[size_t((sh * d_dash + e) * intdim + k)] = q_scale * from.w2[size_t(old_row(sh, e) * I + j)];
        }
    }
    return out;
}

void TokenButlerPredictor::query(int32_t producer, const float* x, float* out, float* scratch) const {
    const Producer& p = producers_[size_t(producer / shape_.group)];
    importance_query(x, p.ln_w.data(), p.ln_b.data(), p.w1.data(), p.w2.data(), shape_.n_embd, shape_.intdim,
                     shape_.q_width(), kLayerNormEps, out, scratch);
}

void TokenButlerPredictor::project_key(int32_t layer, int32_t g, const float* k, float* out) const {
    const float* w = key_proj(layer, g);
    for (int32_t e = 0; e < shape_.d_dash; ++e) {
        float s = 0;
        for (int32_t d = 0; d < shape_.head_dim; ++d) s += w[int64_t(e) * shape_.head_dim + d] * k[d];
        out[e] = s;
    }
}

void TokenButlerPredictor::save(const std::string& path) const {
    GgufWriter w;
    w.set_string("general.architecture", kArch);
    w.set_string("general.name", fmt::format("TokenButler predictor for {}", base_.name));
    w.set_string(key("variant"), variant());
    w.set_u32(key("block_count"), uint32_t(shape_.n_layer));
    w.set_u32(key("embedding_length"), uint32_t(shape_.n_embd));
    w.set_u32(key("head_count"), uint32_t(shape_.n_head));
    w.set_u32(key("head_count_kv"), uint32_t(shape_.n_head_kv));
    w.set_u32(key("key_length"), uint32_t(shape_.head_dim));
    w.set_u32(key("producer_frequency"), uint32_t(shape_.group));
    w.set_u32(key("importance_dim"), uint32_t(shape_.d_dash));
    w.set_u32(key("mlp_hidden"), uint32_t(shape_.intdim));
    w.set_string(key("base.architecture"), base_.arch);
    w.set_string(key("base.name"), base_.name);
    w.set_u32(key("base.block_count"), uint32_t(base_.n_layer));
    w.set_u32(key("base.embedding_length"), uint32_t(base_.n_embd));
    w.set_u32(key("base.head_count"), uint32_t(base_.n_head));
    w.set_u32(key("base.head_count_kv"), uint32_t(base_.n_head_kv));
    w.set_u32(key("base.key_length"), uint32_t(base_.head_dim));
    w.set_u64(key("base.tensor_shape_hash"), base_.shape_hash);
    if (!provenance.empty()) w.set_string(key("provenance"), provenance);
    const int64_t E = shape_.n_embd, I = shape_.intdim;
    for (size_t i = 0; i < producers_.size(); ++i) {
        const Producer& p = producers_[i];
        const int64_t layer = int64_t(i) * shape_.group;
        const int64_t e_shape[] = {E}, w1_shape[] = {I, E}, w2_shape[] = {shape_.q_width(), I};
        w.add_tensor(fmt::format("prod.{}.norm.weight", layer), DType::F32, e_shape, bytes_of(p.ln_w));
        w.add_tensor(fmt::format("prod.{}.norm.bias", layer), DType::F32, e_shape, bytes_of(p.ln_b));
        w.add_tensor(fmt::format("prod.{}.w1.weight", layer), DType::F32, w1_shape, bytes_of(p.w1));
        w.add_tensor(fmt::format("prod.{}.w2.weight", layer), DType::F32, w2_shape, bytes_of(p.w2));
    }
    const int64_t k_shape[] = {shape_.n_layer, shape_.n_head_kv, shape_.d_dash, shape_.head_dim};
    w.add_tensor("key_proj.weight", DType::F32, k_shape, bytes_of(key_proj_));
    w.write(path);
}

std::unique_ptr<TokenButlerPredictor> TokenButlerPredictor::load(const std::string& path,
                                                                 const BaseModelIdentity* base) {
    return load(*GgufFile::open(path), base);
}

std::unique_ptr<TokenButlerPredictor> TokenButlerPredictor::load(const GgufFile& file, const BaseModelIdentity* base) {
    const GgufFile* f       = &file;
    const std::string& path = file.path();
    const std::string arch = f->get<std::string>("general.architecture").value_or("");
    if (arch != kArch)
        fail(Status::Format, "{} is not a TokenButler predictor (general.architecture '{}', expected '{}')", path, arch,
             kArch);
    const std::string variant = f->require<std::string>(key("variant"));
    if (variant != "project")
        fail(Status::Unsupported, "{}: predictor variant '{}' is not supported (Butler runs 'project')", path, variant);
    std::unique_ptr<TokenButlerPredictor> p(new TokenButlerPredictor());
    PredictorShape& s = p->shape_;
    s.n_layer         = f->require<int32_t>(key("block_count"));
    s.n_embd          = f->require<int32_t>(key("embedding_length"));
    s.n_head          = f->require<int32_t>(key("head_count"));
    s.n_head_kv       = f->require<int32_t>(key("head_count_kv"));
    s.head_dim        = f->require<int32_t>(key("key_length"));
    s.group           = f->require<int32_t>(key("producer_frequency"));
    s.d_dash          = f->require<int32_t>(key("importance_dim"));
    s.intdim          = f->require<int32_t>(key("mlp_hidden"));
    auto in_range     = [](int64_t v, int64_t hi) { return v >= 1 && v <= hi; };
    if (!in_range(s.n_layer, 4096) || s.n_layer < 2 || !in_range(s.n_embd, 1 << 16) || !in_range(s.n_head, 1024) ||
        !in_range(s.n_head_kv, s.n_head) || s.n_head % s.n_head_kv != 0 || !in_range(s.head_dim, 1024) ||
        !in_range(s.group, s.n_layer) || !in_range(s.d_dash, s.head_dim) || !in_range(s.intdim, 1 << 16))
        fail(Status::Format, "{}: predictor hyperparameters out of range", path);
    BaseModelIdentity& b = p->base_;
    b.arch               = f->require<std::string>(key("base.architecture"));
    b.name               = f->get<std::string>(key("base.name")).value_or("?");
    b.n_layer            = f->require<int32_t>(key("base.block_count"));
    b.n_embd             = f->require<int32_t>(key("base.embedding_length"));
    b.n_head             = f->require<int32_t>(key("base.head_count"));
    b.n_head_kv          = f->require<int32_t>(key("base.head_count_kv"));
    b.head_dim           = f->require<int32_t>(key("base.key_length"));
    b.shape_hash         = f->require<uint64_t>(key("base.tensor_shape_hash"));
    p->provenance        = f->get<std::string>(key("provenance")).value_or("");
    if (b.n_layer != s.n_layer || b.n_embd != s.n_embd || b.n_head != s.n_head || b.n_head_kv != s.n_head_kv ||
        b.head_dim != s.head_dim)
        fail(Status::Format, "{}: the predictor's shape disagrees with the base model it names", path);
    if (base && !base->matches(b))
        fail(Status::Format, "predictor {} was made for {}, not for the loaded model {}", path, b.describe(),
             base->describe());

    auto read = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float>& dst) {
        const GgufTensorInfo& t = f->require_tensor(name);
        if (t.type != DType::F32 || t.shape() != shape)
            fail(Status::Format, "{}: tensor {} has the wrong type or shape", path, name);
        dst.resize(size_t(t.n_elem()));
        std::memcpy(dst.data(), t.data, dst.size() * sizeof(float));
        for (float v : dst)
            if (!std::isfinite(v)) fail(Status::Format, "{}: tensor {} holds a non-finite value", path, name);
    };
    p->producers_.resize(size_t(s.n_producers()));
    for (size_t i = 0; i < p->producers_.size(); ++i) {
        Producer& pr        = p->producers_[i];
        const int64_t layer = int64_t(i) * s.group;
        read(fmt::format("prod.{}.norm.weight", layer), {s.n_embd}, pr.ln_w);
        read(fmt::format("prod.{}.norm.bias", layer), {s.n_embd}, pr.ln_b);
        read(fmt::format("prod.{}.w1.weight", layer), {s.intdim, s.n_embd}, pr.w1);
        read(fmt::format("prod.{}.w2.weight", layer), {s.q_width(), s.intdim}, pr.w2);
    }
    read("key_proj.weight", {s.n_layer, s.n_head_kv, s.d_dash, s.head_dim}, p->key_proj_);
    return p;
}

std::string default_predictor_path(const std::string& model_path, PredictorUse use) {
    if (const char* env = std::getenv("BUTLER_PREDICTOR"); env && *env) return env;
    const std::string stem = std::filesystem::path(model_path).stem().string();
    std::vector<std::string> files;
    if (use == PredictorUse::EveryLayer) files.push_back(stem + ".tokenbutler-all-layers.gguf");
    files.push_back(stem + ".tokenbutler.gguf");
    std::vector<std::filesystem::path> dirs;
    dirs.push_back(std::filesystem::path(model_path).parent_path());  // beside the model first
    if (dirs.back().empty()) dirs.back() = ".";
#ifdef BUTLER_SOURCE_PREDICTORS
    dirs.emplace_back(BUTLER_SOURCE_PREDICTORS);
#endif
#ifdef BUTLER_INSTALL_PREDICTORS
    dirs.emplace_back(BUTLER_INSTALL_PREDICTORS);
#endif
    std::string looked;
    for (const std::string& file : files)
        for (const auto& dir : dirs) {
            const std::filesystem::path p = dir / file;
            std::error_code ec;
            if (std::filesystem::is_regular_file(p, ec)) return p.string();
            looked += (looked.empty() ? "" : ", ") + p.string();
        }
    fail(Status::Io, "no TokenButler predictor for {} (looked for {}; train one with `butler train-predictor` or "
         "pass --selector tokenbutler:PATH)", model_path, looked.empty() ? files.back() : looked);
}

bool is_tokenbutler_selector(const std::string& selector) {
    return selector == "tokenbutler" || selector.rfind("tokenbutler:", 0) == 0;
}

std::shared_ptr<const TokenButlerPredictor> load_predictor_for(const std::string& selector, const Model& model,
                                                               PredictorUse use) {
    const std::string path = selector.size() > 12 ? selector.substr(12) : default_predictor_path(model.path(), use);
    const BaseModelIdentity id = BaseModelIdentity::of(model);
    return TokenButlerPredictor::load(path, &id);
}

void producer_forward(const TokenButlerPredictor::Producer& pr, const PredictorShape& ps, const float* x, int64_t R,
                      ProducerActivations& act) {
    const int64_t E = ps.n_embd, I = ps.intdim, QW = ps.q_width();
    act.xhat.resize(size_t(R * E));
    act.y.resize(size_t(R * E));
    act.z.resize(size_t(R * I));
    act.a.resize(size_t(R * I));
    act.qp.resize(size_t(R * QW));
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * E;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < E; ++j) mean += xr[j];
        mean /= double(E);
        for (int64_t j = 0; j < E; ++j) var += (xr[j] - mean) * (xr[j] - mean);
        const double inv = 1.0 / std::sqrt(var / double(E) + TokenButlerPredictor::kLayerNormEps);
        for (int64_t j = 0; j < E; ++j) {
            const float xh       = float((xr[j] - mean) * inv);
            act.xhat[size_t(r * E + j)] = xh;
            act.y[size_t(r * E + j)]    = xh * pr.ln_w[size_t(j)] + pr.ln_b[size_t(j)];
        }
    }
    sgemm_nt(R, I, E, act.y.data(), E, pr.w1.data(), E, act.z.data(), I);
    for (size_t i = 0; i < act.z.size(); ++i) act.a[i] = act.z[i] * (1.0f / (1.0f + std::exp(-act.z[i])));
    sgemm_nt(R, QW, I, act.a.data(), I, pr.w2.data(), I, act.qp.data(), QW);
}

}  // namespace butler
