// SPDX-License-Identifier: MIT
// CPU partial attention throughput (offload/split_attention.h cpu_partial: OpenMP over blocks of tokens, the CPU
// side of --attn exact) in GB/s of K/V read, next to the machine's memory read bandwidth measured in the same run.
//   Shape: the default model's global layers (1 KV head, 4 query heads, head_dim 256), f16 K/V in the host store;
//   every token of the context attended (the worst case of exact mode: the device holds nothing).
//   Bytes per call: n_tok x (head_dim + head_dim_v) x 2. Memory bandwidth: a parallel sum over a 512 MiB buffer.
// Output: a table on stdout; --json FILE writes every row with the machine.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "offload/kv_store.h"
#include "offload/split_attention.h"
#include "perf/harness.h"
#include "runtime/device.h"

using namespace butler;

namespace {

// Parallel read bandwidth: sums a buffer of n_bytes with all threads, best of reps, GB/s.
double read_bandwidth_gbps(size_t n_bytes, int reps) {
    std::vector<uint64_t> buf(n_bytes / 8);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = i;  // first touch by the threads that read it
    double best   = 0;
    uint64_t sink = 0;
    for (int r = 0; r < reps; ++r) {
        perf::Timer t;
        uint64_t s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
        for (size_t i = 0; i < buf.size(); ++i) s += buf[i];
        best = std::max(best, double(n_bytes) / t.seconds() / 1e9);
        sink += s;
    }
    if (sink == 42) std::printf(" ");
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("CPU partial attention throughput vs memory bandwidth");
    std::vector<int64_t> contexts{4096, 8192, 16384, 32768, 65536};
    int reps = 10;
    std::string json_path;
    app.add_option("--ctx", contexts, "context lengths in tokens");
    app.add_option("--reps", reps, "repetitions per context");
    app.add_option("--json", json_path, "write results as JSON");
    CLI11_PARSE(app, argc, argv);

    const int32_t n_group = 4, hd = 256;
    const double bw = read_bandwidth_gbps(size_t(512) << 20, 5);
    std::printf("# %s, %d CPUs, %d OpenMP threads; memory read bandwidth %.1f GB/s\n", perf::cpu_model_name().c_str(),
                perf::n_cpus(), omp_get_max_threads(), bw);
    std::printf("| tokens | KV MiB | median ms | GB/s | %% of memory bandwidth |\n|---|---|---|---|---|\n");
    nlohmann::json rows = nlohmann::json::array();
    auto dev            = make_device("cpu");
    std::mt19937 rng(1);
    std::normal_distribution<float> gauss(0.f, 1.f);
    for (const int64_t n_tok : contexts) {
        HostKvStore store(*dev, KvStoreShape{1, 1, hd, hd, 16, n_tok, DType::F16});
        store.reserve(n_tok);
        std::vector<float> row(hd);
        for (int64_t t = 0; t < n_tok; ++t) {
            for (auto& x : row) x = gauss(rng);
            store.write(0, 0, t, row.data(), row.data());
        }
        std::vector<int32_t> ids(static_cast<size_t>(n_tok));
        for (int64_t t = 0; t < n_tok; ++t) ids[size_t(t)] = int32_t(t);
        std::vector<float> q(size_t(n_group * hd)), out(q.size()), lse(n_group);
        for (auto& x : q) x = gauss(rng) * 0.06f;
        CpuPartialScratch scratch;
        scratch.reserve(n_tok, n_group, hd);
        cpu_partial(q.data(), n_group, store.view(0), 0, ids, out.data(), lse.data(), scratch);  // warm-up
        std::vector<double> ms;
        for (int r = 0; r < reps; ++r) {
            perf::Timer t;
            cpu_partial(q.data(), n_group, store.view(0), 0, ids, out.data(), lse.data(), scratch);
            ms.push_back(t.seconds() * 1e3);
        }
        const perf::Summary s = perf::summarize(ms);
        const double bytes    = double(n_tok) * 2 * hd * 2;
        const double gbps     = bytes / (s.median * 1e-3) / 1e9;
        std::printf("| %lld | %.1f | %.3f | %.2f | %.0f%% |\n", static_cast<long long>(n_tok), bytes / (1 << 20),
                    s.median, gbps, 100.0 * gbps / bw);
        rows.push_back({{"n_tok", n_tok},
                        {"kv_bytes", bytes},
                        {"median_ms", s.median},
                        {"p10_ms", s.p10},
                        {"p90_ms", s.p90},
                        {"gbps", gbps},
                        {"memory_gbps", bw}});
    }
    if (!json_path.empty()) {
        nlohmann::json j = {{"benchmark", "bench_attention"},
                            {"cpu", perf::cpu_model_name()},
                            {"n_cpus", perf::n_cpus()},
                            {"threads", omp_get_max_threads()},
                            {"memory_read_gbps", bw},
                            {"shape", {{"n_group", n_group}, {"head_dim", hd}, {"kv_type", "f16"}}},
                            {"rows", rows}};
        std::ofstream(json_path) << j.dump(2) << "\n";
    }
    return 0;
}
