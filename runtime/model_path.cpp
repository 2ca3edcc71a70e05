// SPDX-License-Identifier: MIT
#include "runtime/model_path.h"

#include <cstdlib>
#include <filesystem>

#include "runtime/status.h"

namespace butler {

std::string default_model_cache_path() {
    std::filesystem::path base;
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
        base = xdg;
    } else if (const char* home = std::getenv("HOME"); home && *home) {
        base = std::filesystem::path(home) / ".cache";
    } else {
        base = ".cache";
    }
    return (base / "butler" / "models" / kDefaultModelFile).string();
}

std::string resolve_model_path(const std::string& explicit_path) {
    if (!explicit_path.empty()) {
        if (!std::filesystem::exists(explicit_path)) fail(Status::Io, "model file '{}' does not exist", explicit_path);
        return explicit_path;
    }
    if (const char* env = std::getenv("BUTLER_MODEL"); env && *env) {
        if (!std::filesystem::exists(env)) fail(Status::Io, "model file '{}' (from $BUTLER_MODEL) does not exist", env);
        return env;
    }
    std::string cached = default_model_cache_path();
    if (!std::filesystem::exists(cached))
        fail(Status::Io,
             "no model given (-m/--model or $BUTLER_MODEL) and the default model '{}' is not installed; "
             "run scripts/fetch-model",
             cached);
    return cached;
}

}  // namespace butler
