// SPDX-License-Identifier: MIT
// Model: the immutable bundle of a loaded GGUF file (mapped), its hyper-parameters, weight views and tokenizer.
// Shared (const) by any number of sessions.
#pragma once

#include <memory>
#include <string>

#include "runtime/hparams.h"
#include "runtime/tokenizer.h"
#include "runtime/weights.h"

namespace butler {

class GgufFile;

class Model {
public:
    // Opens and validates the file: GGUF structure, a known architecture, hparams, every tensor's shape and type,
    // the tokenizer. Errors name the file and the problem (Io for a missing/unreadable file, Format for a corrupt
    // one, Unsupported for an unknown architecture or tensor type).
    static std::shared_ptr<const Model> load(const std::string& path);
    // The same checks over a GGUF already parsed (GgufFile::from_memory: fuzzing, tests); file->path() names it.
    static std::shared_ptr<const Model> from_gguf(std::unique_ptr<GgufFile> file);
    ~Model();

    const std::string& path() const { return path_; }
    const GgufFile& file() const { return *file_; }
    const HParams& hparams() const { return hparams_; }
    const ArchSpec& arch() const { return *hparams_.arch; }
    const ModelWeights& weights() const { return weights_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    // Total bytes of tensor data (what the weights occupy in memory once touched).
    uint64_t n_weight_bytes() const;
    // Number of parameters (values) over all tensors.
    uint64_t n_params() const;

private:
    Model() = default;
    std::string path_;
    std::unique_ptr<GgufFile> file_;
    HParams hparams_;
    ModelWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace butler
