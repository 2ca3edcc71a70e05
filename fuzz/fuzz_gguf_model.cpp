// SPDX-License-Identifier: MIT
// libFuzzer: arbitrary bytes as a model file. The GGUF reader, then everything Model::load checks on top of it
// (architecture, tokenizer, hparams, every tensor's name, shape and type); a model that loads is tokenized once.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz/fuzz_common.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    using namespace butler;
    try {
        auto model = Model::from_gguf(GgufFile::from_memory(std::span<const uint8_t>(data, n), "fuzz.gguf"));
        const Tokenizer& tok = model->tokenizer();
        FUZZ_CHECK(model->hparams().n_vocab == tok.n_vocab());
        fuzz::check_ids(tok, tok.encode("the cat <bos> sat\xE2\x96\x81 \xF0\x9F\x98\x80", true, true));
        (void)model->n_weight_bytes();
    } catch (const Error&) {
    }
    return 0;
}
