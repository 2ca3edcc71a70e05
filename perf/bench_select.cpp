// SPDX-License-Identifier: MIT
// One TokenButler selection as the offload pipeline makes it for one (layer, KV head): the group's softmax mass over
// every candidate (KernelTable::imp_score) and the budget's best ids (KernelTable::topk), on a device through its
// kernel table, timed from enqueue to the picks being usable by the host (a stream synchronize). Importance keys are
// random (n_tok, d') f32 rows already in device memory; queries (n_group, d') in pinned memory.
//   A decode step runs this once per sparsified layer and KV head on a fresh prediction (every --interval steps):
//   Gemma 3 270M: 3 layers x 1 KV head; Llama-3.1-8B: 32 layers x 8 KV heads.
// On cpu/emu the kernels are cpu_kernels/select.h (what host selection runs); --device cuda gives the GPU figures.
// Output: a table on stdout; --json FILE writes every row with the machine and device.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "perf/harness.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

using namespace butler;

int main(int argc, char** argv) {
    CLI::App app("TokenButler selection (scores + top-k) for one (layer, KV head) on a device");
    std::string device_spec = "cpu";
    std::vector<int64_t> contexts{8192, 32768, 131072};
    int32_t n_group = 4, d = 16;
    double keep = 0.10;
    int reps = 20;
    std::string json_path;
    app.add_option("--device", device_spec, "cpu (default), emu[:opts] or cuda");
    app.add_option("-c,--ctx", contexts, "candidate counts")->delimiter(',');
    app.add_option("--group", n_group, "query heads per KV head (Gemma 3 270M: 4, Llama-3.1-8B: 4)");
    app.add_option("--d-dash", d, "importance dimension d'");
    app.add_option("--keep", keep, "share of the candidates picked (the budget)");
    app.add_option("--reps", reps, "timed repetitions (after one warm-up)");
    app.add_option("--json", json_path, "write results as JSON");
    CLI11_PARSE(app, argc, argv);

    try {
        auto dev            = make_device(device_spec);
        Stream& stream      = dev->default_stream();
        const KernelTable& k = dev->kernels();
        std::mt19937 rng(1);
        std::normal_distribution<float> g(0.f, 1.f);
        std::printf("# %s, %d CPUs; device %s; group %d, d' %d, keep %.0f%%, median of %d\n",
                    perf::cpu_model_name().c_str(), perf::n_cpus(), dev->name().c_str(), n_group, d, 100 * keep, reps);
        std::printf("| candidates | picks | scores + top-k ms | per token ns |\n|---|---|---|---|\n");
        nlohmann::json rows = nlohmann::json::array();
        for (const int64_t n : contexts) {
            const int64_t picks = std::max<int64_t>(1, int64_t(std::ceil(keep * double(n))));
            std::vector<uint16_t> keys_host(size_t(n * d));  // importance keys are IEEE half
            for (uint16_t& x : keys_host) x = f32_to_f16(g(rng));
            Buffer keys    = dev->alloc(sizeof(uint16_t) * keys_host.size(), MemKind::Device);
            Buffer q       = dev->alloc(sizeof(float) * size_t(n_group * d), MemKind::PinnedHost);
            Buffer score   = dev->alloc(sizeof(float) * size_t(n), MemKind::Device);
            Buffer ids     = dev->alloc(sizeof(int32_t) * size_t(picks), MemKind::PinnedHost);
            Buffer scratch = dev->alloc(std::max(imp_score_scratch_bytes(n, n_group), topk_scratch_bytes(n)),
                                        MemKind::Device);
            stream.copy(keys.data(), keys_host.data(), keys.n_bytes());
            for (int32_t i = 0; i < n_group * d; ++i) q.as<float>()[i] = 2.f * g(rng);
            const ImpScoreArgs sa{keys.as<uint16_t>(), q.as<float>(), n_group, d, 0, n, 1.0f / std::sqrt(float(d)),
                                  score.as<float>(), scratch.data()};
            const TopkArgs ta{score.as<float>(), 0, n, picks, ids.as<int32_t>(), nullptr, scratch.data()};
            auto once = [&] {
                k.imp_score(stream, &sa);
                k.topk(stream, &ta);
                stream.synchronize();
            };
            once();  // warm-up
            // The picks are ascending and distinct: a cheap check that the kernels ran.
            for (int64_t i = 1; i < picks; ++i)
                if (ids.as<int32_t>()[i] <= ids.as<int32_t>()[i - 1]) fail(Status::Internal, "topk ids not ascending");
            std::vector<double> ms;
            for (int r = 0; r < reps; ++r) {
                perf::Timer t;
                once();
                ms.push_back(1e3 * t.seconds());
            }
            const double med = perf::summarize(ms).median;
            std::printf("| %lld | %lld | %.3f | %.1f |\n", (long long)n, (long long)picks, med, 1e6 * med / double(n));
            std::fflush(stdout);
            rows.push_back({{"candidates", n}, {"picks", picks}, {"ms", med}, {"ns_per_token", 1e6 * med / double(n)}});
        }
        if (!json_path.empty()) {
            const nlohmann::json j = {{"cpu", perf::cpu_model_name()}, {"n_cpus", perf::n_cpus()},
                                      {"device", dev->name()},       {"group", n_group},
                                      {"d_dash", d},                 {"keep", keep},
                                      {"reps", reps},                {"rows", rows}};
            std::ofstream(json_path) << j.dump(2) << "\n";
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_select: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
