// SPDX-License-Identifier: MIT
// butler perplexity: llama.cpp's llama-perplexity convention, so the numbers compare with what users know.
//   The whole text is tokenized once, with BOS at its start. It is cut into non-overlapping windows of ctx tokens
//   (a tail shorter than ctx is dropped; at least 2 windows are required). Each window is evaluated from an empty
//   cache with its first token replaced by BOS, and the logits at positions ctx/2 .. ctx-2 are scored against the
//   next token: ctx/2 - 1 predictions per window. PPL = exp(mean negative log-likelihood) over all of them.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cmath>
#include <cstdio>

#include "apps/common.h"
#include "apps/offload_options.h"
#include "predictor/simulate.h"
#include "predictor/tokenbutler.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct PerplexityOptions {
    CommonOptions common;
    std::string file;
    int n_ctx = 1024;
    int n_chunks = 0;  // 0: all
    int n_ubatch = 512;
    std::string kv_type = "f16";
    std::string view;  // decode | simulate; empty: plain (decode when offloading)
    bool top1 = false;  // --top1: also run each window densely and report top-1 agreement with it
    std::string activations;  // --activations f32|q8
    OffloadOptions offload;
};

int run_perplexity(const PerplexityOptions& o) {
    const std::string text = read_file(o.file);
    auto model = load_model(o.common);
    const Tokenizer& tok = model->tokenizer();
    const HParams& hp = model->hparams();
    if (o.n_ctx < 4) fail(Status::InvalidArg, "-c/--ctx must be at least 4 (got {})", o.n_ctx);
    const std::vector<TokenId> tokens = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
    const int64_t n_ctx = o.n_ctx;
    if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
        fail(Status::InvalidArg, "'{}' has {} tokens; perplexity at -c {} needs at least {} (2 x ctx)", o.file,
             tokens.size(), n_ctx, 2 * n_ctx);
    int64_t n_chunk = static_cast<int64_t>(tokens.size()) / n_ctx;
    if (o.n_chunks > 0) n_chunk = std::min<int64_t>(n_chunk, o.n_chunks);

    SessionParams sp;
    sp.n_ctx = static_cast<int32_t>(n_ctx);
    sp.n_ubatch = o.n_ubatch;
    sp.kv_type = parse_kv_type(o.kv_type);
    sp.float_activations = parse_float_activations(o.activations);
    sp.offload = offload_config(o.offload);
    const std::string view = !o.view.empty() ? o.view : sp.offload.enabled ? "decode" : "plain";
    if (sp.n_ctx > hp.n_ctx_train) fail(Status::InvalidArg, "-c {} exceeds the model's training context {}", n_ctx, hp.n_ctx_train);
    // The simulate view: each window in one masked prefill (predictor/simulate.h), --budget as the share kept.
    std::unique_ptr<MaskedPrefillSimulator> sim;
    if (view == "simulate") {
        if (!sp.offload.enabled || sp.offload.budget_fraction <= 0)
            fail(Status::Usage, "--view simulate needs --selector and a --budget given as a share kept (e.g. 50%)");
        SimulateParams simp;
        simp.selector = sp.offload.selector;
        simp.keep     = sp.offload.budget_fraction;
        simp.sinks    = sp.offload.sinks;
        if (sp.offload.window >= 0) simp.window = sp.offload.window;
        if (is_tokenbutler_selector(simp.selector))
            simp.predictor = load_predictor_for(simp.selector, *model, PredictorUse::EveryLayer);
        sim         = std::make_unique<MaskedPrefillSimulator>(hp, simp, n_ctx);
        sp.offload  = OffloadConfig{};
        sp.n_ubatch = static_cast<int32_t>(n_ctx);
    }
    Session session(model, sp);
    if (sim) session.set_attention_override([&sim](const LayerAttentionIo& io) { return sim->attend(io); });

    const int64_t first = n_ctx / 2;
    const int64_t n_scored = n_ctx - 1 - first;
    // --top1: a plain session over the same windows; agreement = the share of scored positions where both argmax agree.
    std::unique_ptr<Session> dense;
    std::vector<float> dense_hidden;
    std::vector<TokenId> argmax(static_cast<size_t>(n_scored)), dense_argmax(argmax.size());
    std::vector<double> dense_logprobs(static_cast<size_t>(n_scored));
    int64_t n_agree = 0;
    if (o.top1) {
        SessionParams dp = sp;
        dp.offload = OffloadConfig{};
        dense = std::make_unique<Session>(model, dp);
        dense_hidden.resize(static_cast<size_t>(n_scored * hp.n_embd));
    }
    std::vector<int32_t> rows(static_cast<size_t>(n_scored));
    for (int64_t j = 0; j < n_scored; ++j) rows[static_cast<size_t>(j)] = static_cast<int32_t>(first + j);
    std::vector<float> hidden(static_cast<size_t>(n_scored * hp.n_embd));
    std::vector<TokenId> window(static_cast<size_t>(n_ctx));
    std::vector<double> logprobs(static_cast<size_t>(n_scored));
    nlohmann::json chunks = nlohmann::json::array();

    if (!o.common.json)
        std::fprintf(stderr, "perplexity: %zu tokens, %lld chunks of %lld, scoring %lld tokens per chunk\n", tokens.size(),
                     static_cast<long long>(n_chunk), static_cast<long long>(n_ctx), static_cast<long long>(n_scored));
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t c = 0; c < n_chunk; ++c) {
        const int64_t start = c * n_ctx;
        std::copy(tokens.begin() + start, tokens.begin() + start + n_ctx, window.begin());
        if (tok.bos() >= 0) window[0] = tok.bos();
        if (view == "decode") {
            // DESIGN.md's decode view: the first half prefilled densely, the scored half fed token by token.
            eval_decode_view(session, window, first, first, n_scored, hidden.data());
        } else {
            session.reset();
            session.eval(window, rows, hidden.data());
        }
        session.target_logprobs(hidden.data(), n_scored, tokens.data() + start + first + 1, logprobs.data(),
                                dense ? argmax.data() : nullptr);
        if (dense) {
            dense->reset();
            dense->eval(window, rows, dense_hidden.data());
            dense->target_logprobs(dense_hidden.data(), n_scored, tokens.data() + start + first + 1,
                                   dense_logprobs.data(), dense_argmax.data());
            for (int64_t j = 0; j < n_scored; ++j) n_agree += argmax[size_t(j)] == dense_argmax[size_t(j)];
        }
        // A NaN or Inf logit makes its row's log-probability non-finite; a perplexity over it would print "nan"
        // and hide where the model's numbers overflowed.
        for (int64_t j = 0; j < n_scored; ++j)
            if (!std::isfinite(logprobs[size_t(j)]))
                fail(Status::Format, "{}: the logits are not finite at position {} of window {} (tokens {}..{}): "
                     "the model's activations overflow", model->path(), first + j, c + 1, start, start + n_ctx - 1);
        for (double lp : logprobs) {
            nll -= lp;
            nll2 += lp * lp;
        }
        count += n_scored;
        const double ppl = std::exp(nll / double(count));
        chunks.push_back(ppl);
        if (!o.common.json) {
            std::printf("[%lld]%.4f,", static_cast<long long>(c + 1), ppl);
            std::fflush(stdout);
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double mean = nll / double(count);
    const double ppl = std::exp(mean);
    double var = nll2 / double(count) - mean * mean;
    const double stderr_ppl = (var > 0 && count > 1) ? std::sqrt(var / double(count - 1)) * ppl : 0.0;
    if (o.common.json) {
        nlohmann::json j = {{"model", model->path()},   {"file", o.file},      {"ctx", n_ctx},
                            {"n_tokens", tokens.size()}, {"n_chunks", n_chunk}, {"n_scored", count},
                            {"ppl", ppl},               {"ppl_stderr", stderr_ppl}, {"chunk_ppl", chunks},
                            {"seconds", seconds},       {"kv_type", o.kv_type}, {"activations", o.activations},
                            {"view", view},             {"offload", offload_stats_json(session)},
                            {"masked_share", sim ? nlohmann::json(sim->masked_share()) : nlohmann::json()},
                            {"top1_agreement", dense ? nlohmann::json(double(n_agree) / double(count)) : nlohmann::json()},
                            {"convention", "llama-perplexity: non-overlapping windows, BOS first, second half scored"}};
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, stderr_ppl);
        if (dense) std::printf("Top-1 agreement with dense attention: %.4f\n", double(n_agree) / double(count));
        if (sim) std::fprintf(stderr, "simulate: %.1f%% of the causal keys masked in layers >= 1\n", 100.0 * sim->masked_share());
        std::fprintf(stderr, "perplexity: %.1f s (%.1f tokens/s)\n", seconds, double(n_chunk * n_ctx) / seconds);
        print_offload_stats(session);
    }
    return 0;
}

}  // namespace

Action register_perplexity(CLI::App& sub) {
    auto o = std::make_shared<PerplexityOptions>();
    sub.description(
        "Perplexity of a text file in llama.cpp's llama-perplexity convention: the text tokenized once with BOS at\n"
        "its start, non-overlapping windows of -c tokens, each window's first token replaced by BOS, and the logits\n"
        "at positions c/2 .. c-2 scored against the next token (c/2 - 1 predictions per window; at least 2 x c\n"
        "tokens needed). Numbers compare directly with llama-perplexity's.");
    add_common_options(sub, o->common);
    sub.add_option("-f,--file", o->file, "text file")->required();
    sub.add_option("-c,--ctx", o->n_ctx, "window size in tokens (default 1024)");
    sub.add_option("--chunks", o->n_chunks, "score only the first N windows (0 = all)")->check(CLI::NonNegativeNumber);
    sub.add_option("--ubatch", o->n_ubatch, "tokens per forward chunk")->check(CLI::PositiveNumber);
    sub.add_option("--kv-type", o->kv_type, "KV cache type: f16, bf16, f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
    add_activations_option(sub, o->activations, "f32");
    sub.add_option("--view", o->view, "decode (first half prefilled, second half decoded token by token; the default "
                                      "with offload) or simulate (one masked prefill, every layer >= 1 sparsified; --budget P% kept)")
        ->check(CLI::IsMember({"decode", "simulate"}));
    sub.add_flag("--top1", o->top1, "also evaluate each window densely and report top-1 agreement with it");
    add_offload_options(sub, o->offload);
    return [o] { return run_perplexity(*o); };
}

}  // namespace butler::cli
