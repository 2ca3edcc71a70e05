// SPDX-License-Identifier: MIT
// libFuzzer: the chat-template prompt builder. The whole input is matched as a GGUF chat template string; then
// its first byte picks the PromptKind and the rest, cut at NUL bytes, is (before, after, document). Invariants:
// ids in range; the frame opens with BOS; the document's ids contain no CONTROL token (DESIGN.md: a document can
// never inject <end_of_turn>); a gemma3 frame holds exactly the template's two <start_of_turn> markers plus any
// the before/after texts cannot produce (none: they are encoded with special parsing off).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_common.h"
#include "runtime/chat_template.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    using namespace butler;
    const std::string all(reinterpret_cast<const char*>(data), n);
    (void)match_chat_template(&all);
    if (n == 0) return 0;
    (void)parse_prompt_kind(std::string_view(all).substr(1));
    const PromptKind kind = static_cast<PromptKind>(data[0] % 5);
    std::string_view rest = std::string_view(all).substr(1);
    auto next = [&rest]() {
        const size_t cut = rest.find('\0');
        const std::string_view piece = rest.substr(0, cut);
        rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
        return piece;
    };
    const std::string_view before = next(), after = next(), document = rest;
    const Tokenizer& tok = fuzz::spm_tokenizer();
    try {
        const PromptFrame f = build_prompt_frame(tok, kind, before, after);
        fuzz::check_ids(tok, f.prefix);
        fuzz::check_ids(tok, f.suffix);
        FUZZ_CHECK(!f.prefix.empty() && f.prefix.front() == tok.bos());
        const std::vector<TokenId> doc = encode_text(tok, document);
        fuzz::check_ids(tok, doc);
        for (TokenId id : doc) FUZZ_CHECK(tok.token_type(id) != TokenType::Control);
        if (kind == PromptKind::Gemma3) {
            const TokenId start = tok.find("<start_of_turn>");
            const auto n_start = std::count(f.prefix.begin(), f.prefix.end(), start) +
                                 std::count(f.suffix.begin(), f.suffix.end(), start);
            FUZZ_CHECK(n_start == 2);
        }
    } catch (const Error&) {
    }
    return 0;
}
