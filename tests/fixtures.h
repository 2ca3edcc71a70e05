// SPDX-License-Identifier: MIT
// Test fixtures: tiny random models written as GGUF files, with their weights kept in float so tests can run an
// independent float64 forward over exactly the same numbers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace butler {
class Device;
}

namespace butler::test {

// n random floats, deterministic for the generator's state: normal(0, stddev) / uniform in [lo, hi).
std::vector<float> gaussian(std::mt19937_64& rng, size_t n, float stddev);
std::vector<float> uniform(std::mt19937_64& rng, size_t n, float lo, float hi);

struct TinyGemma3Spec {
    int32_t n_layer = 6;  // layer 5 is global, 0..4 use the sliding window
    int32_t n_embd = 64;
    int32_t n_ff = 96;
    int32_t n_head = 4;
    int32_t n_head_kv = 2;
    int32_t head_dim = 32;
    int32_t n_swa = 8;
    int32_t n_ctx_train = 256;
    float rope_base = 1e6f;
    float rms_eps = 1e-6f;
    DType weight_type = DType::F32;  // the matrices; norms are always F32
};

// Weights as float, outermost-first shapes as in weights.h.
struct TinyGemma3 {
    TinyGemma3Spec spec;
    int32_t n_vocab = 0;
    std::vector<std::string> tokens;
    std::vector<float> tok_embd;  // (n_vocab, n_embd)
    std::vector<float> output_norm;
    struct Layer {
        std::vector<float> attn_norm, wq, wk, wv, q_norm, k_norm, wo, attn_post_norm;
        std::vector<float> ffn_norm, ffn_gate, ffn_up, ffn_down, ffn_post_norm;
    };
    std::vector<Layer> layers;
    // Written as tokenizer.chat_template when not empty. Tokens appended after the built-in ones whose text looks
    // like "<...>" (e.g. <start_of_turn>) are written as CONTROL tokens.
    std::string chat_template;
};

// Random weights (deterministic for a seed), with magnitudes that keep activations in a sane range.
TinyGemma3 make_tiny_gemma3(const TinyGemma3Spec& spec, uint64_t seed);
// The GGUF image of the model (matrices in spec.weight_type: the float weights are quantized on the way out,
// so tests that compare against the float weights should use F32).
std::vector<uint8_t> tiny_gemma3_gguf(const TinyGemma3& model);

// A tiny random model of the llama or qwen2 architecture (pre-norm blocks, SwiGLU, GQA). Llama rotates
// interleaved pairs, Qwen2 halves and adds Q/K/V biases.
struct TinyModelSpec {
    std::string arch = "llama";  // "llama" or "qwen2"
    int32_t n_layer = 3;
    int32_t n_embd = 64;
    int32_t n_ff = 96;
    int32_t n_head = 4;
    int32_t n_head_kv = 2;
    int32_t head_dim = 16;
    int32_t n_ctx_train = 256;
    float rope_base = 10000.0f;
    float rms_eps = 1e-5f;
    bool tied_output = false;  // no output.weight: the output projection is token_embd
    bool rope_freqs = false;   // write a rope_freqs.weight tensor (Llama 3.1 style frequency divisors)
    std::string tokenizer = "llama";  // "llama" (SentencePiece vocabulary) or "gpt2" (byte-level BPE with merges)
    DType weight_type = DType::F32;
    DType bias_type = DType::F32;    // Q/K/V biases (anything but F32 is a load error: bad-input tests)
    std::string pre;                 // gpt2 tokenizer.ggml.pre; empty: the architecture's ("llama-bpe" / "qwen2")
    std::string rope_scaling_type;   // written as <arch>.rope.scaling.type when not empty
};

struct TinyModel {
    TinyModelSpec spec;
    int32_t n_vocab = 0;
    std::vector<std::string> tokens;
    std::vector<int32_t> token_types;
    std::vector<std::string> merges;  // gpt2 tokenizer only
    std::vector<float> tok_embd;      // (n_vocab, n_embd)
    std::vector<float> output;        // (n_vocab, n_embd); empty when tied
    std::vector<float> output_norm;   // (n_embd)
    std::vector<float> rope_freqs;    // (head_dim / 2) divisors; empty when spec.rope_freqs is off
    struct Layer {
        std::vector<float> attn_norm, wq, wk, wv, bq, bk, bv, wo;  // biases empty unless qwen2
        std::vector<float> ffn_norm, ffn_gate, ffn_up, ffn_down;
    };
    std::vector<Layer> layers;
};

TinyModel make_tiny_model(const TinyModelSpec& spec, uint64_t seed);
// The GGUF image; `skip_tensor` (if not empty) is left out, for missing-tensor tests.
std::vector<uint8_t> tiny_model_gguf(const TinyModel& model, const std::string& skip_tensor = "");

// A unique temporary file path that is removed when the object goes away.
class TempFile {
public:
    explicit TempFile(const std::string& suffix = ".gguf");
    ~TempFile();
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const { return path_; }
    void write(const std::vector<uint8_t>& bytes) const;

private:
    std::string path_;
};

// A unique scratch directory, removed with its contents when the object goes away.
struct TempDir {
    std::filesystem::path path;
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path / name).string(); }
    std::vector<std::string> entries() const;  // the names in it, sorted (what a run left behind)
};

// n_words words of an 8-word vocabulary ("the cat sat ..."), a sentence break every 11; deterministic per seed.
std::string random_words(size_t n_words, uint64_t seed);

// Runs Stream::gather on `device` over random pieces (sizes 1..700 bytes; 16-byte, 4-byte and unaligned offsets;
// pieces of one gather never overlap in the destination) from pinned host memory into device memory set to a
// known pattern first, reads the device buffer back, and returns how many bytes differ from the image built here
// with memcpy (the pieces written, every other byte untouched). `n_gathers` gathers of up to 64 pieces each.
size_t gather_mismatched_bytes(Device& device, uint64_t seed, int n_gathers);

// max_i |got_i - want_i| / max_i |want_i|: a float result against its float64 reference; INFINITY when either
// holds a NaN or Inf.
double max_rel_err(const std::vector<float>& got, const std::vector<double>& want);
// The same between two float results (logits of two runs).
double rel_diff(const std::vector<float>& got, const std::vector<float>& want);

// Runs the device's gemv kernel (KernelTable::gemv) on random weights quantized to `type` (weights, x and y in
// device memory) and returns max |y - y64| / max |y64|, where y64 is a float64 product over the rows as
// dequantize_row decodes them.
double gemv_max_rel_err(Device& device, DType type, int64_t n_rows, int64_t n_cols, uint64_t seed);
// The same for the device's gemm kernel (KernelTable::gemm): n_tok token rows, W in tiles of tile_rows rows, output
// rows 3 floats wider than n_rows (the error covers the columns past n_rows, which must keep their value).
double gemm_max_rel_err(Device& device, DType type, int64_t n_rows, int64_t n_cols, int64_t n_tok, int64_t tile_rows,
                        uint64_t seed);

// Runs the device's prefill_attn kernel (KernelTable::prefill_attn) as chunked prefill does: n_q queries at positions
// q_pos0 .. (n_group heads of head_dim, f32 rows wider than they need) over the keys 0 .. q_pos0 + n_q - 1 (K/V
// in kv_type, values exact in f16 and bf16) streamed in blocks of `block` rows into alternating halves of a slot
// buffer, in shuffled slot order, each block merged into the running output (the first overwrites a poisoned one).
// Returns the larger of max |o - o64| / max |o64| and max |lse - lse64| / max |lse64| against float64 causal
// attention written here.
double prefill_attn_max_err(Device& device, DType kv_type, int32_t head_dim, int32_t n_group, int64_t n_q,
                            int64_t q_pos0, int32_t block, uint64_t seed);

// Checks the device's rmsnorm, rope and glu kernels against float64 (tests/test_device_kernels.cpp).
void check_forward_kernels(Device& device);
// Checks the device's imp_score, topk and imp_query kernels against float64 and a full sort (tests/test_device_kernels.cpp).
void check_selection_kernels(Device& device);

// The default model, or "" when it is not installed. Under CI=true a missing model fails the calling test.
std::string default_model_or_skip();

}  // namespace butler::test

namespace butler::test {

struct CliResult {
    int exit_code = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};

// Runs the built `butler` binary with these arguments (each shell-quoted), capturing stdout, stderr and the exit code.
CliResult run_cli(const std::vector<std::string>& args);
// Starts the built `butler` binary with these arguments in the background (stdout and stderr to /dev/null) and
// returns its pid, for tests that signal it; the caller waits for it (waitpid).
int spawn_cli(const std::vector<std::string>& args);

}  // namespace butler::test
