// SPDX-License-Identifier: MIT
// `butler bench` through the CLI on a fixture model: every mode runs at every context; the bytes each mode moves to
// the device per token equal what its definition implies (counted here from the model's shape, not from the
// pipeline); a device too small for the whole K/V reports dense-device as not fitting; bad arguments are refused
// with DESIGN.md's exit codes. Timings are not checked (speed is measured by perf/, not by tests).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "runtime/model.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

struct BenchFixture {
    TempFile model;
    TempDir dir;
    std::string text;
    std::shared_ptr<const Model> loaded;
    BenchFixture() {
        TinyGemma3Spec spec;
        spec.n_layer = 12;  // global layers 5 and 11
        model.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 31)));
        loaded = Model::load(model.path());
        text   = dir.file("text.txt");
        std::ofstream(text) << random_words(400, 5);
    }
    // Bytes of one token's K and V rows (f16) over every global layer and KV head.
    uint64_t row_bytes() const {
        const HParams& hp = loaded->hparams();
        uint64_t n_global = 0;
        for (int32_t l = 0; l < hp.n_layer; ++l) n_global += hp.is_swa(l) ? 0 : 1;
        return n_global * uint64_t(hp.n_head_kv) * uint64_t(hp.head_dim + hp.head_dim_v) * 2;
    }
};

const nlohmann::json& find_row(const nlohmann::json& j, int64_t ctx, const std::string& mode,
                               const std::string& budget = "") {
    for (const auto& r : j["rows"])
        if (r["context"] == ctx && r["mode"] == mode && (budget.empty() ? r["budget"].is_null() : r["budget"] == budget))
            return r;
    FAIL("no row " << ctx << " " << mode << " " << budget);
    static nlohmann::json none;
    return none;
}

}  // namespace

TEST_SUITE("bench") {
    TEST_CASE("synthetic K/V: every mode at every context; bytes per token as each mode defines them") {
        BenchFixture f;
        const int n_steps = 3, warmup = 2;  // bench's untimed steps: the dense first token, one that fills the slots
        const CliResult r = run_cli({"bench", "-m", f.model.path(), "-c", "64,100", "--budget", "25%,16", "-n",
                                     std::to_string(n_steps), "--synthetic-kv", "--json", "-"});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        const nlohmann::json j = nlohmann::json::parse(r.out);
        CHECK(j["synthetic_kv"] == true);
        CHECK(j["selector"] == "quest");  // no predictor for the fixture
        CHECK(j["rows"].size() == 2 * (3 + 2 * 2));
        for (int64_t ctx : {64, 100}) {
            CAPTURE(ctx);
            // dense-offload: each timed step at position p streams rows 0..p.
            double streamed = 0;
            for (int s = 0; s < n_steps; ++s) streamed += double(ctx + warmup + s + 1) * double(f.row_bytes());
            const auto& dense_off = find_row(j, ctx, "dense-offload");
            CHECK(dense_off["bytes_per_token"].get<double>() == doctest::Approx(streamed / n_steps));
            CHECK(dense_off["ttft_s"].is_null());
            // dense-device: only the new token's row; cpu-attn: nothing, and no device.
            CHECK(find_row(j, ctx, "dense-device")["bytes_per_token"].get<double>() == doctest::Approx(f.row_bytes()));
            CHECK(find_row(j, ctx, "dense-device")["hit_rate"].get<double>() > 0.9);
            CHECK(find_row(j, ctx, "cpu-attn")["bytes_per_token"].get<double>() == 0);
            CHECK(find_row(j, ctx, "cpu-attn")["device_mib"].get<double>() == 0);
            for (const std::string mode : {"exact", "sparse"}) {
                for (const std::string budget : {"25%", "16"}) {
                    CAPTURE(mode);
                    CAPTURE(budget);
                    const auto& row = find_row(j, ctx, mode, budget);
                    CHECK(row["tpot_ms"].get<double>() > 0);
                    // At most every selected row is new each step: the budget's rows, never the whole context.
                    const double budget_rows = budget == "16" ? 16.0 : std::ceil(0.25 * double(ctx + warmup + n_steps));
                    CHECK(row["bytes_per_token"].get<double>() <= budget_rows * double(f.row_bytes()));
                    CHECK(row["slots_per_head"].get<int64_t>() < ctx);
                }
            }
        }
    }

    TEST_CASE("a prompt: time to first token is measured; the table, the JSON file and the plot") {
        BenchFixture f;
        const std::string json = f.dir.file("bench.json"), png = f.dir.file("bench.png");
        std::vector<std::string> args = {"bench", "-m", f.model.path(), "-f", f.text, "-c", "48", "--budget", "50%",
                                         "-n", "2", "--json", json};
        const bool plot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
        if (plot) args.insert(args.end(), {"--plot", png});
        const CliResult r = run_cli(args);
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out.find("| 48 | dense-offload |") != std::string::npos);
        CHECK(r.out.find("| 48 | sparse | 50% |") != std::string::npos);
        const nlohmann::json j = nlohmann::json::parse(std::ifstream(json));
        for (const auto& row : j["rows"]) CHECK(row["ttft_s"].get<double>() > 0);
        if (plot) CHECK(std::filesystem::file_size(png) > 1000);
    }

    TEST_CASE("a device too small for the whole K/V: dense-device does not fit, the others run") {
        BenchFixture f;
        const HParams& hp = f.loaded->hparams();
        // What the device must hold besides slots (weights, the sliding-window rings), then 16 slots per head of
        // Butler's budget: room for those, not for the 200-token context.
        uint64_t resident = f.loaded->n_weight_bytes();
        for (int32_t l = 0; l < hp.n_layer; ++l)
            if (hp.is_swa(l))
                resident += uint64_t(hp.n_head_kv) * uint64_t(std::min<int64_t>(200 + 2 + 1, hp.n_swa + 512)) *
                            uint64_t(hp.head_dim + hp.head_dim_v) * 2;
        const std::string cap = std::to_string(resident + 40 * f.row_bytes());
        const CliResult r = run_cli({"bench", "-m", f.model.path(), "-c", "200", "--budget", "16", "-n", "1",
                                     "--synthetic-kv", "--modes", "sparse,dense-device", "--device-memory", cap,
                                     "--json", "-"});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        const nlohmann::json j = nlohmann::json::parse(r.out);
        CHECK(find_row(j, 200, "sparse", "16")["fits"] == true);
        const auto& dd = find_row(j, 200, "dense-device");
        CHECK(dd["fits"] == false);
        CHECK(dd["note"].get<std::string>().find("K/V slots") != std::string::npos);
    }

    TEST_CASE("bad arguments: exit 2 naming the problem, before any work") {
        BenchFixture f;
        auto check = [](const CliResult& r, int code, const std::string& needle) {
            CAPTURE(r.err);
            CHECK(r.exit_code == code);
            CHECK(r.err.find(needle) != std::string::npos);
        };
        const std::string m = f.model.path();
        check(run_cli({"bench", "-m", m, "--modes", "sparse,warp"}), 2, "unknown mode 'warp'");
        check(run_cli({"bench", "-m", m, "-c", "8Q"}), 2, "unknown unit");
        check(run_cli({"bench", "-m", m, "-c", "abc"}), 2, "-c/--ctx");
        check(run_cli({"bench", "-m", m, "--budget", "0"}), 2, "--budget");
        check(run_cli({"bench", "-m", m, "-c", "64", "-n", "0"}), 2, "--n-steps");
        check(run_cli({"bench", "-m", m, "-c", "64", "--copy", "dma"}), 2, "--copy must be gather or memcpy");
        check(run_cli({"bench", "-m", m, "-c", "1M", "--synthetic-kv"}), 1, "training context");
        check(run_cli({"bench", "-m", m, "-c", "64", "--json", f.dir.file("no/such/dir/x.json")}), 1,
              "does not exist");
    }
}
