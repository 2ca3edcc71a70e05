// SPDX-License-Identifier: MIT
// make-random-model: the tensor lists (names, shapes, types) against lists written here from each model's public
// config.json, shrunken files that load and generate through the CLI, and its bad-input errors. No full-size file
// is written here (the 8B one is ~4.5 GB).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cpu_kernels/quant.h"
#include "predictor/tokenbutler.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/random_model.h"
#include "runtime/session.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;

// A pre-norm llama/qwen2 tensor list from config.json values.
Shapes llama_like(int n_layer, int64_t E, int64_t F, int64_t n_head, int64_t n_kv, int64_t hd, int64_t V, bool tied,
                  bool rope_freqs, bool bias) {
    Shapes s;
    s["token_embd.weight"] = {V, E};
    s["output_norm.weight"] = {E};
    if (!tied) s["output.weight"] = {V, E};
    if (rope_freqs) s["rope_freqs.weight"] = {hd / 2};
    for (int l = 0; l < n_layer; ++l) {
        const std::string p = fmt::format("blk.{}.", l);
        s[p + "attn_norm.weight"] = {E};
        s[p + "attn_q.weight"] = {n_head * hd, E};
        s[p + "attn_k.weight"] = {n_kv * hd, E};
        s[p + "attn_v.weight"] = {n_kv * hd, E};
        if (bias) {
            s[p + "attn_q.bias"] = {n_head * hd};
            s[p + "attn_k.bias"] = {n_kv * hd};
            s[p + "attn_v.bias"] = {n_kv * hd};
        }
        s[p + "attn_output.weight"] = {E, n_head * hd};
        s[p + "ffn_norm.weight"] = {E};
        s[p + "ffn_gate.weight"] = {F, E};
        s[p + "ffn_up.weight"] = {F, E};
        s[p + "ffn_down.weight"] = {E, F};
    }
    return s;
}

Shapes planned(const std::string& like, DType type, std::map<std::string, DType>* types = nullptr) {
    RandomModelOptions o;
    o.like = like;
    o.type = type;
    Shapes s;
    for (const PlannedTensor& t : random_model_tensors(o)) {
        CHECK_MESSAGE(s.count(t.name) == 0, "duplicate ", t.name);
        s[t.name] = t.shape;
        if (types) (*types)[t.name] = t.type;
    }
    return s;
}

}  // namespace

TEST_SUITE("random_model") {
    TEST_CASE("tensor lists match the public configs") {
        // meta-llama/Llama-3.1-8B: 32 layers, hidden 4096, intermediate 14336, 32 heads, 8 KV heads, head 128,
        // vocab 128256, untied; llama3 rope scaling -> rope_freqs.weight. 292 tensors.
        std::map<std::string, DType> types;
        const Shapes l8 = planned("llama-3.1-8b", DType::Q4_K, &types);
        CHECK(l8 == llama_like(32, 4096, 14336, 32, 8, 128, 128256, false, true, false));
        CHECK(l8.size() == 292);
        for (const auto& [name, shape] : l8) {
            CAPTURE(name);
            CHECK(types[name] == (shape.size() == 1 ? DType::F32 : DType::Q4_K));
        }
        // meta-llama/Llama-3.2-1B: 16 layers, hidden 2048, intermediate 8192, 32 heads, 8 KV heads, head 64, tied.
        CHECK(planned("llama-3.2-1b", DType::Q8_0) == llama_like(16, 2048, 8192, 32, 8, 64, 128256, true, true, false));
        // meta-llama/Llama-3.2-3B: 28 layers, hidden 3072, intermediate 8192, 24 heads, 8 KV heads, head 128, tied.
        CHECK(planned("llama-3.2-3b", DType::F16) == llama_like(28, 3072, 8192, 24, 8, 128, 128256, true, true, false));
        // Qwen/Qwen2.5-7B: 28 layers, hidden 3584, intermediate 18944, 28 heads, 4 KV heads, head 128, vocab 152064,
        // untied, QKV biases. 339 tensors.
        const Shapes q7 = planned("qwen2.5-7b", DType::Q4_0);
        CHECK(q7 == llama_like(28, 3584, 18944, 28, 4, 128, 152064, false, false, true));
        CHECK(q7.size() == 339);
    }

    TEST_CASE("gemma-3-270m tensor list equals the real file's") {
        const std::string path = default_model_or_skip();
        if (path.empty()) return;
        auto real = GgufFile::open(path);
        Shapes want;
        for (const auto& t : real->tensors()) want[t.name] = t.shape();
        CHECK(planned("gemma-3-270m", DType::Q8_0) == want);
    }

    TEST_CASE("widths that are not a multiple of the block size fall back to Q8_0") {
        std::map<std::string, DType> types;
        planned("gemma-3-270m", DType::Q4_K, &types);  // n_embd 640 is not a multiple of 256
        CHECK(types["blk.0.attn_q.weight"] == DType::Q8_0);
        CHECK(types["blk.0.attn_output.weight"] == DType::Q4_K);  // 1024 columns
        CHECK(types["blk.0.ffn_down.weight"] == DType::Q4_K);     // 2048 columns
    }

    TEST_CASE("shrunken files load, give finite logits, and generate through the CLI") {
        for (const char* like : {"llama-3.2-1b", "qwen2.5-7b", "gemma-3-270m"}) {
            for (const char* type : {"Q4_K", "Q4_0", "Q8_0", "F16", "BF16"}) {
                // Every type on one model, Q4_K on the others (keeps the suite short).
                if (std::string(like) != "llama-3.2-1b" && std::string(type) != "Q4_K") continue;
                CAPTURE(like);
                CAPTURE(type);
                TempFile file;
                const CliResult made = run_cli({"make-random-model", "--like", like, "--type", type, "--n-layer", "2",
                                                "--n-vocab", "1024", "--out", file.path()});
                REQUIRE_MESSAGE(made.exit_code == 0, made.err);
                auto model = Model::load(file.path());
                CHECK(model->hparams().n_layer == 2);
                CHECK(model->hparams().n_vocab == 1024);
                // The planned list (with the same overrides) is what the file holds.
                RandomModelOptions o;
                o.like = like;
                o.n_layer = 2;
                o.n_vocab = 1024;
                o.type = std::string(type) == "Q4_K" ? DType::Q4_K : std::string(type) == "Q4_0" ? DType::Q4_0
                         : std::string(type) == "Q8_0" ? DType::Q8_0 : std::string(type) == "F16" ? DType::F16
                                                                                                 : DType::BF16;
                const auto plan = random_model_tensors(o);
                CHECK(model->file().tensors().size() == plan.size());
                for (const PlannedTensor& t : plan) {
                    const GgufTensorInfo* got = model->file().tensor(t.name);
                    REQUIRE_MESSAGE(got != nullptr, t.name);
                    CHECK(got->shape() == t.shape);
                    CHECK(got->type == t.type);
                }
                // The embedding rows decode to Gaussian-like values of the planned scale: 2 / sqrt(n_embd).
                const WeightMatrix& e = model->weights().tok_embd;
                std::vector<float> row(static_cast<size_t>(e.n_cols));
                double ss = 0;
                for (int r = 0; r < 8; ++r) {
                    dequantize_row(e.type, e.row(r * 97), row.data(), e.n_cols);
                    for (float v : row) ss += double(v) * v;
                }
                const double rms = std::sqrt(ss / (8.0 * double(e.n_cols)));
                CHECK(rms == doctest::Approx(2.0 / std::sqrt(double(e.n_cols))).epsilon(0.1));

                SessionParams sp;
                sp.n_ctx = 64;
                Session session(model, sp);
                const auto ids = model->tokenizer().encode("Hello, world! 12345", true, false);
                std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
                session.eval_last(ids, logits.data());
                for (float v : logits) REQUIRE(std::isfinite(v));

                if (std::string(type) == "Q4_K") {
                    const CliResult gen = run_cli({"generate", "-m", file.path(), "-p", "Hello", "-n", "4"});
                    CHECK_MESSAGE(gen.exit_code == 0, gen.err);
                }
            }
        }
    }

    TEST_CASE("--predictor writes an untrained predictor beside the model; bench finds it and selects on the device") {
        TempDir dir;
        const std::string model = dir.file("g8.gguf");
        const CliResult made = run_cli({"make-random-model", "--like", "gemma-3-270m", "--n-layer", "8", "--n-vocab",
                                        "1024", "--predictor", "--out", model});
        REQUIRE_MESSAGE(made.exit_code == 0, made.err);
        const std::string pred_path = dir.file("g8.tokenbutler.gguf");
        REQUIRE(std::filesystem::is_regular_file(pred_path));
        auto m    = Model::load(model);
        auto pred = TokenButlerPredictor::load(pred_path, nullptr);
        CHECK(pred->base().matches(BaseModelIdentity::of(*m)));
        CHECK(default_predictor_path(model) == pred_path);
        const CliResult r = run_cli({"bench", "-m", model, "-c", "96", "--budget", "25%", "-n", "2", "--synthetic-kv",
                                     "--modes", "sparse", "--select-on", "device", "--json", "-"});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        const nlohmann::json j = nlohmann::json::parse(r.out);
        CHECK(j["selector"] == "tokenbutler");
        REQUIRE(j["rows"].size() == 1);
        CHECK(j["rows"][0]["select_on"] == "device");
        CHECK(j["rows"][0]["predictor_share"].get<double>() > 0);
    }

    TEST_CASE("bad input: unknown model or type, exit 1 naming it") {
        TempFile file;
        CliResult r = run_cli({"make-random-model", "--like", "llama-9b", "--out", file.path()});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("'llama-9b'") != std::string::npos);
        r = run_cli({"make-random-model", "--like", "llama-3.2-1b", "--type", "Q9_X", "--out", file.path()});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("'Q9_X'") != std::string::npos);
        r = run_cli({"make-random-model", "--like", "llama-3.2-1b", "--type", "Q8_K", "--out", file.path()});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("q8_K") != std::string::npos);
    }
}
