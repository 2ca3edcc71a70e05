// SPDX-License-Identifier: MIT
// Read-only memory mapping of a whole file (RAII). An empty file maps to data() == nullptr, n_bytes() == 0.
#pragma once

#include <cstdint>
#include <string>

namespace butler {

class MappedFile {
public:
    // Throws Error(Io) naming the path and the OS error when the file cannot be opened, stat'ed or mapped.
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t n_bytes() const { return n_bytes_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t n_bytes_ = 0;
};

}  // namespace butler
