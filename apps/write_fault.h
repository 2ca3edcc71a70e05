// SPDX-License-Identifier: MIT
// The CLI's output writes (summary files, batch results) go through output_fwrite, which is std::fwrite plus a
// test-only fault switch: with BUTLER_FAULT_WRITE_AFTER=N in the environment, the first N calls write normally and
// every later call writes half of its bytes and fails with errno = ENOSPC, as a disk that fills up mid-write does.
// Without the variable it is exactly std::fwrite. The bad-input tests use it to check that a failed write leaves
// no partial output file and no lost batch results.
#pragma once

#include <cstddef>
#include <cstdio>

namespace butler::cli {

// Like std::fwrite(data, 1, n_bytes, f): the bytes written (fewer than n_bytes on failure, errno set).
size_t output_fwrite(const void* data, size_t n_bytes, std::FILE* f);

}  // namespace butler::cli
