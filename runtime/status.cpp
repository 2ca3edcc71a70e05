// SPDX-License-Identifier: MIT
#include "runtime/status.h"

#include <cstdio>

namespace butler {

const char* status_name(Status s) {
    switch (s) {
        case Status::Ok: return "ok";
        case Status::InvalidArg: return "invalid argument";
        case Status::Io: return "I/O error";
        case Status::Format: return "format error";
        case Status::Unsupported: return "unsupported";
        case Status::Oom: return "out of memory";
        case Status::Device: return "device error";
        case Status::Usage: return "usage error";
        case Status::Interrupted: return "interrupted";
        case Status::Internal: return "internal error";
    }
    return "unknown";
}

int exit_code(Status s) {
    switch (s) {
        case Status::Ok: return 0;
        case Status::Usage: return 2;
        case Status::Oom:
        case Status::Device: return 3;
        case Status::Interrupted: return 130;
        case Status::Internal: return 70;
        default: return 1;
    }
}

void assert_failed(const char* file, int line, const char* cond, const std::string& message) {
    std::fprintf(stderr, "butler: internal error at %s:%d: assertion `%s` failed%s%s\n", file, line, cond,
                 message.empty() ? "" : ": ", message.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace butler
