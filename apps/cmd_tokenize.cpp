// SPDX-License-Identifier: MIT
// butler tokenize: text -> token ids (as llama-tokenize prints them).
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "apps/common.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct TokenizeOptions {
    CommonOptions common;
    std::string prompt;
    std::string file;
    bool ids_only = false;
    bool parse_special = false;
    bool no_bos = false;
};

int run_tokenize(const TokenizeOptions& o) {
    if (o.prompt.empty() == o.file.empty()) fail(Status::Usage, "give exactly one of -p/--prompt and -f/--file");
    const std::string text = o.file.empty() ? o.prompt : read_file(o.file);
    auto model = load_model(o.common);
    const Tokenizer& tok = model->tokenizer();
    const std::vector<TokenId> ids = tok.encode(text, !o.no_bos, o.parse_special);
    if (o.common.json) {
        nlohmann::json pieces = nlohmann::json::array();
        for (TokenId id : ids) pieces.push_back(tok.token_text(id));
        std::printf("%s\n", nlohmann::json({{"ids", ids}, {"pieces", pieces}, {"n_tokens", ids.size()}})
                                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                .c_str());
    } else if (o.ids_only) {
        std::printf("[%s]\n", fmt::format("{}", fmt::join(ids, ", ")).c_str());
    } else {
        for (TokenId id : ids) std::printf("%6d -> '%s'\n", id, tok.piece(id, /*render_special=*/true).c_str());
    }
    return 0;
}

}  // namespace

Action register_tokenize(CLI::App& sub) {
    auto o = std::make_shared<TokenizeOptions>();
    add_common_options(sub, o->common);
    sub.add_option("-p,--prompt", o->prompt, "text to tokenize");
    sub.add_option("-f,--file", o->file, "read the text from a file");
    sub.add_flag("--ids", o->ids_only, "print only the ids, as a list");
    sub.add_flag("--parse-special", o->parse_special, "match special (control) tokens written in the text");
    sub.add_flag("--no-bos", o->no_bos, "do not add BOS");
    return [o] { return run_tokenize(*o); };
}

}  // namespace butler::cli
