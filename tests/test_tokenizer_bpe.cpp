// SPDX-License-Identifier: MIT
// Byte-level BPE (tokenizer.ggml.model = "gpt2") on hand-made vocabularies and merges: the expected word splits
// of each pre-tokenizer and the expected merges are derived by hand in the comments, from the regexes of
// llama.cpp / HF tokenizers and the BPE rule (lowest merge rank first, leftmost on ties).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/tokenizer.h"

using namespace butler;
using Words = std::vector<std::string>;

namespace {

// GPT-2's byte symbols, written out by hand: printable ASCII/Latin-1 bytes are themselves; the others are
// U+0100 + their index among the non-printable bytes (0x00..0x20, 0x7F..0xA0, 0xAD).
std::string byte_symbol(int b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    unsigned cp = unsigned(b);
    if (!printable) cp = b <= 32 ? 256 + b : b <= 160 ? 256 + 33 + (b - 127) : 256 + 67;  // 0xAD is the last
    std::string s;
    if (cp < 0x80) s += char(cp);
    else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
    return s;
}

const std::string G = "\xC4\xA0";  // byte_symbol(' ') = U+0120

// The 256 byte symbols (ids 0..255), then `extra` tokens, then <|bos|> (control).
VocabData bpe_vocab(const std::string& pre, const Words& extra, const Words& merges) {
    VocabData v;
    v.model = "gpt2";
    v.pre = pre;
    for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_symbol(b));
    for (const std::string& t : extra) v.tokens.push_back(t);
    v.tokens.push_back("<|bos|>");
    v.types.assign(v.tokens.size(), TokenType::Normal);
    v.types.back() = TokenType::Control;
    v.bos = TokenId(v.tokens.size() - 1);
    v.add_bos = false;
    v.merges = merges;
    return v;
}

// Token texts of an encoding.
Words texts(const Tokenizer& t, const std::vector<TokenId>& ids) {
    Words out;
    for (TokenId id : ids) out.push_back(t.token_text(id));
    return out;
}

Words split(const std::string& pre, const std::string& text) { return Tokenizer(bpe_vocab(pre, {}, {})).bpe_words(text); }

}  // namespace

TEST_SUITE("tokenizer") {
    TEST_CASE("bpe: GPT-2 byte symbols") {
        CHECK(byte_symbol(' ') == "\xC4\xA0");    // U+0120
        CHECK(byte_symbol('\n') == "\xC4\x8A");   // U+010A
        CHECK(byte_symbol(0x7F) == "\xC4\xA1");   // U+0121: the 34th non-printable
        CHECK(byte_symbol(0xAD) == "\xC5\x83");   // U+0143: the 68th and last
        CHECK(byte_symbol(0xFF) == "\xC3\xBF");   // itself
        const Tokenizer t(bpe_vocab("qwen2", {}, {}));
        // Every byte is its own token and decodes back, including bytes that are not valid UTF-8 alone.
        std::string all;
        for (int b = 0; b < 256; ++b) all += char(b);
        const auto ids = t.encode(all, false, false);
        CHECK(t.decode(ids) == all);
        CHECK(texts(t, t.encode(" \n", false, false)) == Words{G, "\xC4\x8A"});
    }

    TEST_CASE("bpe: llama-bpe pre-tokenizer") {
        // Digits in groups of at most three; " " before digits is its own word (\s+(?!\S) fails, \s+ takes it).
        CHECK(split("llama-bpe", "12345 67") == Words{"123", "45", " ", "67"});
        // Contractions case-insensitively; a leading space joins letters.
        CHECK(split("llama-bpe", "I'LL don't") == Words{"I", "'LL", " don", "'t"});
        // Whitespace runs: \s+(?!\S) leaves the last space to the next word; newlines group with \s*[\r\n]+.
        CHECK(split("llama-bpe", "a   b\n\n  c") == Words{"a", "  ", " b", "\n\n", " ", " c"});
        // Punctuation keeps trailing newlines.
        CHECK(split("llama-bpe", "x!!\n") == Words{"x", "!!\n"});
        // Non-Latin letters and digits are \p{L} / \p{N} (PCRE2 UCP): Cyrillic, CJK, Arabic-Indic digits.
        CHECK(split("llama-bpe", "Привет, мир") == Words{"Привет", ",", " мир"});
        CHECK(split("llama-bpe", "héllo 世界!") == Words{"héllo", " 世界", "!"});
        CHECK(split("llama-bpe", "٣٤٥٦") == Words{"٣٤٥", "٦"});
    }

    TEST_CASE("bpe: qwen2 pre-tokenizer") {
        CHECK(split("qwen2", "12345 67") == Words{"1", "2", "3", "4", "5", " ", "6", "7"});
        CHECK(split("qwen2", "I'LL don't") == Words{"I", "'LL", " don", "'t"});
        CHECK(split("qwen2", "a   b\n\n  c") == Words{"a", "  ", " b", "\n\n", " ", " c"});
        CHECK(split("qwen2", "héllo 世界!") == Words{"héllo", " 世界", "!"});
        CHECK(split("qwen2", "٣٤٥٦") == Words{"٣", "٤", "٥", "٦"});
    }

    TEST_CASE("bpe: gpt2, default and smollm pre-tokenizers") {
        // GPT-2: ' ?\p{N}+' keeps digit runs whole; contractions are lowercase only, so "'LL" is "'" + "LL";
        // "\n\n " is one \s+(?!\S) run.
        CHECK(split("gpt2", "12345 67") == Words{"12345", " 67"});
        CHECK(split("gpt2", "I'LL don't") == Words{"I", "'", "LL", " don", "'t"});
        CHECK(split("gpt2", "a   b\n\n  c") == Words{"a", "  ", " b", "\n\n ", " c"});
        CHECK(split("gpt2", "x!!\n") == Words{"x", "!!", "\n"});
        // default: punctuation runs first, then GPT-2, then \p{N}+ (splitting " 67" into " " + "67"), then
        // three-digit groups ("12345" -> "123" + "45").
        CHECK(split("default", "12345 67") == Words{"123", "45", " ", "67"});
        CHECK(split("default", "a,b") == Words{"a", ",", "b"});
        // smollm: every digit alone first, then GPT-2 inside each piece.
        CHECK(split("smollm", "12345 67") == Words{"1", "2", "3", "4", "5", " ", "6", "7"});
        CHECK(split("smollm", "ab cd") == Words{"ab", " cd"});
    }

    TEST_CASE("bpe: merges in rank order, leftmost first, byte fallback") {
        {
            // "the" -> t h e: (t h) rank 0 -> th e: (th e) rank 1 -> the. " cat" -> Ġ c a t: (c a) -> Ġ ca t:
            // (ca t) -> Ġ cat: (Ġ cat) -> Ġcat.
            const Tokenizer t(bpe_vocab("qwen2", {"th", "the", "ca", "cat", G + "cat"},
                                        {"t h", "th e", "c a", "ca t", G + " cat"}));
            CHECK(texts(t, t.encode("the cat", false, false)) == Words{"the", G + "cat"});
            CHECK(t.decode(t.encode("the cat", false, false)) == "the cat");
        }
        {
            // (h e) has the lower rank, so "the" becomes t + he and (t he) is no merge.
            const Tokenizer t(bpe_vocab("qwen2", {"he", "th"}, {"h e", "t h"}));
            CHECK(texts(t, t.encode("the", false, false)) == Words{"t", "he"});
        }
        {
            // Equal ranks (the same pair twice): the leftmost merges first: aa + a.
            const Tokenizer t(bpe_vocab("qwen2", {"aa"}, {"a a"}));
            CHECK(texts(t, t.encode("aaa", false, false)) == Words{"aa", "a"});
            CHECK(texts(t, t.encode("aaaa", false, false)) == Words{"aa", "aa"});
        }
        {
            // A merge whose result is not a token falls back to the byte symbols.
            const Tokenizer t(bpe_vocab("qwen2", {}, {"x y"}));
            CHECK(texts(t, t.encode("xy", false, false)) == Words{"x", "y"});
        }
    }

    TEST_CASE("bpe: llama-bpe takes whole-word tokens without merges (ignore_merges)") {
        const VocabData v = bpe_vocab("llama-bpe", {"abc"}, {});
        CHECK(texts(Tokenizer(v), Tokenizer(v).encode("abc", false, false)) == Words{"abc"});
        VocabData q = v;
        q.pre = "qwen2";
        CHECK(texts(Tokenizer(q), Tokenizer(q).encode("abc", false, false)) == Words{"a", "b", "c"});
    }

    TEST_CASE("bpe: special tokens, BOS and decoding") {
        VocabData v = bpe_vocab("llama-bpe", {G + "hi"}, {G + " h", G + "h i"});
        v.add_bos = true;
        const Tokenizer t(v);
        const auto ids = t.encode("<|bos|> hi", true, true);
        CHECK(ids == std::vector<TokenId>{t.bos(), t.bos(), t.find(G + "hi")});
        CHECK(t.decode(ids) == " hi");
        CHECK(t.decode(ids, true) == "<|bos|><|bos|> hi");
        // parse_special off: the marker is plain text.
        CHECK(t.decode(t.encode("<|bos|>", false, false)) == "<|bos|>");
        CHECK(t.encode("<|bos|>", false, false).size() > 1);
    }

    TEST_CASE("bpe: unknown pre-tokenizer and malformed merges are refused") {
        try {
            Tokenizer t(bpe_vocab("mystery-pre", {}, {}));
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Unsupported);
            CHECK(std::string(e.what()).find("'mystery-pre'") != std::string::npos);
        }
        CHECK_THROWS_AS(Tokenizer(bpe_vocab("qwen2", {}, {"nospace"})), Error);

        // Through GGUF: the error names the file and the pre-tokenizer.
        const VocabData v = bpe_vocab("qwen2", {}, {});
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_string("tokenizer.ggml.pre", "mystery-pre");
        w.set_strings("tokenizer.ggml.tokens", v.tokens);
        w.set_strings("tokenizer.ggml.merges", {});
        const auto bytes = w.to_bytes();
        auto file = GgufFile::from_memory(bytes, "bpe.gguf");
        try {
            Tokenizer::from_gguf(*file);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Unsupported);
            CHECK(std::string(e.what()).find("bpe.gguf") != std::string::npos);
            CHECK(std::string(e.what()).find("mystery-pre") != std::string::npos);
        }
    }
}
