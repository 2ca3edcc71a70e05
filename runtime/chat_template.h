// SPDX-License-Identifier: MIT
// The built-in chat templates (gemma3, llama3, chatml, mistral) and the completion-style prompt of base models,
// built from token pieces: the template's own markers are encoded with special-token parsing ON, every piece of
// user or document text with it OFF, so a document that contains "<end_of_turn>" stays text (DESIGN.md).
// We do not run the Jinja template stored in the GGUF; we recognise which family it belongs to by its markers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer.h"

namespace butler {

enum class PromptKind {
    Completion,  // no chat template (a base model): the document, then a "Summary:"-style cue
    Gemma3,      // <start_of_turn>user\n ... <end_of_turn>\n<start_of_turn>model\n
    Llama3,      // <|start_header_id|>user<|end_header_id|>\n\n ... <|eot_id|><|start_header_id|>assistant...
    ChatMl,      // <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n   (qwen2)
    Mistral,     // [INST] ... [/INST]
};

// "completion", "gemma3", "llama3", "chatml", "mistral".
const char* prompt_kind_name(PromptKind kind);
// Accepts the names above and "none" (= completion); nullopt otherwise.
std::optional<PromptKind> parse_prompt_kind(std::string_view name);

struct TemplateMatch {
    PromptKind kind = PromptKind::Completion;
    bool recognized = true;  // false: the file has a chat template we do not know (completion is used)
};
// The family of a GGUF `tokenizer.chat_template` string (nullptr or empty: a base model -> Completion).
TemplateMatch match_chat_template(const std::string* chat_template);

// A user turn holding `before` + DOCUMENT + `after` (the completion kind has no turn: just BOS, the texts and
// the document). The document's tokens go between prefix and suffix, so long documents can be cut into chunks
// without re-encoding the template.
struct PromptFrame {
    std::vector<TokenId> prefix;  // BOS (when the vocabulary adds one), opening markers, `before` text
    std::vector<TokenId> suffix;  // `after` text, closing markers, the assistant turn's opening
};

// Error(InvalidArg) when a template needs a control token the vocabulary lacks (e.g. --template gemma3 on a
// model without <start_of_turn>); mistral's [INST] markers are encoded as text where they are not tokens, as
// the template text itself would be.
PromptFrame build_prompt_frame(const Tokenizer& tok, PromptKind kind, std::string_view before, std::string_view after);

// Document text -> ids with special-token parsing OFF and no BOS/EOS.
std::vector<TokenId> encode_text(const Tokenizer& tok, std::string_view text);

}  // namespace butler
