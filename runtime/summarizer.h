// SPDX-License-Identifier: MIT
// Summarizer: one document -> one summary on a Model, the engine behind `butler summarize` (and its batch mode).
//
// A document that fits the context (prompt frame + document + max_tokens) is summarized in one pass. A longer
// one is map-reduced: cut into equal chunks that fit, each chunk summarized, the chunk summaries joined into a
// new (shorter) document, and so on until it fits; the final pass is the only one streamed. Never a silent
// truncation: with allow_chunking off, a document over the context is an Error(InvalidArg) naming the token
// count and the limit.
//
// Offload: with params.offload enabled, every pass runs through the Session's offload pipeline (prefill and the
// first decode token dense, later tokens through the selector at the budget); SummaryResult::offload sums the
// pipeline's counters over the passes of one run().
//
// Threading: one caller thread. Memory: the Session is created for the context the first document needs (at most
// n_ctx_max) and reused; it grows only when a later document needs more.
#pragma once

#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "offload/budget.h"
#include "offload/pipeline.h"
#include "runtime/chat_template.h"
#include "runtime/dtype.h"
#include "runtime/model.h"
#include "runtime/sampler.h"

namespace butler {

class Session;

enum class SummaryStyle { Brief, Detailed, Bullets };
const char* summary_style_name(SummaryStyle s);
// The instruction a chat model gets for each style (also what --help prints).
const char* summary_instruction(SummaryStyle s);
// The cue after the document for a base model (completion prompt).
const char* summary_cue(SummaryStyle s);

struct SummarizeParams {
    PromptKind kind     = PromptKind::Completion;
    SummaryStyle style  = SummaryStyle::Brief;
    int32_t max_tokens  = 256;  // per generated summary (each chunk summary too)
    int32_t n_ctx_max   = 0;    // the context limit in tokens; 0: the model's training context
    int32_t n_ubatch    = 512;  // prefill chunk
    DType kv_type       = DType::F16;
    bool allow_chunking = true;  // false: a document over the context is refused
    SamplerParams sampler;       // temperature <= 0: greedy
    OffloadConfig offload;       // enabled: every pass runs through the offload pipeline (device, selector, budget)
};

struct SummarizeProgress {
    int32_t level            = 0;      // 0: the document itself; 1..: summaries of summaries
    int32_t chunk            = 0;      // index of the prompt being prefilled in this level
    int32_t n_chunks         = 1;      // prompts in this level
    int64_t done             = 0;      // tokens of this prompt prefilled so far
    int64_t total            = 0;      // tokens of this prompt
    double tokens_per_second = 0;      // prefill rate so far, over all prompts
    bool generating          = false;  // prefill done, generating
};

struct SummarizeCallbacks {
    std::function<void(std::string_view)> on_text;              // pieces of the final summary, as generated
    std::function<void(const SummarizeProgress&)> on_progress;  // after each prefill chunk and generation start
    const volatile std::sig_atomic_t* interrupted = nullptr;    // nonzero: stop with Error(Interrupted)
};

struct SummaryResult {
    std::string summary;            // the final summary: whitespace trimmed, ill-formed UTF-8 replaced
    int64_t n_doc_tokens      = 0;  // the document's tokens (text only)
    int64_t n_prompt_tokens   = 0;  // tokens prefilled over all passes
    int64_t n_generated       = 0;  // tokens of the final summary
    int64_t n_generated_total = 0;  // tokens generated over all passes
    int32_t n_chunks          = 1;  // prompts in the first level (1: no map-reduce)
    int32_t n_levels          = 1;  // levels of map-reduce, 1 when the document fit
    int32_t n_ctx             = 0;  // context of the session used
    double prefill_seconds    = 0;
    double generate_seconds   = 0;
    std::string stop_reason;  // of the final pass: "eos", "max_tokens", "repetition"
    OffloadStats offload;     // summed over all passes (zero without offload)
};

class Summarizer {
public:
    Summarizer(std::shared_ptr<const Model> model, const SummarizeParams& params);
    ~Summarizer();
    Summarizer(const Summarizer&)            = delete;
    Summarizer& operator=(const Summarizer&) = delete;

    // Summarizes UTF-8 text (already repaired; see document.h). Error(InvalidArg) for an empty document, a
    // document over the context with allow_chunking off, or a context too small for the prompt and max_tokens;
    // Error(Interrupted) when *callbacks.interrupted becomes nonzero.
    SummaryResult run(std::string_view document, const SummarizeCallbacks& callbacks);

    const SummarizeParams& params() const { return params_; }
    int32_t n_ctx_max() const { return n_ctx_max_; }
    // The pipeline of the session used last (nullptr without offload or before the first run): its device and
    // configuration, for reports. Its own stats() cover only the current pass; SummaryResult::offload has the sum.
    OffloadPipeline* offload_pipeline();

private:
    struct Pass {
        std::string text;
        int64_t n_prompt = 0, n_generated = 0;
        double prefill_s = 0, generate_s = 0;
        std::string stop_reason;
    };
    // Prefills frame.prefix + doc + frame.suffix and generates.
    Pass generate(const PromptFrame& frame, std::span<const TokenId> doc, bool stream, SummarizeProgress progress,
                  const SummarizeCallbacks& cb);
    Session& session_for(int64_t n_tokens);

    std::shared_ptr<const Model> model_;
    SummarizeParams params_;
    int32_t n_ctx_max_ = 0;
    PromptFrame first_frame_, reduce_frame_;
    std::unique_ptr<Session> session_;
    std::vector<float> logits_;    // (n_vocab)
    std::vector<TokenId> prompt_;  // reused
    std::vector<TokenId> generated_;
    double prefill_s_total_    = 0;
    int64_t prefill_tok_total_ = 0;
    OffloadStats offload_total_;  // of the current run()
};

// True when the tail of `ids` is one block repeated: period p (1..64) seen max(4, ceil(16/p)) times in a row.
bool repeats_at_end(std::span<const TokenId> ids);

}  // namespace butler
