// SPDX-License-Identifier: MIT
#include "runtime/summarizer.h"

#include <algorithm>
#include <chrono>

#include "runtime/document.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Generated text, trimmed and made valid UTF-8 (a model can emit byte tokens that do not form characters).
std::string trim(std::string_view s) {
    const char* ws = " \t\n\r\v\f";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return repair_utf8(s.substr(b, s.find_last_not_of(ws) - b + 1)).text;
}

// a += b, field by field (each pass runs on a fresh or reset pipeline whose stats are then cleared).
void accumulate(OffloadStats& a, const OffloadStats& b) {
    a.dense_steps += b.dense_steps;
    a.sparse_steps += b.sparse_steps;
    a.prefetches += b.prefetches;
    a.device_tokens += b.device_tokens;
    a.cpu_tokens += b.cpu_tokens;
    a.select_ms += b.select_ms;
    a.cpu_attn_ms += b.cpu_attn_ms;
    a.wait_ms += b.wait_ms;
    a.copy.bytes += b.copy.bytes;
    a.copy.runs += b.copy.runs;
    a.copy.copies += b.copy.copies;
    a.copy.gathers += b.copy.gathers;
    a.copy.hits += b.copy.hits;
    a.copy.misses += b.copy.misses;
}

constexpr const char* kReduceIntro =
    "The text below joins the summaries of consecutive parts of one long document, in order.";

// The text around the document for one level: chat models get the instruction before it, base models the cue
// after it.
PromptFrame make_frame(const Tokenizer& tok, PromptKind kind, SummaryStyle style, bool reduce) {
    const std::string intro = reduce ? std::string(kReduceIntro) + " " : std::string();
    if (kind == PromptKind::Completion)
        return build_prompt_frame(tok, kind, reduce ? "Summaries of the parts of a document:\n\n" : "",
                                  std::string("\n\n") + summary_cue(style));
    return build_prompt_frame(tok, kind, intro + summary_instruction(style) + "\n\n", "");
}

}  // namespace

const char* summary_style_name(SummaryStyle s) {
    switch (s) {
        case SummaryStyle::Brief:
            return "brief";
        case SummaryStyle::Detailed:
            return "detailed";
        case SummaryStyle::Bullets:
            return "bullets";
    }
    return "?";
}

const char* summary_instruction(SummaryStyle s) {
    switch (s) {
        case SummaryStyle::Brief:
            return "Summarize the following document in two or three sentences.";
        case SummaryStyle::Detailed:
            return "Write a detailed summary of the following document: its main points, key facts and conclusions, "
                   "in a few paragraphs.";
        case SummaryStyle::Bullets:
            return "Summarize the following document as a bulleted list of its key points, one short line each.";
    }
    return "";
}

const char* summary_cue(SummaryStyle s) {
    switch (s) {
        case SummaryStyle::Brief:
            return "Summary:";
        case SummaryStyle::Detailed:
            return "Detailed summary:";
        case SummaryStyle::Bullets:
            return "Summary in bullet points:\n-";
    }
    return "";
}

bool repeats_at_end(std::span<const TokenId> ids) {
    const size_t n = ids.size();
    for (size_t p = 1; p <= 64; ++p) {
        const size_t reps = std::max<size_t>(4, (16 + p - 1) / p);
        if (p * reps > n) break;
        const TokenId* tail = ids.data() + (n - p * reps);
        bool periodic       = true;
        for (size_t i = p; i < p * reps && periodic; ++i) periodic = tail[i] == tail[i - p];
        if (periodic) return true;
    }
    return false;
}

Summarizer::Summarizer(std::shared_ptr<const Model> model, const SummarizeParams& params)
    : model_(std::move(model)), params_(params) {
    const HParams& hp = model_->hparams();
    n_ctx_max_        = params_.n_ctx_max > 0 ? params_.n_ctx_max : static_cast<int32_t>(hp.n_ctx_train);
    if (n_ctx_max_ > hp.n_ctx_train)
        fail(Status::InvalidArg, "context {} exceeds the model's training context of {} tokens", n_ctx_max_,
             hp.n_ctx_train);
    if (params_.max_tokens <= 0) fail(Status::InvalidArg, "--max-tokens must be positive");
    first_frame_  = make_frame(model_->tokenizer(), params_.kind, params_.style, false);
    reduce_frame_ = make_frame(model_->tokenizer(), params_.kind, params_.style, true);
    logits_.resize(static_cast<size_t>(hp.n_vocab));
    generated_.reserve(static_cast<size_t>(params_.max_tokens));
}

Summarizer::~Summarizer() = default;

Session& Summarizer::session_for(int64_t n_tokens) {
    BUTLER_ASSERT(n_tokens <= n_ctx_max_, "pass of {} tokens over the limit {}", n_tokens, n_ctx_max_);
    if (!session_ || session_->params().n_ctx < n_tokens) {
        session_.reset();  // free the old cache before the new one is allocated
        SessionParams sp;
        sp.n_ctx    = static_cast<int32_t>(n_tokens);
        sp.n_ubatch = params_.n_ubatch;
        sp.kv_type  = params_.kv_type;
        sp.offload  = params_.offload;
        session_    = std::make_unique<Session>(model_, sp);
    }
    session_->reset();
    if (OffloadPipeline* p = session_->offload()) p->reset_stats();
    return *session_;
}

OffloadPipeline* Summarizer::offload_pipeline() {
    return session_ ? session_->offload() : nullptr;
}

Summarizer::Pass Summarizer::generate(const PromptFrame& frame, std::span<const TokenId> doc, bool stream,
                                      SummarizeProgress progress, const SummarizeCallbacks& cb) {
    const Tokenizer& tok = model_->tokenizer();
    prompt_.clear();
    prompt_.insert(prompt_.end(), frame.prefix.begin(), frame.prefix.end());
    prompt_.insert(prompt_.end(), doc.begin(), doc.end());
    prompt_.insert(prompt_.end(), frame.suffix.begin(), frame.suffix.end());
    const int64_t n_prompt = static_cast<int64_t>(prompt_.size());
    Session& session       = session_for(n_prompt + params_.max_tokens);
    auto check_interrupt   = [&cb] {
        if (cb.interrupted != nullptr && *cb.interrupted != 0) fail(Status::Interrupted, "interrupted");
    };

    Pass pass;
    pass.n_prompt      = n_prompt;
    progress.total     = n_prompt;
    const auto t0      = std::chrono::steady_clock::now();
    const int64_t step = params_.n_ubatch;
    for (int64_t c0 = 0; c0 < n_prompt; c0 += step) {
        check_interrupt();
        const int64_t n = std::min(step, n_prompt - c0);
        const std::span<const TokenId> chunk(prompt_.data() + c0, static_cast<size_t>(n));
        if (c0 + n < n_prompt)
            session.eval(chunk, {}, nullptr);
        else
            session.eval_last(chunk, logits_.data());
        progress.done              = c0 + n;
        const double dt            = seconds_since(t0);
        progress.tokens_per_second = double(prefill_tok_total_ + progress.done) / std::max(prefill_s_total_ + dt, 1e-9);
        if (cb.on_progress) cb.on_progress(progress);
    }
    pass.prefill_s = seconds_since(t0);
    prefill_s_total_ += pass.prefill_s;
    prefill_tok_total_ += n_prompt;
    progress.generating = true;
    if (cb.on_progress) cb.on_progress(progress);

    Sampler sampler(params_.sampler, model_->hparams().n_vocab);
    generated_.clear();
    pass.stop_reason = "max_tokens";
    const auto t1    = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < params_.max_tokens; ++i) {
        check_interrupt();
        const TokenId next = sampler.sample(logits_);
        if (tok.is_end_of_generation(next)) {
            pass.stop_reason = "eos";
            break;
        }
        generated_.push_back(next);
        const std::string piece = tok.piece(next);
        pass.text += piece;
        if (stream && cb.on_text) cb.on_text(piece);
        if (repeats_at_end(generated_)) {
            pass.stop_reason = "repetition";
            break;
        }
        if (i + 1 < params_.max_tokens) session.eval_last(std::span<const TokenId>(&next, 1), logits_.data());
    }
    pass.generate_s  = seconds_since(t1);
    pass.n_generated = static_cast<int64_t>(generated_.size());
    if (OffloadPipeline* p = session.offload()) accumulate(offload_total_, p->stats());
    return pass;
}

SummaryResult Summarizer::run(std::string_view document, const SummarizeCallbacks& cb) {
    const Tokenizer& tok     = model_->tokenizer();
    std::vector<TokenId> doc = encode_text(tok, document);
    if (doc.empty()) fail(Status::InvalidArg, "the document is empty");
    SummaryResult r;
    r.n_doc_tokens     = static_cast<int64_t>(doc.size());
    prefill_s_total_   = 0;
    prefill_tok_total_ = 0;
    offload_total_     = {};

    for (int32_t level = 0;; ++level) {
        const PromptFrame& frame = level == 0 ? first_frame_ : reduce_frame_;
        const int64_t overhead   = static_cast<int64_t>(frame.prefix.size() + frame.suffix.size()) + params_.max_tokens;
        const int64_t cap        = n_ctx_max_ - overhead;
        const int64_t n_doc      = static_cast<int64_t>(doc.size());
        if (n_doc <= cap) {
            SummarizeProgress progress;
            progress.level = level;
            Pass pass      = generate(frame, doc, /*stream=*/true, progress, cb);
            r.summary      = trim(pass.text);
            r.n_prompt_tokens += pass.n_prompt;
            r.n_generated = pass.n_generated;
            r.n_generated_total += pass.n_generated;
            r.prefill_seconds += pass.prefill_s;
            r.generate_seconds += pass.generate_s;
            r.stop_reason = pass.stop_reason;
            r.n_levels    = level + 1;
            r.n_ctx       = session_->params().n_ctx;
            r.offload     = offload_total_;
            return r;
        }
        if (!params_.allow_chunking)
            fail(Status::InvalidArg,
                 "the document is {} tokens; with the prompt ({} tokens) and --max-tokens {} it needs {} tokens, over "
                 "the context limit of {} tokens (drop --no-chunk to summarize it in chunks)",
                 n_doc, overhead - params_.max_tokens, params_.max_tokens, n_doc + overhead, n_ctx_max_);
        // A chunk must leave room for real text, and the summaries of the chunks must be shorter than the chunks,
        // else the recursion would not shrink.
        if (cap < 2 * int64_t(params_.max_tokens) || cap < 32)
            fail(Status::InvalidArg,
                 "the context of {} tokens is too small to summarize a {}-token document in chunks: each chunk would "
                 "hold {} tokens next to the prompt and --max-tokens {}; raise -c/--ctx or lower --max-tokens",
                 n_ctx_max_, n_doc, std::max<int64_t>(cap, 0), params_.max_tokens);
        const int64_t n_chunks  = (n_doc + cap - 1) / cap;
        const int64_t per_chunk = (n_doc + n_chunks - 1) / n_chunks;
        if (level == 0) r.n_chunks = static_cast<int32_t>(n_chunks);
        std::string joined;
        for (int64_t c = 0; c < n_chunks; ++c) {
            const int64_t b = c * per_chunk, e = std::min(n_doc, b + per_chunk);
            SummarizeProgress progress;
            progress.level    = level;
            progress.chunk    = static_cast<int32_t>(c);
            progress.n_chunks = static_cast<int32_t>(n_chunks);
            Pass pass         = generate(frame, std::span<const TokenId>(doc.data() + b, static_cast<size_t>(e - b)),
                                         /*stream=*/false, progress, cb);
            r.n_prompt_tokens += pass.n_prompt;
            r.n_generated_total += pass.n_generated;
            r.prefill_seconds += pass.prefill_s;
            r.generate_seconds += pass.generate_s;
            const std::string s = trim(pass.text);
            if (s.empty()) continue;
            if (!joined.empty()) joined += "\n\n";
            joined += s;
        }
        std::vector<TokenId> next = encode_text(tok, joined);
        if (next.empty()) {
            // No chunk produced any text: nothing to reduce. Say so rather than inventing a summary.
            r.summary.clear();
            r.stop_reason = "eos";
            r.n_levels    = level + 1;
            r.n_ctx       = session_->params().n_ctx;
            r.offload     = offload_total_;
            return r;
        }
        if (next.size() >= doc.size())
            fail(Status::InvalidArg,
                 "map-reduce does not converge: the chunk summaries ({} tokens) are not shorter than their text ({} "
                 "tokens); lower --max-tokens or raise -c/--ctx",
                 next.size(), doc.size());
        doc = std::move(next);
    }
}

}  // namespace butler
