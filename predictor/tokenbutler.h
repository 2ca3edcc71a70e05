// SPDX-License-Identifier: MIT
// The TokenButler importance predictor, variant "project" (TOKENBUTLER.md §1.3, arXiv 2503.07518 v2).
//
// Producers sit at layers p = 0, G, 2G, ... (p < n_layer - 1); producer p serves the consumer layers p+1 .. p+G
// (those < n_layer), i.e. layer l >= 1 is served by producer ((l-1)/G)*G through slot s = (l-1) % G. Layer 0 is
// never sparsified and has no predictor.
//   importance query   q'(l, h) = [W2 . SiLU(W1 . LayerNorm(x))] (slot s, head h)    (d' values)
//       x: (n_embd) the producer layer's attention input (after its input RMSNorm; what training reads);
//       LayerNorm over n_embd, affine, eps 1e-5; W1 (intdim, n_embd); W2 (G * n_head * d', intdim); no biases.
//   importance key     k'(l, g, t) = K(l, g, t) . W_K(l, g)                           (d' values)
//       K: the real post-RoPE key of layer l, KV head g, token t (head_dim); W_K stored transposed, (d', head_dim).
//   score              S(l, h, t) = q'(l, h) . k'(l, g, t) / sqrt(d') for each query head h of KV group g.
//       One selection serves the group, so selectors rank token t by its predicted attention mass summed over the
//       group, sum_h softmax_t S(l, h, t), as training fits each head's softmax. TOKENBUTLER.md §1.3 takes
//       max_h S(l, h, t), which follows the head with the widest logit range: in the paper view it costs 1.7-2.0x
//       the text KL (butler eval --group-score max, perf/results/eval-simulate-2core.md).
//
// One W_K per (layer, KV head), shared by the query heads of the group, trained that way (the reference code trains
// one per query head and averages them over the group at run time; training the shared matrix directly removes
// that train/run mismatch). All weights are f32.
//
// File: GGUF, general.architecture = "tokenbutler", with the variant, G, d', intdim and the base model's identity
// (architecture, layer/head/dimension counts, a hash of its tensor names, types and shapes); load() against a base
// model refuses a file made for another one, naming both.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace butler {

class GgufFile;
class Model;
struct HParams;

// What a predictor file says about the model it was trained for.
struct BaseModelIdentity {
    std::string arch;  // general.architecture of the base model
    int32_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    uint64_t shape_hash = 0;  // FNV-1a over every tensor's name, type and shape, in file order
    std::string name;         // general.name or the file's stem (messages only)

    static BaseModelIdentity of(const Model& model);
    bool matches(const BaseModelIdentity& o) const;
    std::string describe() const;  // "gemma3 (18 layers, 640 wide, 4/1 heads x 256, shapes 0x...)"
};

struct PredictorShape {
    int32_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    int32_t group = 4;     // G: consumer layers per producer
    int32_t d_dash = 16;   // d': importance dimension
    int32_t intdim = 512;  // I: the query MLP's hidden width

    // The model's layer, width and head counts with the given predictor hyperparameters.
    static PredictorShape of(const HParams& hp, int32_t group, int32_t d_dash, int32_t intdim);
    int32_t n_producers() const { return (n_layer - 2) / group + 1; }  // producers of layers 1 .. n_layer-1
    static int32_t producer_of(int32_t layer, int32_t group) { return ((layer - 1) / group) * group; }
    int32_t producer_index(int32_t layer) const { return (layer - 1) / group; }  // layer >= 1
    int32_t slot_of(int32_t layer) const { return (layer - 1) % group; }
    int64_t q_width() const { return int64_t(group) * n_head * d_dash; }  // W2 rows
    uint64_t n_params() const;
};

class TokenButlerPredictor {
public:
    static constexpr float kLayerNormEps = 1e-5f;
    static constexpr const char* kArch  = "tokenbutler";

    // Xavier-uniform weights (seeded), LayerNorm weight 1 and bias 0, for base model `base`.
    TokenButlerPredictor(const PredictorShape& shape, const BaseModelIdentity& base, uint64_t seed);
    // Loads a predictor file. Error(Io) for a missing file, Error(Format) for a corrupt one or one that is not a
    // predictor; with `base`, Error(InvalidArg) when it was made for another model (the message names both).
    static std::unique_ptr<TokenButlerPredictor> load(const std::string& path, const BaseModelIdentity* base);
    // The same from a parsed GGUF (fuzzing, tests); messages name f.path().
    static std::unique_ptr<TokenButlerPredictor> load(const GgufFile& f, const BaseModelIdentity* base);
    // Writes atomically (temporary file, then rename).
    void save(const std::string& path) const;
    // A copy to fine-tune into another shape:
    //   group   producers every `group` layers, a divisor of shape().group: each new producer's consumers were all
    //           served by one old producer, whose weights it starts from (it reads a later layer's input, which the
    //           fine-tuning then fits);
    //   intdim  a query MLP `intdim` wide (<= shape().intdim), keeping the hidden units with the largest
    //           |W1 row| * |W2 column| over what the producer serves;
    //   d_dash  an importance dimension d_dash >= shape().d_dash: the old dimensions come first (their W2 rows scaled
    //           by sqrt(d_dash / d') against the wider 1/sqrt(d_dash) score scale), the new ones start with zero W2
    //           rows and seeded Xavier W_K rows, so every score is unchanged until training uses them.
    // The same weights when nothing changes. Error(Usage) for a group that does not divide G, a wider intdim, a
    // narrower d' or one above head_dim.
    TokenButlerPredictor reshaped(int32_t group, int32_t intdim, int32_t d_dash, uint64_t seed) const;

    const PredictorShape& shape() const { return shape_; }
    const BaseModelIdentity& base() const { return base_; }
    const char* variant() const { return "project"; }

    // Importance queries of producer p's consumers for one token: out (G, n_head, d'). scratch: >= n_embd + intdim.
    void query(int32_t producer, const float* x, float* out, float* scratch) const;
    // k' (d') of a post-RoPE key row k (head_dim) of layer `layer`, KV head g.
    void project_key(int32_t layer, int32_t g, const float* k, float* out) const;
    // W_K of (layer, g): (d', head_dim), row-major.
    const float* key_proj(int32_t layer, int32_t g) const {
        return key_proj_.data() + (int64_t(layer) * shape_.n_head_kv + g) * shape_.d_dash * shape_.head_dim;
    }

    // The parameters, for training: one flat f32 array per tensor.
    struct Producer {
        std::vector<float> ln_w, ln_b;  // (n_embd)
        std::vector<float> w1;          // (intdim, n_embd)
        std::vector<float> w2;          // (G * n_head * d', intdim)
    };
    std::vector<Producer>& producers() { return producers_; }
    const std::vector<Producer>& producers() const { return producers_; }
    std::vector<float>& key_proj_all() { return key_proj_; }  // (n_layer, n_head_kv, d', head_dim)
    const std::vector<float>& key_proj_all() const { return key_proj_; }

    // Training provenance written into the file (free text, e.g. the command line).
    std::string provenance;

private:
    TokenButlerPredictor() = default;
    PredictorShape shape_;
    BaseModelIdentity base_;
    std::vector<Producer> producers_;
    std::vector<float> key_proj_;
};

// Producer activations of R rows (the training keeps them for the backward pass).
struct ProducerActivations {
    std::vector<float> xhat, y, z, a, qp;  // (R, E) normalized x, (R, E) LayerNorm(x), (R, I) W1 y, (R, I) SiLU, (R, QW)
};
// The query MLP of one producer over R rows x (R, n_embd) at once (sgemm): act.qp (R, G * n_head * d') holds the
// importance queries, row r laid out as query() writes them. Resizes act (no allocation once it is large enough).
void producer_forward(const TokenButlerPredictor::Producer& pr, const PredictorShape& ps, const float* x, int64_t R,
                      ProducerActivations& act);

// Which layers a predictor is fitted to. The offload runtime consults it only on the layers it sparsifies (on
// Gemma 3 the global ones); the paper's simulate view sparsifies every layer >= 1.
enum class PredictorUse { Runtime, EveryLayer };

// Resolves the selector argument "tokenbutler[:PATH]" for a base model: PATH when given, else $BUTLER_PREDICTOR,
// else the predictor for the model's file name beside the model file, in the source tree's predictors/ or in
// <prefix>/share/butler/predictors: <stem>.tokenbutler.gguf (fitted to the runtime's sparse layers) for
// PredictorUse::Runtime; <stem>.tokenbutler-all-layers.gguf (fitted to every layer >= 1) for EveryLayer, falling
// back to the runtime file. Error(Io) naming the places looked at when there is none.
std::string default_predictor_path(const std::string& model_path, PredictorUse use = PredictorUse::Runtime);
// True for "tokenbutler" and "tokenbutler:PATH".
bool is_tokenbutler_selector(const std::string& selector);
// Loads the predictor a "tokenbutler[:PATH]" selector names, checked against `model`.
std::shared_ptr<const TokenButlerPredictor> load_predictor_for(const std::string& selector, const Model& model,
                                                               PredictorUse use = PredictorUse::Runtime);

}  // namespace butler
