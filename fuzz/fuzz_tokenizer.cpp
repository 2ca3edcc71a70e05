// SPDX-License-Identifier: MIT
// libFuzzer: arbitrary bytes through both tokenizers of the fixture vocabularies (SentencePiece with byte
// fallback, byte-level BPE with the llama-bpe pre-tokenizer). The first byte picks the tokenizer and the flags;
// the rest is the text. Invariants: every id in range; with special-token parsing off no CONTROL token appears
// (a document cannot inject one); byte-level BPE decodes back to the exact bytes of well-formed UTF-8 text.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz/fuzz_common.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    using namespace butler;
    if (n == 0) return 0;
    const uint8_t flags = data[0];
    const std::string_view text(reinterpret_cast<const char*>(data + 1), n - 1);
    const bool bpe = (flags & 1) != 0, add_special = (flags & 2) != 0, parse_special = (flags & 4) != 0;
    const Tokenizer& tok = bpe ? fuzz::bpe_tokenizer() : fuzz::spm_tokenizer();
    try {
        const std::vector<TokenId> ids = tok.encode(text, add_special, parse_special);
        fuzz::check_ids(tok, ids);
        if (!parse_special && !add_special)
            for (TokenId id : ids) FUZZ_CHECK(tok.token_type(id) != TokenType::Control);
        if (bpe && !parse_special && !add_special && fuzz::valid_utf8({data + 1, n - 1}))
            FUZZ_CHECK(tok.decode(ids) == text);
        if (bpe) (void)tok.bpe_words(text);
    } catch (const Error&) {
    }
    return 0;
}
