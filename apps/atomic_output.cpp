// SPDX-License-Identifier: MIT
#include "apps/atomic_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "apps/write_fault.h"
#include "runtime/status.h"

namespace butler::cli {

namespace fs = std::filesystem;

AtomicOutput::AtomicOutput(const std::string& path) : path_(path) {
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !fs::is_directory(dir, ec))
        fail(Status::Io, "cannot write '{}': the directory '{}' does not exist", path, dir.string());
    if (fs::is_directory(path, ec)) fail(Status::Io, "cannot write '{}': it is a directory", path);
    tmp_         = path + ".tmp.XXXXXX";
    const int fd = ::mkstemp(tmp_.data());
    if (fd < 0) fail(Status::Io, "cannot write '{}': {}", path, std::strerror(errno));
    file_ = ::fdopen(fd, "wb");
    if (file_ == nullptr) {
        ::close(fd);
        ::unlink(tmp_.c_str());
        fail(Status::Io, "cannot write '{}': {}", path, std::strerror(errno));
    }
}

AtomicOutput::~AtomicOutput() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicOutput::write(std::string_view s) {
    if (output_fwrite(s.data(), s.size(), file_) != s.size())
        fail(errno == ENOSPC ? Status::Oom : Status::Io, "cannot write '{}': {}", path_, std::strerror(errno));
}

void AtomicOutput::commit() {
    // mkstemp creates 0600; an output is an ordinary file (0666 minus the umask).
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(::fileno(file_), 0666 & ~mask);
    const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
    std::fclose(file_);
    file_ = nullptr;
    if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0)
        fail(errno == ENOSPC ? Status::Oom : Status::Io, "cannot write '{}': {}", path_, std::strerror(errno));
    committed_ = true;
}

}  // namespace butler::cli
