// SPDX-License-Identifier: MIT
#include "apps/write_fault.h"

#include <cerrno>
#include <cstdlib>
#include <string>

namespace butler::cli {

size_t output_fwrite(const void* data, size_t n_bytes, std::FILE* f) {
    // Read once: -1 means no fault. An unparsable value is no fault either (test-only, never user-facing).
    static const long long fault_after = [] {
        const char* v = std::getenv("BUTLER_FAULT_WRITE_AFTER");
        if (v == nullptr || *v == '\0') return -1LL;
        char* end = nullptr;
        const long long n = std::strtoll(v, &end, 10);
        return (*end == '\0' && n >= 0) ? n : -1LL;
    }();
    static long long n_calls = 0;
    if (fault_after < 0 || n_calls++ < fault_after) return std::fwrite(data, 1, n_bytes, f);
    const size_t n_half = std::fwrite(data, 1, n_bytes / 2, f);
    std::fflush(f);
    errno = ENOSPC;
    return n_half;
}

}  // namespace butler::cli
