// SPDX-License-Identifier: MIT
// Host -> device row copies as the copy engine issues them: the gather path (one Stream::gather over all pieces; on
// cuda one kernel reading mapped pinned memory) against one Stream::copy per piece (cudaMemcpyAsync per run), and
// one contiguous copy of the same byte count (the link's ceiling), for runs of 1..4096 rows.
//   Source: a pinned host region of --host-mib (the K/V store's stand-in); destination: device memory. Each
//   repetition copies --total-mib in runs of the given length at random, non-overlapping, row-aligned source
//   offsets into consecutive device slots. The first gather of every run length is checked byte for byte.
// On emu the figures are the emulator's link model (0.54 x host memcpy, --device emu:launch_us=N adds a per-copy
// cost); the numbers that matter come from --device cuda on the GPU machine (REFERENCE.md §4: PCIe 51.4 GB/s).
// Output: a table on stdout; --json FILE writes every row with the machine and device.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "perf/harness.h"
#include "runtime/device.h"
#include "runtime/status.h"

using namespace butler;

namespace {

struct Result {
    int64_t run_rows;
    size_t n_pieces;
    double gather_gbps, memcpy_gbps, contiguous_gbps;
};

// Median GB/s of `reps` timed runs of fn (each moving n_bytes and ending with a stream synchronize).
template <typename Fn>
double median_gbps(int reps, uint64_t n_bytes, Fn&& fn) {
    std::vector<double> s;
    for (int r = 0; r < reps; ++r) {
        perf::Timer t;
        fn();
        s.push_back(double(n_bytes) / t.seconds() / 1e9);
    }
    return perf::summarize(s).median;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Host -> device row copies: gather vs one copy per run vs contiguous");
    std::string device_spec = "emu";
    std::vector<int64_t> run_rows{1, 4, 16, 64, 256, 4096};
    int64_t row_bytes = 256, host_mib = 1024, total_mib = 64;
    int reps = 5;
    std::string json_path;
    app.add_option("--device", device_spec, "cuda, emu[:opts] or cpu");
    app.add_option("--runs", run_rows, "run lengths in rows")->delimiter(',');
    app.add_option("--row-bytes", row_bytes, "bytes per row (256: head_dim 128 in f16)");
    app.add_option("--host-mib", host_mib, "pinned host region the rows come from");
    app.add_option("--total-mib", total_mib, "bytes moved per repetition");
    app.add_option("--reps", reps, "timed repetitions per row (after one warm-up)");
    app.add_option("--json", json_path, "write results as JSON");
    CLI11_PARSE(app, argc, argv);

    try {
        auto dev = make_device(device_spec);
        const uint64_t host_bytes = uint64_t(host_mib) << 20, total = uint64_t(total_mib) << 20;
        const int64_t host_rows = int64_t(host_bytes) / row_bytes, total_rows = int64_t(total) / row_bytes;
        Buffer host = dev->alloc(host_bytes, MemKind::PinnedHost);
        Buffer dst  = dev->alloc(total, MemKind::Device);
        std::vector<uint8_t> back(total);
        std::mt19937_64 rng(1);
        for (uint64_t i = 0; i < host_bytes / 8; ++i) host.as<uint64_t>()[i] = rng();
        Stream& stream = dev->default_stream();

        std::printf("# %s, %d CPUs; device %s; %lld-byte rows, %lld MiB per repetition, median of %d\n",
                    perf::cpu_model_name().c_str(), perf::n_cpus(), dev->name().c_str(), (long long)row_bytes,
                    (long long)total_mib, reps);
        std::printf("| run rows | pieces | gather GB/s | copy per run GB/s | contiguous GB/s |\n|---|---|---|---|---|\n");
        std::vector<Result> results;
        for (int64_t run : run_rows) {
            if (run < 1 || run > total_rows) fail(Status::Usage, "--runs: {} rows does not fit the {} moved", run, total_rows);
            // Random non-overlapping runs: distinct slots of `run` rows in the host region, shuffled.
            const int64_t n_runs = total_rows / run, host_slots = host_rows / run;
            if (host_slots < n_runs) fail(Status::Usage, "--host-mib is too small for --total-mib");
            std::vector<int64_t> slot(size_t(host_slots), 0);
            std::iota(slot.begin(), slot.end(), 0);
            std::shuffle(slot.begin(), slot.end(), rng);
            Buffer pieces = dev->alloc(sizeof(CopyPiece) * size_t(n_runs), MemKind::PinnedHost);
            CopyPiece* p  = pieces.as<CopyPiece>();
            for (int64_t i = 0; i < n_runs; ++i)
                p[i] = CopyPiece{dst.as<uint8_t>() + i * run * row_bytes, host.as<uint8_t>() + slot[size_t(i)] * run * row_bytes,
                                 uint64_t(run * row_bytes)};
            const uint64_t moved = uint64_t(n_runs * run * row_bytes);

            stream.gather(p, size_t(n_runs));  // warm-up, checked
            stream.copy(back.data(), dst.data(), moved);
            stream.synchronize();
            for (int64_t i = 0; i < n_runs; ++i)
                if (std::memcmp(back.data() + i * run * row_bytes, p[i].src, size_t(run * row_bytes)) != 0)
                    fail(Status::Internal, "gather of {}-row runs: run {} arrived wrong", run, i);

            Result r{run, size_t(n_runs), 0, 0, 0};
            r.gather_gbps = median_gbps(reps, moved, [&] {
                stream.gather(p, size_t(n_runs));
                stream.synchronize();
            });
            r.memcpy_gbps = median_gbps(reps, moved, [&] {
                for (int64_t i = 0; i < n_runs; ++i) stream.copy(p[i].dst, p[i].src, p[i].n_bytes);
                stream.synchronize();
            });
            r.contiguous_gbps = median_gbps(reps, moved, [&] {
                stream.copy(dst.data(), host.data(), moved);
                stream.synchronize();
            });
            std::printf("| %lld | %zu | %.2f | %.2f | %.2f |\n", (long long)run, r.n_pieces, r.gather_gbps,
                        r.memcpy_gbps, r.contiguous_gbps);
            std::fflush(stdout);
            results.push_back(r);
        }
        if (!json_path.empty()) {
            nlohmann::json j = {{"cpu", perf::cpu_model_name()}, {"n_cpus", perf::n_cpus()}, {"device", dev->name()},
                                {"row_bytes", row_bytes},        {"total_mib", total_mib}, {"reps", reps},
                                {"rows", nlohmann::json::array()}};
            for (const Result& r : results)
                j["rows"].push_back({{"run_rows", r.run_rows},
                                     {"pieces", r.n_pieces},
                                     {"gather_gbps", r.gather_gbps},
                                     {"memcpy_gbps", r.memcpy_gbps},
                                     {"contiguous_gbps", r.contiguous_gbps}});
            std::ofstream(json_path) << j.dump(2) << "\n";
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_copy: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
