// SPDX-License-Identifier: MIT
// The `butler` command line: one binary, one subcommand per job.
#include <cstdio>
#include <exception>

#include "apps/common.h"
#include "runtime/status.h"

namespace {

constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 bad input (file, model, document), 2 usage, 3 resource exhausted (memory, device memory, "
    "disk), 130 interrupted, 70 internal error (a bug).";

}  // namespace

int main(int argc, char** argv) {
    using namespace butler;
    CLI::App app{"Butler: long-context LLM inference with a learned KV-cache butler."};
    app.footer(kExitCodes);
    app.set_version_flag("--version", BUTLER_VERSION);
    app.require_subcommand(1);
    cli::Action action;
    struct Sub {
        const char* name;
        const char* help;
        cli::Action (*reg)(CLI::App&);
    };
    const Sub subs[] = {
        {"inspect", "print a GGUF file's metadata, tensors and architecture mapping", cli::register_inspect},
        {"tokenize", "tokenize text with the model's tokenizer", cli::register_tokenize},
        {"generate", "generate text from a prompt (streamed to stdout)", cli::register_generate},
        {"perplexity", "perplexity of a text file, in llama.cpp's llama-perplexity convention", cli::register_perplexity},
        {"make-random-model", "write a random-weight GGUF with a real model's exact tensors and hparams",
         cli::register_make_model},
        {"summarize", "summarize a document (text, Markdown, PDF) or a batch of them", cli::register_summarize},
        {"train-predictor", "train a TokenButler predictor on text against the model's own attention",
         cli::register_train_predictor},
        {"bench", "decode latency of Butler's offload against dense offload, CPU attention and all-on-device",
         cli::register_bench},
        {"eval", "sparse attention against dense: perplexity, KL, needle and co-reference accuracy per selector and budget",
         cli::register_eval},
    };
    for (const Sub& s : subs) {
        CLI::App* sub = app.add_subcommand(s.name, s.help);
        sub->footer(kExitCodes);
        cli::Action a = s.reg(*sub);
        sub->callback([&action, a] { action = a; });
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "butler: usage error: %s\nRun 'butler --help' or 'butler SUBCOMMAND --help'.\n", e.what());
        return exit_code(Status::Usage);
    }
    try {
        return action();
    } catch (const Error& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "butler: error: %s\n", e.what());
        return exit_code(e.status());
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "butler: error: out of memory\n");
        return exit_code(Status::Oom);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "butler: internal error: %s\n", e.what());
        return exit_code(Status::Internal);
    }
}
