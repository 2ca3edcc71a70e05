// SPDX-License-Identifier: MIT
// Shared pieces of the libFuzzer targets (BUTLER_FUZZ=ON, the fuzz preset): the fixture vocabularies the tokenizer
// and prompt targets run on, the tiny models the seed corpus starts from, and an invariant check that aborts (a
// crash to libFuzzer) with a message. A target catches butler::Error, the documented failure for bad input; any
// other exception, an assertion, a sanitizer report or a failed FUZZ_CHECK is a finding.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "runtime/tokenizer.h"
#include "tests/fixtures.h"

#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                   \
        }                                                                                   \
    } while (0)

namespace butler::fuzz {

// The gemma3 fixture (tests/fixtures.h) made small, plus the turn markers of every built-in chat template as
// CONTROL tokens, so each PromptKind can be built.
test::TinyGemma3 chat_gemma3(uint64_t seed);
// The same model in the small shape the seeds use (1 layer, n_embd 32), matrices in `weight_type`.
test::TinyGemma3 small_gemma3(uint64_t seed, DType weight_type, bool chat);
// The llama fixture with the given tokenizer ("llama" SPM or "gpt2" byte-level BPE), small, one layer.
test::TinyModel small_model(const std::string& arch, const std::string& tokenizer, DType weight_type,
                            uint64_t seed);

// Tokenizers of the fixture vocabularies, built once.
const Tokenizer& spm_tokenizer();  // chat_gemma3's SentencePiece vocabulary
const Tokenizer& bpe_tokenizer();  // small_model("llama", "gpt2")'s byte-level BPE vocabulary (llama-bpe)

// Every id in range, and piece()/decode() of them do not fail.
void check_ids(const Tokenizer& tok, const std::vector<TokenId>& ids);

// True when the bytes are well-formed UTF-8 (document.h's repair finds nothing to replace).
bool valid_utf8(std::span<const uint8_t> bytes);

}  // namespace butler::fuzz
