// SPDX-License-Identifier: MIT
// Tokenizer::from_gguf: reads tokenizer.ggml.* into a VocabData. Separate from tokenizer.cpp so that a program
// (or test) building a Tokenizer from a VocabData does not pull in the GGUF reader.
#include <utility>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/tokenizer.h"

namespace butler {

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
    VocabData vocab;
    vocab.model = file.require<std::string>("tokenizer.ggml.model");
    if (vocab.model != "llama" && vocab.model != "gpt2")
        fail(Status::Unsupported,
             "{}: tokenizer model '{}' is not supported (SentencePiece 'llama', byte-level BPE 'gpt2')", file.path(),
             vocab.model);
    if (vocab.model == "gpt2") {
        vocab.merges = file.require<std::vector<std::string>>("tokenizer.ggml.merges");
        vocab.pre = file.get<std::string>("tokenizer.ggml.pre").value_or("default");
    }
    vocab.tokens   = file.require<std::vector<std::string>>("tokenizer.ggml.tokens");
    const size_t n = vocab.tokens.size();
    if (n == 0) fail(Status::Format, "{}: tokenizer.ggml.tokens is empty", file.path());
    if (n > static_cast<size_t>(INT32_MAX))
        fail(Status::Format, "{}: tokenizer.ggml.tokens has {} entries, too many for token ids", file.path(), n);

    if (auto scores = file.get<std::vector<float>>("tokenizer.ggml.scores")) {
        if (scores->size() != n)
            fail(Status::Format, "{}: tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}",
                 file.path(), scores->size(), n);
        vocab.scores = std::move(*scores);
    }
    if (auto types = file.get<std::vector<int32_t>>("tokenizer.ggml.token_type")) {
        if (types->size() != n)
            fail(Status::Format, "{}: tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                 file.path(), types->size(), n);
        vocab.types.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const int32_t t = (*types)[i];
            if (t < 0 || t > static_cast<int32_t>(TokenType::Byte))
                fail(Status::Format, "{}: tokenizer.ggml.token_type[{}] = {} is not a token type", file.path(), i, t);
            vocab.types[i] = static_cast<TokenType>(t);
        }
    }

    auto special_id = [&](std::string_view key) -> TokenId {
        const std::optional<uint32_t> id = file.get<uint32_t>(key);
        if (!id) return -1;
        if (*id >= n) fail(Status::Format, "{}: {} = {} is out of range (n_vocab = {})", file.path(), key, *id, n);
        return static_cast<TokenId>(*id);
    };
    vocab.bos     = special_id("tokenizer.ggml.bos_token_id");
    vocab.eos     = special_id("tokenizer.ggml.eos_token_id");
    vocab.unk     = special_id("tokenizer.ggml.unknown_token_id");
    vocab.pad     = special_id("tokenizer.ggml.padding_token_id");
    vocab.add_bos = file.get<bool>("tokenizer.ggml.add_bos_token").value_or(vocab.model == "llama");
    vocab.add_eos = file.get<bool>("tokenizer.ggml.add_eos_token").value_or(false);
    // llama.cpp's SPM default; Gemma's file says false.
    vocab.add_space_prefix = file.get<bool>("tokenizer.ggml.add_space_prefix").value_or(vocab.model == "llama");
    try {
        return std::make_unique<Tokenizer>(std::move(vocab));
    } catch (const Error& e) {
        fail(e.status(), "{}: {}", file.path(), e.what());  // name the file (e.g. an unknown pre-tokenizer)
    }
}

}  // namespace butler
