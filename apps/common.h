// SPDX-License-Identifier: MIT
// Shared pieces of the `butler` CLI: the subcommand registry, common flags, and helpers for loading a model and
// reading files with errors that name the problem.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "runtime/dtype.h"
#include "runtime/model.h"

namespace butler::cli {

// Flags most subcommands share (llama.cpp's spelling where llama.cpp has one).
struct CommonOptions {
    std::string model;     // -m/--model; empty: $BUTLER_MODEL, then the default model in the cache
    int threads = 0;       // -t/--threads; 0: all cores
    bool json = false;     // --json: machine-readable output on stdout
    bool progress = false; // --progress: progress on stderr even when it is not a terminal
    bool no_pin = false;   // --no-pin: leave thread placement to the OS
};

void add_common_options(CLI::App& sub, CommonOptions& opts, bool with_json = true);

// Applies --threads and resolves + loads the model (errors are butler::Error with a clear message).
std::shared_ptr<const Model> load_model(const CommonOptions& opts);

// Parses --kv-type values.
DType parse_kv_type(const std::string& name);

// Reads a whole file; Error(Io) naming it when it cannot be read.
std::string read_file(const std::string& path);

// True when progress should be shown on stderr.
bool show_progress(const CommonOptions& opts);

// A subcommand registers its options on `sub` and returns the action to run after parsing.
using Action = std::function<int()>;
Action register_inspect(CLI::App& sub);
Action register_tokenize(CLI::App& sub);
Action register_generate(CLI::App& sub);
Action register_perplexity(CLI::App& sub);
Action register_make_model(CLI::App& sub);
Action register_summarize(CLI::App& sub);
Action register_train_predictor(CLI::App& sub);
Action register_eval(CLI::App& sub);


}  // namespace butler::cli
