// SPDX-License-Identifier: MIT
// butler eval: how close sparse attention stays to dense, for every selector and budget, in one table.
//   tasks   ppl     windows of -c tokens of a text (llama-perplexity's convention: BOS first, the second half
//                   scored): perplexity, its change against dense, top-1 agreement and KL(dense || sparse).
//           needle  a needle sentence deep in a haystack (runtime/eval_tasks.h), asked for after it.
//           coref   the paper's co-reference task: the first of several invented places, asked for at the end.
//                   Tasks score the answer by teacher forcing: a sample is right when every answer token is the
//                   argmax; accuracy is reported with dense accuracy and their ratio.
//   views   decode    (runtime) the document / first half prefilled densely, the rest fed token by token as sparse
//                     decode steps through the offload pipeline; budgets are DESIGN.md's (P% of the current context
//                     or N tokens, sinks + recent window + picks), and only the global layers are sparsified.
//           simulate  (paper) one masked prefill with every layer >= 1 sparsified per row (predictor/simulate.h);
//                     budgets are the share of each row's keys kept; tokenbutler and quest keep a recent window of
//                     --window keys (default 32) within each row's share, as the runtime does (--window 0: the
//                     paper's rule). tokenbutler ranks a key by its predicted attention mass summed over the KV
//                     group's query heads; --group-score max ranks by the max of their predicted logits instead
//                     (TOKENBUTLER.md §1.3's rule), to measure one against the other.
// --dense-layers L,...: those sparsified layers attend exactly (in the decode view selection still runs; in the
// simulate view producers still run), so a run per layer shows which one costs the quality.
// The dense reference of each window / sample is computed once; a sparse run and its reference go through the
// output matrix together (Session::compare_rows), so KL is exact over the whole vocabulary.
#include <nlohmann/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "apps/atomic_output.h"
#include "apps/common.h"
#include "offload/budget.h"
#include "offload/pipeline.h"
#include "predictor/simulate.h"
#include "predictor/token_selector.h"
#include "predictor/tokenbutler.h"
#include "runtime/eval_tasks.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultSelectors = "oracle,tokenbutler,h2o,h2o-tb,snapkv,snapkv-tb,quest,quest-tb,streamingllm";
constexpr const char* kDecodeBudgets    = "5%,10%,20%,50%";
constexpr const char* kSimulateBudgets  = "90%,80%,70%,60%,50%,40%";

struct EvalOptions {
    CommonOptions common;
    std::string task = "all";
    std::string view = "decode";
    std::string selectors, budgets;  // empty: the defaults of the view
    std::string file;                // ppl text and needle haystack; empty: the fetched held-apart text
    int n_ctx       = 1024;
    int n_chunks    = 1;
    int n_samples   = 8;
    int needle_chars = 6000;
    int coref_blocks = 10;
    uint64_t seed    = 42;
    int sinks        = 4;
    int window       = -1;
    int interval     = 1;
    std::string neighbours = "off";
    std::vector<int32_t> dense_layers;
    std::string group_score = "mass";  // simulate view, tokenbutler: mass | max
    std::string device     = "cpu";
    std::string kv_type    = "f16";
    std::string activations;  // --activations f32|q8
    std::string output;  // -o: the JSON to a file
    std::string plot;    // --plot: a PNG
};

// One window or sample: tokens[0 .. prefix) are prefilled densely in the decode view; rows first .. first + n_rows - 1
// are scored against the next token.
struct Unit {
    std::string task;
    std::vector<TokenId> tokens;
    int64_t prefix = 0, first = 0, n_rows = 0;
    int64_t target_distance = -1;  // tasks: tokens from the needle / first block to the question
    std::vector<float> hidden_ref;  // (n_rows, n_embd) dense
};

struct Row {
    std::string task, selector, budget;
    int64_t n_tokens = 0, n_samples = 0, agree = 0, right = 0, right_dense = 0;
    double nll = 0, nll_dense = 0, kl = 0, masked_share = -1, seconds = 0;

    double ppl() const { return std::exp(nll / double(n_tokens)); }
    double ppl_dense() const { return std::exp(nll_dense / double(n_tokens)); }
    nlohmann::json json() const {
        nlohmann::json j = {{"task", task},
                            {"selector", selector},
                            {"budget", budget},
                            {"n_tokens", n_tokens},
                            {"ppl", ppl()},
                            {"ppl_dense", ppl_dense()},
                            {"ppl_delta_pct", 100.0 * (ppl() / ppl_dense() - 1.0)},
                            {"top1_agreement", double(agree) / double(n_tokens)},
                            {"kl_dense_sparse", kl / double(n_tokens)},
                            {"seconds", seconds}};
        if (task != "ppl") {
            j["n_samples"]        = n_samples;
            j["accuracy"]         = double(right) / double(n_samples);
            j["accuracy_dense"]   = double(right_dense) / double(n_samples);
            j["accuracy_vs_dense"] = right_dense > 0 ? nlohmann::json(double(right) / double(right_dense)) : nlohmann::json();
        }
        if (masked_share >= 0) j["masked_share"] = masked_share;
        return j;
    }
};

// The tokens of `prefix_text` that are a prefix of `full` (tokenization at the join may differ by a token).
int64_t common_prefix(const std::vector<TokenId>& a, const std::vector<TokenId>& b) {
    int64_t n = 0;
    while (n < int64_t(std::min(a.size(), b.size())) && a[size_t(n)] == b[size_t(n)]) ++n;
    return n;
}

std::vector<Unit> ppl_units(const Tokenizer& tok, const std::string& text, const std::string& file, int64_t n_ctx,
                            int64_t n_chunks) {
    const std::vector<TokenId> all = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
    if (int64_t(all.size()) < n_ctx * n_chunks)
        fail(Status::InvalidArg, "'{}' has {} tokens; {} window(s) of -c {} need {}", file, all.size(), n_chunks, n_ctx,
             n_ctx * n_chunks);
    std::vector<Unit> units;
    for (int64_t c = 0; c < n_chunks; ++c) {
        Unit u;
        u.task = "ppl";
        u.tokens.assign(all.begin() + c * n_ctx, all.begin() + (c + 1) * n_ctx);
        if (tok.bos() >= 0) u.tokens[0] = tok.bos();
        u.prefix = n_ctx / 2;
        u.first  = n_ctx / 2;
        u.n_rows = n_ctx - 1 - u.first;
        units.push_back(std::move(u));
    }
    return units;
}

std::vector<Unit> task_units(const Tokenizer& tok, const std::string& task, const std::vector<TaskSample>& samples) {
    std::vector<Unit> units;
    for (const TaskSample& s : samples) {
        Unit u;
        u.task = task;
        const std::vector<TokenId> prompt = tok.encode(s.document + s.question, true, false);
        u.tokens = tok.encode(s.document + s.question + s.answer, true, false);
        if (common_prefix(prompt, u.tokens) != int64_t(prompt.size())) {  // the answer merged across the join
            u.tokens = prompt;
            for (TokenId t : tok.encode(s.answer, false, false)) u.tokens.push_back(t);
        }
        const int64_t n_answer = int64_t(u.tokens.size() - prompt.size());
        if (n_answer < 1) fail(Status::Internal, "{} sample with an empty answer", task);
        u.prefix = std::max<int64_t>(1, common_prefix(tok.encode(s.document, true, false), u.tokens));
        u.first  = int64_t(prompt.size()) - 1;
        u.n_rows = n_answer;
        u.target_distance =
            int64_t(prompt.size()) - common_prefix(tok.encode(s.document.substr(0, s.target_offset), true, false), u.tokens);
        units.push_back(std::move(u));
    }
    return units;
}

void run_prefill(Session& s, const Unit& u, float* hidden) {
    std::vector<int32_t> rows(static_cast<size_t>(u.n_rows));
    for (int64_t r = 0; r < u.n_rows; ++r) rows[size_t(r)] = int32_t(u.first + r);
    s.reset();
    s.eval(u.tokens, rows, hidden);
}

void accumulate(Row& row, const Unit& u, const std::vector<RowComparison>& cmp) {
    bool right = true, right_dense = true;
    for (int64_t r = 0; r < u.n_rows; ++r) {
        const RowComparison& c = cmp[size_t(r)];
        const TokenId target   = u.tokens[size_t(u.first + r + 1)];
        row.nll -= c.logprob;
        row.nll_dense -= c.logprob_ref;
        row.kl += c.kl;
        row.agree += c.argmax == c.argmax_ref;
        right       = right && c.argmax == target;
        right_dense = right_dense && c.argmax_ref == target;
    }
    row.n_tokens += u.n_rows;
    row.n_samples += 1;
    row.right += right;
    row.right_dense += right_dense;
}

std::string fmt_table(const std::vector<Row>& rows, const std::string& view) {
    std::string out = fmt::format("{:<7} {:<14} {:>7} {:>9} {:>9} {:>8} {:>7} {:>8} {:>6} {:>6} {:>7}\n", "task",
                                  "selector", "budget", "ppl", "dense", "delta", "top1", "KL", "acc", "dense",
                                  view == "simulate" ? "masked" : "");
    for (const Row& r : rows) {
        const bool task = r.task != "ppl";
        out += fmt::format("{:<7} {:<14} {:>7} {:>9.4f} {:>9.4f} {:>+7.2f}% {:>7.4f} {:>8.5f} {:>6} {:>6} {:>7}\n", r.task,
                           r.selector, r.budget, r.ppl(), r.ppl_dense(), 100.0 * (r.ppl() / r.ppl_dense() - 1.0),
                           double(r.agree) / double(r.n_tokens), r.kl / double(r.n_tokens),
                           task ? fmt::format("{:.3f}", double(r.right) / double(r.n_samples)) : "-",
                           task ? fmt::format("{:.3f}", double(r.right_dense) / double(r.n_samples)) : "-",
                           r.masked_share >= 0 ? fmt::format("{:.1f}%", 100.0 * r.masked_share) : "");
    }
    return out;
}

// Quality against budget per selector: one panel per task (perplexity for ppl, accuracy for the tasks), dense as a
// dashed line.
void write_plot(const std::string& path, const std::vector<Row>& rows, const std::vector<std::string>& tasks,
                const std::vector<std::string>& selectors, const std::string& view, const std::string& model) {
    std::string script = fmt::format("set multiplot layout 1,{} title '{} ({} view)'\n", tasks.size(), model, view);
    script += "set key outside bottom center horizontal font ',8'\nset grid\nset xlabel 'budget kept (%)'\n";
    for (const std::string& task : tasks) {
        const bool ppl = task == "ppl";
        script += fmt::format("set title '{}'\nset ylabel '{}'\n", task, ppl ? "perplexity" : "accuracy");
        std::string plot = "plot ";
        std::string data;
        double dense = 0;
        for (const std::string& sel : selectors) {
            plot += fmt::format("'-' using 1:2 with linespoints title '{}', ", sel);
            for (const Row& r : rows) {
                if (r.task != task || r.selector != sel) continue;
                const double x = std::atof(r.budget.c_str());
                const double y = ppl ? r.ppl() : double(r.right) / double(r.n_samples);
                dense          = ppl ? r.ppl_dense() : double(r.right_dense) / double(r.n_samples);
                data += fmt::format("{} {}\n", x, y);
            }
            data += "e\n";
        }
        plot += fmt::format("{} with lines dashtype 2 lc 'black' title 'dense'\n", dense);
        script += plot + data;
    }
    script += "unset multiplot\n";
    render_png(path, 420 * int(tasks.size()), 420, script);
}

int run_eval(const EvalOptions& o) {
    if (o.view != "decode" && o.view != "simulate")
        fail(Status::Usage, "--view must be decode or simulate (got '{}')", o.view);
    const bool simulate = o.view == "simulate";
    std::vector<std::string> tasks =
        o.task == "all" ? std::vector<std::string>{"ppl", "needle", "coref"} : split_list(o.task);
    for (const std::string& t : tasks)
        if (t != "ppl" && t != "needle" && t != "coref")
            fail(Status::Usage, "unknown task '{}' (known: ppl, needle, coref, all)", t);
    const std::vector<std::string> selectors = split_list(o.selectors.empty() ? kDefaultSelectors : o.selectors);
    const std::vector<std::string> budgets =
        split_list(!o.budgets.empty() ? o.budgets : simulate ? kSimulateBudgets : kDecodeBudgets);
    if (selectors.empty() || budgets.empty()) fail(Status::Usage, "--selectors and --budgets need at least one entry");
    const int32_t sim_window = o.window >= 0 ? o.window : SimulateParams{}.window;  // simulate: the recent window
    std::vector<double> keeps;  // simulate: the share kept per budget
    for (const std::string& b : budgets) {
        OffloadConfig probe;
        parse_budget(b, probe);  // Error(Usage) for garbage
        if (simulate && probe.budget_fraction <= 0)
            fail(Status::Usage, "the simulate view takes budgets as shares kept (e.g. 50%), not tokens ('{}')", b);
        keeps.push_back(probe.budget_fraction);
    }
    if (o.group_score != "mass" && !simulate)
        fail(Status::Usage, "--group-score is the simulate view's (the decode view ranks by the summed mass)");
    if (o.n_ctx < 8) fail(Status::Usage, "-c/--ctx must be at least 8 (got {})", o.n_ctx);
    if (o.neighbours != "on" && o.neighbours != "off")
        fail(Status::Usage, "--neighbours must be on or off (got '{}')", o.neighbours);
    if (!o.output.empty()) check_output_dir(o.output);
    if (!o.plot.empty()) {
        check_output_dir(o.plot);
        if (!have_gnuplot()) fail(Status::Io, "--plot needs gnuplot, which is not installed (apt install gnuplot-nox)");
    }

    auto model            = load_model(o.common);
    const Tokenizer& tok  = model->tokenizer();
    const HParams& hp     = model->hparams();
    const bool needs_text = std::any_of(tasks.begin(), tasks.end(), [](const std::string& t) { return t != "coref"; });
    const std::string file = o.file.empty() ? default_text_path() : o.file;
    std::string text;
    if (needs_text) {
        if (o.file.empty() && !fs::exists(file))
            fail(Status::Io, "no text given and the held-apart text '{}' is missing: pass -f FILE or run scripts/fetch-text",
                 file);
        text = read_file(file);
    }

    std::vector<Unit> units;
    for (const std::string& t : tasks) {
        std::vector<Unit> more;
        if (t == "ppl") more = ppl_units(tok, text, file, o.n_ctx, o.n_chunks);
        if (t == "needle")
            more = task_units(tok, t, make_needle_samples(text, o.n_samples, size_t(o.needle_chars), 0.1, 0.5, o.seed));
        if (t == "coref") more = task_units(tok, t, make_coref_samples(o.n_samples, o.coref_blocks, o.seed));
        for (Unit& u : more) units.push_back(std::move(u));
    }
    int64_t max_len = 0;
    for (const Unit& u : units) max_len = std::max<int64_t>(max_len, int64_t(u.tokens.size()));
    if (max_len > hp.n_ctx_train)
        fail(Status::InvalidArg, "a unit of {} tokens exceeds the model's training context {}", max_len, hp.n_ctx_train);

    // Every selector is checked (and its predictor loaded) before any work; each tokenbutler[:PATH] selector gets its
    // own predictor, so two PATHs compare two predictors.
    std::map<std::string, std::shared_ptr<const TokenButlerPredictor>> predictors;
    auto predictor_of = [&predictors](const std::string& sel) {
        const auto it = predictors.find(sel);
        return it != predictors.end() ? it->second : nullptr;
    };
    for (const std::string& sel : selectors) {
        if (is_tokenbutler_selector(sel) && !predictors.count(sel))
            predictors[sel] = load_predictor_for(sel, *model, simulate ? PredictorUse::EveryLayer : PredictorUse::Runtime);
        const auto predictor = predictor_of(sel);
        if (simulate) {
            SimulateParams probe;
            probe.selector  = sel;
            probe.predictor = predictor;
            probe.dense_layers = o.dense_layers;
            const MaskedPrefillSimulator check(hp, probe, 1);
        } else {
            make_selector(sel, 1, hp.n_head_kv, 1, hp.head_dim, predictor, hp.n_head / hp.n_head_kv);
        }
    }

    const bool progress = show_progress(o.common);
    const auto t_start  = std::chrono::steady_clock::now();
    // Dense references, once.
    SessionParams base;
    base.n_ctx   = int32_t(max_len);
    base.n_ubatch = 512;
    base.kv_type = parse_kv_type(o.kv_type);
    base.float_activations = parse_float_activations(o.activations);
    {
        Session dense(model, base);
        for (Unit& u : units) {
            u.hidden_ref.resize(size_t(u.n_rows * hp.n_embd));
            run_prefill(dense, u, u.hidden_ref.data());
        }
    }
    std::vector<Row> rows;
    std::vector<float> hidden;
    std::vector<RowComparison> cmp;
    for (const std::string& sel : selectors) {
        for (size_t b = 0; b < budgets.size(); ++b) {
            const auto t0 = std::chrono::steady_clock::now();
            SessionParams sp = base;
            std::unique_ptr<MaskedPrefillSimulator> sim;
            if (simulate) {
                sp.n_ubatch = int32_t(max_len);
                SimulateParams simp;
                simp.selector  = sel;
                simp.keep      = keeps[b];
                simp.sinks     = o.sinks;
                simp.window    = sim_window;
                simp.predictor = predictor_of(sel);
                simp.dense_layers = o.dense_layers;
                simp.group_max_logit = o.group_score == "max" && is_tokenbutler_selector(sel);
                sim            = std::make_unique<MaskedPrefillSimulator>(hp, simp, max_len);
            } else {
                OffloadConfig& c = sp.offload;
                c.enabled        = true;
                c.device         = o.device;
                c.selector       = sel;
                parse_budget(budgets[b], c);
                c.sinks        = o.sinks;
                c.window       = o.window;
                c.interval     = o.interval;
                c.neighbours   = o.neighbours == "on";
                c.predictor    = predictor_of(sel);
                c.dense_layers = o.dense_layers;
            }
            Session session(model, sp);
            if (sim) session.set_attention_override([&sim](const LayerAttentionIo& io) { return sim->attend(io); });
            for (const std::string& task : tasks) {
                const auto t_task = std::chrono::steady_clock::now();
                if (sim) sim->reset_stats();
                Row row;
                row.task     = task;
                row.selector = sel;
                row.budget   = budgets[b];
                for (const Unit& u : units) {
                    if (u.task != task) continue;
                    hidden.resize(size_t(u.n_rows * hp.n_embd));
                    cmp.resize(size_t(u.n_rows));
                    if (simulate) run_prefill(session, u, hidden.data());
                    else eval_decode_view(session, u.tokens, u.prefix, u.first, u.n_rows, hidden.data());
                    session.compare_rows(hidden.data(), u.hidden_ref.data(), u.n_rows, u.tokens.data() + u.first + 1,
                                         cmp.data());
                    accumulate(row, u, cmp);
                }
                row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_task).count();
                if (sim) row.masked_share = sim->masked_share();
                rows.push_back(row);
            }
            if (progress)
                std::fprintf(stderr, "eval: %s at %s done (%.1f s)\n", sel.c_str(), budgets[b].c_str(),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
    }

    nlohmann::json j;
    j["model"]     = model->path();
    j["view"]      = o.view;
    j["file"]      = needs_text ? file : "";
    j["ctx"]       = o.n_ctx;
    j["chunks"]    = o.n_chunks;
    j["samples"]   = o.n_samples;
    j["seed"]      = o.seed;
    j["sinks"]     = o.sinks;
    j["window"]    = simulate ? sim_window : o.window;
    j["interval"]  = o.interval;
    j["neighbours"] = o.neighbours;
    if (!o.dense_layers.empty()) j["dense_layers"] = o.dense_layers;
    if (simulate) j["group_score"] = o.group_score;
    j["seconds"]   = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    nlohmann::json distances = nlohmann::json::object();
    for (const std::string& t : tasks) {
        if (t == "ppl") continue;
        int64_t lo = INT64_MAX, hi = 0;
        for (const Unit& u : units)
            if (u.task == t) lo = std::min(lo, u.target_distance), hi = std::max(hi, u.target_distance);
        distances[t] = {{"min", lo}, {"max", hi}};
    }
    j["target_distance_tokens"] = distances;
    j["rows"] = nlohmann::json::array();
    for (const Row& r : rows) j["rows"].push_back(r.json());
    const std::string dump = j.dump(2) + "\n";
    if (!o.output.empty()) {
        AtomicOutput out(o.output);
        out.write(dump);
        out.commit();
    }
    if (!o.plot.empty()) write_plot(o.plot, rows, tasks, selectors, o.view, fs::path(model->path()).filename().string());
    if (o.common.json) std::printf("%s", dump.c_str());
    else std::printf("%s", fmt_table(rows, o.view).c_str());
    return 0;
}

}  // namespace

Action register_eval(CLI::App& sub) {
    auto o = std::make_shared<EvalOptions>();
    sub.description(
        "Quality of sparse attention against dense for every selector and budget: perplexity change, top-1\n"
        "agreement and KL(dense || sparse) on a text (task ppl), and accuracy on a needle-in-a-haystack and the\n"
        "paper's co-reference task (needle, coref). --view decode runs the runtime (dense prefill, sparse decode\n"
        "steps, global layers sparsified); --view simulate runs the paper's masked prefill (every layer >= 1).");
    add_common_options(sub, o->common);
    sub.add_option("--task", o->task, "ppl, needle, coref, all, or a comma-separated list (default all)");
    sub.add_option("--view", o->view, "decode (default) or simulate")->check(CLI::IsMember({"decode", "simulate"}));
    sub.add_option("--selectors", o->selectors, fmt::format("comma-separated selectors (default {})", kDefaultSelectors));
    sub.add_option("--budgets", o->budgets,
                   fmt::format("comma-separated budgets, P% kept or N tokens (default decode {}, simulate {})",
                               kDecodeBudgets, kSimulateBudgets));
    sub.add_option("-f,--file", o->file, "text for ppl and the needle's haystack (default: the held-apart text of "
                                         "scripts/fetch-text, kjv-john.txt)");
    sub.add_option("-c,--ctx", o->n_ctx, "ppl window in tokens (default 1024)");
    sub.add_option("--chunks", o->n_chunks, "ppl windows (default 1)")->check(CLI::PositiveNumber);
    sub.add_option("--samples", o->n_samples, "needle / coref samples (default 8)")->check(CLI::PositiveNumber);
    sub.add_option("--needle-chars", o->needle_chars, "needle document length in characters (default 6000)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--coref-blocks", o->coref_blocks, "co-reference blocks per sample (default 10)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--seed", o->seed, "task generation seed (default 42)");
    sub.add_option("--sinks", o->sinks, "attention sinks (default 4)")->check(CLI::NonNegativeNumber);
    sub.add_option("--window", o->window,
                   "recent window: decode view default max(16, budget/8); simulate view, the recent keys tokenbutler "
                   "and quest keep within each row's budget, default 32 (0: the paper's rule)");
    sub.add_option("--interval", o->interval, "decode view: prediction interval (default 1)")->check(CLI::PositiveNumber);
    sub.add_option("--neighbours", o->neighbours, "decode view: neighbour fetching on|off (default off)");
    sub.add_option("--dense-layers", o->dense_layers,
                   "these sparsified model layers attend exactly all the same (comma list), to see which layer costs "
                   "the quality")
        ->delimiter(',');
    sub.add_option("--group-score", o->group_score,
                   "simulate view: tokenbutler ranks keys by the predicted attention mass summed over the KV group's "
                   "query heads (mass, default) or by the max of their predicted logits (max: the paper's rule)")
        ->check(CLI::IsMember({"mass", "max"}));
    sub.add_option("--device", o->device, "decode view: offload device (default cpu)");
    sub.add_option("--kv-type", o->kv_type, "KV cache type: f16, bf16, f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
    add_activations_option(sub, o->activations, "f32");
    sub.add_option("-o,--output", o->output, "also write the JSON to this file (atomically)");
    sub.add_option("--plot", o->plot, "write a PNG plot of quality against budget (needs gnuplot)");
    return [o] { return run_eval(*o); };
}

}  // namespace butler::cli
