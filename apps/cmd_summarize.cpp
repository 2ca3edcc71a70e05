// SPDX-License-Identifier: MIT
// butler summarize: a document (text, Markdown, PDF through pdftotext) -> a summary streamed to stdout, or a batch
// of documents -> one JSON line each. The engine is runtime/summarizer.h; this file is input checking, the prompt
// choice, progress, atomic output files, SIGINT and the batch bookkeeping.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "apps/atomic_output.h"
#include "apps/common.h"
#include "apps/write_fault.h"
#include "runtime/batch_list.h"
#include "apps/offload_options.h"
#include "runtime/chat_template.h"
#include "runtime/document.h"
#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/summarizer.h"

namespace butler::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
    g_interrupted = 1;
}

// Ctrl-C sets a flag that the prefill and generation loops check, so they unwind through the destructors that
// remove temporary files; the previous handler comes back when this goes away.
class SigintGuard {
public:
    SigintGuard() {
        struct sigaction sa {};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_);
    }
    ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
    SigintGuard(const SigintGuard&)            = delete;
    SigintGuard& operator=(const SigintGuard&) = delete;

private:
    struct sigaction old_ {};
};

void check_interrupted() {
    if (g_interrupted != 0) fail(Status::Interrupted, "interrupted");
}

struct SummarizeOptions {
    CommonOptions common;
    std::string input;
    std::string output;
    int32_t n_ctx       = 0;
    int32_t n_ubatch    = 512;
    int32_t max_tokens  = 256;
    std::string style   = "brief";
    std::string tmpl    = "auto";
    std::string kv_type = "f16";
    SamplerParams sampler;
    OffloadOptions offload;
    CLI::Option* temp_opt = nullptr;
    bool no_chunk         = false;
    bool strict_utf8      = false;
    // Batch mode.
    std::string batch;
    std::string batch_out;
    std::string shard;
};

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

bool has_program(const char* name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':'))
        if (!dir.empty() && ::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
    return false;
}

bool is_pdf(const std::string& name, std::string_view bytes) {
    if (bytes.substr(0, 5) == "%PDF-") return true;
    std::string ext = fs::path(name).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".pdf";
}

std::string pdf_to_text(const std::string& path) {
    if (!has_program("pdftotext"))
        fail(Status::Unsupported,
             "'{}' is a PDF, and reading PDFs needs pdftotext, which is not installed (Debian/Ubuntu: apt install "
             "poppler-utils)",
             path);
    const std::string cmd = "pdftotext -enc UTF-8 -- " + shell_quote(path) + " - 2>/dev/null";
    std::FILE* p          = ::popen(cmd.c_str(), "r");
    if (p == nullptr) fail(Status::Io, "cannot run pdftotext on '{}': {}", path, std::strerror(errno));
    std::string text;
    char buf[1 << 16];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
    const int status = ::pclose(p);
    if (status != 0) fail(Status::Format, "pdftotext could not read '{}' (is it a valid PDF?)", path);
    return text;
}

std::string read_stdin() {
    std::string s;
    char buf[1 << 16];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, stdin)) > 0;) s.append(buf, n);
    if (std::ferror(stdin)) fail(Status::Io, "cannot read standard input");
    return s;
}

// The document's text, checked: a directory, a binary file, a PDF without pdftotext, ill-formed UTF-8 under
// --strict-utf8 and an empty document are refused with Error(InvalidArg/Io/Unsupported) naming `name`.
// n_replaced: U+FFFD substitutions made (a warning is printed when warn).
std::string load_document(const std::string& path, bool strict_utf8, int64_t* n_replaced, bool warn) {
    const std::string name = path == "-" ? std::string("standard input") : "'" + path + "'";
    std::string bytes;
    if (path == "-") {
        bytes = read_stdin();
    } else {
        std::error_code ec;
        if (fs::is_directory(path, ec))
            fail(Status::InvalidArg, "{} is a directory (use --batch DIR to summarize every file in it)", name);
        if (!fs::exists(path, ec)) fail(Status::Io, "cannot open {}: no such file", name);
        bytes = read_file(path);
    }
    if (is_pdf(path, bytes)) {
        if (path == "-") fail(Status::Unsupported, "a PDF on standard input is not supported; pass the file name");
        bytes = pdf_to_text(path);
    }
    if (looks_binary(bytes))
        fail(Status::InvalidArg, "{} looks like a binary file (NUL bytes or mostly non-text), not a document", name);
    Utf8Repair fixed = repair_utf8(bytes);
    if (fixed.n_replaced > 0) {
        if (strict_utf8)
            fail(Status::InvalidArg, "{} is not valid UTF-8 (first ill-formed byte at offset {}; --strict-utf8)", name,
                 fixed.first_invalid);
        if (warn)
            std::fprintf(stderr,
                         "butler: warning: %s: %lld ill-formed UTF-8 sequence(s) replaced with U+FFFD (first at byte "
                         "%lld)\n",
                         name.c_str(), static_cast<long long>(fixed.n_replaced),
                         static_cast<long long>(fixed.first_invalid));
    }
    if (is_blank(fixed.text)) fail(Status::InvalidArg, "{} is empty", name);
    *n_replaced = fixed.n_replaced;
    return std::move(fixed.text);
}

SummaryStyle parse_style(const std::string& s) {
    if (s == "brief") return SummaryStyle::Brief;
    if (s == "detailed") return SummaryStyle::Detailed;
    if (s == "bullets") return SummaryStyle::Bullets;
    fail(Status::Usage, "--style must be brief, detailed or bullets (got '{}')", s);
}

struct PromptChoice {
    PromptKind kind = PromptKind::Completion;
    std::string reason;  // why: "--template", "the model's chat template", "no chat template (a base model)", ...
};

PromptChoice choose_prompt(const Model& model, const std::string& tmpl) {
    if (tmpl != "auto") {
        const auto kind = parse_prompt_kind(tmpl);
        if (!kind)
            fail(Status::Usage, "--template must be auto, gemma3, llama3, chatml, mistral or none (got '{}')", tmpl);
        return {*kind, "--template"};
    }
    const std::optional<std::string> t = model.file().get<std::string>("tokenizer.chat_template");
    const TemplateMatch m              = match_chat_template(t ? &*t : nullptr);
    if (!t || t->empty()) return {PromptKind::Completion, "no chat template: a base model"};
    if (!m.recognized) {
        std::fprintf(stderr,
                     "butler: warning: the model's chat template is not one of gemma3, llama3, chatml, mistral; using "
                     "the completion-style prompt (choose one with --template)\n");
        return {PromptKind::Completion, "unrecognized chat template"};
    }
    return {m.kind, "the model's chat template"};
}

SummarizeParams make_params(const SummarizeOptions& o, PromptKind kind) {
    SummarizeParams p;
    p.kind           = kind;
    p.style          = parse_style(o.style);
    p.max_tokens     = o.max_tokens;
    p.n_ctx_max      = o.n_ctx;
    p.n_ubatch       = o.n_ubatch;
    p.kv_type        = parse_kv_type(o.kv_type);
    p.allow_chunking = !o.no_chunk;
    p.sampler        = o.sampler;
    p.offload        = offload_config(o.offload);
    // Greedy unless the user asked for a temperature: a summary should not change from run to run.
    if (o.temp_opt == nullptr || o.temp_opt->count() == 0) p.sampler.temperature = 0.0f;
    return p;
}

// One progress line on stderr: a bar, tokens/s and the ETA of the prompt being prefilled.
class ProgressBar {
public:
    explicit ProgressBar(bool enabled) : enabled_(enabled) {}
    ~ProgressBar() { clear(); }
    ProgressBar(const ProgressBar&)            = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    void update(const SummarizeProgress& p) {
        if (!enabled_) return;
        if (p.generating) {
            clear();
            return;
        }
        constexpr int kWidth = 30;
        const int filled     = p.total > 0 ? static_cast<int>(kWidth * p.done / p.total) : kWidth;
        const double eta     = p.tokens_per_second > 0 ? double(p.total - p.done) / p.tokens_per_second : 0.0;
        std::string where    = p.n_chunks > 1 || p.level > 0
                                   ? fmt::format("level {} chunk {}/{} ", p.level, p.chunk + 1, p.n_chunks)
                                   : std::string();
        std::fprintf(stderr, "\r\033[Kprefill %s[%s%s] %lld/%lld tokens  %.0f tok/s  ETA %.0f s", where.c_str(),
                     std::string(size_t(filled), '#').c_str(), std::string(size_t(kWidth - filled), '.').c_str(),
                     static_cast<long long>(p.done), static_cast<long long>(p.total), p.tokens_per_second, eta);
        std::fflush(stderr);
        shown_ = true;
    }
    void clear() {
        if (shown_) std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
        shown_ = false;
    }

private:
    bool enabled_;
    bool shown_ = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The "selector" and "budget" of --json and of the batch lines: what attention ran with ("dense" and null budget
// without offload; the budget as given, "N" tokens or "P%").
json selector_json(const SummarizeParams& p) {
    return p.offload.enabled ? json(p.offload.selector) : json("dense");
}
json budget_json(const SummarizeOptions& o, const SummarizeParams& p) {
    if (!p.offload.enabled) return nullptr;
    return o.offload.budget.empty() ? std::string("100%") : o.offload.budget;
}

int run_single(const SummarizeOptions& o) {
    if (o.input.empty()) fail(Status::Usage, "give a FILE to summarize (or - for standard input), or --batch");
    if (!o.batch_out.empty() || !o.shard.empty()) fail(Status::Usage, "--out and --shard go with --batch");
    std::unique_ptr<AtomicOutput> out;
    if (!o.output.empty()) out = std::make_unique<AtomicOutput>(o.output);
    int64_t n_replaced     = 0;
    const std::string text = load_document(o.input, o.strict_utf8, &n_replaced, /*warn=*/true);
    const auto t0          = std::chrono::steady_clock::now();
    auto model             = load_model(o.common);
    check_interrupted();
    const PromptChoice prompt    = choose_prompt(*model, o.tmpl);
    const SummarizeParams params = make_params(o, prompt.kind);
    Summarizer summarizer(model, params);

    const bool stream = !o.common.json && !out;
    ProgressBar bar(show_progress(o.common));
    SummarizeCallbacks cb;
    cb.interrupted = &g_interrupted;
    cb.on_progress = [&bar](const SummarizeProgress& p) { bar.update(p); };
    if (stream)
        cb.on_text = [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        };
    const SummaryResult r = summarizer.run(text, cb);
    bar.clear();
    const double seconds     = seconds_since(t0);
    const double prefill_tps = double(r.n_prompt_tokens) / std::max(r.prefill_seconds, 1e-9);
    const double gen_tps     = double(r.n_generated_total) / std::max(r.generate_seconds, 1e-9);

    std::string result;
    if (o.common.json) {
        const json j = {{"summary", r.summary},
                        {"file", o.input},
                        {"model", model->path()},
                        {"prompt_kind", prompt_kind_name(prompt.kind)},
                        {"prompt_reason", prompt.reason},
                        {"style", o.style},
                        {"tokens_in", r.n_doc_tokens},
                        {"prompt_tokens", r.n_prompt_tokens},
                        {"tokens_out", r.n_generated},
                        {"tokens_generated_total", r.n_generated_total},
                        {"chunks", r.n_chunks},
                        {"levels", r.n_levels},
                        {"n_ctx", r.n_ctx},
                        {"n_ctx_max", summarizer.n_ctx_max()},
                        {"utf8_replaced", n_replaced},
                        {"stop_reason", r.stop_reason},
                        {"prefill_seconds", r.prefill_seconds},
                        {"generate_seconds", r.generate_seconds},
                        {"seconds", seconds},
                        {"prefill_tokens_per_second", prefill_tps},
                        {"generate_tokens_per_second", gen_tps},
                        {"selector", selector_json(params)},
                        {"budget", budget_json(o, params)},
                        {"offload", summarizer.offload_pipeline() != nullptr
                                        ? offload_stats_json(*summarizer.offload_pipeline(), r.offload)
                                        : json(nullptr)}};
        result       = j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    } else if (!stream) {
        result = r.summary + "\n";
    }
    if (out) {
        out->write(result);
        out->commit();
    } else if (!stream) {
        std::fwrite(result.data(), 1, result.size(), stdout);
    } else {
        std::printf("\n");
    }
    std::fflush(stdout);
    if (!o.common.json)
        std::fprintf(stderr,
                     "butler: %lld document tokens, prompt %s (%s), %d chunk(s) in %d level(s); prefill %lld tokens at "
                     "%.1f tok/s, generated %lld tokens at %.1f tok/s (stop: %s); %.2f s\n",
                     static_cast<long long>(r.n_doc_tokens), prompt_kind_name(prompt.kind), prompt.reason.c_str(),
                     r.n_chunks, r.n_levels, static_cast<long long>(r.n_prompt_tokens), prefill_tps,
                     static_cast<long long>(r.n_generated_total), gen_tps, r.stop_reason.c_str(), seconds);
    if (!o.common.json && summarizer.offload_pipeline() != nullptr)
        print_offload_stats(*summarizer.offload_pipeline(), r.offload);
    return 0;
}

// ---- batch mode ---------------------------------------------------------------------------------------------

std::vector<BatchItem> list_batch(const std::string& src) {
    std::vector<BatchItem> items;
    std::error_code ec;
    if (fs::is_directory(src, ec)) {
        for (const fs::directory_entry& e : fs::directory_iterator(src)) {
            const std::string name = e.path().filename().string();
            if (name.empty() || name[0] == '.' || !e.is_regular_file()) continue;
            items.push_back({name, e.path().string(), {}});
        }
        std::sort(items.begin(), items.end(), [](const BatchItem& a, const BatchItem& b) { return a.id < b.id; });
        return items;
    }
    if (!fs::exists(src, ec)) fail(Status::Io, "--batch '{}': no such file or directory", src);
    return parse_batch_list(read_file(src), src, fs::path(src).parent_path().string());
}

// FNV-1a: a document's shard depends only on its id, so every machine of a job array agrees without talking.
uint64_t id_hash(std::string_view id) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
    return h;
}

// The ids already in RESULTS.jsonl (any line with an "id", summary or error); a torn last line from a killed run
// is ignored. *ends_with_newline tells whether appending must start a new line first.
std::set<std::string> done_ids(const std::string& path, bool* ends_with_newline) {
    *ends_with_newline = true;
    std::error_code ec;
    if (!fs::exists(path, ec)) return {};
    const std::string all = read_file(path);
    *ends_with_newline    = all.empty() || all.back() == '\n';
    return parse_done_ids(all);
}

int run_batch(const SummarizeOptions& o) {
    if (!o.input.empty()) fail(Status::Usage, "give either FILE or --batch, not both");
    if (o.batch_out.empty()) fail(Status::Usage, "--batch needs --out RESULTS.jsonl");
    if (!o.output.empty()) fail(Status::Usage, "-o is for one document; --batch writes to --out");
    int64_t shard_i = 0, shard_n = 1;
    if (!o.shard.empty()) {
        char slash = 0;
        std::istringstream s(o.shard);
        if (!(s >> shard_i >> slash >> shard_n) || slash != '/' || !s.eof() || shard_n < 1 || shard_i < 0 ||
            shard_i >= shard_n)
            fail(Status::Usage, "--shard must be I/N with 0 <= I < N (got '{}')", o.shard);
    }
    const std::vector<BatchItem> items = list_batch(o.batch);
    const fs::path out_dir             = fs::path(o.batch_out).parent_path();
    std::error_code ec;
    if (!out_dir.empty() && !fs::is_directory(out_dir, ec))
        fail(Status::Io, "cannot write '{}': the directory '{}' does not exist", o.batch_out, out_dir.string());
    bool ends_with_newline           = true;
    const std::set<std::string> done = done_ids(o.batch_out, &ends_with_newline);

    auto model = load_model(o.common);
    check_interrupted();
    const PromptChoice prompt    = choose_prompt(*model, o.tmpl);
    const SummarizeParams params = make_params(o, prompt.kind);
    Summarizer summarizer(model, params);
    const std::string model_name = fs::path(model->path()).filename().string();

    std::FILE* out = std::fopen(o.batch_out.c_str(), "ab");
    if (out == nullptr) fail(Status::Io, "cannot write '{}': {}", o.batch_out, std::strerror(errno));
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out_guard(out, std::fclose);
    auto append = [&](const json& j) {
        const std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        if (output_fwrite(line.data(), line.size(), out) != line.size() || std::fflush(out) != 0)
            fail(errno == ENOSPC ? Status::Oom : Status::Io, "cannot write '{}': {}", o.batch_out,
                 std::strerror(errno));
    };
    if (!ends_with_newline && std::fputs("\n", out) < 0) fail(Status::Io, "cannot write '{}'", o.batch_out);

    ProgressBar bar(show_progress(o.common));
    SummarizeCallbacks cb;
    cb.interrupted = &g_interrupted;
    cb.on_progress = [&bar](const SummarizeProgress& p) { bar.update(p); };
    int64_t n_done = 0, n_skipped = 0, n_errors = 0, n_other = 0;
    for (size_t k = 0; k < items.size(); ++k) {
        const BatchItem& it = items[k];
        if (id_hash(it.id) % uint64_t(shard_n) != uint64_t(shard_i)) {
            ++n_other;
            continue;
        }
        if (done.count(it.id) != 0) {
            ++n_skipped;
            continue;
        }
        check_interrupted();
        const auto t0 = std::chrono::steady_clock::now();
        try {
            int64_t n_replaced = 0;
            std::string text;
            if (it.path.empty()) {
                Utf8Repair fixed = repair_utf8(it.text);
                if (fixed.n_replaced > 0 && o.strict_utf8)
                    fail(Status::InvalidArg, "\"text\" is not valid UTF-8 (--strict-utf8)");
                if (is_blank(fixed.text)) fail(Status::InvalidArg, "the document is empty");
                text = std::move(fixed.text);
            } else {
                text = load_document(it.path, o.strict_utf8, &n_replaced, /*warn=*/false);
            }
            const SummaryResult r = summarizer.run(text, cb);
            bar.clear();
            const double seconds = seconds_since(t0);
            append({{"id", it.id},
                    {"summary", r.summary},
                    {"tokens_in", r.n_doc_tokens},
                    {"tokens_out", r.n_generated},
                    {"seconds", seconds},
                    {"model", model_name},
                    {"selector", selector_json(params)},
                    {"budget", budget_json(o, params)},
                    {"chunks", r.n_chunks},
                    {"utf8_replaced", n_replaced}});
            ++n_done;
            std::fprintf(stderr, "butler: [%zu/%zu] %s: %lld tokens -> %lld tokens in %.1f s\n", k + 1, items.size(),
                         it.id.c_str(), static_cast<long long>(r.n_doc_tokens), static_cast<long long>(r.n_generated),
                         seconds);
        } catch (const Error& e) {
            bar.clear();
            // Ctrl-C and a full disk stop the batch; a bad document does not.
            if (e.status() == Status::Interrupted || e.status() == Status::Oom || e.status() == Status::Internal) throw;
            append({{"id", it.id}, {"error", e.what()}, {"status", status_name(e.status())}});
            ++n_errors;
            std::fprintf(stderr, "butler: [%zu/%zu] %s: error: %s\n", k + 1, items.size(), it.id.c_str(), e.what());
        }
    }
    std::fprintf(stderr,
                 "butler: batch: %lld summarized, %lld already in '%s', %lld failed (error lines), %lld in other "
                 "shards\n",
                 static_cast<long long>(n_done), static_cast<long long>(n_skipped), o.batch_out.c_str(),
                 static_cast<long long>(n_errors), static_cast<long long>(n_other));
    return 0;
}

int run_summarize(const SummarizeOptions& o) {
    g_interrupted = 0;
    SigintGuard sigint;
    return o.batch.empty() ? run_single(o) : run_batch(o);
}

std::string help_footer() {
    return fmt::format(
        "Prompt: the model's GGUF tokenizer.chat_template chooses a built-in template (gemma3, llama3, chatml, "
        "mistral); a model without one is a base model (the default model is one) and gets a completion-style "
        "prompt: the document, then a cue (brief: \"{}\", detailed: \"{}\", bullets: \"{}\"). --template overrides. "
        "The prompt used is printed on stderr and in --json (prompt_kind).\n"
        "Styles, as chat models are instructed: brief: \"{}\" detailed: \"{}\" bullets: \"{}\"\n"
        "Document text is tokenized with special-token parsing off: '<end_of_turn>' in a document is text. "
        "Ill-formed UTF-8 is replaced with U+FFFD (counted in a warning) unless --strict-utf8; binary and empty "
        "files are refused. A document longer than the context is summarized in chunks, then the chunk summaries "
        "are summarized (recursively); --no-chunk refuses instead.\n"
        "Batch: --batch DIR (every regular file, id = file name) or LIST.jsonl (lines {{\"id\": ..., \"path\": ...}} "
        "or {{\"id\": ..., \"text\": ...}}; relative paths are relative to the list) appends one JSON line per "
        "document to --out, flushed each time; ids already in --out are skipped, so a killed run resumes; a failed "
        "document gets an \"error\" line. --shard I/N keeps the documents whose id hashes (FNV-1a) to I mod N.\n"
        "Offload: any of --device, --selector, --budget, --attn, --device-memory runs every pass through the offload "
        "pipeline (the global layers' KV cache in host memory, the selected rows copied to the device; device emu "
        "unless given, selector dense, budget 100%, attn sparse); --json then has an \"offload\" object (bytes "
        "copied, hit rate, selector, budget, ...) summed over all passes. Without them attention is dense on the CPU.\n"
        "Exit codes: 0 ok, 1 bad input (file, model, document), 2 usage, 3 resource exhausted (memory, device memory, "
        "disk), 130 interrupted, 70 internal error (a bug).",
        summary_cue(SummaryStyle::Brief), "Detailed summary:", "Summary in bullet points:\\n-",
        summary_instruction(SummaryStyle::Brief), summary_instruction(SummaryStyle::Detailed),
        summary_instruction(SummaryStyle::Bullets));
}

}  // namespace

Action register_summarize(CLI::App& sub) {
    auto o = std::make_shared<SummarizeOptions>();
    add_common_options(sub, o->common);
    sub.add_option("FILE", o->input, "document to summarize: text, Markdown or PDF (pdftotext); - for standard input");
    sub.add_option("-o,--output", o->output, "write the summary (or the --json object) to this file, atomically");
    sub.add_option("-c,--ctx", o->n_ctx, "context limit in tokens (default: the model's training context)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--max-tokens", o->max_tokens, "most tokens per summary (each chunk summary too)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--style", o->style, "brief, detailed or bullets (see below)")
        ->check(CLI::IsMember({"brief", "detailed", "bullets"}));
    sub.add_option("--template", o->tmpl, "prompt: auto (from the model), gemma3, llama3, chatml, mistral, none")
        ->check(CLI::IsMember({"auto", "gemma3", "llama3", "chatml", "mistral", "none"}));
    sub.add_flag("--no-chunk", o->no_chunk, "refuse a document longer than the context instead of map-reduce");
    sub.add_flag("--strict-utf8", o->strict_utf8, "refuse ill-formed UTF-8 instead of replacing it with U+FFFD");
    sub.add_option("--ubatch", o->n_ubatch, "tokens per prefill chunk")->check(CLI::PositiveNumber);
    sub.add_option("--kv-type", o->kv_type, "KV cache type: f16, bf16, f32")
        ->check(CLI::IsMember({"f16", "bf16", "f32"}));
    o->temp_opt = sub.add_option("--temp", o->sampler.temperature, "temperature (default: greedy)");
    sub.add_option("--top-k", o->sampler.top_k, "top-k with --temp (0 = off)");
    sub.add_option("--top-p", o->sampler.top_p, "top-p with --temp (1 = off)");
    sub.add_option("--min-p", o->sampler.min_p, "min-p with --temp (0 = off)");
    sub.add_option("--seed", o->sampler.seed, "random seed (with --temp)");
    sub.add_option("--batch", o->batch, "summarize every document of DIR or LIST.jsonl (see below)");
    sub.add_option("--out", o->batch_out, "batch results, one JSON line per document (appended)");
    sub.add_option("--shard", o->shard, "batch: only the documents of shard I of N (I/N, 0-based)");
    add_offload_options(sub, o->offload);
    sub.footer(help_footer());
    return [o] { return run_summarize(*o); };
}

}  // namespace butler::cli
