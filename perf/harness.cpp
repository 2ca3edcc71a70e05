// SPDX-License-Identifier: MIT
#include "perf/harness.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

namespace butler::perf {

Summary summarize(std::vector<double> v) {
    Summary s;
    s.n = static_cast<int>(v.size());
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    auto quantile = [&v](double q) {
        const double pos = q * double(v.size() - 1);
        const size_t i = static_cast<size_t>(pos);
        const double frac = pos - double(i);
        return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
    };
    s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stdev = v.size() > 1 ? std::sqrt(ss / double(v.size() - 1)) : 0.0;
    s.median = quantile(0.5);
    s.p10 = quantile(0.1);
    s.p90 = quantile(0.9);
    s.min = v.front();
    s.max = v.back();
    return s;
}

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(colon + 2);
        }
    return "unknown";
}

int n_cpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

double total_memory_gib() {
    return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE)) / double(1ull << 30);
}

}  // namespace butler::perf
