// SPDX-License-Identifier: MIT
#include "tests/fixtures.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "cpu_kernels/attention.h"
#include "cpu_kernels/quant.h"
#include "runtime/device.h"
#include "runtime/gguf.h"
#include "runtime/model_path.h"
#include "runtime/status.h"

namespace butler::test {

std::vector<float> gaussian(std::mt19937_64& rng, size_t n, float stddev) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

std::vector<float> uniform(std::mt19937_64& rng, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

namespace {

std::vector<float> norm_weight(std::mt19937_64& rng, size_t n) {
    // Gemma stores 1 + w; values around 1 with some spread exercise the multiplication.
    return uniform(rng, n, 0.5f, 1.5f);
}

}  // namespace

TinyGemma3 make_tiny_gemma3(const TinyGemma3Spec& spec, uint64_t seed) {
    TinyGemma3 m;
    m.spec = spec;
    std::mt19937_64 rng(seed);
    // Vocabulary: control tokens, the 256 byte tokens, and a few words.
    m.tokens = {"<pad>", "<eos>", "<bos>", "<unk>"};
    for (int b = 0; b < 256; ++b) m.tokens.push_back(fmt::format("<0x{:02X}>", b));
    const std::string space = "\xE2\x96\x81";  // U+2581, SentencePiece's space
    for (const char* w : {"the", "a", "cat", "sat", ""}) m.tokens.push_back(space + w);
    for (const char* w : {"t", "h", "e", "a", "c", "s"}) m.tokens.push_back(w);
    m.n_vocab = static_cast<int32_t>(m.tokens.size());
    const size_t E = size_t(spec.n_embd), F = size_t(spec.n_ff), Q = size_t(spec.n_head * spec.head_dim),
                 K = size_t(spec.n_head_kv * spec.head_dim), D = size_t(spec.head_dim);
    const float s_in = 1.0f / std::sqrt(float(E));
    m.tok_embd = gaussian(rng, size_t(m.n_vocab) * E, 0.05f);
    m.output_norm = norm_weight(rng, E);
    for (int l = 0; l < spec.n_layer; ++l) {
        TinyGemma3::Layer L;
        L.attn_norm = norm_weight(rng, E);
        L.wq = gaussian(rng, Q * E, s_in);
        L.wk = gaussian(rng, K * E, s_in);
        L.wv = gaussian(rng, K * E, s_in);
        L.q_norm = norm_weight(rng, D);
        L.k_norm = norm_weight(rng, D);
        L.wo = gaussian(rng, E * Q, 1.0f / std::sqrt(float(Q)));
        L.attn_post_norm = norm_weight(rng, E);
        L.ffn_norm = norm_weight(rng, E);
        L.ffn_gate = gaussian(rng, F * E, s_in);
        L.ffn_up = gaussian(rng, F * E, s_in);
        L.ffn_down = gaussian(rng, E * F, 1.0f / std::sqrt(float(F)));
        L.ffn_post_norm = norm_weight(rng, E);
        m.layers.push_back(std::move(L));
    }
    return m;
}

std::vector<uint8_t> tiny_gemma3_gguf(const TinyGemma3& m) {
    const TinyGemma3Spec& s = m.spec;
    GgufWriter w;
    w.set_string("general.architecture", "gemma3");
    w.set_string("general.name", "tiny random gemma3 (test fixture)");
    w.set_u32("gemma3.context_length", uint32_t(s.n_ctx_train));
    w.set_u32("gemma3.embedding_length", uint32_t(s.n_embd));
    w.set_u32("gemma3.block_count", uint32_t(s.n_layer));
    w.set_u32("gemma3.feed_forward_length", uint32_t(s.n_ff));
    w.set_u32("gemma3.attention.head_count", uint32_t(s.n_head));
    w.set_u32("gemma3.attention.head_count_kv", uint32_t(s.n_head_kv));
    w.set_u32("gemma3.attention.key_length", uint32_t(s.head_dim));
    w.set_u32("gemma3.attention.value_length", uint32_t(s.head_dim));
    w.set_f32("gemma3.attention.layer_norm_rms_epsilon", s.rms_eps);
    w.set_f32("gemma3.rope.freq_base", s.rope_base);
    w.set_u32("gemma3.attention.sliding_window", uint32_t(s.n_swa));
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_strings("tokenizer.ggml.tokens", m.tokens);
    std::vector<float> scores(m.tokens.size());
    std::vector<int32_t> types(m.tokens.size(), 1);
    for (size_t i = 0; i < m.tokens.size(); ++i) {
        scores[i] = -float(i);
        if (i < 4) types[i] = 3;
        else if (i < 4 + 256) types[i] = 6;
        else if (m.tokens[i].size() > 2 && m.tokens[i].front() == '<' && m.tokens[i].back() == '>') types[i] = 3;
    }
    types[3] = 2;
    w.set_f32s("tokenizer.ggml.scores", scores);
    w.set_i32s("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.bos_token_id", 2);
    w.set_u32("tokenizer.ggml.eos_token_id", 1);
    w.set_u32("tokenizer.ggml.unknown_token_id", 3);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_space_prefix", false);
    if (!m.chat_template.empty()) w.set_string("tokenizer.chat_template", m.chat_template);

    auto add = [&w](const std::string& name, const std::vector<float>& data, std::vector<int64_t> shape, DType type) {
        const int64_t n_cols = shape.back();
        const int64_t n_rows = static_cast<int64_t>(data.size()) / n_cols;
        std::vector<uint8_t> bytes(static_cast<size_t>(n_rows * row_bytes(type, n_cols)));
        for (int64_t r = 0; r < n_rows; ++r)
            quantize_row(type, data.data() + r * n_cols, bytes.data() + r * row_bytes(type, n_cols), n_cols);
        w.add_tensor(name, type, shape, bytes);
    };
    const int64_t E = s.n_embd, F = s.n_ff, Q = int64_t(s.n_head) * s.head_dim, K = int64_t(s.n_head_kv) * s.head_dim,
                  D = s.head_dim;
    const DType t = s.weight_type;
    add("token_embd.weight", m.tok_embd, {m.n_vocab, E}, t);
    add("output_norm.weight", m.output_norm, {E}, DType::F32);
    for (int l = 0; l < s.n_layer; ++l) {
        const TinyGemma3::Layer& L = m.layers[size_t(l)];
        auto name = [l](const char* suffix) { return fmt::format("blk.{}.{}", l, suffix); };
        add(name("attn_norm.weight"), L.attn_norm, {E}, DType::F32);
        add(name("attn_q.weight"), L.wq, {Q, E}, t);
        add(name("attn_k.weight"), L.wk, {K, E}, t);
        add(name("attn_v.weight"), L.wv, {K, E}, t);
        add(name("attn_q_norm.weight"), L.q_norm, {D}, DType::F32);
        add(name("attn_k_norm.weight"), L.k_norm, {D}, DType::F32);
        add(name("attn_output.weight"), L.wo, {E, Q}, t);
        add(name("post_attention_norm.weight"), L.attn_post_norm, {E}, DType::F32);
        add(name("ffn_norm.weight"), L.ffn_norm, {E}, DType::F32);
        add(name("ffn_gate.weight"), L.ffn_gate, {F, E}, t);
        add(name("ffn_up.weight"), L.ffn_up, {F, E}, t);
        add(name("ffn_down.weight"), L.ffn_down, {E, F}, t);
        add(name("post_ffw_norm.weight"), L.ffn_post_norm, {E}, DType::F32);
    }
    return w.to_bytes();
}

TempFile::TempFile(const std::string& suffix) {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             fmt::format("butler-test-{}-{}{}", ::getpid(), counter.fetch_add(1), suffix))
                .string();
}

TempFile::~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
}

void TempFile::write(const std::vector<uint8_t>& bytes) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

TempDir::TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           fmt::format("butler-test-dir-{}-{}", ::getpid(), counter.fetch_add(1));
    std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
}

std::vector<std::string> TempDir::entries() const {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(path)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
}

std::string random_words(size_t n_words, uint64_t seed) {
    const char* vocab[] = {"the", "a", "cat", "sat", "hat", "as", "at", "tea"};
    std::mt19937_64 rng(seed);
    std::string s;
    for (size_t i = 0; i < n_words; ++i) {
        s += vocab[rng() % 8];
        s += (i % 11 == 10) ? ".\n" : " ";
    }
    return s;
}

size_t gather_mismatched_bytes(Device& device, uint64_t seed, int n_gathers) {
    constexpr size_t kSrc = 64 << 10, kDst = 64 << 10, kMaxPieces = 64;
    std::mt19937_64 rng(seed);
    Buffer src    = device.alloc(kSrc, MemKind::PinnedHost);
    Buffer dst    = device.alloc(kDst, MemKind::Device);
    Buffer pieces = device.alloc(sizeof(CopyPiece) * kMaxPieces, MemKind::PinnedHost);
    for (size_t i = 0; i < kSrc; ++i) src.as<uint8_t>()[i] = uint8_t(rng());
    std::vector<uint8_t> want(kDst, 0xAB), got(kDst);
    Stream& stream = device.default_stream();
    stream.memset(dst.data(), 0xAB, kDst);
    for (int g = 0; g < n_gathers; ++g) {
        // Destinations: disjoint slices of one shuffled partition of dst, so the order within a gather is free.
        const size_t n = 1 + rng() % kMaxPieces, slice = kDst / kMaxPieces;
        std::vector<size_t> slots(kMaxPieces);
        for (size_t i = 0; i < kMaxPieces; ++i) slots[i] = i;
        std::shuffle(slots.begin(), slots.end(), rng);
        CopyPiece* p = pieces.as<CopyPiece>();
        for (size_t i = 0; i < n; ++i) {
            const size_t align = std::array<size_t, 3>{16, 4, 1}[rng() % 3];
            const size_t len   = std::array<size_t, 3>{16 * (1 + rng() % 40), 4 * (1 + rng() % 170), 1 + rng() % 700}[rng() % 3];
            const size_t d_off = slots[i] * slice + (rng() % (slice - len)) / align * align;
            const size_t s_off = (rng() % (kSrc - len)) / align * align;
            p[i] = CopyPiece{dst.as<uint8_t>() + d_off, src.as<uint8_t>() + s_off, len};
            std::memcpy(want.data() + d_off, src.as<uint8_t>() + s_off, len);
        }
        stream.gather(p, n);
        stream.synchronize();  // the pieces buffer is rewritten by the next gather
    }
    stream.copy(got.data(), dst.data(), kDst);
    stream.synchronize();
    size_t bad = 0;
    for (size_t i = 0; i < kDst; ++i) bad += got[i] != want[i];
    return bad;
}

namespace {

// n_rows random rows quantized to `type` (bytes) and the same rows as dequantize_row decodes them (values).
struct RandomWeights {
    std::vector<uint8_t> bytes;
    std::vector<float> values;
};
RandomWeights random_weights(std::mt19937_64& rng, DType type, int64_t n_rows, int64_t n_cols) {
    const int64_t stride = row_bytes(type, n_cols);
    RandomWeights w{std::vector<uint8_t>(size_t(n_rows * stride)), std::vector<float>(size_t(n_rows * n_cols))};
    for (int64_t r = 0; r < n_rows; ++r) {
        const std::vector<float> row = gaussian(rng, size_t(n_cols), 0.05f);
        quantize_row(type, row.data(), w.bytes.data() + r * stride, n_cols);
        dequantize_row(type, w.bytes.data() + r * stride, w.values.data() + r * n_cols, n_cols);
    }
    return w;
}

}  // namespace

double gemv_max_rel_err(Device& device, DType type, int64_t n_rows, int64_t n_cols, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const RandomWeights w     = random_weights(rng, type, n_rows, n_cols);
    const std::vector<float> x = gaussian(rng, static_cast<size_t>(n_cols), 1.0f);
    std::vector<double> want(static_cast<size_t>(n_rows), 0.0);
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t c = 0; c < n_cols; ++c) want[size_t(r)] += double(w.values[size_t(r * n_cols + c)]) * x[size_t(c)];
    std::vector<float> y(static_cast<size_t>(n_rows));
    Buffer w_dev = device.alloc(w.bytes.size(), MemKind::Device);
    Buffer x_dev = device.alloc(sizeof(float) * x.size(), MemKind::Device);
    Buffer y_dev = device.alloc(sizeof(float) * y.size(), MemKind::Device);
    Stream& stream = device.default_stream();
    stream.copy(w_dev.data(), w.bytes.data(), w.bytes.size());
    stream.copy(x_dev.data(), x.data(), sizeof(float) * x.size());
    const GemvArgs args{uint32_t(type), w_dev.data(), n_rows, n_cols, x_dev.as<float>(), y_dev.as<float>()};
    device.kernels().gemv(stream, &args);
    stream.copy(y.data(), y_dev.data(), sizeof(float) * y.size());
    stream.synchronize();
    return max_rel_err(y, want);
}

double gemm_max_rel_err(Device& device, DType type, int64_t n_rows, int64_t n_cols, int64_t n_tok, int64_t tile_rows,
                        uint64_t seed) {
    std::mt19937_64 rng(seed);
    const RandomWeights w     = random_weights(rng, type, n_rows, n_cols);
    const std::vector<float> x = gaussian(rng, static_cast<size_t>(n_tok * n_cols), 1.0f);
    // Output rows wider than n_rows: the columns past n_rows must keep what was there.
    const int64_t ldy      = n_rows + 3;
    const float kUntouched = -12345.f;
    std::vector<double> want(size_t(n_tok * ldy), double(kUntouched));
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t r = 0; r < n_rows; ++r) {
            double acc = 0;
            for (int64_t c = 0; c < n_cols; ++c)
                acc += double(w.values[size_t(r * n_cols + c)]) * x[size_t(t * n_cols + c)];
            want[size_t(t * ldy + r)] = acc;
        }
    std::vector<float> y(want.size(), kUntouched);
    Buffer w_dev   = device.alloc(w.bytes.size(), MemKind::Device);
    Buffer x_dev   = device.alloc(sizeof(float) * x.size(), MemKind::Device);
    Buffer y_dev   = device.alloc(sizeof(float) * y.size(), MemKind::Device);
    Buffer scratch = device.alloc(sizeof(float) * size_t(tile_rows * n_cols), MemKind::Device);
    Stream& stream = device.default_stream();
    stream.copy(w_dev.data(), w.bytes.data(), w.bytes.size());
    stream.copy(x_dev.data(), x.data(), sizeof(float) * x.size());
    stream.copy(y_dev.data(), y.data(), sizeof(float) * y.size());
    const GemmArgs args{uint32_t(type),    w_dev.data(), n_rows,         n_cols, x_dev.as<float>(), n_tok,
                        y_dev.as<float>(), ldy,          scratch.data(), tile_rows};
    device.kernels().gemm(stream, &args);
    stream.copy(y.data(), y_dev.data(), sizeof(float) * y.size());
    stream.synchronize();
    return max_rel_err(y, want);
}

double prefill_attn_max_err(Device& device, DType kv_type, int32_t head_dim, int32_t n_group, int64_t n_q,
                            int64_t q_pos0, int32_t block, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const int64_t n_keys = q_pos0 + n_q, hd = head_dim;
    // K/V values k/32 with |k| <= 64: seven significant bits, exact in f16 and bf16, so the rows hold what the
    // reference uses.
    std::uniform_int_distribution<int> small(-64, 64);
    std::vector<float> k(size_t(n_keys * hd)), v(size_t(n_keys * hd));
    for (float& x : k) x = float(small(rng)) / 32.0f;
    for (float& x : v) x = float(small(rng)) / 32.0f;
    // Rows wider than the heads they hold: the strides must be honoured.
    const int64_t q_stride = (n_group + 1) * hd, o_stride = n_group * hd + 5, lse_stride = n_group + 2;
    const std::vector<float> q = gaussian(rng, size_t(n_q * q_stride), 0.25f);

    std::vector<double> o_want(size_t(n_q * n_group * hd)), lse_want(size_t(n_q * n_group));
    for (int64_t i = 0; i < n_q; ++i)
        for (int32_t h = 0; h < n_group; ++h) {
            const int64_t n_seen = q_pos0 + i + 1;
            std::vector<double> s(static_cast<size_t>(n_seen));
            double m = -INFINITY;
            for (int64_t j = 0; j < n_seen; ++j) {
                double dot = 0;
                for (int64_t d = 0; d < hd; ++d)
                    dot += double(q[size_t(i * q_stride + h * hd + d)]) * double(k[size_t(j * hd + d)]);
                s[size_t(j)] = dot;
                m            = std::max(m, dot);
            }
            double sum = 0;
            for (double& x : s) sum += (x = std::exp(x - m));
            for (int64_t d = 0; d < hd; ++d) {
                double acc = 0;
                for (int64_t j = 0; j < n_seen; ++j) acc += s[size_t(j)] * double(v[size_t(j * hd + d)]);
                o_want[size_t((i * n_group + h) * hd + d)] = acc / sum;
            }
            lse_want[size_t(i * n_group + h)] = m + std::log(sum);
        }

    const int64_t elem = dtype_traits(kv_type).block_bytes, row = hd * elem, n_slots = 2 * int64_t(block);
    Buffer k_dev   = device.alloc(size_t(n_slots * row), MemKind::Device);
    Buffer v_dev   = device.alloc(size_t(n_slots * row), MemKind::Device);
    Buffer q_dev   = device.alloc(sizeof(float) * q.size(), MemKind::Device);
    Buffer o_dev   = device.alloc(sizeof(float) * size_t(n_q * o_stride), MemKind::Device);
    Buffer lse_dev = device.alloc(sizeof(float) * size_t(n_q * lse_stride), MemKind::Device);
    Buffer idx_dev = device.alloc(sizeof(int32_t) * size_t(n_slots), MemKind::Device);
    Stream& stream = device.default_stream();
    stream.copy(q_dev.data(), q.data(), sizeof(float) * q.size());
    const std::vector<float> poison(size_t(n_q * o_stride), 1e30f);
    stream.copy(o_dev.data(), poison.data(), sizeof(float) * size_t(n_q * o_stride));
    stream.copy(lse_dev.data(), poison.data(), sizeof(float) * size_t(n_q * lse_stride));
    // Host rows of one block (copies are asynchronous: each row keeps its own bytes until the block's sync).
    std::vector<uint8_t> k_rows(static_cast<size_t>(block * row)), v_rows(k_rows.size());
    for (int64_t t0 = 0, b = 0; t0 < n_keys; t0 += block, ++b) {
        const int64_t n = std::min<int64_t>(block, n_keys - t0), half = (b % 2) * block;
        std::vector<int32_t> idx(static_cast<size_t>(n));
        std::iota(idx.begin(), idx.end(), int32_t(half));
        std::shuffle(idx.begin(), idx.end(), rng);
        for (int64_t j = 0; j < n; ++j) {
            uint8_t* k_row = k_rows.data() + j * row;
            uint8_t* v_row = v_rows.data() + j * row;
            store_kv_row(kv_type, k.data() + (t0 + j) * hd, k_row, hd);
            store_kv_row(kv_type, v.data() + (t0 + j) * hd, v_row, hd);
            stream.copy(k_dev.as<uint8_t>() + idx[size_t(j)] * row, k_row, size_t(row));
            stream.copy(v_dev.as<uint8_t>() + idx[size_t(j)] * row, v_row, size_t(row));
        }
        stream.copy(idx_dev.as<int32_t>() + half, idx.data(), sizeof(int32_t) * size_t(n));
        const PrefillAttnArgs a{q_dev.as<float>(), q_stride,          n_q,       q_pos0,  n_group,
                                k_dev.as<uint8_t>(), v_dev.as<uint8_t>(), uint32_t(kv_type), head_dim, head_dim,
                                idx_dev.as<int32_t>() + half, n, t0, o_dev.as<float>(), o_stride,
                                lse_dev.as<float>(), lse_stride, b > 0};
        device.kernels().prefill_attn(stream, &a);
        stream.synchronize();  // the host rows above are rewritten by the next block
    }
    std::vector<float> o(size_t(n_q * o_stride)), lse(size_t(n_q * lse_stride));
    stream.copy(o.data(), o_dev.data(), sizeof(float) * o.size());
    stream.copy(lse.data(), lse_dev.data(), sizeof(float) * lse.size());
    stream.synchronize();
    std::vector<float> o_got, lse_got;
    for (int64_t i = 0; i < n_q; ++i) {
        o_got.insert(o_got.end(), o.begin() + i * o_stride, o.begin() + i * o_stride + n_group * hd);
        lse_got.insert(lse_got.end(), lse.begin() + i * lse_stride, lse.begin() + i * lse_stride + n_group);
    }
    return std::max(max_rel_err(o_got, o_want), max_rel_err(lse_got, lse_want));
}

double max_rel_err(const std::vector<float>& got, const std::vector<double>& want) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i]) || !std::isfinite(want[i])) return INFINITY;  // std::max would swallow a NaN
        err  = std::max(err, std::fabs(double(got[i]) - want[i]));
        norm = std::max(norm, std::fabs(want[i]));
    }
    return err / norm;
}

double rel_diff(const std::vector<float>& got, const std::vector<float>& want) {
    return max_rel_err(got, std::vector<double>(want.begin(), want.end()));
}

std::string default_model_or_skip() {
    try {
        return resolve_model_path("");
    } catch (const Error& e) {
        const char* ci = std::getenv("CI");
        if (ci != nullptr && std::string(ci) == "true") FAIL("the default model is required under CI=true: ", e.what());
        MESSAGE("skipped: ", e.what());
        return "";
    }
}

}  // namespace butler::test

namespace butler::test {
namespace {

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

CliResult run_cli(const std::vector<std::string>& args) {
    TempFile out(".out"), err(".err");
    std::string cmd = shell_quote(BUTLER_CLI_PATH);
    for (const std::string& a : args) {
        cmd += ' ';
        cmd += shell_quote(a);
    }
    cmd += " </dev/null >";
    cmd += shell_quote(out.path());
    cmd += " 2>";
    cmd += shell_quote(err.path());
    const int status = std::system(cmd.c_str());
    CliResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out.path());
    r.err = slurp(err.path());
    return r;
}

int spawn_cli(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        std::vector<char*> argv = {const_cast<char*>(BUTLER_CLI_PATH)};
        for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(BUTLER_CLI_PATH, argv.data());
        _exit(127);
    }
    return pid;
}

}  // namespace butler::test
