// SPDX-License-Identifier: MIT
// Offload flags shared by `generate` and `perplexity`, and the stats printout at the end of a run.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "offload/budget.h"

namespace butler {
class Session;
class OffloadPipeline;
struct OffloadStats;
}  // namespace butler

namespace butler::cli {

struct OffloadOptions {
    std::string device;         // --device cpu|emu[:opts]; empty: no offload
    std::string selector;       // --selector NAME
    std::string budget;         // --budget N|P%
    int sinks  = 4;             // --sinks
    int window = -1;            // --window (-1: max(16, budget/8))
    std::string attn;           // --attn exact|sparse (default sparse)
    std::string copy_path;      // --copy gather|memcpy (default gather)
    std::string device_memory;  // --device-memory BYTES
    double pcie_gbps = 0;       // --pcie-gbps (emu)
    int interval = 1;           // --interval: steps between fresh selections
    std::string neighbours;     // --neighbours on|off (default off)
    std::string select_on;      // --select-on host|device (default device on cuda, host elsewhere)
    std::string forward;        // --forward host|device (default device on cuda, host elsewhere)
    std::string prefill;        // --prefill host|device (default device with --forward device on cuda, host elsewhere)
};

void add_offload_options(CLI::App& sub, OffloadOptions& o);
// The configuration for SessionParams (enabled when any offload flag was given). Error(Usage) on bad values.
OffloadConfig offload_config(const OffloadOptions& o);
// Offload stats as JSON (null without offload) and as one human line on stderr.
nlohmann::json offload_stats_json(Session& session);
// The same for stats summed elsewhere (summarize adds up its passes) on pipeline p's device and configuration.
nlohmann::json offload_stats_json(OffloadPipeline& p, const OffloadStats& s);
void print_offload_stats(Session& session);
void print_offload_stats(OffloadPipeline& p, const OffloadStats& s);

}  // namespace butler::cli
