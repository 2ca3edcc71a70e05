// SPDX-License-Identifier: MIT
// The tokenizer against llama.cpp on the default model (Gemma 3 270M): the id lists below are llama.cpp's output
// for the same strings (llama-tokenize, BOS added). Skipped when the model is not installed, failed under CI=true.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/gguf.h"
#include "runtime/model_path.h"
#include "runtime/status.h"
#include "runtime/tokenizer.h"

using namespace butler;

namespace {

using Ids   = std::vector<TokenId>;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Loaded {
    std::unique_ptr<Tokenizer> tokenizer;
    double open_ms      = 0;
    double from_gguf_ms = 0;
};

// Loads the default model's tokenizer once for the whole suite; nullptr (with a message) when the model is not
// installed and this is not CI.
const Loaded* default_tokenizer() {
    static const Loaded loaded = [] {
        Loaded l;
        std::string path;
        try {
            path = resolve_model_path("");
        } catch (const Error& e) {
            const char* ci = std::getenv("CI");
            if (ci && std::string_view(ci) == "true") FAIL("the default model is required under CI=true: " << e.what());
            MESSAGE("skipping the model tokenizer tests: " << e.what());
            return l;
        }
        const auto t0                        = Clock::now();
        const std::unique_ptr<GgufFile> file = GgufFile::open(path);
        l.open_ms                            = ms_since(t0);
        const auto t1                        = Clock::now();
        l.tokenizer                          = Tokenizer::from_gguf(*file);
        l.from_gguf_ms                       = ms_since(t1);
        return l;
    }();
    return loaded.tokenizer ? &loaded : nullptr;
}

// ~100 KB of English-like prose: words, punctuation, numbers and newlines from a fixed generator.
std::string english_text(size_t n_bytes) {
    static const char* const kWords[] = {
        "the",        "of",      "and",       "to",        "in",        "a",           "is",          "that",
        "for",        "it",      "as",        "was",       "with",      "be",          "by",          "on",
        "not",        "he",      "this",      "are",       "or",        "his",         "from",        "at",
        "which",      "but",     "have",      "an",        "had",       "they",        "you",         "were",
        "memory",     "model",   "attention", "inference", "tokenizer", "quickly",     "however",     "between",
        "government", "history", "language",  "important", "different", "information", "development", "because",
        "Butler",     "London",  "Tuesday",   "1885",      "42",        "3.14",        "e-mail",      "don't"};
    static const char* const kPunct[] = {" ", " ", " ", " ", " ", " ", ", ", ". ", "; ", ": ", "? ", "!\n", ".\n\n"};
    std::string text;
    uint64_t x = 88172645463325252ull;
    while (text.size() < n_bytes) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text += kWords[x % std::size(kWords)];
        text += kPunct[(x >> 20) % std::size(kPunct)];
    }
    return text;
}

}  // namespace

TEST_SUITE("model") {
    TEST_CASE("tokenizer: llama.cpp oracle ids on the default model") {
        const Loaded* loaded = default_tokenizer();
        if (!loaded) return;
        const Tokenizer& tok = *loaded->tokenizer;
        CHECK(tok.n_vocab() == 262144);
        CHECK(tok.bos() == 2);
        CHECK(tok.eos() == 1);
        CHECK(tok.add_bos());
        CHECK(tok.is_end_of_generation(1));
        CHECK(tok.is_end_of_generation(tok.find("<end_of_turn>")));

        struct Case {
            std::string text;
            Ids ids;
        };
        const Case plain[] = {
            {"The quick brown fox jumps over the lazy dog.",
             {2, 818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761}},
            {"  leading spaces, trailing spaces  ", {2, 138, 26016, 9952, 236764, 45330, 9952, 138}},
            {"Émile Zola écrivit « Germinal » en 1885.",
             {2, 237642, 33432, 1491, 4395, 26926, 118908, 2789, 5084, 1049, 6490, 696, 236743, 236770, 236828, 236828,
              236810, 236761}},
            {"def main():\n    return 42", {2, 2063, 1689, 6141, 107, 140, 2060, 236743, 236812, 236778}},
        };
        for (const Case& c : plain) {
            CAPTURE(c.text);
            const Ids ids = tok.encode(c.text, true, false);
            CHECK(ids == c.ids);
            CHECK(tok.decode(Ids(ids.begin() + 1, ids.end())) == c.text);
            // BOS is a control token: it decodes to nothing unless rendered.
            CHECK(tok.decode(ids) == c.text);
        }

        CHECK(tok.encode("<start_of_turn>user\nSummarize this.<end_of_turn>\n<start_of_turn>model\n", true, true) ==
              Ids{2, 105, 2364, 107, 160773, 969, 672, 236761, 106, 107, 105, 4368, 107});
        // A document cannot inject chat markers: with parse_special off they are plain text.
        CHECK(tok.encode("<start_of_turn>user", true, false) ==
              Ids{2, 236820, 3041, 236779, 1340, 236779, 887, 236813, 2364});
        CHECK(tok.decode(tok.encode("<start_of_turn>user", false, false)) == "<start_of_turn>user");
    }

    TEST_CASE("tokenizer: load and encode timings on the default model") {
        const Loaded* loaded = default_tokenizer();
        if (!loaded) return;
        const Tokenizer& tok           = *loaded->tokenizer;
        const std::string text         = english_text(100 * 1000);
        const auto t0                  = Clock::now();
        const Ids ids                  = tok.encode(text, true, false);
        const double encode_ms         = ms_since(t0);
        const auto t1                  = Clock::now();
        const Ids ids_special          = tok.encode(text, true, true);
        const double encode_special_ms = ms_since(t1);
        MESSAGE("GgufFile::open " << loaded->open_ms << " ms, Tokenizer::from_gguf " << loaded->from_gguf_ms
                                  << " ms; encode " << text.size() << " bytes -> " << ids.size() << " ids in "
                                  << encode_ms << " ms (" << encode_special_ms << " ms with parse_special)");
        CHECK(loaded->from_gguf_ms < 1000);
        CHECK(encode_ms < 1000);
        CHECK(encode_special_ms < 1000);
        CHECK(ids == ids_special);  // the text holds no control token text
        CHECK(tok.decode(ids) == text);
    }

}  // TEST_SUITE
