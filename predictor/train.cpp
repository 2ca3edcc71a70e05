// SPDX-License-Identifier: MIT
#include "predictor/train.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>

#include "cpu_kernels/matmul.h"
#include "runtime/gguf.h"
#include "runtime/hparams.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler {

int64_t first_sampled_row(int64_t n_tok, double tail) {
    return std::clamp<int64_t>(int64_t(std::floor(double(n_tok) * (1.0 - tail))), 0, n_tok - 1);
}

std::vector<int32_t> sample_rows(int64_t n_tok, int32_t n_rows, double tail, uint64_t seed) {
    const int64_t lo = first_sampled_row(n_tok, tail);
    std::vector<int32_t> pool;
    for (int64_t t = lo; t < n_tok - 1; ++t) pool.push_back(int32_t(t));
    std::mt19937_64 rng(seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    const size_t take = size_t(std::clamp<int64_t>(n_rows - 1, 0, int64_t(pool.size())));
    std::vector<int32_t> rows(pool.begin(), pool.begin() + int64_t(take));
    rows.push_back(int32_t(n_tok - 1));
    std::sort(rows.begin(), rows.end());
    return rows;
}

std::vector<size_t> epoch_order(size_t n_seq, int64_t epoch, uint64_t seed, bool shuffle) {
    std::vector<size_t> order(n_seq);
    std::iota(order.begin(), order.end(), size_t(0));
    if (shuffle) {
        // A stream apart from the row sampling's (seed + step): the odd constant keeps (seed, epoch) pairs distinct.
        std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ull * uint64_t(epoch + 1)));
        std::shuffle(order.begin(), order.end(), rng);
    }
    return order;
}

void collect_sample(Session& session, const std::vector<int32_t>& tokens, const std::vector<int32_t>& rows,
                    const PredictorShape& ps, TrainSample& out) {
    const int64_t n = int64_t(tokens.size()), R = int64_t(rows.size());
    const int64_t E = ps.n_embd, H = ps.n_head, Hkv = ps.n_head_kv, D = ps.head_dim;
    out.n_tok = n;
    out.rows  = rows;
    out.x.assign(size_t(ps.n_producers() * R * E), 0.0f);
    out.q.assign(size_t(ps.n_layer * R * H * D), 0.0f);
    out.k.assign(size_t(ps.n_layer * n * Hkv * D), 0.0f);
    session.reset();
    session.set_tap([&](const LayerTap& t) {
        const int32_t l = t.layer;
        for (int64_t r = 0; r < R; ++r) {
            const int64_t i = rows[size_t(r)] - t.pos0;
            if (i < 0 || i >= t.n_tok) continue;
            if (l % ps.group == 0 && l / ps.group < ps.n_producers())
                std::memcpy(out.x.data() + (int64_t(l / ps.group) * R + r) * E, t.x + i * E, sizeof(float) * size_t(E));
            if (l >= 1)
                std::memcpy(out.q.data() + ((int64_t(l) * R + r) * H) * D, t.q + i * H * D,
                            sizeof(float) * size_t(H * D));
        }
        if (l >= 1)
            std::memcpy(out.k.data() + (int64_t(l) * n + t.pos0) * Hkv * D, t.k, sizeof(float) * size_t(t.n_tok * Hkv * D));
    });
    try {
        session.eval(std::span<const TokenId>(tokens.data(), tokens.size()), {}, nullptr);
    } catch (...) {
        session.set_tap(nullptr);
        throw;
    }
    session.set_tap(nullptr);
}

std::vector<std::vector<float>*> predictor_params(TokenButlerPredictor& p) {
    std::vector<std::vector<float>*> v;
    for (auto& pr : p.producers()) {
        v.push_back(&pr.ln_w);
        v.push_back(&pr.ln_b);
        v.push_back(&pr.w1);
        v.push_back(&pr.w2);
    }
    v.push_back(&p.key_proj_all());
    return v;
}

namespace {

float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

}  // namespace

std::vector<int32_t> runtime_sparse_layers(const HParams& hp) {
    std::vector<int32_t> out;
    for (int32_t l = 1; l < hp.n_layer; ++l)
        if (!hp.is_swa(l)) out.push_back(l);
    return out;
}

double predictor_loss(const TokenButlerPredictor& p, const HParams& hp, const TrainSample& s, LossKind kind,
                      std::vector<std::vector<float>>* grads, const std::vector<int32_t>& layers,
                      LossKeys keys) {
    const PredictorShape& ps = p.shape();
    const int64_t R = int64_t(s.rows.size()), n = s.n_tok;
    const int64_t E = ps.n_embd, I = ps.intdim, QW = ps.q_width(), H = ps.n_head, Hkv = ps.n_head_kv;
    const int64_t D = ps.head_dim, dd = ps.d_dash, ng = H / Hkv;
    const int32_t n_prod = ps.n_producers();
    const float inv_sqrt_dd = 1.0f / std::sqrt(float(dd));
    std::vector<char> in_loss(size_t(ps.n_layer), layers.empty() ? 1 : 0);
    in_loss[0] = 0;
    for (int32_t l : layers) {
        if (l < 1 || l >= ps.n_layer) fail(Status::InvalidArg, "loss layer {} is not a consumer layer (1..{})", l, ps.n_layer - 1);
        in_loss[size_t(l)] = 1;
    }
    if (keys.sinks < 0 || keys.window < 0)
        fail(Status::InvalidArg, "keys left out of the loss: sinks {} and window {} must be >= 0", keys.sinks, keys.window);
    // Keys of row pos on layer l: [first_key(l, pos), pos - keys.window].
    const auto first_key = [&](int32_t l, int64_t pos) -> int64_t {
        return std::max<int64_t>(keys.sinks, hp.is_swa(l) ? pos - hp.n_swa + 1 : 0);
    };
    int64_t n_pairs = 0;  // (layer, row) with at least one key in the loss
    for (int32_t l = 1; l < ps.n_layer; ++l)
        if (in_loss[size_t(l)])
            for (int32_t pos : s.rows) n_pairs += pos - keys.window >= first_key(l, pos) ? 1 : 0;
    if (n_pairs == 0)
        fail(Status::InvalidArg, "no sampled row has a key outside {} sinks and a {}-key recent window", keys.sinks,
             keys.window);
    const double weight = 1.0 / double(n_pairs * H);  // the loss is the mean over (layer, head, row)

    std::vector<ProducerActivations> acts(static_cast<size_t>(n_prod));
    for (int32_t i = 0; i < n_prod; ++i)
        producer_forward(p.producers()[size_t(i)], ps, s.x.data() + int64_t(i) * R * E, R, acts[size_t(i)]);
    std::vector<std::vector<float>> dqp;  // (n_prod) (R, QW)
    if (grads) dqp.assign(size_t(n_prod), std::vector<float>(size_t(R * QW), 0.0f));

    std::vector<double> layer_loss(size_t(ps.n_layer), 0.0);
#pragma omp parallel
    {
        std::vector<float> kp(size_t(n * dd)), qg(size_t(R * ng * D)), qs(size_t(R * ng * dd));
        std::vector<float> t(size_t(R * ng * n)), st(size_t(R * ng * n)), dqs(size_t(R * ng * dd)), dkp(size_t(n * dd));
#pragma omp for schedule(dynamic, 1)
        for (int32_t l = 1; l < ps.n_layer; ++l) {
            if (!in_loss[size_t(l)]) continue;
            const int32_t prod = ps.producer_index(l), slot = ps.slot_of(l);
            const float* ql    = s.q.data() + int64_t(l) * R * H * D;
            const float* kl    = s.k.data() + int64_t(l) * n * Hkv * D;
            double loss        = 0;
            for (int64_t g = 0; g < Hkv; ++g) {
                const float* kg = kl + g * D;  // rows of stride Hkv * D
                const float* wk = p.key_proj(l, int32_t(g));
                sgemm_nt(n, dd, D, kg, Hkv * D, wk, D, kp.data(), dd);
                for (int64_t r = 0; r < R; ++r) {
                    std::memcpy(qg.data() + r * ng * D, ql + (r * H + g * ng) * D, sizeof(float) * size_t(ng * D));
                    std::memcpy(qs.data() + r * ng * dd, acts[size_t(prod)].qp.data() + r * QW + (slot * H + g * ng) * dd,
                                sizeof(float) * size_t(ng * dd));
                }
                sgemm_nt(R * ng, n, D, qg.data(), D, kg, Hkv * D, t.data(), n);
                sgemm('N', 'T', R * ng, n, dd, inv_sqrt_dd, qs.data(), dd, kp.data(), dd, 0.0f, st.data(), n);
                for (int64_t r = 0; r < R; ++r) {
                    const int64_t pos = s.rows[size_t(r)];
                    const int64_t lo  = first_key(l, pos), hi = pos - keys.window;
                    for (int64_t i = 0; i < ng; ++i) {
                        float* tr = t.data() + (r * ng + i) * n;
                        float* sr = st.data() + (r * ng + i) * n;  // student logits in, d loss / d logits out
                        if (hi < lo) {
                            std::fill(sr, sr + n, 0.0f);
                            continue;
                        }
                        if (kind == LossKind::CrossEntropy) {
                            float tm = -std::numeric_limits<float>::infinity(), sm = tm;
                            for (int64_t j = lo; j <= hi; ++j) {
                                tm = std::max(tm, tr[j]);
                                sm = std::max(sm, sr[j]);
                            }
                            double tz = 0, sz = 0;
                            for (int64_t j = lo; j <= hi; ++j) {
                                tz += std::exp(double(tr[j] - tm));
                                sz += std::exp(double(sr[j] - sm));
                            }
                            const double log_sz = std::log(sz);
                            double ce = 0;
                            for (int64_t j = lo; j <= hi; ++j) {
                                const double tp   = std::exp(double(tr[j] - tm)) / tz;
                                const double logp = double(sr[j] - sm) - log_sz;
                                ce -= tp * logp;
                                sr[j] = float((std::exp(logp) - tp) * weight);
                            }
                            loss += ce;
                        } else {
                            const double inv_n = 1.0 / double(hi - lo + 1);
                            double se          = 0;
                            for (int64_t j = lo; j <= hi; ++j) {
                                const double d = double(sr[j]) - double(tr[j]);
                                se += d * d;
                                sr[j] = float(2.0 * d * inv_n * weight);
                            }
                            loss += se * inv_n;
                        }
                        for (int64_t j = 0; j < lo; ++j) sr[j] = 0.0f;
                        for (int64_t j = hi + 1; j < n; ++j) sr[j] = 0.0f;
                    }
                }
                if (!grads) continue;
                sgemm('N', 'N', R * ng, dd, n, inv_sqrt_dd, st.data(), n, kp.data(), dd, 0.0f, dqs.data(), dd);
                sgemm('T', 'N', n, dd, R * ng, inv_sqrt_dd, st.data(), n, qs.data(), dd, 0.0f, dkp.data(), dd);
                float* dwk = (*grads)[size_t(4 * n_prod)].data() + (int64_t(l) * Hkv + g) * dd * D;
                sgemm('T', 'N', dd, D, n, 1.0f, dkp.data(), dd, kg, Hkv * D, 1.0f, dwk, D);
                float* dq = dqp[size_t(prod)].data();  // slots of distinct layers never overlap
                for (int64_t r = 0; r < R; ++r) {
                    float* dst       = dq + r * QW + (slot * H + g * ng) * dd;
                    const float* src = dqs.data() + r * ng * dd;
                    for (int64_t e = 0; e < ng * dd; ++e) dst[e] += src[e];
                }
            }
            layer_loss[size_t(l)] = loss * weight;
        }
    }

    if (grads) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int32_t i = 0; i < n_prod; ++i) {
            const TokenButlerPredictor::Producer& pr = p.producers()[size_t(i)];
            const ProducerActivations& act                  = acts[size_t(i)];
            float* d_lnw = (*grads)[size_t(4 * i)].data();
            float* d_lnb = (*grads)[size_t(4 * i + 1)].data();
            float* d_w1  = (*grads)[size_t(4 * i + 2)].data();
            float* d_w2  = (*grads)[size_t(4 * i + 3)].data();
            std::vector<float> da(size_t(R * I)), dy(size_t(R * E));
            const float* dq = dqp[size_t(i)].data();
            sgemm('T', 'N', QW, I, R, 1.0f, dq, QW, act.a.data(), I, 1.0f, d_w2, I);
            sgemm('N', 'N', R, I, QW, 1.0f, dq, QW, pr.w2.data(), I, 0.0f, da.data(), I);
            for (size_t j = 0; j < da.size(); ++j) {
                const float sg = sigmoid(act.z[j]);
                da[j] *= sg * (1.0f + act.z[j] * (1.0f - sg));
            }
            sgemm('T', 'N', I, E, R, 1.0f, da.data(), I, act.y.data(), E, 1.0f, d_w1, E);
            sgemm('N', 'N', R, E, I, 1.0f, da.data(), I, pr.w1.data(), E, 0.0f, dy.data(), E);
            for (int64_t r = 0; r < R; ++r)
                for (int64_t j = 0; j < E; ++j) {
                    d_lnw[j] += dy[size_t(r * E + j)] * act.xhat[size_t(r * E + j)];
                    d_lnb[j] += dy[size_t(r * E + j)];
                }
        }
    }
    return std::accumulate(layer_loss.begin(), layer_loss.end(), 0.0);
}

float lr_at(int64_t step, int64_t n_steps, float lr, float warmup) {
    // warmup is a float share (0.1f * 100 = 10.0000001): round before the ceiling.
    const int64_t n_warm = std::max<int64_t>(1, int64_t(std::ceil(double(warmup) * double(n_steps) - 1e-4)));
    if (step < n_warm) return lr * float(step + 1) / float(n_warm);
    const double progress = double(step - n_warm) / double(std::max<int64_t>(1, n_steps - n_warm));
    return float(0.5 * double(lr) * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

namespace {

struct Adam {
    std::vector<std::vector<float>> m, v;
    int64_t step = 0;
};

void save_checkpoint(const TokenButlerPredictor& p, const Adam& adam, const std::string& path) {
    p.save(path);
    GgufWriter w;
    w.set_string("general.architecture", "tokenbutler-adam");
    w.set_u64("adam.step", uint64_t(adam.step));
    for (size_t i = 0; i < adam.m.size(); ++i) {
        const int64_t shape[] = {int64_t(adam.m[i].size())};
        w.add_tensor(fmt::format("m.{}", i), DType::F32, shape,
                     {reinterpret_cast<const uint8_t*>(adam.m[i].data()), adam.m[i].size() * sizeof(float)});
        w.add_tensor(fmt::format("v.{}", i), DType::F32, shape,
                     {reinterpret_cast<const uint8_t*>(adam.v[i].data()), adam.v[i].size() * sizeof(float)});
    }
    w.write(path + ".adam");
}

void load_checkpoint(TokenButlerPredictor& p, Adam& adam, const std::string& path) {
    const std::unique_ptr<TokenButlerPredictor> saved = TokenButlerPredictor::load(path, &p.base());
    const PredictorShape &a = saved->shape(), &b = p.shape();
    if (a.group != b.group || a.d_dash != b.d_dash || a.intdim != b.intdim)
        fail(Status::InvalidArg, "checkpoint {} has another predictor shape (G {}, d' {}, intdim {})", path, a.group,
             a.d_dash, a.intdim);
    p.producers()    = saved->producers();
    p.key_proj_all() = saved->key_proj_all();
    const std::unique_ptr<GgufFile> f = GgufFile::open(path + ".adam");
    adam.step                         = int64_t(f->require<uint64_t>("adam.step"));
    for (size_t i = 0; i < adam.m.size(); ++i) {
        for (auto [name, dst] : {std::pair{fmt::format("m.{}", i), &adam.m[i]}, {fmt::format("v.{}", i), &adam.v[i]}}) {
            const GgufTensorInfo& t = f->require_tensor(name);
            if (t.type != DType::F32 || size_t(t.n_elem()) != dst->size())
                fail(Status::Format, "{}.adam: tensor {} has the wrong size", path, name);
            std::memcpy(dst->data(), t.data, dst->size() * sizeof(float));
        }
    }
}

}  // namespace

TrainReport train_predictor(TokenButlerPredictor& p, Session& session, const std::vector<std::vector<int32_t>>& train,
                            const std::vector<std::vector<int32_t>>& held_out, const TrainOptions& o,
                            const std::string& out_path) {
    if (train.empty()) fail(Status::InvalidArg, "no training sequences");
    const HParams& hp                         = session.model().hparams();
    const std::vector<std::vector<float>*> ps = predictor_params(p);
    std::vector<std::vector<float>> grads(ps.size());
    Adam adam;
    for (auto* v : ps) {
        adam.m.emplace_back(v->size(), 0.0f);
        adam.v.emplace_back(v->size(), 0.0f);
    }
    const std::string ckpt = out_path + ".ckpt";
    if (o.resume) {
        std::error_code ec;
        if (!std::filesystem::exists(ckpt, ec)) fail(Status::Io, "--resume: no checkpoint {}", ckpt);
        load_checkpoint(p, adam, ckpt);
        std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(adam.step));
    }
    int64_t n_steps = int64_t(o.epochs) * int64_t(train.size());
    if (o.max_steps > 0) n_steps = std::min<int64_t>(n_steps, o.max_steps);

    TrainReport report;
    std::vector<double> losses;
    TrainSample sample;
    const auto t0    = std::chrono::steady_clock::now();
    int64_t tokens   = 0;
    const int64_t first_step = adam.step;  // > 0 after --resume: the rate and ETA count this run's steps only
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    const int64_t n_seq = int64_t(train.size());
    std::vector<size_t> order;
    int64_t order_epoch = -1;
    for (int64_t step = adam.step; step < n_steps; ++step) {
        if (step / n_seq != order_epoch) {
            order_epoch = step / n_seq;
            order       = epoch_order(size_t(n_seq), order_epoch, o.seed, o.shuffle);
        }
        const std::vector<int32_t>& seq = train[order[size_t(step % n_seq)]];
        collect_sample(session, seq, sample_rows(int64_t(seq.size()), o.rows, o.tail, o.seed + uint64_t(step)),
                       p.shape(), sample);
        for (size_t i = 0; i < ps.size(); ++i) grads[i].assign(ps[i]->size(), 0.0f);
        const double loss = predictor_loss(p, hp, sample, o.loss, &grads, o.loss_layers, o.loss_keys);
        if (!std::isfinite(loss)) fail(Status::Internal, "training diverged at step {} (loss {})", step, loss);
        losses.push_back(loss);
        double norm2 = 0;
        for (const auto& g : grads)
            for (float x : g) norm2 += double(x) * x;
        const double norm = std::sqrt(norm2);
        const float clip  = norm > o.clip ? float(o.clip / norm) : 1.0f;
        const float lr    = lr_at(step, n_steps, o.lr, o.warmup);
        ++adam.step;
        const float bc1 = 1.0f - std::pow(beta1, float(adam.step)), bc2 = 1.0f - std::pow(beta2, float(adam.step));
        for (size_t i = 0; i < ps.size(); ++i) {
            std::vector<float>& w = *ps[i];
            const bool decay      = i == ps.size() - 1 || i % 4 >= 2;  // matrices, not the LayerNorm affine
            for (size_t j = 0; j < w.size(); ++j) {
                const float g = grads[i][j] * clip;
                adam.m[i][j]  = beta1 * adam.m[i][j] + (1 - beta1) * g;
                adam.v[i][j]  = beta2 * adam.v[i][j] + (1 - beta2) * g * g;
                w[j] -= lr * ((adam.m[i][j] / bc1) / (std::sqrt(adam.v[i][j] / bc2) + eps) +
                              (decay ? o.weight_decay * w[j] : 0.0f));
            }
        }
        tokens += int64_t(seq.size());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (o.progress) {
            const double recent = std::accumulate(losses.end() - std::min<int64_t>(10, int64_t(losses.size())),
                                                  losses.end(), 0.0) / double(std::min<size_t>(10, losses.size()));
            const double eta = secs / double(step + 1 - first_step) * double(n_steps - step - 1);
            std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f (last 10: %.4f)  lr %.2e  |g| %.2f  %.0f tok/s  ETA %.0f s   ",
                         static_cast<long long>(step + 1), static_cast<long long>(n_steps), loss, recent, double(lr),
                         norm, double(tokens) / secs, eta);
            std::fflush(stderr);
        }
        if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < n_steps)
            save_checkpoint(p, adam, ckpt);
    }
    if (o.progress) std::fprintf(stderr, "\n");
    report.steps   = int64_t(losses.size());
    report.tokens  = tokens;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!losses.empty()) {
        const size_t k    = std::max<size_t>(1, losses.size() / 10);
        report.first_loss = std::accumulate(losses.begin(), losses.begin() + int64_t(k), 0.0) / double(k);
        report.last_loss  = std::accumulate(losses.end() - int64_t(k), losses.end(), 0.0) / double(k);
    }
    if (!held_out.empty()) {
        double sum = 0;
        for (size_t i = 0; i < held_out.size(); ++i) {
            collect_sample(session, held_out[i], sample_rows(int64_t(held_out[i].size()), o.rows, o.tail, 7 + i),
                           p.shape(), sample);
            sum += predictor_loss(p, hp, sample, o.loss, nullptr, o.loss_layers, o.loss_keys);
        }
        report.eval_loss = sum / double(held_out.size());
    }
    p.save(out_path);
    std::error_code ec;
    std::filesystem::remove(ckpt, ec);
    std::filesystem::remove(ckpt + ".adam", ec);
    return report;
}

}  // namespace butler
