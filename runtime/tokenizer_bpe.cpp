// SPDX-License-Identifier: MIT
// The byte-level BPE half of Tokenizer (tokenizer.ggml.model = "gpt2"): pre-tokenizer regexes run with PCRE2,
// GPT-2's byte-to-unicode map, and rank-ordered merges, reproducing llama.cpp's llm_tokenizer_bpe (see tokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <unordered_map>
#include <utility>

#include "runtime/status.h"
#include "runtime/tokenizer.h"

namespace butler {
namespace {

// Pre-tokenizers by tokenizer.ggml.pre, with llama.cpp's patterns (each pattern splits the pieces the previous one
// left; text between matches stays a piece of its own).
struct PreTokenizer {
    std::vector<std::string_view> names;
    bool ignore_merges;  // a word that is itself a token is emitted whole (llama.cpp sets this for Llama 3)
    std::vector<std::string_view> patterns;
};

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

const std::vector<PreTokenizer>& pre_tokenizers() {
    static const std::vector<PreTokenizer> table = {
        {{"llama-bpe", "llama3", "llama-v3"},
         true,
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
        {{"qwen2", "deepseek-r1-qwen", "stablelm2"},
         false,
         {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
        {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"}, false, {R"(\p{N})", kGpt2Pattern}},
        {{"gpt2", "gpt-2", "mpt", "olmo", "jais"}, false, {kGpt2Pattern}},
        {{"default"}, false, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Pattern, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
    };
    return table;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 for U+0100 + k in byte order.
uint32_t byte_to_codepoint(int b) {
    auto printable = [](int c) { return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255); };
    if (printable(b)) return uint32_t(b);
    int k = 0;
    for (int c = 0; c < b; ++c) k += printable(c) ? 0 : 1;
    return 256u + uint32_t(k);
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Byte length of the UTF-8 sequence led by `lead` (1 for stray continuation bytes, so any input advances).
size_t utf8_len(uint8_t lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

struct Pcre2Code {
    pcre2_code* code = nullptr;
    explicit Pcre2Code(pcre2_code* c) : code(c) {}
    Pcre2Code(Pcre2Code&& o) noexcept : code(std::exchange(o.code, nullptr)) {}
    ~Pcre2Code() { pcre2_code_free(code); }
};

struct MatchData {
    pcre2_match_data* md;
    explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
        if (md == nullptr) fail(Status::Oom, "tokenizer: out of memory for regex match data");
    }
    ~MatchData() { pcre2_match_data_free(md); }
};

}  // namespace

struct Tokenizer::Bpe {
    const PreTokenizer* pre = nullptr;
    std::vector<Pcre2Code> regexes;
    std::unordered_map<std::string, int32_t> ranks;  // "left right" -> merge rank
    std::string byte_symbol[256];                      // byte -> its UTF-8 symbol
    std::unordered_map<uint32_t, uint8_t> symbol_byte;  // symbol code point -> byte
};

void Tokenizer::BpeDeleter::operator()(Bpe* p) const { delete p; }

std::string supported_bpe_pre_tokenizers() {
    std::string out;
    for (const PreTokenizer& p : pre_tokenizers())
        for (std::string_view n : p.names) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
}

void Tokenizer::init_bpe() {
    std::unique_ptr<Bpe, BpeDeleter> bpe(new Bpe());
    for (const PreTokenizer& p : pre_tokenizers())
        for (std::string_view n : p.names)
            if (n == vocab_.pre) bpe->pre = &p;
    if (bpe->pre == nullptr)
        fail(Status::Unsupported, "tokenizer: pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported (supported: {})",
             vocab_.pre, supported_bpe_pre_tokenizers());
    for (std::string_view pattern : bpe->pre->patterns) {
        int err = 0;
        PCRE2_SIZE at = 0;
        // MATCH_INVALID_UTF: invalid UTF-8 in user text never matches and stays a piece of its own (its bytes then
        // encode as byte symbols) instead of failing the whole match.
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
        if (code == nullptr) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof(msg));
            fail(Status::Internal, "tokenizer: pre-tokenizer regex does not compile at {}: {}", at,
                 reinterpret_cast<const char*>(msg));
        }
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
        bpe->regexes.emplace_back(code);
    }
    bpe->ranks.reserve(vocab_.merges.size());
    for (size_t i = 0; i < vocab_.merges.size(); ++i) {
        const std::string& m = vocab_.merges[i];
        const size_t space = m.find(' ', 1);  // a pair's left side is never empty; the first space after it splits
        if (space == std::string::npos || space + 1 >= m.size())
            fail(Status::Format, "tokenizer: merge {} ('{}') is not a 'left right' pair", i, m);
        bpe->ranks.emplace(m, static_cast<int32_t>(i));  // duplicates keep the lowest rank
    }
    for (int b = 0; b < 256; ++b) {
        const uint32_t cp = byte_to_codepoint(b);
        append_utf8(bpe->byte_symbol[b], cp);
        bpe->symbol_byte[cp] = static_cast<uint8_t>(b);
        const TokenId id = find(bpe->byte_symbol[b]);
        byte_tokens_[static_cast<size_t>(b)] = id >= 0 ? id : vocab_.unk;
    }
    bpe_ = std::move(bpe);
}

std::vector<std::pair<size_t, size_t>> Tokenizer::bpe_split(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> pieces = {{0, text.size()}}, next;
    if (text.empty()) return {};
    for (const Pcre2Code& re : bpe_->regexes) {
        MatchData m(re.code);
        next.clear();
        for (const auto& [begin, end] : pieces) {
            // The subject is the piece alone, so lookaheads do not see past it (as llama.cpp's split).
            const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
            const size_t n = end - begin;
            size_t pos = 0;
            while (pos < n) {
                const int rc = pcre2_match(re.code, subject, n, pos, 0, m.md, nullptr);
                if (rc < 0) break;  // no further match (PCRE2_ERROR_NOMATCH) in this piece
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
                const size_t mb = ov[0];
                size_t me = ov[1];
                if (me == mb) me = std::min(n, mb + utf8_len(uint8_t(text[begin + mb])));  // never loop on empty
                if (mb > pos) next.emplace_back(begin + pos, begin + mb);
                next.emplace_back(begin + mb, begin + me);
                pos = me;
            }
            if (pos < n) next.emplace_back(begin + pos, end);
        }
        pieces.swap(next);
    }
    return pieces;
}

std::vector<std::string> Tokenizer::bpe_words(std::string_view text) const {
    if (!bpe_) fail(Status::InvalidArg, "tokenizer: bpe_words needs a gpt2 (byte-level BPE) vocabulary");
    std::vector<std::string> words;
    for (const auto& [begin, end] : bpe_split(text)) words.emplace_back(text.substr(begin, end - begin));
    return words;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
    const Bpe& bpe = *bpe_;
    const std::vector<std::pair<size_t, size_t>> pieces = bpe_split(text);

    // 2. Each word: bytes -> byte symbols, then merges by rank.
    std::string word, key;
    std::vector<std::pair<size_t, size_t>> parts;  // (offset, length) into `word`
    for (const auto& [begin, end] : pieces) {
        word.clear();
        for (size_t i = begin; i < end; ++i) word += bpe.byte_symbol[uint8_t(text[i])];
        if (bpe.pre->ignore_merges) {
            if (const TokenId id = find(word); id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        parts.clear();
        for (size_t i = 0; i < word.size(); i += utf8_len(uint8_t(word[i])))
            parts.emplace_back(i, std::min(utf8_len(uint8_t(word[i])), word.size() - i));
        auto rank_of = [&](size_t i) {
            key.assign(word, parts[i].first, parts[i].second);
            key += ' ';
            key.append(word, parts[i + 1].first, parts[i + 1].second);
            const auto it = bpe.ranks.find(key);
            return it == bpe.ranks.end() ? INT32_MAX : it->second;
        };
        std::vector<int32_t> ranks(parts.size() > 1 ? parts.size() - 1 : 0);
        for (size_t i = 0; i + 1 < parts.size(); ++i) ranks[i] = rank_of(i);
        while (parts.size() > 1) {
            size_t best = 0;
            for (size_t i = 1; i < ranks.size(); ++i)
                if (ranks[i] < ranks[best]) best = i;  // strict: the leftmost of equal ranks
            if (ranks[best] == INT32_MAX) break;
            parts[best].second += parts[best + 1].second;
            parts.erase(parts.begin() + long(best) + 1);
            ranks.erase(ranks.begin() + long(best));
            if (best + 1 < parts.size()) ranks[best] = rank_of(best);
            if (best > 0) ranks[best - 1] = rank_of(best - 1);
        }
        for (const auto& [off, len] : parts) {
            const std::string_view part(word.data() + off, len);
            if (const TokenId id = find(part); id >= 0) {
                out.push_back(id);
                continue;
            }
            // Not a token (a vocabulary without every merge result): fall back to the byte symbols.
            for (size_t i = 0; i < part.size(); i += utf8_len(uint8_t(part[i]))) {
                const TokenId id = find(part.substr(i, utf8_len(uint8_t(part[i]))));
                if (id >= 0) out.push_back(id);
                else if (vocab_.unk >= 0) out.push_back(vocab_.unk);
            }
        }
    }
}

std::string Tokenizer::bpe_piece(const std::string& text) const {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const uint8_t lead = uint8_t(text[i]);
        const size_t n = std::min(utf8_len(lead), text.size() - i);
        uint32_t cp = n == 1 ? lead : lead & (0xFF >> (n + 1));
        for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (uint8_t(text[i + k]) & 0x3F);
        const auto it = bpe_->symbol_byte.find(cp);
        if (it != bpe_->symbol_byte.end()) out += char(it->second);
        else out.append(text, i, n);  // not a byte symbol: keep the text as written
        i += n;
    }
    return out;
}

}  // namespace butler
