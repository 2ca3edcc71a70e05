// SPDX-License-Identifier: MIT
// Tokenizer::from_gguf on small in-memory GGUF files: defaults, and the errors for unsupported or inconsistent
// tokenizer metadata.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/tokenizer.h"

using namespace butler;

namespace {

using Ids = std::vector<TokenId>;

// ids: 0 <unk>  1 <s>  2 </s>  3 "▁"  4 "a"  5 "b"  6 "▁a"  7 "ab"  8 "▁ab"
GgufWriter small_vocab_writer() {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", "llama");
    const std::string spm = "\xE2\x96\x81";  // U+2581
    w.set_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", spm, "a", "b", spm + "a", "ab", spm + "ab"});
    w.set_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -2, 1, 5, 0.5f});
    w.set_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1, 1});
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    return w;
}

std::unique_ptr<Tokenizer> load(const GgufWriter& w) {
    const std::vector<uint8_t> bytes     = w.to_bytes();
    const std::unique_ptr<GgufFile> file = GgufFile::from_memory(bytes, "vocab.gguf");
    return Tokenizer::from_gguf(*file);
}

// Runs `w` through from_gguf and returns the error it must raise.
Error load_error(const GgufWriter& w) {
    try {
        load(w);
    } catch (const Error& e) {
        return e;
    }
    FAIL("from_gguf accepted the file");
    return Error(Status::Ok, "");
}

}  // namespace

TEST_SUITE("tokenizer") {
    TEST_CASE("from_gguf: metadata and defaults") {
        const std::unique_ptr<Tokenizer> tok = load(small_vocab_writer());
        CHECK(tok->n_vocab() == 9);
        CHECK(tok->bos() == 1);
        CHECK(tok->eos() == 2);
        CHECK(tok->add_bos());  // add_bos_token absent: true
        CHECK(tok->token_type(0) == TokenType::Unknown);
        // add_space_prefix absent: true, as llama.cpp defaults for SPM. "ab" -> "▁ab": ab (5), then ▁ab (0.5).
        CHECK(tok->encode("ab", true, false) == Ids{1, 8});
        // add_eos_token absent: false. An unknown character falls back to <unk> (no byte tokens here).
        CHECK(tok->encode("c", false, false) == Ids{3, 0});

        GgufWriter w = small_vocab_writer();
        w.set_bool("tokenizer.ggml.add_space_prefix", false);
        w.set_bool("tokenizer.ggml.add_bos_token", false);
        w.set_bool("tokenizer.ggml.add_eos_token", true);
        const std::unique_ptr<Tokenizer> tok2 = load(w);
        CHECK(tok2->encode("ab", true, false) == Ids{7, 2});
    }

    TEST_CASE("from_gguf: scores and token types are optional") {
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
        w.set_bool("tokenizer.ggml.add_space_prefix", false);
        const std::unique_ptr<Tokenizer> tok = load(w);
        CHECK(tok->token_type(2) == TokenType::Normal);
        CHECK(tok->bos() == -1);
        CHECK(tok->encode("ab", true, false) == Ids{2});  // no BOS id: nothing prepended
    }

    TEST_CASE("from_gguf: errors") {
        {
            GgufWriter w = small_vocab_writer();
            w.set_string("tokenizer.ggml.model", "bert");
            const Error e = load_error(w);
            CHECK(e.status() == Status::Unsupported);
            CHECK(std::string(e.what()) ==
                  "vocab.gguf: tokenizer model 'bert' is not supported (SentencePiece 'llama', byte-level BPE 'gpt2')");
        }
        {
            GgufWriter w = small_vocab_writer();
            w.set_f32s("tokenizer.ggml.scores", {0, 0, 0});
            const Error e = load_error(w);
            CHECK(e.status() == Status::Format);
            CHECK(std::string(e.what()).find("tokenizer.ggml.scores") != std::string::npos);
        }
        {
            GgufWriter w = small_vocab_writer();
            w.set_i32s("tokenizer.ggml.token_type", {1, 1});
            const Error e = load_error(w);
            CHECK(e.status() == Status::Format);
            CHECK(std::string(e.what()).find("tokenizer.ggml.token_type") != std::string::npos);
        }
        {
            GgufWriter w = small_vocab_writer();
            w.set_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1, 9});
            const Error e = load_error(w);
            CHECK(e.status() == Status::Format);
            CHECK(std::string(e.what()).find("tokenizer.ggml.token_type") != std::string::npos);
        }
        for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"}) {
            CAPTURE(key);
            GgufWriter w = small_vocab_writer();
            w.set_u32(key, 9);
            const Error e = load_error(w);
            CHECK(e.status() == Status::Format);
            CHECK(std::string(e.what()).find(key) != std::string::npos);
        }
        {
            GgufWriter w;
            w.set_string("tokenizer.ggml.model", "llama");
            const Error e = load_error(w);
            CHECK(e.status() == Status::Format);
            CHECK(std::string(e.what()).find("tokenizer.ggml.tokens") != std::string::npos);
        }
    }

}  // TEST_SUITE
