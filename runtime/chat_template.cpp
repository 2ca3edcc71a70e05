// SPDX-License-Identifier: MIT
#include "runtime/chat_template.h"

#include "runtime/status.h"

namespace butler {
namespace {

struct Piece {
    bool special;  // a template marker: must be one control token (except where `optional_token`)
    std::string text;
    bool optional_token = false;
};

void append_marker(const Tokenizer& tok, PromptKind kind, const Piece& p, std::vector<TokenId>& out) {
    const std::vector<TokenId> ids = tok.encode(p.text, /*add_special=*/false, /*parse_special=*/true);
    const bool single_control      = ids.size() == 1 && tok.token_type(ids[0]) == TokenType::Control;
    if (!single_control && !p.optional_token)
        fail(Status::InvalidArg, "the {} chat template needs the control token {}, which this model's vocabulary lacks",
             prompt_kind_name(kind), p.text);
    out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace

const char* prompt_kind_name(PromptKind kind) {
    switch (kind) {
        case PromptKind::Completion:
            return "completion";
        case PromptKind::Gemma3:
            return "gemma3";
        case PromptKind::Llama3:
            return "llama3";
        case PromptKind::ChatMl:
            return "chatml";
        case PromptKind::Mistral:
            return "mistral";
    }
    return "?";
}

std::optional<PromptKind> parse_prompt_kind(std::string_view name) {
    if (name == "completion" || name == "none") return PromptKind::Completion;
    if (name == "gemma3" || name == "gemma") return PromptKind::Gemma3;
    if (name == "llama3") return PromptKind::Llama3;
    if (name == "chatml" || name == "qwen2") return PromptKind::ChatMl;
    if (name == "mistral") return PromptKind::Mistral;
    return std::nullopt;
}

TemplateMatch match_chat_template(const std::string* t) {
    if (t == nullptr || t->empty()) return {PromptKind::Completion, true};
    // The most specific markers first: a llama3 template never contains <|im_start|>, but some chatml-derived
    // templates mention [INST] in comments, so [INST] is tried last.
    if (t->find("<start_of_turn>") != std::string::npos) return {PromptKind::Gemma3, true};
    if (t->find("<|start_header_id|>") != std::string::npos) return {PromptKind::Llama3, true};
    if (t->find("<|im_start|>") != std::string::npos) return {PromptKind::ChatMl, true};
    if (t->find("[INST]") != std::string::npos) return {PromptKind::Mistral, true};
    return {PromptKind::Completion, false};
}

std::vector<TokenId> encode_text(const Tokenizer& tok, std::string_view text) {
    return tok.encode(text, /*add_special=*/false, /*parse_special=*/false);
}

PromptFrame build_prompt_frame(const Tokenizer& tok, PromptKind kind, std::string_view before, std::string_view after) {
    const std::string b(before), a(after);
    std::vector<Piece> head, tail;
    switch (kind) {
        case PromptKind::Completion:
            head = {{false, b}};
            tail = {{false, a}};
            break;
        case PromptKind::Gemma3:
            head = {{true, "<start_of_turn>"}, {false, "user\n" + b}};
            tail = {{false, a}, {true, "<end_of_turn>"}, {false, "\n"}, {true, "<start_of_turn>"}, {false, "model\n"}};
            break;
        case PromptKind::Llama3:
            head = {{true, "<|start_header_id|>"}, {false, "user"}, {true, "<|end_header_id|>"}, {false, "\n\n" + b}};
            tail = {{false, a},           {true, "<|eot_id|>"},        {true, "<|start_header_id|>"},
                    {false, "assistant"}, {true, "<|end_header_id|>"}, {false, "\n\n"}};
            break;
        case PromptKind::ChatMl:
            head = {{true, "<|im_start|>"}, {false, "user\n" + b}};
            tail = {{false, a}, {true, "<|im_end|>"}, {false, "\n"}, {true, "<|im_start|>"}, {false, "assistant\n"}};
            break;
        case PromptKind::Mistral:
            head = {{true, "[INST]", true}, {false, " " + b}};
            tail = {{false, a + " "}, {true, "[/INST]", true}};
            break;
    }
    PromptFrame f;
    if (tok.add_bos() && tok.bos() >= 0) f.prefix.push_back(tok.bos());
    auto emit = [&](const std::vector<Piece>& pieces, std::vector<TokenId>& out) {
        for (const Piece& p : pieces) {
            if (p.special) {
                append_marker(tok, kind, p, out);
            } else if (!p.text.empty()) {
                const std::vector<TokenId> ids = encode_text(tok, p.text);
                out.insert(out.end(), ids.begin(), ids.end());
            }
        }
    };
    emit(head, f.prefix);
    emit(tail, f.suffix);
    return f;
}

}  // namespace butler
