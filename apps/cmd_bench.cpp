// SPDX-License-Identifier: MIT
// butler bench: decode latency of Butler's offload against the baselines it exists to beat, per context and budget.
//
// Modes (each in a fresh Session over the same prompt or the same synthetic K/V):
//   dense-offload  dense attention with CPU offload done as well as it can be: every decode step streams each
//                  offloaded layer's whole K/V from pinned host memory to the device, a layer ahead (--attn stream)
//   cpu-attn       the K/V stay on the host and the CPU attends over them (llama.cpp's KV-on-host mode)
//   exact          Butler, the selected rows on the device, the CPU over the rest, merged (equals dense)
//   sparse         Butler, the selected rows only
//   dense-device   everything on the device (when the whole K/V fits the device memory; else reported as not fitting)
// Per row: time to first token (prefill + the first token's logits; none with --synthetic-kv), time per output token
// (median of the timed steps), host->device bytes per token, device memory in use, the predictor's share of the step.
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "apps/atomic_output.h"
#include "apps/common.h"
#include "apps/offload_options.h"
#include "offload/pipeline.h"
#include "predictor/tokenbutler.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModes = "dense-offload,cpu-attn,exact,sparse,dense-device";
constexpr int kWarmupSteps   = 2;

struct BenchOptions {
    CommonOptions common;
    std::string contexts = "8K";
    std::string budgets  = "5%,10%";
    std::string modes    = kModes;
    std::string device   = "emu";
    std::string selector;  // empty: tokenbutler when the model has a predictor, else quest
    std::string device_memory;
    double pcie_gbps  = 0;
    bool synthetic_kv = false;
    int n_steps       = 8;
    int interval      = 1;
    std::string neighbours = "off";
    std::string copy_path  = "gather";
    std::string select_on;  // empty: the device on cuda, the host elsewhere
    std::string file;  // prompt text (repeated to the context); default: the held-apart text of scripts/fetch-text
    std::string json_path;
    std::string plot;
    uint64_t seed = 1;
};

struct Row {
    int64_t context = 0;
    std::string mode, budget;  // budget empty for the dense modes
    bool fits = true;          // dense-device: whether the whole K/V fit the device
    std::string note;
    double ttft_s = -1, tpot_ms = 0, tpot_mean_ms = 0;
    double bytes_per_token = 0, device_mib = 0, predictor_share = 0, hit_rate = 0;
    int64_t slots = 0;
    std::string select_on, select_on_note;  // where the selector scored and picked; why not on the device

    nlohmann::json json() const {
        nlohmann::json j = {{"context", context}, {"mode", mode}, {"fits", fits}};
        j["budget"] = budget.empty() ? nlohmann::json() : nlohmann::json(budget);
        if (!fits) {
            j["note"] = note;
            return j;
        }
        j["ttft_s"]          = ttft_s >= 0 ? nlohmann::json(ttft_s) : nlohmann::json();
        j["tpot_ms"]         = tpot_ms;
        j["tpot_mean_ms"]    = tpot_mean_ms;
        j["bytes_per_token"] = bytes_per_token;
        j["device_mib"]      = device_mib;
        j["predictor_share"] = predictor_share;
        j["hit_rate"]        = hit_rate;
        j["slots_per_head"]  = slots;
        if (!select_on.empty()) j["select_on"] = select_on;
        if (!select_on_note.empty()) j["select_on_note"] = select_on_note;
        return j;
    }
};

// "8K" = 8192, "32k", "1M", or a plain count.
int64_t parse_context(const std::string& s) {
    size_t used = 0;
    double v    = 0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        fail(Status::Usage, "-c/--ctx entry '{}' is not a token count (e.g. 8K, 32768)", s);
    }
    std::string unit = s.substr(used);
    double mul       = 1;
    if (unit == "K" || unit == "k") mul = 1024;
    else if (unit == "M" || unit == "m") mul = 1024 * 1024;
    else if (!unit.empty()) fail(Status::Usage, "-c/--ctx entry '{}' has an unknown unit '{}' (K or M)", s, unit);
    const double n = v * mul;
    if (!(n >= 16) || n != std::floor(n) || n > double(INT32_MAX))
        fail(Status::Usage, "-c/--ctx entry '{}' must be a whole number of tokens >= 16", s);
    return int64_t(n);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One mode at one context: a fresh session, the prompt (or synthetic K/V), kWarmupSteps untimed decode steps, then
// n_steps timed greedy steps.
Row run_one(const std::shared_ptr<const Model>& model, const BenchOptions& o, const OffloadConfig& base,
            const std::vector<TokenId>& prompt, int64_t context, const std::string& mode, const std::string& budget,
            std::string& device_name) {
    Row row;
    row.context = context;
    row.mode    = mode;
    row.budget  = budget;
    SessionParams sp;
    sp.n_ctx   = int32_t(context + kWarmupSteps + o.n_steps);
    sp.offload = base;
    OffloadConfig& c = sp.offload;
    c.enabled        = mode != "cpu-attn";
    if (mode == "dense-offload" || mode == "dense-device") {
        c.selector = "dense";
        c.attn     = mode == "dense-offload" ? AttnMode::Stream : AttnMode::Sparse;
        parse_budget("100%", c);
        c.predictor = nullptr;
    } else if (c.enabled) {
        parse_budget(budget, c);
        c.attn = mode == "exact" ? AttnMode::Exact : AttnMode::Sparse;
    }
    std::unique_ptr<Session> session;
    try {
        session = std::make_unique<Session>(model, sp);
    } catch (const Error& e) {
        if (mode != "dense-device" || e.status() != Status::Oom) throw;
        row.fits = false;
        row.note = e.what();
        return row;
    }
    const HParams& hp = model->hparams();
    std::vector<float> logits(size_t(hp.n_vocab));
    auto argmax = [&logits] { return TokenId(std::max_element(logits.begin(), logits.end()) - logits.begin()); };
    using clock = std::chrono::steady_clock;
    TokenId next = 0;
    if (o.synthetic_kv) {
        session->fill_synthetic_kv(int32_t(context), o.seed);
        next = prompt[0];
    } else {
        const auto t0 = clock::now();
        session->eval_last(std::span<const TokenId>(prompt.data(), size_t(context)), logits.data());
        row.ttft_s = std::chrono::duration<double>(clock::now() - t0).count();
        next       = argmax();
    }
    // Untimed: the first decode token (dense by design), then one sparse step that fills the device slots and the
    // selectors' caches (all-on-device holds the whole K/V from then on).
    for (int warm = 0; warm < kWarmupSteps; ++warm) {
        session->eval_last(std::span<const TokenId>(&next, 1), logits.data());
        next = argmax();
    }
    OffloadPipeline* pipe = session->offload();
    if (pipe) pipe->reset_stats();
    std::vector<double> step_ms;
    step_ms.reserve(size_t(o.n_steps));  // nothing allocates inside the timed loop
    for (int s = 0; s < o.n_steps; ++s) {
        const auto t0 = clock::now();
        session->eval_last(std::span<const TokenId>(&next, 1), logits.data());
        step_ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
        next = argmax();
    }
    row.tpot_ms = median(step_ms);
    double total = 0;
    for (double t : step_ms) total += t;
    row.tpot_mean_ms = total / double(step_ms.size());
    if (pipe) {
        if (device_name.empty()) device_name = pipe->device().name();
        const OffloadStats& st = pipe->stats();
        row.bytes_per_token    = double(st.copy.bytes) / double(o.n_steps);
        row.predictor_share    = total > 0 ? st.predict_ms / total : 0;
        row.hit_rate           = st.copy.hit_rate();
        row.slots              = pipe->n_slots();
        row.select_on          = pipe->selects_on_device() ? "device" : "host";
        row.select_on_note     = pipe->select_on_device_note();
        const MemoryInfo mem   = pipe->device().memory_info();
        row.device_mib         = double(mem.total_bytes - mem.free_bytes) / double(1 << 20);
    }
    return row;
}

std::string fmt_table(const std::vector<Row>& rows) {
    std::string out =
        "| context | mode | budget | TTFT s | TPOT ms | mean ms | MiB/token to device | hit rate | device MiB | predictor |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n";
    for (const Row& r : rows) {
        if (!r.fits) {
            out += fmt::format("| {} | {} | | does not fit the device | | | | | | |\n", r.context, r.mode);
            continue;
        }
        out += fmt::format("| {} | {} | {} | {} | {:.2f} | {:.2f} | {:.3f} | {} | {:.1f} | {} |\n", r.context, r.mode,
                           r.budget.empty() ? "-" : r.budget, r.ttft_s >= 0 ? fmt::format("{:.2f}", r.ttft_s) : "-",
                           r.tpot_ms, r.tpot_mean_ms, r.bytes_per_token / double(1 << 20),
                           // stream mode refetches everything by definition; its hit count is not a cache's
                           r.mode == "cpu-attn" || r.mode == "dense-offload" ? "-" : fmt::format("{:.2f}", r.hit_rate),
                           r.device_mib, r.mode == "exact" || r.mode == "sparse"
                                             ? fmt::format("{:.1f}%", 100.0 * r.predictor_share)
                                             : "-");
    }
    return out;
}

// TPOT against context, one line per mode (and budget), log-log.
void write_plot(const std::string& path, const std::vector<Row>& rows, const std::string& title) {
    std::vector<std::string> series;
    for (const Row& r : rows) {
        const std::string name = r.budget.empty() ? r.mode : r.mode + " " + r.budget;
        if (r.fits && std::find(series.begin(), series.end(), name) == series.end()) series.push_back(name);
    }
    std::string script = fmt::format("set title '{}'\nset xlabel 'context (tokens)'\nset ylabel 'ms per output token'\n"
                                     "set logscale xy\nset grid\nset key outside right\n",
                                     title);
    std::string plot = "plot ", data;
    for (size_t i = 0; i < series.size(); ++i) {
        plot += fmt::format("'-' using 1:2 with linespoints title '{}'{}", series[i], i + 1 < series.size() ? ", " : "\n");
        for (const Row& r : rows) {
            const std::string name = r.budget.empty() ? r.mode : r.mode + " " + r.budget;
            if (r.fits && name == series[i]) data += fmt::format("{} {}\n", r.context, r.tpot_ms);
        }
        data += "e\n";
    }
    render_png(path, 900, 480, script + plot + data);
}

int run_bench(const BenchOptions& o) {
    std::vector<int64_t> contexts;
    for (const std::string& c : split_list(o.contexts)) contexts.push_back(parse_context(c));
    const std::vector<std::string> budgets = split_list(o.budgets);
    const std::vector<std::string> modes   = split_list(o.modes);
    if (contexts.empty() || budgets.empty() || modes.empty())
        fail(Status::Usage, "-c/--ctx, --budget and --modes need at least one entry each");
    for (const std::string& m : modes)
        if (m != "dense-offload" && m != "cpu-attn" && m != "exact" && m != "sparse" && m != "dense-device")
            fail(Status::Usage, "unknown mode '{}' (known: {})", m, kModes);
    for (const std::string& b : budgets) {
        OffloadConfig probe;
        parse_budget(b, probe);  // Error(Usage) for garbage
    }
    if (o.n_steps < 1) fail(Status::Usage, "-n/--n-steps must be at least 1 (got {})", o.n_steps);
    const bool json_stdout = o.json_path == "-";
    if (!o.json_path.empty() && !json_stdout) check_output_dir(o.json_path);
    if (!o.plot.empty()) {
        check_output_dir(o.plot);
        if (!have_gnuplot()) fail(Status::Io, "--plot needs gnuplot, which is not installed (apt install gnuplot-nox)");
    }

    auto model        = load_model(o.common);
    const HParams& hp = model->hparams();
    const int64_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
    if (max_ctx + kWarmupSteps + o.n_steps > hp.n_ctx_train)
        fail(Status::InvalidArg, "a context of {} tokens plus {} steps exceeds the model's training context {}", max_ctx,
             kWarmupSteps + o.n_steps, hp.n_ctx_train);

    // The offload settings every mode shares; selector: tokenbutler when the model has a predictor, else quest.
    OffloadOptions oo;
    oo.device        = o.device;
    oo.device_memory = o.device_memory;
    oo.pcie_gbps     = o.pcie_gbps;
    oo.interval      = o.interval;
    oo.neighbours    = o.neighbours;
    oo.copy_path     = o.copy_path;
    oo.select_on     = o.select_on;
    std::string selector = o.selector;
    if (selector.empty()) {
        try {
            (void)default_predictor_path(model->path());
            selector = "tokenbutler";
        } catch (const Error&) {
            selector = "quest";
        }
    }
    oo.selector          = selector;
    OffloadConfig base   = offload_config(oo);
    if (is_tokenbutler_selector(selector)) base.predictor = load_predictor_for(selector, *model);

    // The prompt: the text's tokens repeated up to the longest context (only its length matters for timing).
    std::vector<TokenId> prompt;
    if (!o.synthetic_kv) {
        const std::string file = o.file.empty() ? default_text_path() : o.file;
        const std::vector<TokenId> text = model->tokenizer().encode(read_file(file), false, false);
        if (text.empty()) fail(Status::InvalidArg, "'{}' has no text to build the prompt from", file);
        const TokenId bos = model->tokenizer().bos();
        if (bos >= 0) prompt.push_back(bos);
        while (int64_t(prompt.size()) < max_ctx) prompt.insert(prompt.end(), text.begin(), text.end());
    } else {
        prompt.push_back(0);
    }

    std::string device_name;
    std::vector<Row> rows;
    const auto t_start  = std::chrono::steady_clock::now();
    const bool progress = show_progress(o.common);
    for (int64_t ctx : contexts) {
        for (const std::string& mode : modes) {
            const bool per_budget = mode == "exact" || mode == "sparse";
            for (const std::string& b : per_budget ? budgets : std::vector<std::string>{""}) {
                if (progress) std::fprintf(stderr, "bench: context %lld, %s %s\n", (long long)ctx, mode.c_str(), b.c_str());
                rows.push_back(run_one(model, o, base, prompt, ctx, mode, b, device_name));
            }
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

    const std::string model_name = fs::path(model->path()).filename().string();
    nlohmann::json j;
    j["model"]        = model_name;
    j["device"]       = device_name;
    j["selector"]     = selector;
    j["interval"]     = o.interval;
    j["neighbours"]   = o.neighbours;
    j["copy_path"]    = o.copy_path;
    j["synthetic_kv"] = o.synthetic_kv;
    j["n_steps"]      = o.n_steps;
    j["threads"]      = omp_get_max_threads();
    j["seconds"]      = seconds;
    j["rows"]         = nlohmann::json::array();
    for (const Row& r : rows) j["rows"].push_back(r.json());
    const std::string dump = j.dump(2) + "\n";
    if (!o.json_path.empty() && !json_stdout) {
        AtomicOutput out(o.json_path);
        out.write(dump);
        out.commit();
    }
    if (!o.plot.empty())
        write_plot(o.plot, rows, fmt::format("{} on {}, {}{}", model_name, device_name, selector,
                                             o.synthetic_kv ? ", synthetic K/V" : ""));
    if (json_stdout) {
        std::printf("%s", dump.c_str());
        return 0;
    }
    std::printf("# butler bench: %s, device %s, selector %s (interval %d, neighbours %s), copy path %s, %d threads, "
                "%d timed steps\n",
                model_name.c_str(), device_name.c_str(), selector.c_str(), o.interval, o.neighbours.c_str(),
                o.copy_path.c_str(), omp_get_max_threads(), o.n_steps);
    if (o.synthetic_kv)
        std::printf("# synthetic K/V (random, no prefill): decode latency only; TTFT not measured, output text meaningless\n");
    std::printf("%s", fmt_table(rows).c_str());
    return 0;
}

}  // namespace

Action register_bench(CLI::App& sub) {
    auto o = std::make_shared<BenchOptions>();
    sub.description(
        "Decode latency of Butler's offload against dense attention with CPU offload (the whole K/V streamed to the\n"
        "device every step), CPU attention over host K/V, and everything on the device, per context and budget.\n"
        "Modes: " + std::string(kModes) + ". --synthetic-kv fills the cache with random K/V instead of a prefill.");
    add_common_options(sub, o->common, /*with_json=*/false);
    sub.add_option("-c,--ctx", o->contexts, "comma-separated contexts in tokens, K = 1024 (default 8K)");
    sub.add_option("--budget", o->budgets, "comma-separated budgets for exact and sparse: P% kept or N tokens (default 5%,10%)");
    sub.add_option("--modes", o->modes, fmt::format("comma-separated modes (default {})", kModes));
    sub.add_option("--device", o->device, "offload device: emu[:opts] (default), cpu");
    sub.add_option("--selector", o->selector, "Butler's selector (default tokenbutler when the model has a predictor, else quest)");
    sub.add_option("--device-memory", o->device_memory, "device memory cap of the emulated device (e.g. 8GiB)");
    sub.add_option("--pcie-gbps", o->pcie_gbps, "emulated link bandwidth in GB/s (default 0.54 x host memcpy)");
    sub.add_flag("--synthetic-kv", o->synthetic_kv, "random K/V instead of a prefill (decode latency at long contexts)");
    sub.add_option("-n,--n-steps", o->n_steps, "timed decode steps per row (default 8)");
    sub.add_option("--interval", o->interval, "prediction interval (default 1)")->check(CLI::PositiveNumber);
    sub.add_option("--neighbours", o->neighbours, "neighbour fetching on|off (default off)")
        ->check(CLI::IsMember({"on", "off"}));
    sub.add_option("--select-on", o->select_on, "where the tokenbutler selector scores and picks: device (the "
                   "default on cuda) or host (the default on cpu and emu)");
    sub.add_option("--copy", o->copy_path, "how rows reach the device: gather (default; on cuda one kernel per layer "
                   "reading mapped pinned memory) or memcpy (one copy per contiguous run)");
    sub.add_option("-f,--file", o->file, "prompt text, repeated to the context (default: kjv-john.txt of scripts/fetch-text)");
    sub.add_option("--seed", o->seed, "synthetic K/V seed (default 1)");
    sub.add_option("--json", o->json_path, "write the results as JSON to this file (atomically); '-' for stdout");
    sub.add_option("--plot", o->plot, "write a PNG plot of time per output token against context (needs gnuplot)");
    return [o] { return run_bench(*o); };
}

}  // namespace butler::cli
