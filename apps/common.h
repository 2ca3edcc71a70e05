// SPDX-License-Identifier: MIT
// Shared pieces of the `butler` CLI: the subcommand registry, common flags, and helpers for loading a model and
// reading files with errors that name the problem.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/model.h"

namespace butler {
class Session;
}

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

// --activations f32|q8: what decode GEMVs multiply (SessionParams::float_activations). The evaluation commands
// default to f32 (a decode step then computes what a prompt chunk does), generation to q8 (faster).
void add_activations_option(CLI::App& sub, std::string& value, const char* default_name);
bool parse_float_activations(const std::string& value);

// Reads a whole file; Error(Io) naming it when it cannot be read.
std::string read_file(const std::string& path);

// DESIGN.md's decode view of one sequence: after s.reset(), tokens[0, prefix) are prefilled, then tokens up to
// position first + n_rows - 1 fed one at a time (the sparse decode steps when s offloads); the final hidden state of
// each position first .. first + n_rows - 1 (first >= prefix) goes to hidden (n_rows, n_embd).
void eval_decode_view(Session& s, std::span<const TokenId> tokens, int64_t prefix, int64_t first, int64_t n_rows,
                      float* hidden);

// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
std::vector<std::string> split_list(const std::string& s);

// The held-apart evaluation text scripts/fetch-text installs (kjv-john.txt beside the default model's cache).
std::string default_text_path();

// Error(Io) naming the path when its directory does not exist (checked before long work writes there).
void check_output_dir(const std::string& path);
// True when gnuplot is on the PATH.
bool have_gnuplot();
// Runs a gnuplot script (everything after the terminal and output settings) that draws a width x height PNG into a
// temporary beside `path`, renamed over it on success; Error(Io) naming the path when gnuplot fails.
void render_png(const std::string& path, int width, int height, const std::string& script);

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
Action register_bench(CLI::App& sub);


}  // namespace butler::cli
