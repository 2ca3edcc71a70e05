// SPDX-License-Identifier: MIT
// `butler eval` through the CLI on a fixture model: its dense reference equals `butler perplexity`, keeping every
// key reproduces dense (KL 0, top-1 1) in both views while a small budget does not, the JSON / plot outputs, and
// bad arguments refused before any work with the exit codes of DESIGN.md.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tests/fixtures.h"

using namespace butler::test;

namespace {

struct EvalFixture {
    TempFile model;
    TempDir dir;
    std::string text;
    EvalFixture() {
        TinyGemma3Spec spec;
        model.write(tiny_gemma3_gguf(make_tiny_gemma3(spec, 23)));
        text = dir.file("text.txt");
        std::ofstream(text) << random_words(600, 7);
    }
    std::vector<std::string> args(std::vector<std::string> extra, const std::string& task = "ppl",
                                  const std::string& ctx = "64") const {
        std::vector<std::string> a{"eval", "-m", model.path(), "-f", text, "-c", ctx, "--chunks", "2", "--task", task};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
};

const nlohmann::json& row(const nlohmann::json& j, const std::string& sel, const std::string& budget) {
    for (const auto& r : j["rows"])
        if (r["selector"] == sel && r["budget"] == budget) return r;
    FAIL("no row " << sel << " " << budget);
    static nlohmann::json none;
    return none;
}

}  // namespace

TEST_SUITE("eval") {
    TEST_CASE("dense reference equals butler perplexity; keeping everything is dense, keeping little is not") {
        EvalFixture f;
        const CliResult ppl = run_cli({"perplexity", "-m", f.model.path(), "-f", f.text, "-c", "64", "--chunks", "2", "--json"});
        REQUIRE(ppl.exit_code == 0);
        const double plain = nlohmann::json::parse(ppl.out)["ppl"].get<double>();
        for (const std::string view : {"simulate", "decode"}) {
            CAPTURE(view);
            const CliResult r = run_cli(f.args({"--view", view, "--selectors", "oracle,streamingllm", "--budgets",
                                                "100%,20%", "--kv-type", "f32", "--json"}));
            REQUIRE_MESSAGE(r.exit_code == 0, r.err);
            const nlohmann::json j = nlohmann::json::parse(r.out);
            CHECK(j["rows"].size() == 4);
            const auto& full = row(j, "oracle", "100%");
            CHECK(full["ppl_dense"].get<double>() == doctest::Approx(plain).epsilon(2e-3));  // f16 vs f32 KV
            CHECK(full["ppl"].get<double>() == doctest::Approx(full["ppl_dense"].get<double>()).epsilon(1e-4));
            CHECK(full["kl_dense_sparse"].get<double>() < 1e-6);
            CHECK(full["top1_agreement"].get<double>() == 1.0);
            CHECK(full["n_tokens"].get<int64_t>() == 2 * 31);
            const auto& small = row(j, "streamingllm", "20%");
            CHECK(small["kl_dense_sparse"].get<double>() > 1e-4);
            if (view == "simulate") {
                CHECK(full["masked_share"].get<double>() == 0.0);
                CHECK(small["masked_share"].get<double>() > 0.5);
            }
        }
    }

    TEST_CASE("simulate --dense-layers: naming every sparsified layer is dense again, naming one is not") {
        EvalFixture f;
        auto run = [&](const std::string& layers) {
            const CliResult r = run_cli(f.args({"--view", "simulate", "--selectors", "streamingllm", "--budgets", "20%",
                                                "--kv-type", "f32", "--dense-layers", layers, "--json"}));
            REQUIRE_MESSAGE(r.exit_code == 0, r.err);
            return nlohmann::json::parse(r.out);
        };
        const nlohmann::json all = run("1,2,3,4,5"), one = run("5");
        CHECK(all["dense_layers"].size() == 5);
        const auto& dense = row(all, "streamingllm", "20%");
        CHECK(dense["kl_dense_sparse"].get<double>() < 1e-6);
        CHECK(dense["top1_agreement"].get<double>() == 1.0);
        CHECK(dense["masked_share"].get<double>() == 0.0);
        const auto& sparse = row(one, "streamingllm", "20%");
        CHECK(sparse["kl_dense_sparse"].get<double>() > 1e-4);
        CHECK(sparse["masked_share"].get<double>() > 0.5);
    }

    TEST_CASE("table on stdout, JSON file written whole, plot when gnuplot is there") {
        EvalFixture f;
        const std::string json = f.dir.file("out.json"), png = f.dir.file("out.png");
        const bool gnuplot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
        std::vector<std::string> extra{"--view", "simulate", "--selectors", "oracle,h2o", "--budgets", "50%", "-o", json};
        if (gnuplot) extra.insert(extra.end(), {"--plot", png});
        const CliResult r = run_cli(f.args(extra));
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out.find("selector") != std::string::npos);
        CHECK(r.out.find("h2o") != std::string::npos);
        std::ifstream in(json);
        const nlohmann::json j = nlohmann::json::parse(in);
        CHECK(j["rows"].size() == 2);
        CHECK(j["view"] == "simulate");
        CHECK(j["group_score"] == "mass");
        if (gnuplot) {
            std::ifstream p(png, std::ios::binary);
            char magic[8] = {};
            p.read(magic, 8);
            CHECK(std::string(magic + 1, 3) == "PNG");
        }
        for (const std::string& e : f.dir.entries()) CHECK(e.find(".tmp") == std::string::npos);
    }

    TEST_CASE("bad arguments: one line naming the problem, exit 2 (usage) or 1 (input), nothing written") {
        EvalFixture f;
        const CliResult task = run_cli(f.args({}, "ppl,nonesuch"));
        CHECK(task.exit_code == 2);
        CHECK(task.err.find("nonesuch") != std::string::npos);
        const CliResult tokens = run_cli(f.args({"--view", "simulate", "--budgets", "64"}));
        CHECK(tokens.exit_code == 2);
        CHECK(tokens.err.find("share") != std::string::npos);
        const CliResult sel = run_cli(f.args({"--view", "simulate", "--selectors", "bogus", "--budgets", "50%"}));
        CHECK(sel.exit_code == 2);
        CHECK(sel.err.find("bogus") != std::string::npos);
        for (const std::vector<std::string>& dense :
             {std::vector<std::string>{"--selectors", "oracle", "--budgets", "50%", "--dense-layers", "0"},
              {"--dense-layers", "x"},
              {"--view", "simulate", "--budgets", "50%", "--dense-layers", "0"},
              {"--view", "simulate", "--budgets", "50%", "--dense-layers", "6"}}) {  // the fixture has layers 0..5
            const CliResult r = run_cli(f.args(dense));
            CHECK(r.exit_code == 2);
            CHECK(r.err.find("--dense-layers") != std::string::npos);
        }
        for (const std::vector<std::string>& gs :
             {std::vector<std::string>{"--budgets", "50%", "--group-score", "max"},  // decode view: not there
              {"--view", "simulate", "--budgets", "50%", "--group-score", "min"}}) {
            const CliResult r = run_cli(f.args(gs));
            CHECK(r.exit_code == 2);
            CHECK(r.err.find("--group-score") != std::string::npos);
        }
        const CliResult dir = run_cli(f.args({"-o", f.dir.file("missing/out.json")}));
        CHECK(dir.exit_code == 1);
        CHECK(dir.err.find("missing") != std::string::npos);
        const CliResult shortText = run_cli(f.args({}, "ppl", "4096"));
        CHECK(shortText.exit_code == 1);
        CHECK(shortText.err.find("tokens") != std::string::npos);
        CHECK(f.dir.entries() == std::vector<std::string>{"text.txt"});
    }
}
