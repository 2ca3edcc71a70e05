// SPDX-License-Identifier: MIT
// DeviceForward: one decode step (a single token) of the whole model on the offload pipeline's device, built from
// the device's kernel table (runtime/device.h): the weights resident in device memory in their file types, the
// sliding-window layers' K/V in device rings, every matmul a gemv, the norms, RoPE, activations and residual adds as
// kernels; the global layers' attention goes through the offload pipeline (select -> copy -> split attention ->
// merge), which is driven from the host: the step copies that layer's q, k and v to pinned host memory, waits for
// them, and copies the attention output back. Prefill runs on the CPU (Session::forward_chunk), and with
// prefill_tokens > 0 its matrix products come here (MatmulOffload): the chunk's activations go to the device, the
// resident weights are multiplied there (KernelTable::gemm: dequantized tiles into the device's GEMM), and the
// products come back; the offloaded layers' attention runs on the device too (the pipeline's chunked prefill);
// norms, RoPE and the sliding-window layers' attention stay on the CPU.
//
// On cpu and emu the same step runs the CPU kernels in stream order (the cross-device test compares it with the
// CPU forward); on cuda it is what keeps a decode step's time off the host.
//
// Sliding-window rings: the session keeps host rings for its CPU chunks; the device rings mirror their layout
// ((n_head_kv, cap, head_dim) in kv_type, position p in slot p % cap), so switching sides is one copy per ring.
// Memory: everything is allocated in the constructor; step() allocates nothing.
// Threading: one caller thread (the session's).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "cpu_kernels/matmul.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tokenizer.h"
#include "runtime/weights.h"

namespace butler {

class Model;
class OffloadPipeline;

class DeviceForward final : public MatmulOffload {
public:
    // swa_cap: positions of each sliding-window ring (the session's). Every layer must be either sliding-window or
    // offloaded by `pipeline`. prefill_tokens: the most tokens of one offloaded matrix product (the session's chunk;
    // 0: none are taken). Error(Oom) naming what did not fit the device's memory.
    DeviceForward(const Model& model, OffloadPipeline& pipeline, int64_t swa_cap, DType kv_type,
                  int64_t prefill_tokens = 0);
    ~DeviceForward() override;
    DeviceForward(const DeviceForward&)            = delete;
    DeviceForward& operator=(const DeviceForward&) = delete;

    // Device memory the constructor allocates for this model: the weights it uploads (output projection, layer
    // matrices, norms and biases; the token embeddings stay on the host), the rings and the scratch.
    // prefill_tokens as for the constructor (its staging of activations and products, and the GEMM's tile).
    static uint64_t device_bytes(const Model& model, int64_t swa_cap, DType kv_type, int64_t prefill_tokens = 0);

    // MatmulOffload: takes products of 1 .. prefill_tokens tokens with the model's layer matrices (looked up by
    // their host data); returns when y is written. Allocates nothing.
    bool offload_matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int64_t ldy) override;

    // Copies sliding-window layer `layer`'s ring between host images (n_head_kv, cap, head_dim[_v]) in kv_type and
    // the device; returns when the copy is done.
    void upload_ring(int32_t layer, const uint8_t* k, const uint8_t* v);
    void download_ring(int32_t layer, uint8_t* k, uint8_t* v);

    // Runs `token` at position pos (K/V of positions < pos in place: rings and the pipeline's host store). Writes
    // the final hidden state after the output norm to hidden_out (n_embd) and the logits, with the model's
    // soft-capping, to logits_out (n_vocab) when they are not null. Returns when both are written.
    void step(TokenId token, int64_t pos, float* hidden_out, float* logits_out);

private:
    struct Matrix {
        uint32_t type = 0;
        const void* w = nullptr;
        int64_t n_rows = 0, n_cols = 0;
    };
    struct Layer {
        const float *attn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr, *attn_post_norm = nullptr;
        const float *ffn_norm = nullptr, *ffn_post_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr;
        Matrix wq, wk, wv, wo, gate, up, down;
        Buffer k_ring, v_ring;  // sliding-window layers: (n_head_kv, cap, head_dim[_v]) in kv_type
        bool swa = false;
    };

    const float* upload_floats(const float* host, int64_t n);
    Matrix upload_matrix(const WeightMatrix& m);
    void gemv(const Matrix& m, const float* x, float* y);
    void rmsnorm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n);
    void add(float* y, const float* x, int64_t n);
    // Waits for the stream, then copies device floats to pinned host memory (and the other way) in stream order.
    void to_host(float* host, const float* dev, int64_t n);
    void to_device(float* dev, const float* host, int64_t n);

    const Model& model_;
    OffloadPipeline& pipeline_;
    Device& device_;
    std::unique_ptr<Stream> stream_;
    DType kv_type_;
    int64_t swa_cap_;
    std::vector<Buffer> weights_;  // every uploaded tensor
    std::vector<Layer> layers_;
    Matrix output_;
    const float* output_norm_ = nullptr;
    std::vector<float> inv_freq_global_, inv_freq_local_;
    // Device scratch of one token.
    Buffer x_, xn_, q_, k_, v_, attn_, o_, gate_, up_, logits_, scores_, lse_;
    // Pinned host staging: the embedded token, RoPE tables (global cos|sin, local cos|sin), the window's ring
    // slots, and a global layer's q, k, v, attention input (producers) and attention output.
    Buffer embd_host_, rope_host_, window_slots_, q_host_, k_host_, v_host_, xn_host_, attn_host_;
    // Argument arenas: sized in the constructor for one step, cleared at its start (the stream has run the previous
    // step's work by then); pushes never reallocate, so enqueued work keeps valid argument pointers.
    std::vector<GemvArgs> gemv_args_;
    std::vector<RmsNormArgs> rms_args_;
    std::vector<RopeArgs> rope_args_;
    std::vector<GluArgs> glu_args_;
    std::vector<AddArgs> add_args_;
    std::vector<ScaleArgs> scale_args_;
    std::vector<StoreRowArgs> store_args_;
    std::vector<AttnPartialArgs> attn_args_;
    // Prefill products: the uploaded matrices by their host data, the staging of a chunk's activations (x) and
    // products (y), the GEMM's dequantized tile (tile_floats_ floats) and its arguments.
    std::unordered_map<const void*, Matrix> by_host_;
    int64_t prefill_tokens_ = 0, tile_floats_ = 0, prefill_cols_ = 0, prefill_rows_ = 0;
    Buffer prefill_x_, prefill_y_, prefill_tile_;
    GemmArgs gemm_args_{};
};

}  // namespace butler
