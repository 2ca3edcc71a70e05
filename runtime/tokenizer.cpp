// SPDX-License-Identifier: MIT
// The SentencePiece-style ("llama") tokenizer. llama.cpp's SPM tokenizer (llama-vocab.cpp) is the oracle: the
// partition, the merge order and the byte fallback below reproduce it token for token, including its quirks
// (user-defined tokens are matched even with parse_special off; raw fragments are never re-joined).
#include "runtime/tokenizer.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>

#include "runtime/status.h"

namespace butler {

namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

// The byte length of the UTF-8 character starting with `lead`, from its high nibble as llama.cpp does:
// continuation bytes (0x80..0xBF) count as one byte, and 0xF8..0xFF as four, so invalid input still splits.
size_t utf8_len(uint8_t lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

// "<0xAB>" -> 0xAB, or -1 when `text` does not have that form.
int parse_byte_token(std::string_view text) {
    if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
    int value = 0;
    for (char c : text.substr(3, 2)) {
        value <<= 4;
        if (c >= '0' && c <= '9')
            value |= c - '0';
        else if (c >= 'A' && c <= 'F')
            value |= c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            value |= c - 'a' + 10;
        else
            return -1;
    }
    return value;
}

std::string escape_spaces(std::string_view text, bool space_prefix) {
    std::string out;
    out.reserve(text.size() + text.size() / 4 + 3);
    if (space_prefix) out += kEscapedSpace;
    for (char c : text) {
        if (c == ' ')
            out += kEscapedSpace;
        else
            out += c;
    }
    return out;
}

}  // namespace

Tokenizer::Tokenizer(VocabData vocab) : vocab_(std::move(vocab)) {
    const size_t n = vocab_.tokens.size();
    if (vocab_.model != "llama" && vocab_.model != "gpt2")
        fail(Status::Unsupported, "tokenizer model '{}' is not supported (SentencePiece 'llama', byte-level BPE 'gpt2')",
             vocab_.model);
    if (n == 0) fail(Status::Format, "tokenizer: the vocabulary is empty");
    if (n > static_cast<size_t>(INT32_MAX)) fail(Status::Format, "tokenizer: {} tokens do not fit token ids", n);
    if (!vocab_.scores.empty() && vocab_.scores.size() != n)
        fail(Status::Format, "tokenizer: {} scores for {} tokens", vocab_.scores.size(), n);
    if (!vocab_.types.empty() && vocab_.types.size() != n)
        fail(Status::Format, "tokenizer: {} token types for {} tokens", vocab_.types.size(), n);
    const std::pair<const char*, TokenId> special_ids[] = {
        {"bos", vocab_.bos}, {"eos", vocab_.eos}, {"unk", vocab_.unk}, {"pad", vocab_.pad}};
    for (const auto& [name, id] : special_ids) {
        if (id < -1 || id >= n_vocab())
            fail(Status::Format, "tokenizer: {} token id {} is out of range (n_vocab = {})", name, id, n);
    }

    // Lowest id wins on duplicate texts, like llama.cpp's token_to_id built in id order.
    size_t n_slots = 16;
    while (n_slots < 2 * n) n_slots *= 2;
    index_.assign(n_slots, -1);
    index_mask_ = n_slots - 1;
    for (size_t id = 0; id < n; ++id) {
        const std::string& text = vocab_.tokens[id];
        for (size_t slot = first_slot(text);; slot = (slot + 1) & index_mask_) {
            if (index_[slot] < 0) {
                index_[slot] = static_cast<TokenId>(id);
                break;
            }
            if (vocab_.tokens[static_cast<size_t>(index_[slot])] == text) break;
        }
    }

    byte_tokens_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        const char byte_piece[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
        TokenId id = find(std::string_view(byte_piece, sizeof(byte_piece)));
        if (id < 0) id = find(std::string(1, static_cast<char>(b)));
        byte_tokens_[static_cast<size_t>(b)] = id >= 0 ? id : vocab_.unk;
    }

    for (TokenId id = 0; id < n_vocab(); ++id) {
        const TokenType type = token_type(id);
        // An empty special text would match everywhere and never advance; llama.cpp has none, neither do we.
        if ((type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown) &&
            !token_text(id).empty())
            special_by_length_.push_back(id);
    }
    // Stable, so equal lengths keep id order and the partition is deterministic.
    std::stable_sort(special_by_length_.begin(), special_by_length_.end(),
                     [this](TokenId a, TokenId b) { return token_text(a).size() > token_text(b).size(); });

    if (vocab_.model == "gpt2") init_bpe();  // also replaces byte_tokens_ with the byte symbols' ids

    if (vocab_.eos >= 0) end_of_generation_.push_back(vocab_.eos);
    for (std::string_view name : {"<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>", "</s>"}) {
        const TokenId id = find(name);
        if (id >= 0 && token_type(id) == TokenType::Control &&
            std::find(end_of_generation_.begin(), end_of_generation_.end(), id) == end_of_generation_.end())
            end_of_generation_.push_back(id);
    }
}

size_t Tokenizer::first_slot(std::string_view text) const {
    return std::hash<std::string_view>{}(text)&index_mask_;
}

TokenType Tokenizer::token_type(TokenId id) const {
    if (vocab_.types.empty()) return TokenType::Normal;
    return vocab_.types.at(static_cast<size_t>(id));
}

TokenId Tokenizer::find(std::string_view text) const {
    for (size_t slot = first_slot(text);; slot = (slot + 1) & index_mask_) {
        const TokenId id = index_[slot];
        if (id < 0 || vocab_.tokens[static_cast<size_t>(id)] == text) return id;
    }
}

bool Tokenizer::is_end_of_generation(TokenId id) const {
    return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) != end_of_generation_.end();
}

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special) const {
    std::vector<Fragment> fragments;
    if (text.empty()) return fragments;
    fragments.push_back({-1, 0, text.size()});
    std::vector<Fragment> next;
    for (const TokenId id : special_by_length_) {
        const TokenType type = token_type(id);
        if (!parse_special && (type == TokenType::Control || type == TokenType::Unknown)) continue;
        const std::string& special = token_text(id);
        // Fragments only shrink, so a token absent from the whole text is absent from every fragment; this one
        // scan per candidate keeps a 6000-special vocabulary cheap on long texts.
        if (text.find(special) == std::string_view::npos) continue;
        next.clear();
        for (const Fragment& fragment : fragments) {
            if (fragment.token >= 0) {
                next.push_back(fragment);
                continue;
            }
            const size_t end              = fragment.offset + fragment.n;
            const std::string_view window = text.substr(0, end);
            size_t pos                    = fragment.offset;
            for (size_t match; (match = window.find(special, pos)) != std::string_view::npos;) {
                if (match > pos) next.push_back({-1, pos, match - pos});
                next.push_back({id, match, special.size()});
                pos = match + special.size();
            }
            if (pos < end) next.push_back({-1, pos, end - pos});
        }
        fragments.swap(next);
    }
    return fragments;
}

void Tokenizer::encode_raw(std::string_view text, std::vector<TokenId>& out) const {
    // Symbols are UTF-8 characters in a doubly linked list; a merge grows the left symbol and empties the right.
    struct Symbol {
        int prev;
        int next;
        size_t offset;
        size_t n;
    };
    struct Bigram {
        float score;
        int left;
        int right;
        size_t n;  // bytes of left + right when queued; a mismatch at pop time means the entry is stale
    };
    // Highest score first; on ties the leftmost pair, as llama.cpp's llm_bigram_spm::comparator.
    struct Lower {
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        }
    };

    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    for (size_t offset = 0; offset < text.size();) {
        const size_t n  = std::min(utf8_len(static_cast<uint8_t>(text[offset])), text.size() - offset);
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({index - 1, offset + n == text.size() ? -1 : index + 1, offset, n});
        offset += n;
    }

    std::vector<Bigram> storage;
    storage.reserve(symbols.size());
    std::priority_queue<Bigram, std::vector<Bigram>, Lower> queue(Lower{}, std::move(storage));
    // Kept for fidelity with llama.cpp's resegment(). Every queued pair's text is a token, and so is every merged
    // symbol, so a final symbol that is not a token is a single character and never found here; the lookup
    // below is the oracle's, not a path that our inputs can take.
    std::unordered_map<std::string_view, std::pair<int, int>> rev_merge;

    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view pair = text.substr(symbols[left].offset, symbols[left].n + symbols[right].n);
        const TokenId id            = find(pair);
        if (id < 0) return;
        queue.push({score(id), left, right, pair.size()});
        rev_merge[pair] = {left, right};
    };

    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram bigram = queue.top();
        queue.pop();
        Symbol& left  = symbols[bigram.left];
        Symbol& right = symbols[bigram.right];
        if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.n) continue;
        left.n += right.n;
        right.n   = 0;
        left.next = right.next;
        if (right.next >= 0) symbols[right.next].prev = bigram.left;
        try_add(left.prev, bigram.left);
        try_add(bigram.left, left.next);
    }

    auto resegment = [&](auto& self, const Symbol& symbol) -> void {
        const std::string_view piece = text.substr(symbol.offset, symbol.n);
        if (const TokenId id = find(piece); id >= 0) {
            out.push_back(id);
            return;
        }
        if (const auto it = rev_merge.find(piece); it != rev_merge.end()) {
            self(self, symbols[it->second.first]);
            self(self, symbols[it->second.second]);
            return;
        }
        for (const char c : piece) {
            const TokenId id = byte_tokens_[static_cast<uint8_t>(c)];
            if (id < 0)
                fail(Status::InvalidArg, "tokenizer: the vocabulary has no token for byte 0x{:02X} (and no <unk>)",
                     static_cast<uint8_t>(c));
            out.push_back(id);
        }
    };
    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) resegment(resegment, symbols[i]);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 2);
    if (add_special && vocab_.add_bos && vocab_.bos >= 0) out.push_back(vocab_.bos);
    bool previous_special = true;  // the first fragment gets the space prefix too
    for (const Fragment& fragment : partition(text, parse_special)) {
        if (fragment.token >= 0) {
            out.push_back(fragment.token);
            previous_special = true;
            continue;
        }
        if (bpe_) {
            encode_bpe(text.substr(fragment.offset, fragment.n), out);
            previous_special = false;
            continue;
        }
        const std::string escaped =
            escape_spaces(text.substr(fragment.offset, fragment.n), vocab_.add_space_prefix && previous_special);
        encode_raw(escaped, out);
        previous_special = false;
    }
    if (add_special && vocab_.add_eos && vocab_.eos >= 0) out.push_back(vocab_.eos);
    return out;
}

std::string Tokenizer::piece(TokenId id, bool render_special) const {
    if (id < 0 || id >= n_vocab())
        fail(Status::InvalidArg, "tokenizer: token id {} is out of range (n_vocab = {})", id, n_vocab());
    const std::string& text = token_text(id);
    switch (token_type(id)) {
        case TokenType::Byte: {
            const int byte = parse_byte_token(text);
            return byte >= 0 ? std::string(1, static_cast<char>(byte)) : text;
        }
        case TokenType::UserDefined:
            return text;
        case TokenType::Control:
        case TokenType::Unknown:
        case TokenType::Unused:
            return render_special ? text : std::string();
        case TokenType::Normal:
        case TokenType::Undefined:
            break;  // llama.cpp has no undefined tokens in practice; treat them as normal
    }
    if (bpe_) return bpe_piece(text);
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kEscapedSpace.size(), kEscapedSpace) == 0) {
            out += ' ';
            i += kEscapedSpace.size();
        } else {
            out += text[i++];
        }
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool render_special) const {
    std::string out;
    for (const TokenId id : ids) out += piece(id, render_special);
    return out;
}

}  // namespace butler
