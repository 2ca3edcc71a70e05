// SPDX-License-Identifier: MIT
// AtomicOutput: a file written through a temporary beside it and renamed over the target by commit(); without
// commit() (an error, Ctrl-C) the temporary is removed and the target is untouched. Writes go through
// output_fwrite (apps/write_fault.h), so the bad-input tests can fail them midway.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace butler::cli {

class AtomicOutput {
public:
    // Error(Io) when the directory is missing, the path is a directory or the temporary cannot be created.
    explicit AtomicOutput(const std::string& path);
    ~AtomicOutput();
    AtomicOutput(const AtomicOutput&)            = delete;
    AtomicOutput& operator=(const AtomicOutput&) = delete;

    // Error(Oom) for a full disk, Error(Io) otherwise.
    void write(std::string_view s);
    // fsync + rename over the target (mode 0666 minus the umask).
    void commit();

private:
    std::string path_, tmp_;
    std::FILE* file_ = nullptr;
    bool committed_  = false;
};

}  // namespace butler::cli
