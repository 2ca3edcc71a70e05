// SPDX-License-Identifier: MIT
#include "runtime/model.h"

#include <filesystem>

#include "runtime/gguf.h"
#include "runtime/status.h"

namespace butler {

Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail(Status::Io, "model file '{}' does not exist", path);
    if (std::filesystem::is_directory(path, ec)) fail(Status::Io, "model path '{}' is a directory, not a GGUF file", path);
    return from_gguf(GgufFile::open(path));
}

std::shared_ptr<const Model> Model::from_gguf(std::unique_ptr<GgufFile> gguf) {
    std::shared_ptr<Model> model(new Model());
    model->path_ = gguf->path();
    model->file_ = std::move(gguf);
    const std::string& path = model->path_;
    const GgufFile& file = *model->file_;
    const std::string arch_name = file.get<std::string>("general.architecture").value_or("");
    if (arch_name.empty()) fail(Status::Format, "{}: the GGUF file has no 'general.architecture' key", path);
    const ArchSpec* spec = find_arch(arch_name);
    if (spec == nullptr)
        fail(Status::Unsupported, "{}: architecture '{}' is not supported (supported: {})", path, arch_name,
             supported_arch_names());
    model->tokenizer_ = Tokenizer::from_gguf(file);
    model->hparams_ = HParams::from_gguf(file, *spec);
    model->hparams_.n_vocab = model->tokenizer_->n_vocab();
    // The tokenizer holds its own vocabulary now; the parsed copy would cost ~80 MB for a 262k vocabulary.
    model->file_->release_large_arrays(4096);
    model->weights_ = ModelWeights::bind(file, model->hparams_, *spec);
    return model;
}

uint64_t Model::n_weight_bytes() const {
    uint64_t n = 0;
    for (const auto& t : file_->tensors()) n += t.n_bytes;
    return n;
}

uint64_t Model::n_params() const {
    uint64_t n = 0;
    for (const auto& t : file_->tensors()) n += static_cast<uint64_t>(t.n_elem());
    return n;
}

}  // namespace butler
