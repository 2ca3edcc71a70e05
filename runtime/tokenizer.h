// SPDX-License-Identifier: MIT
// Tokenizer built from GGUF metadata. This file: the SentencePiece-style vocabulary (`tokenizer.ggml.model` =
// "llama"), with the exact behaviour of llama.cpp's SPM tokenizer, which is the oracle:
//  1. Partition: special tokens are cut out of the text first, longest token text first, leftmost occurrence
//     first. USER_DEFINED tokens are always matched; CONTROL (and UNKNOWN) tokens only when parse_special is on.
//     User and document text is tokenized with parse_special OFF, so a document cannot inject <end_of_turn>.
//  2. Each remaining raw-text fragment: a leading space if add_space_prefix and the previous fragment was a
//     special token (or it is the first), spaces escaped to U+2581, split into UTF-8 characters, then adjacent
//     pairs merged greedily by vocabulary score (highest score first, leftmost on ties) while the merged text
//     is a token; pieces that are not tokens fall back to their byte tokens <0xXX>.
//  3. BOS is prepended when add_special and the vocabulary says add_bos (EOS appended likewise).
// And the byte-level BPE vocabulary (`tokenizer.ggml.model` = "gpt2", runtime/tokenizer_bpe.cpp), as llama.cpp's
// BPE tokenizer: the same special-token partition (1); each raw fragment split into words by the pre-tokenizer
// regexes named by `tokenizer.ggml.pre` (PCRE2, applied in sequence), each word's bytes mapped through GPT-2's
// byte-to-unicode table, then merged pair by pair in merge-rank order (lowest rank first, leftmost on ties);
// llama-bpe takes a whole word that is itself a token without merging (ignore_merges). No space prefix.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace butler {

class GgufFile;

using TokenId = int32_t;

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
    Undefined   = 0,
    Normal      = 1,
    Unknown     = 2,
    Control     = 3,
    UserDefined = 4,
    Unused      = 5,
    Byte        = 6,
};

struct VocabData {
    std::string model = "llama";  // tokenizer.ggml.model
    std::vector<std::string> tokens;
    std::vector<float> scores;                       // may be empty (all 0)
    std::vector<TokenType> types;                    // may be empty (all Normal)
    TokenId bos = -1, eos = -1, unk = -1, pad = -1;  // -1 when absent
    bool add_bos          = true;
    bool add_eos          = false;
    bool add_space_prefix = false;
    std::vector<std::string> merges;  // gpt2 only: "left right" pairs, rank = index
    std::string pre = "default";      // gpt2 only: tokenizer.ggml.pre
};

// The pre-tokenizer names Butler knows for gpt2 vocabularies (comma-separated, for messages).
std::string supported_bpe_pre_tokenizers();

class Tokenizer {
public:
    // Reads tokenizer.ggml.* from the file. Error(Unsupported) for a tokenizer model other than "llama" or "gpt2"
    // and for a gpt2 pre-tokenizer Butler does not know (named), Error(Format) for inconsistent arrays or
    // out-of-range special ids.
    static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
    explicit Tokenizer(VocabData vocab);

    // Text -> ids. add_special: prepend BOS / append EOS as the vocabulary says. parse_special: match CONTROL
    // tokens written in the text (chat-template markers only; never for user or document text).
    std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special) const;

    // The bytes one token stands for: U+2581 -> space for normal SPM tokens, GPT-2 byte symbols -> bytes for
    // normal BPE tokens, the byte for <0xXX> tokens, the raw
    // text for user-defined tokens; control tokens give "" unless render_special.
    std::string piece(TokenId id, bool render_special = false) const;
    // Concatenated pieces (bytes; may end inside a UTF-8 sequence when ids is a prefix of a longer output).
    std::string decode(const std::vector<TokenId>& ids, bool render_special = false) const;

    int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
    TokenId bos() const { return vocab_.bos; }
    TokenId eos() const { return vocab_.eos; }
    bool add_bos() const { return vocab_.add_bos; }
    const std::string& token_text(TokenId id) const { return vocab_.tokens.at(static_cast<size_t>(id)); }
    TokenType token_type(TokenId id) const;
    // The id whose text is exactly `text`, or -1.
    TokenId find(std::string_view text) const;
    // True for tokens that end generation (EOS, and <end_of_turn> style control tokens when present).
    bool is_end_of_generation(TokenId id) const;

    // gpt2 vocabularies: the words the pre-tokenizer splits one raw text fragment into (exposed for tests and
    // `butler tokenize`). Error(InvalidArg) for other vocabularies.
    std::vector<std::string> bpe_words(std::string_view text) const;

private:
    struct Bpe;  // merge ranks, compiled pre-tokenizer regexes, byte symbol tables (tokenizer_bpe.cpp)
    struct BpeDeleter {
        void operator()(Bpe* p) const;  // defined where Bpe is complete
    };

    // One piece of the special-token partition: a special token (token >= 0) or raw text [offset, offset + n).
    struct Fragment {
        TokenId token = -1;
        size_t offset = 0;
        size_t n      = 0;
    };

    size_t first_slot(std::string_view text) const;  // where the probe for `text` starts in index_
    std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
    // Appends the ids of one raw fragment, already space-prefixed and escaped (' ' -> U+2581).
    void encode_raw(std::string_view escaped, std::vector<TokenId>& out) const;
    void init_bpe();                                                     // tokenizer_bpe.cpp
    void encode_bpe(std::string_view text, std::vector<TokenId>& out) const;  // one raw fragment
    std::vector<std::pair<size_t, size_t>> bpe_split(std::string_view text) const;  // [begin, end) words
    std::string bpe_piece(const std::string& text) const;                 // byte symbols -> bytes
    float score(TokenId id) const { return vocab_.scores.empty() ? 0.0f : vocab_.scores[static_cast<size_t>(id)]; }

    VocabData vocab_;
    // text -> id: an open-addressing table of ids (-1 = empty slot, linear probing, at most half full) whose keys
    // are the token texts themselves. Building it makes no allocation per token, which keeps a 262k-token load
    // fast, and a lookup takes a string_view, so the merge loop probes pairs without building strings.
    std::vector<TokenId> index_;
    size_t index_mask_ = 0;
    std::vector<TokenId> byte_tokens_;        // byte value -> <0xXX> id, else the 1-byte token, else unk (or -1)
    std::vector<TokenId> special_by_length_;  // CONTROL/USER_DEFINED/UNKNOWN ids, longest text first
    std::vector<TokenId> end_of_generation_;
    std::unique_ptr<Bpe, BpeDeleter> bpe_;  // gpt2 vocabularies only
};

}  // namespace butler
