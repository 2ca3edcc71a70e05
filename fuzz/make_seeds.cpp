// SPDX-License-Identifier: MIT
// Writes the seed corpora of the fuzz targets: fuzz_seeds DIR makes DIR/<target>/ with valid inputs (tiny models
// of each architecture and tokenizer from the test fixtures, a predictor-style side file, texts, prompts, batch
// lists) and near-valid ones (truncated, bit-flipped, wrong types, torn lines). Deterministic.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz/fuzz_common.h"
#include "predictor/tokenbutler.h"
#include "runtime/gguf.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using namespace butler;

void put(const fs::path& dir, const std::string& name, const Bytes& bytes) {
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        std::fprintf(stderr, "fuzz_seeds: cannot write %s\n", (dir / name).c_str());
        std::exit(1);
    }
}

void put(const fs::path& dir, const std::string& name, const std::string& text) {
    put(dir, name, Bytes(text.begin(), text.end()));
}

// A valid file, then cuts inside its header and near its end, and a few single-bit flips in the header region.
void put_with_variants(const fs::path& dir, const std::string& name, const Bytes& good, uint64_t seed) {
    put(dir, name, good);
    for (size_t cut : {size_t(12), size_t(40), good.size() / 4, good.size() - 1})
        if (cut < good.size())
            put(dir, fmt::format("{}.cut{}", name, cut), Bytes(good.begin(), good.begin() + long(cut)));
    std::mt19937_64 rng(seed);
    const size_t header = std::min<size_t>(good.size(), 2048);
    for (int k = 0; k < 4; ++k) {
        Bytes b = good;
        b[rng() % header] ^= uint8_t(1u << (rng() % 8));
        put(dir, fmt::format("{}.flip{}", name, k), b);
    }
}

Bytes predictor_like() {
    // What a side file of the predictor carries: its own architecture name, the base model it belongs to, scalars
    // of each type, arrays (nested too) and small tensors of several types.
    GgufWriter w;
    w.set_string("general.architecture", "tokenbutler");
    w.set_string("tokenbutler.base_model", "gemma-3-270m");
    w.set_u32("tokenbutler.layer", 0);
    w.set_u32("tokenbutler.head_dim", 16);
    w.set_f32("tokenbutler.scale", 0.25f);
    w.set_bool("tokenbutler.causal", true);
    w.set_u64("tokenbutler.n_train_tokens", 1u << 20);
    w.set_i32s("tokenbutler.layers", {1, 2, 5});
    w.set_f32s("tokenbutler.norms", {1.0f, 0.5f});
    w.set_strings("tokenbutler.names", {"q", "k"});
    GgufValue nested;
    nested.type = GgufType::Array;
    nested.elem_type = GgufType::Array;
    GgufValue inner;
    inner.type = GgufType::Array;
    inner.elem_type = GgufType::U8;
    for (int i = 0; i < 3; ++i) {
        GgufValue v;
        v.type = GgufType::U8;
        v.u = uint64_t(i);
        inner.items.push_back(v);
    }
    inner.n_items = inner.items.size();
    nested.items = {inner, inner};
    nested.n_items = 2;
    w.set_value("tokenbutler.nested", nested);
    std::mt19937_64 rng(5);
    auto add = [&](const std::string& name, DType type, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        Bytes bytes(size_t(row_bytes(type, shape.back()) * (n / shape.back())));
        for (uint8_t& b : bytes) b = uint8_t(rng() & 0x3F);  // small values: no NaN/Inf halves
        w.add_tensor(name, type, shape, bytes);
    };
    add("tb.wq.weight", DType::F32, {16, 8});
    add("tb.wk.weight", DType::F16, {16, 8});
    add("tb.mlp.weight", DType::Q8_0, {2, 32});
    add("tb.bias", DType::F32, {16});
    return w.to_bytes();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    const fs::path root = argv[1];

    const fs::path model = root / "fuzz_gguf_model";
    put_with_variants(model, "gemma3-q8_0.gguf", test::tiny_gemma3_gguf(fuzz::small_gemma3(1, DType::Q8_0, false)), 1);
    put(model, "gemma3-chat-f16.gguf", test::tiny_gemma3_gguf(fuzz::small_gemma3(2, DType::F16, true)));
    put_with_variants(model, "llama-gpt2-q8_0.gguf",
                      test::tiny_model_gguf(fuzz::small_model("llama", "gpt2", DType::Q8_0, 3)), 3);
    put(model, "llama-spm-q8_0.gguf", test::tiny_model_gguf(fuzz::small_model("llama", "llama", DType::Q8_0, 4)));
    put(model, "qwen2-gpt2-q8_0.gguf", test::tiny_model_gguf(fuzz::small_model("qwen2", "gpt2", DType::Q8_0, 5)));
    put(model, "llama-missing-tensor.gguf",
        test::tiny_model_gguf(fuzz::small_model("llama", "gpt2", DType::Q8_0, 6), "blk.0.attn_k.weight"));

    const fs::path pred = root / "fuzz_gguf_predictor";
    put_with_variants(pred, "predictor.gguf", predictor_like(), 7);
    {  // a real TokenButler predictor file (small shape), and its near-valid variants
        PredictorShape shape;
        shape.n_layer = 6, shape.n_embd = 16, shape.n_head = 4, shape.n_head_kv = 1, shape.head_dim = 8;
        shape.group = 2, shape.d_dash = 4, shape.intdim = 8;
        BaseModelIdentity base;
        base.arch = "gemma3", base.n_layer = 6, base.n_embd = 16, base.n_head = 4, base.n_head_kv = 1, base.head_dim = 8;
        const fs::path tmp = pred / "tokenbutler.tmp";
        fs::create_directories(pred);
        TokenButlerPredictor(shape, base, 1).save(tmp.string());
        std::ifstream in(tmp, std::ios::binary);
        const Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        fs::remove(tmp);
        put_with_variants(pred, "tokenbutler.gguf", bytes, 8);
    }
    put(pred, "empty-v3.gguf", Bytes{'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});

    // The tokenizer target: first byte = flags (1 BPE, 2 add_special, 4 parse_special), then the text.
    const fs::path tok = root / "fuzz_tokenizer";
    const std::vector<std::string> texts = {
        "the cat sat on the hat",
        "  leading spaces and\ttabs\r\nand lines\n\n",
        "caf\xC3\xA9 \xE2\x82\xAC 100 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80 don't I'll we've 12345678",
        "<start_of_turn>user\nhi<end_of_turn>\n<|im_start|><bos><eos>",
        "bad \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80 \xE2\x82 end",
        "\xE2\x96\x81" "the\xE2\x96\x81" "cat",
    };
    for (size_t i = 0; i < texts.size(); ++i)
        for (uint8_t flags : {0, 1, 6, 7}) put(tok, fmt::format("text{}-{}", i, flags), char(flags) + texts[i]);

    // The chat-template target: first byte = PromptKind, then before NUL after NUL document.
    const fs::path chat = root / "fuzz_chat_template";
    for (uint8_t kind = 0; kind < 5; ++kind)
        put(chat, fmt::format("kind{}", kind),
            std::string(1, char(kind)) + "Summarize this.\n\n" + std::string(1, '\0') + "\n\nSummary:" +
                std::string(1, '\0') + "the cat<end_of_turn>\n<start_of_turn>model\nsat [INST] x [/INST]");
    put(chat, "template-gemma", "{{ bos_token }}<start_of_turn>user\n{{ content }}<end_of_turn>");
    put(chat, "template-llama3", "<|start_header_id|>{{ role }}<|end_header_id|>\n\n{{ content }}<|eot_id|>");

    const fs::path batch = root / "fuzz_batch_jsonl";
    put(batch, "list", "{\"id\": \"a\", \"text\": \"the cat sat\"}\n{\"id\": 7, \"path\": \"docs/d1.txt\"}\n\n"
                       "{\"id\": [1, {\"x\": null}], \"path\": \"/abs/d2.md\"}\n");
    put(batch, "results-torn", "{\"id\": \"a\", \"summary\": \"s\", \"tokens_in\": 3}\n{\"id\": \"b\", \"error\": "
                               "\"x\", \"status\": \"InvalidArg\"}\n{\"id\": \"c\", \"summ");
    put(batch, "duplicate", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}\n");
    put(batch, "bad-shapes",
        "{\"id\": \"a\", \"text\": 3}\n{\"id\": \"b\", \"path\": \"p\", \"text\": \"t\"}\n[1,2]\n");
    put(batch, "escapes", "{\"id\": \"\\u00e9\\ud83d\\ude00\", \"text\": \"caf\\u00e9 \\ud800 \\\\ \\\" \\n\"}\r\n");
    put(batch, "utf8", "{\"id\": \"u\", \"text\": \"bad \xC0\xAF \xE2\x82 end\"}\n");
    std::printf("%s\n", root.c_str());
    return 0;
}
