// SPDX-License-Identifier: MIT
// llama-bench's measurements on Butler's CPU path, with llama-bench's definitions:
//   ppN at depth d: the KV cache already holds d tokens; time the prefill of N more (one forward in chunks of
//                   n_ubatch, logits of the last token) -> N / seconds tokens/s.
//   tgN at depth d: the cache holds d tokens; time N single-token decode steps -> N / seconds tokens/s.
// Tokens are random ids (seeded), as llama-bench uses. Each test starts from a fresh prefill of d tokens, not timed.
// Output: a table on stdout and, with --json FILE, one JSON document with the machine and every sample.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <random>

#include "cpu_kernels/quant_dot.h"
#include "perf/harness.h"
#include "runtime/model.h"
#include "runtime/model_path.h"
#include "runtime/session.h"
#include "runtime/status.h"

using namespace butler;

namespace {

std::vector<TokenId> random_tokens(int64_t n, int32_t n_vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<TokenId> dist(0, n_vocab - 1);
    std::vector<TokenId> t(static_cast<size_t>(n));
    for (auto& x : t) x = dist(rng);
    return t;
}

void prefill_depth(Session& s, int64_t depth, int32_t n_vocab) {
    s.reset();
    if (depth == 0) return;
    const auto tokens = random_tokens(depth, n_vocab, 42);
    s.eval(tokens, {}, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"llama-bench-style pp/tg throughput of Butler's CPU path"};
    std::string model_path, json_path;
    std::vector<int64_t> depths = {0, 1024, 4096, 16384};
    int n_prompt = 512, n_gen = 64, reps = 3, threads = 0, n_ubatch = 512;
    std::string kv = "f16";
    app.add_option("-m,--model", model_path, "GGUF model (default: the default model)");
    app.add_option("-d,--depths", depths, "depths (tokens already in the cache)")->delimiter(',');
    app.add_option("-p,--n-prompt", n_prompt, "prompt tokens of the pp test");
    app.add_option("-n,--n-gen", n_gen, "generated tokens of the tg test");
    app.add_option("-r,--repetitions", reps, "repetitions of each test");
    app.add_option("-t,--threads", threads, "threads (default: all cores)");
    app.add_option("--ubatch", n_ubatch, "prefill chunk");
    app.add_option("--kv-type", kv, "KV type f16|bf16|f32");
    app.add_option("--json", json_path, "write results as JSON to this file");
    CLI11_PARSE(app, argc, argv);
    try {
        if (threads > 0) omp_set_num_threads(threads);
        auto model = Model::load(resolve_model_path(model_path));
        const int32_t n_vocab = model->hparams().n_vocab;
        const int max_threads = omp_get_max_threads();
        std::printf("model %s, %d threads, CPU %s (%d cpus), %s dot kernels, kv %s, %d repetitions\n",
                    model->path().c_str(), max_threads, perf::cpu_model_name().c_str(), perf::n_cpus(),
                    dot_isa_name(dot_isa()), kv.c_str(), reps);
        std::printf("| test | depth | tokens/s | stdev |\n|---|---|---|---|\n");
        nlohmann::json results = nlohmann::json::array();
        for (int64_t depth : depths) {
            SessionParams sp;
            sp.n_ctx = static_cast<int32_t>(depth + std::max(n_prompt, n_gen));
            sp.n_ubatch = n_ubatch;
            sp.kv_type = kv == "f32" ? DType::F32 : kv == "bf16" ? DType::BF16 : DType::F16;
            Session session(model, sp);
            std::vector<float> logits(static_cast<size_t>(n_vocab));
            for (const char* test : {"pp", "tg"}) {
                const bool pp = test[0] == 'p';
                const int n = pp ? n_prompt : n_gen;
                if (n <= 0) continue;
                std::vector<double> tps;
                prefill_depth(session, depth, n_vocab);
                for (int r = 0; r < reps; ++r) {
                    // A rewind to the depth instead of a new prefill when the sliding-window rings allow it.
                    if (r > 0) {
                        try {
                            session.truncate(static_cast<int32_t>(depth));
                        } catch (const Error&) {
                            prefill_depth(session, depth, n_vocab);
                        }
                    }
                    const auto tokens = random_tokens(n, n_vocab, 1000 + uint64_t(r));
                    perf::Timer timer;
                    if (pp) {
                        session.eval_last(tokens, logits.data());
                    } else {
                        for (int i = 0; i < n; ++i) session.eval_last(std::span(tokens).subspan(size_t(i), 1), logits.data());
                    }
                    tps.push_back(double(n) / timer.seconds());
                }
                const perf::Summary s = perf::summarize(tps);
                std::printf("| %s%d | %lld | %.2f | %.2f |\n", test, n, static_cast<long long>(depth), s.mean, s.stdev);
                std::fflush(stdout);
                results.push_back({{"test", fmt::format("{}{}", test, n)},
                                   {"depth", depth},
                                   {"tokens_per_second", s.mean},
                                   {"stdev", s.stdev},
                                   {"samples", tps}});
            }
        }
        if (!json_path.empty()) {
            nlohmann::json doc = {{"benchmark", "bench_llama (llama-bench definitions)"},
                                  {"model", model->path()},
                                  {"threads", max_threads},
                                  {"cpu", perf::cpu_model_name()},
                                  {"dot_isa", dot_isa_name(dot_isa())},
                                  {"n_cpus", perf::n_cpus()},
                                  {"memory_gib", perf::total_memory_gib()},
                                  {"kv_type", kv},
                                  {"repetitions", reps},
                                  {"results", results}};
            std::ofstream(json_path) << doc.dump(2) << "\n";
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_llama: error: %s\n", e.what());
        return exit_code(e.status());
    }
    return 0;
}
