// SPDX-License-Identifier: MIT
// doctest's implementation without its runner: the fixtures use REQUIRE/MESSAGE in paths the fuzzers never take,
// and they must still link.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "fuzz/fuzz_common.h"

#include <random>
#include <string_view>

#include "runtime/document.h"
#include "runtime/gguf.h"

namespace butler::fuzz {
namespace {

// The small shape both fixture kinds take here: seeds of a few KB, so the fuzzer spends its time in the parsers.
template <typename Spec>
Spec small_spec() {
    Spec spec;
    spec.n_layer = 1;
    spec.n_embd = 32;
    spec.n_ff = 32;
    spec.n_head = 2;
    spec.n_head_kv = 1;
    spec.head_dim = 16;
    spec.n_ctx_train = 64;
    return spec;
}

}  // namespace

test::TinyGemma3 chat_gemma3(uint64_t seed) {
    test::TinyGemma3Spec spec = small_spec<test::TinyGemma3Spec>();
    spec.n_swa = 4;
    test::TinyGemma3 m = test::make_tiny_gemma3(spec, seed);
    std::mt19937_64 rng(seed + 1);
    for (const char* t : {"<start_of_turn>", "<end_of_turn>", "<|start_header_id|>", "<|end_header_id|>",
                          "<|eot_id|>", "<|im_start|>", "<|im_end|>"}) {
        m.tokens.push_back(t);
        const std::vector<float> row = test::gaussian(rng, size_t(spec.n_embd), 0.05f);
        m.tok_embd.insert(m.tok_embd.end(), row.begin(), row.end());
    }
    m.n_vocab = static_cast<int32_t>(m.tokens.size());
    return m;
}

test::TinyGemma3 small_gemma3(uint64_t seed, DType weight_type, bool chat) {
    test::TinyGemma3 m = chat_gemma3(seed);
    m.spec.weight_type = weight_type;
    if (chat)
        m.chat_template = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}"
                          "<end_of_turn>\n{% endfor %}<start_of_turn>model\n";
    return m;
}

test::TinyModel small_model(const std::string& arch, const std::string& tokenizer, DType weight_type,
                            uint64_t seed) {
    test::TinyModelSpec spec = small_spec<test::TinyModelSpec>();
    spec.arch = arch;
    spec.tokenizer = tokenizer;
    spec.weight_type = weight_type;
    return test::make_tiny_model(spec, seed);
}

const Tokenizer& spm_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok = [] {
        const std::vector<uint8_t> bytes = test::tiny_gemma3_gguf(chat_gemma3(1));
        return Tokenizer::from_gguf(*GgufFile::from_memory(bytes, "spm-fixture"));
    }();
    return *tok;
}

const Tokenizer& bpe_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok = [] {
        const std::vector<uint8_t> bytes = test::tiny_model_gguf(small_model("llama", "gpt2", DType::F32, 1));
        return Tokenizer::from_gguf(*GgufFile::from_memory(bytes, "bpe-fixture"));
    }();
    return *tok;
}

void check_ids(const Tokenizer& tok, const std::vector<TokenId>& ids) {
    for (TokenId id : ids) {
        FUZZ_CHECK(id >= 0 && id < tok.n_vocab());
        (void)tok.piece(id, /*render_special=*/true);
    }
    (void)tok.decode(ids);
}

bool valid_utf8(std::span<const uint8_t> bytes) {
    return repair_utf8(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())).n_replaced == 0;
}

}  // namespace butler::fuzz
