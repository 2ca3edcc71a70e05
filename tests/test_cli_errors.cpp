// SPDX-License-Identifier: MIT
// Bad input through the CLI, as a user meets it: one clear line naming the problem and DESIGN.md's exit code
// (1 bad input, 2 usage), never a crash.
#include <doctest/doctest.h>

#include <fstream>
#include <limits>

#include "runtime/gguf.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

void check_error(const CliResult& r, int code, const std::string& needle) {
    CAPTURE(r.err);
    CHECK(r.exit_code == code);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(r.err.find("internal error") == std::string::npos);
}

}  // namespace

TEST_SUITE("cli") {
    TEST_CASE("missing, empty, truncated and non-GGUF model files") {
        check_error(run_cli({"inspect", "-m", "/nonexistent/model.gguf"}), 1, "/nonexistent/model.gguf");

        TempFile empty;
        empty.write({});
        check_error(run_cli({"generate", "-m", empty.path(), "-p", "hi"}), 1, "empty");

        TempFile text;
        const std::string s = "this is not a model\n";
        text.write(std::vector<uint8_t>(s.begin(), s.end()));
        check_error(run_cli({"inspect", "-m", text.path()}), 1, "not a GGUF file");

        const std::vector<uint8_t> good = tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 3));
        for (size_t cut : {size_t(3), size_t(20), good.size() / 3, good.size() - 10}) {
            CAPTURE(cut);
            TempFile truncated;
            truncated.write(std::vector<uint8_t>(good.begin(), good.begin() + long(cut)));
            const CliResult r = run_cli({"generate", "-m", truncated.path(), "-p", "hi", "-n", "1"});
            CHECK(r.exit_code == 1);
            CHECK(r.err.find(truncated.path()) != std::string::npos);
        }
        TempFile ok;
        ok.write(good);
        CHECK(run_cli({"inspect", "-m", ok.path()}).exit_code == 0);
    }

    TEST_CASE("unknown architecture") {
        TinyGemma3 tiny = make_tiny_gemma3(TinyGemma3Spec{}, 4);
        std::vector<uint8_t> bytes = tiny_gemma3_gguf(tiny);
        // Rewrite the architecture string in place ("gemma3" -> "gemmaX": same length).
        const std::string from = "gemma3";
        for (size_t i = 8; i + 32 < bytes.size(); ++i)
            if (std::equal(from.begin(), from.end(), bytes.begin() + long(i)) && bytes[i - 8] == 6) {
                bytes[i + 5] = 'X';
                break;
            }
        TempFile f;
        f.write(bytes);
        const CliResult r = run_cli({"inspect", "-m", f.path()});
        check_error(r, 1, "architecture 'gemmaX' is not supported");
    }

    TEST_CASE("prompt longer than the context") {
        TempFile f;
        f.write(tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 5)));
        const std::string long_prompt(400, 'a');
        check_error(run_cli({"generate", "-m", f.path(), "-p", long_prompt, "-c", "64", "-n", "4"}), 1,
                    "exceed the context of 64 tokens");
        // Over the training context (256 for the fixture) without -c.
        check_error(run_cli({"generate", "-m", f.path(), "-p", long_prompt, "-n", "4"}), 1, "exceed the context");
        const CliResult ok = run_cli({"generate", "-m", f.path(), "-p", "the cat", "-n", "3", "--temp", "0"});
        CHECK_MESSAGE(ok.exit_code == 0, ok.err);
    }

    TEST_CASE("usage errors exit 2") {
        CHECK(run_cli({"generate", "--no-such-flag"}).exit_code == 2);
        CHECK(run_cli({}).exit_code == 2);
        CHECK(run_cli({"perplexity", "-m", "x.gguf"}).exit_code == 2);  // -f is required
        CHECK(run_cli({"generate", "--kv-type", "q9"}).exit_code == 2);
        const CliResult help = run_cli({"--help"});
        CHECK(help.exit_code == 0);
        CHECK(help.out.find("Exit codes") != std::string::npos);
    }

    TEST_CASE("perplexity refuses a text shorter than two windows") {
        TempFile f;
        f.write(tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 6)));
        TempFile text(".txt");
        const std::string s = "the cat sat";
        text.write(std::vector<uint8_t>(s.begin(), s.end()));
        check_error(run_cli({"perplexity", "-m", f.path(), "-f", text.path(), "-c", "16"}), 1, "needs at least 32");
    }

    TEST_CASE("perplexity refuses logits that overflow instead of printing nan") {
        TinyModel tiny = make_tiny_model(TinyModelSpec{}, 7);
        for (float& w : tiny.output_norm) w = std::numeric_limits<float>::max();  // the normed state overflows
        TempFile f;
        f.write(tiny_model_gguf(tiny));
        TempFile text(".txt");
        const std::string s = random_words(200, 8);
        text.write(std::vector<uint8_t>(s.begin(), s.end()));
        check_error(run_cli({"perplexity", "-m", f.path(), "-f", text.path(), "-c", "16"}), 1,
                    "logits are not finite at position 8 of window 1");
        // The same text through the unmodified model is scored.
        TempFile ok;
        ok.write(tiny_model_gguf(make_tiny_model(TinyModelSpec{}, 7)));
        const CliResult r = run_cli({"perplexity", "-m", ok.path(), "-f", text.path(), "-c", "16"});
        CHECK_MESSAGE(r.exit_code == 0, r.err);
    }
}
