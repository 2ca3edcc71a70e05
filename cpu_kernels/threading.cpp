// SPDX-License-Identifier: MIT
#include "cpu_kernels/threading.h"

#include <fmt/format.h>
#include <hwloc.h>
#include <omp.h>

#include <atomic>

namespace butler {
namespace {

// The topology is loaded once; hwloc_topology_load walks /sys and costs milliseconds.
struct Topology {
    hwloc_topology_t topo = nullptr;
    bool ok = false;
    Topology() {
        if (hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0) ok = true;
    }
    ~Topology() {
        if (topo) hwloc_topology_destroy(topo);
    }
    Topology(const Topology&) = delete;
    Topology& operator=(const Topology&) = delete;
};

Topology& topology() {
    static Topology t;
    return t;
}

}  // namespace

int physical_core_count() {
    Topology& t = topology();
    if (!t.ok) return 1;
    const int n = hwloc_get_nbobjs_by_type(t.topo, HWLOC_OBJ_CORE);
    return n > 0 ? n : 1;
}

std::string pin_openmp_threads() {
    Topology& t = topology();
    if (!t.ok) return "threads not pinned (hwloc could not load the topology)";
    const int n_cores = physical_core_count();
    const int n_threads = omp_get_max_threads();
    if (n_threads > n_cores)
        return fmt::format("threads not pinned ({} threads for {} physical cores)", n_threads, n_cores);
    std::atomic<int> failures{0};
#pragma omp parallel num_threads(n_threads)
    {
        hwloc_obj_t core = hwloc_get_obj_by_type(t.topo, HWLOC_OBJ_CORE, static_cast<unsigned>(omp_get_thread_num()));
        if (core == nullptr || hwloc_set_cpubind(t.topo, core->cpuset, HWLOC_CPUBIND_THREAD) != 0) ++failures;
    }
    if (failures > 0) return fmt::format("threads not fully pinned ({} of {} bindings failed)", failures.load(), n_threads);
    return fmt::format("{} threads pinned to {} physical cores", n_threads, n_threads);
}

}  // namespace butler
