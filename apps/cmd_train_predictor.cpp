// SPDX-License-Identifier: MIT
// butler train-predictor: fits a TokenButler predictor ("project" variant) to the frozen model's own attention
// over text files (predictor/train.h), and writes it as a predictor GGUF.
#include <charconv>
#include <cstdio>

#include "apps/common.h"
#include "predictor/train.h"
#include "runtime/session.h"
#include "runtime/status.h"

namespace butler::cli {
namespace {

struct TrainPredictorOptions {
    CommonOptions common;
    std::vector<std::string> text, eval_text;
    std::string out, init;
    int group = 0, d_dash = 0, intdim = 0, held_out = 4;  // 0: the default (4, 16, 512) or the --init file's
    std::string loss = "ce", loss_layers = "all";
    TrainOptions train;
};

// Token sequences of seq_len tokens (BOS first, as every run starts), cut from the files' text.
std::vector<std::vector<int32_t>> sequences(const Tokenizer& tok, const std::vector<std::string>& files, int seq_len) {
    std::vector<std::vector<int32_t>> out;
    for (const std::string& f : files) {
        const std::vector<TokenId> t = tok.encode(read_file(f), /*add_special=*/false, /*parse_special=*/false);
        const int64_t body = seq_len - 1;
        for (int64_t i = 0; i + body <= int64_t(t.size()); i += body) {
            std::vector<int32_t> s{tok.bos()};
            s.insert(s.end(), t.begin() + i, t.begin() + i + body);
            out.push_back(std::move(s));
        }
    }
    return out;
}

int run_train_predictor(TrainPredictorOptions& o) {
    auto model = load_model(o.common);
    const HParams& hp = model->hparams();
    if (o.train.seq_len < 8 || o.train.seq_len > hp.n_ctx_train)
        fail(Status::InvalidArg, "--seq-len must be in [8, {}] (got {})", hp.n_ctx_train, o.train.seq_len);
    if (o.loss == "ce") o.train.loss = LossKind::CrossEntropy;
    else if (o.loss == "mse") o.train.loss = LossKind::LogitMse;
    else fail(Status::Usage, "--loss must be ce or mse (got '{}')", o.loss);
    o.train.progress = show_progress(o.common) || o.common.progress;
    if (!(o.train.tail > 0.0 && o.train.tail <= 1.0))
        fail(Status::Usage, "--row-tail must be in (0, 1] (got {})", o.train.tail);
    const LossKeys& lk = o.train.loss_keys;
    // Rows come from positions >= first_row; each keeps the keys [sinks, row - window].
    const int64_t first_row = first_sampled_row(o.train.seq_len, o.train.tail);
    if (lk.sinks < 0 || lk.window < 0 || lk.sinks + lk.window > first_row)
        fail(Status::Usage, "--loss-sinks {} and --loss-window {} must be >= 0 and leave keys to every sampled row "
             "(sum <= {}, the first row's position for --seq-len {} --row-tail {})", lk.sinks, lk.window, first_row,
             o.train.seq_len, o.train.tail);
    if (o.loss_layers == "sparse") {
        o.train.loss_layers = runtime_sparse_layers(hp);
    } else if (o.loss_layers != "all") {
        for (const std::string& item : split_list(o.loss_layers)) {
            int32_t l = -1;
            const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), l);
            if (ec != std::errc() || end != item.data() + item.size() || l < 1 || l >= hp.n_layer)
                fail(Status::Usage, "--loss-layers: '{}' is not a consumer layer (1..{}), 'all' or 'sparse'", item,
                     hp.n_layer - 1);
            o.train.loss_layers.push_back(l);
        }
    }

    std::vector<std::vector<int32_t>> train = sequences(model->tokenizer(), o.text, o.train.seq_len);
    std::vector<std::vector<int32_t>> held  = sequences(model->tokenizer(), o.eval_text, o.train.seq_len);
    if (int64_t(held.size()) > o.held_out) held.resize(size_t(o.held_out));
    if (train.empty())
        fail(Status::InvalidArg, "the training text holds no sequence of {} tokens", o.train.seq_len);

    const BaseModelIdentity identity = BaseModelIdentity::of(*model);
    // --init: fine-tune an existing predictor (refused when made for another model), in its shape or reshaped:
    // smaller producer groups (-G), a narrower query MLP (--intdim), a wider importance dimension (--d-dash).
    std::unique_ptr<TokenButlerPredictor> init;
    if (!o.init.empty()) {
        init = TokenButlerPredictor::load(o.init, &identity);
        const PredictorShape& is = init->shape();
        if ((o.group != 0 && o.group != is.group) || (o.intdim != 0 && o.intdim != is.intdim) ||
            (o.d_dash != 0 && o.d_dash != is.d_dash))
            *init = init->reshaped(o.group != 0 ? o.group : is.group, o.intdim != 0 ? o.intdim : is.intdim,
                                   o.d_dash != 0 ? o.d_dash : is.d_dash, o.train.seed);
    }
    TokenButlerPredictor pred =
        init ? std::move(*init)
             : TokenButlerPredictor(PredictorShape::of(hp, o.group != 0 ? o.group : 4, o.d_dash != 0 ? o.d_dash : 16,
                                                       o.intdim != 0 ? o.intdim : 512),
                                    identity, o.train.seed);
    const PredictorShape& shape = pred.shape();
    pred.provenance = fmt::format("butler train-predictor --seq-len {} --rows {} --epochs {} --lr {} --loss {} -G {} "
                                  "--d-dash {} --intdim {} --loss-layers {} --loss-sinks {} --loss-window {}{}{}{} on {} sequences "
                                  "({} tokens)",
                                  o.train.seq_len, o.train.rows, o.train.epochs, o.train.lr, o.loss, shape.group,
                                  shape.d_dash, shape.intdim, o.loss_layers, lk.sinks, lk.window,
                                  o.train.tail != 0.5 ? fmt::format(" --row-tail {}", o.train.tail) : "",
                                  o.train.shuffle ? fmt::format(" --shuffle --seed {}", o.train.seed) : "",
                                  o.init.empty() ? "" : " --init " + o.init, train.size(),
                                  train.size() * size_t(o.train.seq_len));
    const uint64_t n_params = shape.n_params();
    std::fprintf(stderr, "predictor: %d producers, G %d, d' %d, intdim %d: %llu parameters = %.3f%% of the model's %llu\n",
                 shape.n_producers(), shape.group, shape.d_dash, shape.intdim, static_cast<unsigned long long>(n_params),
                 100.0 * double(n_params) / double(model->n_params()), static_cast<unsigned long long>(model->n_params()));
    std::fprintf(stderr, "training on %zu sequences of %d tokens, %d epoch(s); %zu held-apart sequences\n", train.size(),
                 o.train.seq_len, o.train.epochs, held.size());

    SessionParams sp;
    sp.n_ctx    = o.train.seq_len;
    sp.n_ubatch = o.train.seq_len;
    sp.kv_type  = DType::F32;
    Session session(model, sp);
    const TrainReport r = train_predictor(pred, session, train, held, o.train, o.out);
    std::fprintf(stderr, "trained %lld steps (%lld tokens) in %.0f s: loss %.4f -> %.4f%s; wrote %s\n",
                 static_cast<long long>(r.steps), static_cast<long long>(r.tokens), r.seconds, r.first_loss,
                 r.last_loss, r.eval_loss >= 0 ? fmt::format(", held-apart {:.4f}", r.eval_loss).c_str() : "",
                 o.out.c_str());
    if (o.common.json)
        std::printf("{\"steps\": %lld, \"tokens\": %lld, \"seconds\": %.1f, \"first_loss\": %.6f, \"last_loss\": %.6f, "
                    "\"eval_loss\": %.6f, \"params\": %llu, \"out\": \"%s\"}\n",
                    static_cast<long long>(r.steps), static_cast<long long>(r.tokens), r.seconds, r.first_loss,
                    r.last_loss, r.eval_loss, static_cast<unsigned long long>(n_params), o.out.c_str());
    return 0;
}

}  // namespace

Action register_train_predictor(CLI::App& sub) {
    auto o = std::make_shared<TrainPredictorOptions>();
    add_common_options(sub, o->common);
    sub.add_option("--text", o->text, "training text files (plain UTF-8)")->required()->check(CLI::ExistingFile);
    sub.add_option("--eval-text", o->eval_text, "held-apart text files: the loss on them is reported at the end")
        ->check(CLI::ExistingFile);
    sub.add_option("--out", o->out, "the predictor file to write (GGUF)")->required();
    sub.add_option("--seq-len", o->train.seq_len, "tokens per training sequence (default 1024)");
    sub.add_option("--rows", o->train.rows, "query rows sampled per sequence (default 256)");
    sub.add_option("--row-tail", o->train.tail,
                   "rows are sampled from the last SHARE of each sequence (default 0.5: its second half, as the paper; "
                   "a larger share also fits earlier positions, which post-RoPE importance keys tell apart)");
    sub.add_option("--epochs", o->train.epochs, "passes over the training sequences (default 1)");
    sub.add_option("--max-steps", o->train.max_steps, "stop after this many steps (0: all)");
    sub.add_flag("--shuffle", o->train.shuffle,
                 "visit the training sequences in a seeded random order (a new one each epoch) instead of file order, "
                 "so that --max-steps draws from every file");
    sub.add_option("--lr", o->train.lr, "peak learning rate of AdamW (default 1e-3; cosine after 10% warm-up)");
    sub.add_option("--clip", o->train.clip, "gradient-norm clip (default 20)");
    sub.add_option("--loss", o->loss, "ce: cross-entropy to the attention softmax (default); mse: MSE on logits");
    sub.add_option("--loss-layers", o->loss_layers,
                   "consumer layers in the loss: all (default), sparse (those the offload runtime sparsifies: layers "
                   ">= 1 without a sliding window) or a comma list");
    sub.add_option("--loss-sinks", o->train.loss_keys.sinks,
                   "leave the first N keys (the attention sinks every selector keeps) out of the loss (default 0)");
    sub.add_option("--loss-window", o->train.loss_keys.window,
                   "leave each row's N most recent keys out of the loss, fitting the predictor to the older keys a "
                   "selector with an N-key recent window ranks (default 0: every key)");
    sub.add_option("-G,--group", o->group,
                   "consumer layers per producer (default 4; with --init, a divisor of its G splits its producers)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--d-dash", o->d_dash,
                   "importance dimension d' (default 16; with --init, a larger one adds dimensions that start at zero)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--intdim", o->intdim,
                   "hidden width of the query MLP (default 512; with --init, a smaller one keeps its strongest units)")
        ->check(CLI::PositiveNumber);
    sub.add_option("--held-out", o->held_out, "held-apart sequences evaluated at the end (default 4)");
    sub.add_option("--seed", o->train.seed, "initialization and row-sampling seed (default 42)");
    sub.add_option("--checkpoint-every", o->train.checkpoint_every, "steps between checkpoints to OUT.ckpt (default 50)");
    sub.add_flag("--resume", o->train.resume, "continue from OUT.ckpt");
    sub.add_option("--init", o->init,
                   "start from this predictor's weights (fine-tuning; its G, d' and intdim are kept unless -G, "
                   "--intdim or --d-dash reshape it) instead of a seeded initialization")
        ->check(CLI::ExistingFile);
    return [o] { return run_train_predictor(*o); };
}

}  // namespace butler::cli
