// SPDX-License-Identifier: MIT
// Thread placement for the OpenMP team (hwloc): one thread per physical core, so two threads never share a
// core's caches and the OS does not migrate them between steps.
#pragma once

#include <string>

namespace butler {

// Binds OpenMP thread i of the current team size to physical core i (wrapping when there are more threads than
// cores is refused: then nothing is bound). Returns a one-line description of what was done, for logs.
// Never throws: placement is an optimization, and a machine where hwloc cannot bind just runs unbound.
std::string pin_openmp_threads();

// Number of physical cores hwloc sees (at least 1).
int physical_core_count();

}  // namespace butler
