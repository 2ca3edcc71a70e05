// SPDX-License-Identifier: MIT
// Errors and invariants.
//
// Three kinds of failure, three mechanisms:
//  - butler::Error (a std::runtime_error carrying a Status) for environmental failures: I/O, bad file
//    formats, unsupported features, out of memory, device errors, bad user input. Thrown at load/setup time;
//    the decode loop throws only on device failure. The CLI maps Status to an exit code (exit_code()).
//  - BUTLER_ASSERT(cond, fmt, ...) for broken internal invariants: always on, prints file:line and aborts.
//  - BUTLER_DASSERT: the same, compiled out in release builds, for hot loops.
#pragma once

#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace butler {

enum class Status : int {
    Ok = 0,
    InvalidArg,   // a bad value from the user (flag value, prompt too long for the context, ...)
    Io,           // a file that cannot be opened, read or written
    Format,       // a file that is not what it claims to be (corrupt GGUF, wrong predictor, ...)
    Unsupported,  // a valid input Butler does not handle (unknown architecture, tensor type, ...)
    Oom,          // host or device memory exhausted
    Device,       // a device (CUDA) call failed
    Usage,        // command-line usage error (unknown flag, missing argument)
    Interrupted,  // SIGINT
    Internal,     // a bug
};

const char* status_name(Status s);

// Exit codes of DESIGN.md: 0 ok, 1 bad input, 2 usage, 3 resource exhausted, 130 interrupted.
int exit_code(Status s);

class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    Status status() const { return status_; }

private:
    Status status_;
};

template <typename... Args>
[[noreturn]] void fail(Status status, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(status, fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* file, int line, const char* cond, const std::string& message);

}  // namespace butler

#define BUTLER_ASSERT(cond, ...)                                                                    \
    do {                                                                                         \
        if (!(cond)) [[unlikely]]                                                                \
            ::butler::assert_failed(__FILE__, __LINE__, #cond, ::fmt::format("" __VA_ARGS__));      \
    } while (0)

#ifdef NDEBUG
#define BUTLER_DASSERT(cond, ...) \
    do {                       \
    } while (0)
#else
#define BUTLER_DASSERT(cond, ...) BUTLER_ASSERT(cond, __VA_ARGS__)
#endif
