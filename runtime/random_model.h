// SPDX-License-Identifier: MIT
// Random-weight models with the exact tensor list, shapes, hparams and names of real GGUF files (Llama 3.1/3.2,
// Qwen2.5, Gemma 3), for benchmarks at real shapes where the real weights cannot be downloaded. The numbers come
// from each model's public config.json; the tensor names are the loader's (ArchSpec templates), so a file written
// here loads through the same path as a converted one.
//
// Weights: every matrix row is a row drawn from a pool of Gaussian rows quantized once per (width, scale) by the
// project's quantizers (quantize_row), so an 8B file is disk-bound rather than quantizer-bound. Scales keep
// activations O(1) (std 1/sqrt(fan_in) for projections, norms 1), so logits stay finite over long contexts.
// Vocabulary: the real size, byte-fallback (all 256 byte tokens, the real special-token ids, the rest filler
// tokens), so any text tokenizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/gguf.h"

namespace butler {

struct RandomModelOptions {
    std::string like;            // one of random_model_names()
    DType type = DType::Q4_K;    // matrices; norms, biases and rope_freqs are F32
    int32_t n_layer = 0;         // 0: the real count (tests shrink it)
    int32_t n_vocab = 0;         // 0: the real size (tests shrink it)
    uint64_t seed = 1;
};

struct PlannedTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;  // outermost-first
};

// "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "qwen2.5-7b", "gemma-3-270m".
std::vector<std::string> random_model_names();

// Every tensor the file will hold, in file order. A matrix whose row width is not a multiple of the type's block
// size falls back to Q8_0 (as llama.cpp's quantizer does), and to F32 if even that does not divide.
// Error(InvalidArg) for an unknown `like` or a type quantize_row cannot write.
std::vector<PlannedTensor> random_model_tensors(const RandomModelOptions& opts);

// A writer holding the metadata and streamed tensors (nothing is generated until write()).
GgufWriter random_model_writer(const RandomModelOptions& opts);

}  // namespace butler
