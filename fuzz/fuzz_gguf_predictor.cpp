// SPDX-License-Identifier: MIT
// libFuzzer: arbitrary bytes as a predictor file: the TokenButler predictor reader (TokenButlerPredictor::load, with
// and without a base-model identity to check against), and the generic GGUF reader the way a side file is read:
// every metadata key looked up with every typed
// get<T> (each either converts or throws Error(Format)), every tensor looked up by name and its bytes read end to
// end (they must lie inside the image), and the shape/element counts consistent with the byte size.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz/fuzz_common.h"
#include "runtime/dtype.h"
#include "runtime/gguf.h"
#include "runtime/status.h"
#include "predictor/tokenbutler.h"

namespace {

volatile uint64_t g_sink = 0;  // keeps the tensor reads

template <typename T>
void try_get(const butler::GgufFile& f, const std::string& key) {
    try {
        (void)f.get<T>(key);
    } catch (const butler::Error& e) {
        FUZZ_CHECK(e.status() == butler::Status::Format);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    using namespace butler;
    std::unique_ptr<GgufFile> f;
    try {
        f = GgufFile::from_memory(std::span<const uint8_t>(data, n), "fuzz-predictor.gguf");
    } catch (const Error& e) {
        FUZZ_CHECK(e.status() == Status::Format || e.status() == Status::Unsupported);
        return 0;
    }
    for (const bool with_base : {false, true}) {
        BaseModelIdentity base;
        base.arch = "gemma3", base.n_layer = 18, base.n_embd = 640, base.n_head = 4, base.n_head_kv = 1;
        base.head_dim = 256;
        try {
            const auto p = TokenButlerPredictor::load(*f, with_base ? &base : nullptr);
            FUZZ_CHECK(p->shape().n_producers() >= 1);
            g_sink = g_sink + p->key_proj_all().size();
        } catch (const Error& e) {
            FUZZ_CHECK(e.status() == Status::Format || e.status() == Status::Unsupported);
        }
    }
    for (const auto& [key, value] : f->metadata()) {
        FUZZ_CHECK(f->find(key) != nullptr);
        try_get<bool>(*f, key);
        try_get<uint32_t>(*f, key);
        try_get<int32_t>(*f, key);
        try_get<uint64_t>(*f, key);
        try_get<int64_t>(*f, key);
        try_get<float>(*f, key);
        try_get<double>(*f, key);
        try_get<std::string>(*f, key);
        try_get<std::vector<std::string>>(*f, key);
        try_get<std::vector<float>>(*f, key);
        try_get<std::vector<int32_t>>(*f, key);
        try_get<std::vector<uint32_t>>(*f, key);
    }
    uint64_t sum = 0;
    for (const GgufTensorInfo& t : f->tensors()) {
        FUZZ_CHECK(&f->require_tensor(t.name) == f->tensor(t.name));
        FUZZ_CHECK(t.n_dims >= 0 && t.n_dims <= 4);
        FUZZ_CHECK(t.offset + t.n_bytes <= f->file_bytes() - f->data_offset());
        FUZZ_CHECK(t.n_elem() >= 0);
        const std::vector<int64_t> shape = t.shape();
        FUZZ_CHECK(shape.size() == size_t(t.n_dims));
        if (t.n_bytes > 0) {
            FUZZ_CHECK(t.data != nullptr);
            // Read every byte: ASan sees a tensor that reaches past the image.
            for (uint64_t i = 0; i < t.n_bytes; i += 61) sum += t.data[i];
            sum += t.data[t.n_bytes - 1];
        }
    }
    g_sink = sum;
    return 0;
}
