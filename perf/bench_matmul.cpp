// SPDX-License-Identifier: MIT
// Prefill matrix products on the CPU, the two ways issue 10 asks to compare, on the model's own layer matrices:
//   tiles + sgemm  the production path (cpu_kernels/matmul.h): W dequantized in row tiles into an f32 scratch, each
//                  tile multiplied with every token by oneDNN's sgemm;
//   blocks         directly on the quantized blocks: every token's activations quantized to 8-bit blocks once, then
//                  the integer dot kernels (quant_dot.h, the decode GEMV's) over row tiles of kRowTile rows for all
//                  tokens, so a tile's weight bytes stay in cache while the tokens pass over them. OpenMP over tiles.
// Reported per matrix of one layer and summed over the layer: milliseconds (best of --repetitions), GFLOP/s (2 n_tok
// n_rows n_cols per product), and the relative difference of the two outputs (the 8-bit activations' rounding).
// Output: a table on stdout; --json FILE writes every row with the machine.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cpu_kernels/matmul.h"
#include "cpu_kernels/quant_dot.h"
#include "perf/harness.h"
#include "runtime/model.h"
#include "runtime/model_path.h"
#include "runtime/status.h"

using namespace butler;

namespace {

constexpr int64_t kRowTile = 16;  // rows whose weight bytes (at most 16 x 2048 bytes of Q8_0 here) stay in L1/L2

// y (n_tok, n_rows) = x . W^T through the integer dot kernels; xq holds n_tok activation rows.
void matmul_blocks(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, std::vector<uint8_t>& xq) {
    const int64_t xq_row = activation_bytes(w.type, w.n_cols);
    xq.resize(size_t(n_tok * xq_row));
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n_tok; ++t) quantize_activation(w.type, x + t * w.n_cols, w.n_cols, xq.data() + t * xq_row);
    const int64_t n_tiles = (w.n_rows + kRowTile - 1) / kRowTile;
#pragma omp parallel for schedule(static)
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const int64_t r0 = tile * kRowTile, r1 = std::min(w.n_rows, r0 + kRowTile);
        for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t r = r0; r < r1; ++r)
                y[t * w.n_rows + r] = dot_row_q(w.type, w.row(r), xq.data() + t * xq_row, w.n_cols);
    }
}

// max |a - b| / max |b| over n values.
double rel_diff(const float* a, const float* b, size_t n) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < n; ++i) {
        err  = std::max(err, std::fabs(double(a[i]) - double(b[i])));
        norm = std::max(norm, std::fabs(double(b[i])));
    }
    return norm > 0 ? err / norm : err;
}

template <typename F>
double best_ms(int reps, F&& run) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        perf::Timer t;
        run();
        best = std::min(best, t.seconds() * 1e3);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"CPU prefill matrix products: dequantized tiles + sgemm vs integer dots on the quantized blocks"};
    std::string model_path, json_path;
    int64_t n_tok = 512;
    int reps = 5, threads = 0, layer = 0;
    app.add_option("-m,--model", model_path, "GGUF model (default: the default model)");
    app.add_option("-n,--n-tok", n_tok, "tokens per product (a prefill chunk; default 512)");
    app.add_option("-l,--layer", layer, "the layer whose matrices are multiplied (default 0)");
    app.add_option("-r,--repetitions", reps, "repetitions (the best is reported; default 5)");
    app.add_option("-t,--threads", threads, "threads (default: all cores)");
    app.add_option("--json", json_path, "write results as JSON to this file");
    CLI11_PARSE(app, argc, argv);
    try {
        if (threads > 0) omp_set_num_threads(threads);
        auto model           = Model::load(resolve_model_path(model_path));
        const ModelWeights& mw = model->weights();
        if (layer < 0 || layer >= int(mw.layers.size()))
            fail(Status::Usage, "layer {} is outside the model's {} layers", layer, mw.layers.size());
        const LayerWeights& L = mw.layers[size_t(layer)];
        struct Named {
            const char* name;
            const WeightMatrix* w;
        };
        const Named mats[] = {{"wq", &L.wq},       {"wk", &L.wk},     {"wv", &L.wv},          {"wo", &L.wo},
                              {"ffn_gate", &L.ffn_gate}, {"ffn_up", &L.ffn_up}, {"ffn_down", &L.ffn_down}};
        int64_t max_cols = 0, max_rows = 0, tile_floats = 0;
        for (const Named& m : mats) {
            max_cols    = std::max(max_cols, m.w->n_cols);
            max_rows    = std::max(max_rows, m.w->n_rows);
            tile_floats = std::max(tile_floats, m.w->n_rows * m.w->n_cols);  // the session's tile: a whole matrix
        }
        MatmulScratch scratch;
        scratch.reserve(tile_floats, max_rows, max_cols);
        std::mt19937 rng(1);
        std::normal_distribution<float> g(0.0f, 1.0f);
        std::vector<float> x(size_t(n_tok * max_cols));
        for (float& v : x) v = g(rng);
        std::vector<float> y_tiles(size_t(n_tok * max_rows)), y_blocks(y_tiles.size());
        std::vector<uint8_t> xq;

        std::printf("model %s, layer %d, %lld tokens, %d threads, %s dot kernels, CPU %s\n", model->path().c_str(),
                    layer, static_cast<long long>(n_tok), omp_get_max_threads(), dot_isa_name(dot_isa()),
                    perf::cpu_model_name().c_str());
        std::printf("| matrix | type | rows x cols | tiles+sgemm ms | GFLOP/s | blocks ms | GFLOP/s | rel diff |\n");
        std::printf("|---|---|---|---|---|---|---|---|\n");
        nlohmann::json rows = nlohmann::json::array();
        double sum_tiles = 0, sum_blocks = 0, flops_total = 0;
        for (const Named& m : mats) {
            const WeightMatrix& w = *m.w;
            const size_t n_out    = size_t(n_tok * w.n_rows);
            const double tiles_ms = best_ms(reps, [&] { matmul(w, x.data(), n_tok, y_tiles.data(), scratch); });
            const double blocks_ms = best_ms(reps, [&] { matmul_blocks(w, x.data(), n_tok, y_blocks.data(), xq); });
            const double diff      = rel_diff(y_blocks.data(), y_tiles.data(), n_out);
            const double flops = 2.0 * double(n_tok) * double(w.n_rows) * double(w.n_cols);
            sum_tiles += tiles_ms;
            sum_blocks += blocks_ms;
            flops_total += flops;
            std::printf("| %s | %s | %lld x %lld | %.2f | %.1f | %.2f | %.1f | %.1e |\n", m.name, std::string(dtype_name(w.type)).c_str(),
                        static_cast<long long>(w.n_rows), static_cast<long long>(w.n_cols), tiles_ms,
                        flops / tiles_ms / 1e6, blocks_ms, flops / blocks_ms / 1e6, diff);
            std::fflush(stdout);
            rows.push_back({{"matrix", m.name},
                            {"type", std::string(dtype_name(w.type))},
                            {"n_rows", w.n_rows},
                            {"n_cols", w.n_cols},
                            {"tiles_sgemm_ms", tiles_ms},
                            {"blocks_ms", blocks_ms},
                            {"rel_diff", diff}});
        }
        std::printf("| layer | | | %.2f | %.1f | %.2f | %.1f | |\n", sum_tiles, flops_total / sum_tiles / 1e6,
                    sum_blocks, flops_total / sum_blocks / 1e6);
        if (!json_path.empty()) {
            const nlohmann::json doc = {{"benchmark", "bench_matmul (prefill products: tiles + sgemm vs blocks)"},
                                        {"model", model->path()},
                                        {"layer", layer},
                                        {"n_tok", n_tok},
                                        {"threads", omp_get_max_threads()},
                                        {"dot_isa", dot_isa_name(dot_isa())},
                                        {"cpu", perf::cpu_model_name()},
                                        {"n_cpus", perf::n_cpus()},
                                        {"repetitions", reps},
                                        {"layer_tiles_sgemm_ms", sum_tiles},
                                        {"layer_blocks_ms", sum_blocks},
                                        {"rows", rows}};
            std::ofstream(json_path) << doc.dump(2) << "\n";
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_matmul: error: %s\n", e.what());
        return exit_code(e.status());
    }
    return 0;
}
