// SPDX-License-Identifier: MIT
#include "apps/offload_options.h"

#include <cstdio>

#include "offload/pipeline.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {

void add_offload_options(CLI::App& sub, OffloadOptions& o) {
    sub.add_option("--device", o.device, "offload the global layers' KV cache through a device: cpu, emu[:opts]");
    sub.add_option("--selector", o.selector,
                   "token selector: dense, oracle, streamingllm, h2o, h2o-tb, snapkv, snapkv-tb, quest, quest-tb, tokenbutler[:PATH] "
                   "(PATH: a predictor file; default: the one shipped for the model)");
    sub.add_option("--budget", o.budget, "tokens attention may read per layer and KV head: N or P% of the context");
    sub.add_option("--sinks", o.sinks, "attention-sink tokens always kept (default 4)");
    sub.add_option("--window", o.window, "recent tokens always kept (default max(16, budget/8))");
    sub.add_option("--attn", o.attn, "sparse, exact (the CPU attends the rest: equals dense) or stream (dense offload: the whole K/V streamed to the device every step)");
    sub.add_option("--copy", o.copy_path, "how rows reach the device: gather (one gather per layer; on cuda a kernel "
                   "reading mapped pinned memory) or memcpy (one copy per contiguous run, the baseline)");
    sub.add_option("--device-memory", o.device_memory, "device memory cap of the emulated device (e.g. 512MiB); holds the weights, sliding-window K/V and K/V slots");
    sub.add_option("--pcie-gbps", o.pcie_gbps, "emulated link bandwidth in GB/s (default 0.54 x host memcpy)");
    sub.add_option("--interval", o.interval, "prediction interval: select anew every N decode steps (default 1)");
    sub.add_option("--neighbours", o.neighbours, "neighbour fetching: each picked run extended by its length (on|off)");
    sub.add_option("--select-on", o.select_on,
                   "where the tokenbutler selector scores and picks tokens: device (the picks come back, not the "
                   "scores; the default on cuda) or host (the default on cpu and emu)");
    sub.add_option("--forward", o.forward,
                   "where decode steps compute the model: device (weights resident, every layer's kernels on the "
                   "device; the default on cuda) or host (the CPU forward, only attention partials on the device; the "
                   "default on cpu and emu)");
    sub.add_option("--prefill", o.prefill,
                   "where a prompt chunk's matrix products and offloaded-layer attention run with --forward device: "
                   "device (the resident weights dequantized in tiles into the device's GEMM, cuBLAS on cuda; the "
                   "context streamed from the host K/V through the slot pool in blocks; the default on cuda) or host");
}

OffloadConfig offload_config(const OffloadOptions& o) {
    OffloadConfig c;
    c.enabled =
        !o.device.empty() || !o.selector.empty() || !o.budget.empty() || !o.device_memory.empty() || !o.attn.empty() ||
        !o.copy_path.empty() || o.interval != 1 || !o.neighbours.empty() || !o.forward.empty() ||
        !o.select_on.empty() || !o.prefill.empty();
    if (!c.enabled) return c;
    c.device = o.device.empty() ? "emu" : o.device;
    if (o.pcie_gbps > 0) {
        if (c.device.rfind("emu", 0) != 0) fail(Status::Usage, "--pcie-gbps applies to the emulated device only");
        c.device += fmt::format("{}pcie_gbps={}", c.device == "emu" ? ":" : ",", o.pcie_gbps);
    }
    c.selector = o.selector.empty() ? "dense" : o.selector;
    parse_budget(o.budget.empty() ? std::string("100%") : o.budget, c);
    if (o.sinks < 0) fail(Status::Usage, "--sinks must be >= 0 (got {})", o.sinks);
    c.sinks = o.sinks;
    if (o.window < -1) fail(Status::Usage, "--window must be >= 0 (got {})", o.window);
    c.window = o.window;
    if (o.attn.empty() || o.attn == "sparse")
        c.attn = AttnMode::Sparse;
    else if (o.attn == "exact")
        c.attn = AttnMode::Exact;
    else if (o.attn == "stream")
        c.attn = AttnMode::Stream;
    else
        fail(Status::Usage, "--attn must be exact, sparse or stream (got '{}')", o.attn);
    if (!o.copy_path.empty()) c.copy_path = parse_copy_path(o.copy_path);
    if (!o.device_memory.empty()) c.device_memory = parse_bytes(o.device_memory);
    if (o.interval < 1) fail(Status::Usage, "--interval must be >= 1 (got {})", o.interval);
    c.interval = o.interval;
    if (o.neighbours == "on")
        c.neighbours = true;
    else if (!o.neighbours.empty() && o.neighbours != "off")
        fail(Status::Usage, "--neighbours must be on or off (got '{}')", o.neighbours);
    if (o.select_on == "device")
        c.select_on = SelectOn::Device;
    else if (o.select_on == "host")
        c.select_on = SelectOn::Host;
    else if (!o.select_on.empty())
        fail(Status::Usage, "--select-on must be host or device (got '{}')", o.select_on);
    if (o.forward == "device")
        c.device_forward = true;
    else if (o.forward.empty())
        c.device_forward = c.device.rfind("cuda", 0) == 0;
    else if (o.forward != "host")
        fail(Status::Usage, "--forward must be host or device (got '{}')", o.forward);
    if (o.prefill == "device")
        c.device_prefill = true;
    else if (o.prefill.empty())
        c.device_prefill = c.device_forward && c.device.rfind("cuda", 0) == 0;
    else if (o.prefill != "host")
        fail(Status::Usage, "--prefill must be host or device (got '{}')", o.prefill);
    if (c.device_prefill && !c.device_forward)
        fail(Status::Usage, "--prefill device needs --forward device (the weights resident on the device)");
    return c;
}

nlohmann::json offload_stats_json(Session& session) {
    OffloadPipeline* p = session.offload();
    if (!p) return nullptr;
    return offload_stats_json(*p, p->stats());
}

nlohmann::json offload_stats_json(OffloadPipeline& p, const OffloadStats& s) {
    const OffloadConfig& c = p.config();
    return {{"device", p.device().name()},
            {"selector", c.selector},
            {"attn", attn_mode_name(c.attn)},
            {"forward", c.device_forward ? "device" : "host"},
            {"prefill", c.device_prefill ? "device" : "host"},
            {"prefill_device_products", s.device_products},
            {"prefill_attn_blocks", s.prefill_blocks},
            {"budget_tokens", c.budget_tokens},
            {"budget_fraction", c.budget_fraction},
            {"sinks", c.sinks},
            {"window", c.window},
            {"slots_per_head", p.n_slots()},
            {"dense_steps", s.dense_steps},
            {"sparse_steps", s.sparse_steps},
            {"prefetches", s.prefetches},
            {"device_tokens", s.device_tokens},
            {"cpu_tokens", s.cpu_tokens},
            {"bytes_copied", s.copy.bytes},
            {"copy_runs", s.copy.runs},
            {"copy_path", copy_path_name(c.copy_path)},
            {"copy_pieces", s.copy.copies},
            {"gathers", s.copy.gathers},
            {"hit_rate", s.copy.hit_rate()},
            {"select_ms", s.select_ms},
            {"cpu_attn_ms", s.cpu_attn_ms},
            {"wait_ms", s.wait_ms},
            {"interval", c.interval},
            {"neighbours", c.neighbours},
            {"select_on", p.selects_on_device() ? "device" : "host"},
            {"fresh_selections", s.fresh_selections},
            {"predictor_runs", s.predictor_runs},
            {"predict_ms", s.predict_ms},
            {"device_allocations", p.device().n_allocs()}};
}

void print_offload_stats(Session& session) {
    OffloadPipeline* p = session.offload();
    if (p) print_offload_stats(*p, p->stats());
}

void print_offload_stats(OffloadPipeline& p, const OffloadStats& s) {
    std::fprintf(
        stderr,
        "offload: %s, selector %s, attn %s, %d slots/head; %llu sparse + %llu dense layer-steps; copied %.2f MiB "
        "in %llu runs (%llu pieces, %s), hit rate %.1f%%; select %.1f ms, cpu attention %.1f ms, waiting %.1f ms\n",
        p.device().name().c_str(), p.config().selector.c_str(), attn_mode_name(p.config().attn), p.n_slots(),
        static_cast<unsigned long long>(s.sparse_steps), static_cast<unsigned long long>(s.dense_steps),
        double(s.copy.bytes) / (1 << 20), static_cast<unsigned long long>(s.copy.runs),
        static_cast<unsigned long long>(s.copy.copies), copy_path_name(p.config().copy_path), 100.0 * s.copy.hit_rate(),
        s.select_ms, s.cpu_attn_ms, s.wait_ms);
}

}  // namespace butler::cli
