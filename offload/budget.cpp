// SPDX-License-Identifier: MIT
#include "offload/budget.h"

#include <cmath>
#include <cstdlib>

#include "runtime/status.h"

namespace butler {

int64_t OffloadConfig::budget_at(int64_t n_tok) const {
    const int64_t b =
        budget_tokens > 0 ? budget_tokens : static_cast<int64_t>(std::ceil(budget_fraction * double(n_tok)));
    return std::clamp<int64_t>(b, 1, std::max<int64_t>(1, n_tok));
}

void parse_budget(const std::string& text, OffloadConfig& config) {
    char* end          = nullptr;
    const double v     = std::strtod(text.c_str(), &end);
    const bool percent = end && *end == '%' && end[1] == 0;
    if (end == text.c_str() || (!percent && *end != 0))
        fail(Status::Usage, "--budget '{}' is neither a token count nor a percentage (e.g. 512 or 10%)", text);
    if (!(v > 0)) fail(Status::Usage, "--budget must be positive (got '{}')", text);
    if (percent) {
        if (v > 100) fail(Status::Usage, "--budget {} is over 100%", text);
        config.budget_fraction = v / 100.0;
        config.budget_tokens   = 0;
    } else {
        if (v != std::floor(v)) fail(Status::Usage, "--budget '{}' must be a whole number of tokens", text);
        config.budget_tokens   = static_cast<int64_t>(v);
        config.budget_fraction = 0;
    }
}

const char* attn_mode_name(AttnMode mode) {
    switch (mode) {
        case AttnMode::Exact: return "exact";
        case AttnMode::Stream: return "stream";
        case AttnMode::Sparse: break;
    }
    return "sparse";
}

const char* select_on_name(SelectOn where) {
    switch (where) {
        case SelectOn::Host: return "host";
        case SelectOn::Device: return "device";
        case SelectOn::Auto: break;
    }
    return "auto";
}

const char* copy_path_name(CopyPath path) {
    return path == CopyPath::Gather ? "gather" : "memcpy";
}

CopyPath parse_copy_path(const std::string& name) {
    if (name == "gather") return CopyPath::Gather;
    if (name == "memcpy") return CopyPath::Memcpy;
    fail(Status::Usage, "--copy must be gather or memcpy (got '{}')", name);
}

}  // namespace butler
