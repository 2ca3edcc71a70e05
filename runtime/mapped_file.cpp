// SPDX-License-Identifier: MIT
#include "runtime/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/status.h"

namespace butler {

MappedFile::MappedFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(Status::Io, "cannot open model file '{}': {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        fail(Status::Io, "cannot stat model file '{}': {}", path, std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        // mmap of a directory or a pipe fails with a confusing errno; say what is wrong instead.
        ::close(fd);
        fail(Status::Io, "cannot map model file '{}': not a regular file", path);
    }
    n_bytes_ = static_cast<uint64_t>(st.st_size);
    if (n_bytes_ > 0) {  // mmap rejects length 0, and an empty file has nothing to map
        void* p = ::mmap(nullptr, n_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            fail(Status::Io, "cannot map model file '{}' ({} bytes): {}", path, n_bytes_, std::strerror(err));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    // The mapping keeps its own reference to the file; the descriptor is no longer needed.
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), n_bytes_);
}

}  // namespace butler
