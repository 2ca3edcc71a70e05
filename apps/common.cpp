// SPDX-License-Identifier: MIT
#include "apps/common.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cpu_kernels/threading.h"
#include "runtime/model_path.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {

void add_common_options(CLI::App& sub, CommonOptions& opts, bool with_json) {
    sub.add_option("-m,--model", opts.model,
                   "GGUF model file (default: $BUTLER_MODEL, then ~/.cache/butler/models/gemma-3-270m-q4_k_m.gguf)");
    sub.add_option("-t,--threads", opts.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
    if (with_json) sub.add_flag("--json", opts.json, "machine-readable JSON on stdout");
    sub.add_flag("--progress", opts.progress, "show progress on stderr even when it is not a terminal");
    sub.add_flag("--no-pin", opts.no_pin, "do not pin threads to physical cores (hwloc)");
}

std::shared_ptr<const Model> load_model(const CommonOptions& opts) {
    if (opts.threads > 0) omp_set_num_threads(opts.threads);
    if (!opts.no_pin) pin_openmp_threads();
    return Model::load(resolve_model_path(opts.model));
}

DType parse_kv_type(const std::string& name) {
    if (name == "f16") return DType::F16;
    if (name == "bf16") return DType::BF16;
    if (name == "f32") return DType::F32;
    fail(Status::Usage, "--kv-type must be f16, bf16 or f32 (got '{}')", name);
}

void add_activations_option(CLI::App& sub, std::string& value, const char* default_name) {
    value = default_name;
    sub.add_option("--activations", value,
                   fmt::format("decode GEMVs multiply f32 activations (as prompt chunks do: evaluations compare like "
                               "with like) or q8 ones (faster, llama.cpp's way; ~1-2% perplexity on Gemma 3 270M) "
                               "(default {})", default_name))
        ->check(CLI::IsMember({"f32", "q8"}));
}

bool parse_float_activations(const std::string& value) {
    if (value == "f32") return true;
    if (value == "q8") return false;
    fail(Status::Usage, "--activations must be f32 or q8 (got '{}')", value);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(Status::Io, "cannot open '{}': {}", path, std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail(Status::Io, "cannot read '{}'", path);
    return ss.str();
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

std::string default_text_path() {
    return (std::filesystem::path(default_model_cache_path()).parent_path().parent_path() / "text" / "kjv-john.txt")
        .string();
}

void check_output_dir(const std::string& path) {
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
        fail(Status::Io, "cannot write '{}': the directory '{}' does not exist", path, dir.string());
}

bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

void render_png(const std::string& path, int width, int height, const std::string& script) {
    const std::string tmp = path + ".tmp.png";
    const std::string full =
        fmt::format("set terminal png size {},{} font ',10' noenhanced\nset output '{}'\n", width, height, tmp) +
        script;  // noenhanced: file and selector names keep their underscores
    std::FILE* gp = ::popen("gnuplot 2>&1", "w");
    if (gp == nullptr) fail(Status::Io, "cannot run gnuplot for '{}'", path);
    std::fwrite(full.data(), 1, full.size(), gp);
    const int rc = ::pclose(gp);
    std::error_code ec;
    if (rc != 0 || !std::filesystem::exists(tmp, ec)) {
        std::filesystem::remove(tmp, ec);
        fail(Status::Io, "gnuplot failed to write '{}' (exit {})", path, rc);
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail(Status::Io, "cannot write '{}': {}", path, ec.message());
}

bool show_progress(const CommonOptions& opts) { return opts.progress || isatty(STDERR_FILENO); }

void eval_decode_view(Session& s, std::span<const TokenId> tokens, int64_t prefix, int64_t first, int64_t n_rows,
                      float* hidden) {
    BUTLER_ASSERT(first >= prefix, "decode view: scored rows start at {} before the prefill end {}", first, prefix);
    const int64_t n_embd = s.model().hparams().n_embd;
    s.reset();
    s.eval(tokens.first(size_t(prefix)), {}, nullptr);
    const int32_t row0 = 0;
    for (int64_t t = prefix; t < first + n_rows; ++t) {  // later tokens would feed no scored row
        const bool scored = t >= first;
        s.eval(tokens.subspan(size_t(t), 1), scored ? std::span<const int32_t>(&row0, 1) : std::span<const int32_t>(),
               scored ? hidden + (t - first) * n_embd : nullptr);
    }
}

}  // namespace butler::cli
