// SPDX-License-Identifier: MIT
// butler generate: prompt -> streamed continuation.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "apps/common.h"
#include "apps/offload_options.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct GenerateOptions {
    CommonOptions common;
    std::string prompt;
    std::string prompt_file;
    int n_predict = 128;
    int n_ctx = 0;
    int n_ubatch = 512;
    std::string kv_type = "f16";
    std::string activations;  // --activations f32|q8
    SamplerParams sampler;
    bool ignore_eos = false;
    bool parse_special = false;
    OffloadOptions offload;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_generate(const GenerateOptions& o) {
    if (o.prompt.empty() == o.prompt_file.empty()) fail(Status::Usage, "give exactly one of -p/--prompt and -f/--file");
    const std::string prompt = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
    auto model = load_model(o.common);
    const Tokenizer& tok = model->tokenizer();
    const HParams& hp = model->hparams();
    std::vector<TokenId> tokens = tok.encode(prompt, /*add_special=*/true, o.parse_special);
    if (tokens.empty()) fail(Status::InvalidArg, "the prompt is empty");
    const int64_t n_prompt = static_cast<int64_t>(tokens.size());
    int64_t n_ctx = o.n_ctx;
    if (n_ctx == 0) n_ctx = std::min<int64_t>(hp.n_ctx_train, n_prompt + o.n_predict);
    if (n_prompt + o.n_predict > n_ctx)
        fail(Status::InvalidArg, "the prompt ({} tokens) plus {} tokens to generate exceed the context of {} tokens{}",
             n_prompt, o.n_predict, n_ctx,
             o.n_ctx == 0 ? fmt::format(" (the model's training context)") : std::string(" (-c/--ctx)"));

    SessionParams sp;
    sp.n_ctx = static_cast<int32_t>(n_ctx);
    sp.n_ubatch = o.n_ubatch;
    sp.kv_type = parse_kv_type(o.kv_type);
    sp.float_activations = parse_float_activations(o.activations);
    sp.offload = offload_config(o.offload);
    Session session(model, sp);
    Sampler sampler(o.sampler, hp.n_vocab);
    std::vector<float> logits(static_cast<size_t>(hp.n_vocab));

    const auto t0 = std::chrono::steady_clock::now();
    session.eval_last(tokens, logits.data());
    const double t_prompt = seconds_since(t0);

    std::vector<TokenId> generated;
    std::string text;
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.n_predict; ++i) {
        const TokenId next = sampler.sample(logits);
        if (!o.ignore_eos && tok.is_end_of_generation(next)) break;
        generated.push_back(next);
        const std::string piece = tok.piece(next);
        text += piece;
        if (!o.common.json) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        }
        if (i + 1 < o.n_predict) session.eval_last(std::span<const TokenId>(&next, 1), logits.data());
    }
    const double t_gen = seconds_since(t1);
    const double prompt_tps = double(n_prompt) / std::max(t_prompt, 1e-9);
    const double gen_tps = generated.empty() ? 0.0 : double(generated.size()) / std::max(t_gen, 1e-9);
    if (o.common.json) {
        nlohmann::json j = {{"model", model->path()},
                            {"prompt", prompt},
                            {"text", text},
                            {"prompt_tokens", tokens},
                            {"tokens", generated},
                            {"n_prompt", n_prompt},
                            {"n_generated", generated.size()},
                            {"prompt_seconds", t_prompt},
                            {"generate_seconds", t_gen},
                            {"prompt_tokens_per_second", prompt_tps},
                            {"generate_tokens_per_second", gen_tps},
                            {"offload", offload_stats_json(session)}};
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("\n");
        std::fflush(stdout);
        std::fprintf(stderr, "butler: prompt %lld tokens in %.2f s (%.1f tok/s), generated %zu tokens in %.2f s (%.1f tok/s)\n",
                     static_cast<long long>(n_prompt), t_prompt, prompt_tps, generated.size(), t_gen, gen_tps);
        print_offload_stats(session);
    }
    return 0;
}

}  // namespace

Action register_generate(CLI::App& sub) {
    auto o = std::make_shared<GenerateOptions>();
    add_common_options(sub, o->common);
    sub.add_option("-p,--prompt", o->prompt, "prompt text (special tokens are not parsed unless --parse-special)");
    sub.add_option("-f,--file", o->prompt_file, "read the prompt from a file");
    sub.add_option("-n,--n-predict", o->n_predict, "tokens to generate")->check(CLI::NonNegativeNumber);
    sub.add_option("-c,--ctx", o->n_ctx, "context size in tokens (default: prompt + n, at most the training context)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--ubatch", o->n_ubatch, "tokens per prefill chunk")->check(CLI::PositiveNumber);
    sub.add_option("--kv-type", o->kv_type, "KV cache type: f16, bf16, f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
    add_activations_option(sub, o->activations, "q8");
    sub.add_option("--temp", o->sampler.temperature, "temperature; 0 = greedy");
    sub.add_option("--top-k", o->sampler.top_k, "top-k (0 = off)");
    sub.add_option("--top-p", o->sampler.top_p, "top-p (1 = off)");
    sub.add_option("--min-p", o->sampler.min_p, "min-p (0 = off)");
    sub.add_option("--seed", o->sampler.seed, "random seed");
    sub.add_flag("--ignore-eos", o->ignore_eos, "keep generating after end-of-sequence tokens");
    sub.add_flag("--parse-special", o->parse_special, "parse special tokens written in the prompt");
    add_offload_options(sub, o->offload);
    return [o] { return run_generate(*o); };
}

}  // namespace butler::cli
