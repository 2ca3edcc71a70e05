// SPDX-License-Identifier: MIT
// Where the default model lives (DESIGN.md, "The default model"): an explicit --model path, else $BUTLER_MODEL,
// else ${XDG_CACHE_HOME:-~/.cache}/butler/models/gemma-3-270m-q4_k_m.gguf (installed by scripts/fetch-model).
#pragma once

#include <string>

namespace butler {

inline constexpr const char* kDefaultModelFile = "gemma-3-270m-q4_k_m.gguf";

// The cache path of the default model (whether or not it exists).
std::string default_model_cache_path();

// Resolves the model to use: `explicit_path` if non-empty, else $BUTLER_MODEL, else the cache path.
// Throws Error(Io) naming every place looked at when the chosen file does not exist, with a hint to run
// scripts/fetch-model when it is the default.
std::string resolve_model_path(const std::string& explicit_path);

}  // namespace butler
