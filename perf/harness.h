// SPDX-License-Identifier: MIT
// Benchmark helpers: wall-clock timing, summary statistics over repetitions, and the machine description that
// every result file carries.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace butler::perf {

class Timer {
public:
    Timer() : t0_(std::chrono::steady_clock::now()) {}
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

private:
    std::chrono::steady_clock::time_point t0_;
};

struct Summary {
    double mean = 0, stdev = 0, median = 0, p10 = 0, p90 = 0, min = 0, max = 0;
    int n = 0;
};
Summary summarize(std::vector<double> samples);

// CPU model name, core count, memory; for the header of every result.
std::string cpu_model_name();
int n_cpus();
double total_memory_gib();

}  // namespace butler::perf
