// SPDX-License-Identifier: MIT
// The llama.cpp oracles of REFERENCE.md §2 on the default model (Gemma 3 270M Q4_K_M), through the CLI as a user
// runs it. Token-id oracles live in test_tokenizer_model.cpp.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "tests/fixtures.h"

using namespace butler::test;

TEST_SUITE("model") {
    TEST_CASE("greedy continuations match llama.cpp") {
        const std::string model = default_model_or_skip();
        if (model.empty()) return;
        struct Case {
            const char* prompt;
            const char* expected_prefix;  // llama.cpp --temp 0 output, REFERENCE.md §2
        };
        const Case cases[] = {
            {"Once upon a time, there was a little girl named", " Lily. She was a very smart girl"},
            {"The capital of France is", " the capital of the country of France."},
        };
        for (const Case& c : cases) {
            CAPTURE(c.prompt);
            const CliResult r = run_cli({"generate", "-m", model, "-p", c.prompt, "-n", "12", "--temp", "0", "--json"});
            REQUIRE_MESSAGE(r.exit_code == 0, r.err);
            const auto j = nlohmann::json::parse(r.out);
            const std::string text = j.at("text").get<std::string>();
            CAPTURE(text);
            CHECK(text.rfind(c.expected_prefix, 0) == 0);
        }
    }

    TEST_CASE("perplexity of LGPL-2.1 at -c 1024 is within 1% of llama.cpp's 13.007") {
        const std::string model = default_model_or_skip();
        if (model.empty()) return;
        const std::string text = "/usr/share/common-licenses/LGPL-2.1";
        REQUIRE_MESSAGE(std::filesystem::exists(text), text, " is missing (Debian's base-files installs it)");
        const CliResult r = run_cli({"perplexity", "-m", model, "-f", text, "-c", "1024", "--json"});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        const auto j = nlohmann::json::parse(r.out);
        const double ppl = j.at("ppl").get<double>();
        MESSAGE("butler perplexity: ", ppl, " over ", j.at("n_chunks").get<int>(), " chunks (llama.cpp: 13.007, 5 chunks)");
        CHECK(j.at("n_chunks").get<int>() == 5);
        CHECK(ppl == doctest::Approx(13.007).epsilon(0.01));
    }
}
