// SPDX-License-Identifier: MIT
// The C API (runtime/include/butler/butler.h): handles wrap the C++ objects, every entry point catches everything
// and turns it into a butler_status with the message in a thread-local string.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "butler/butler.h"
#include "offload/pipeline.h"
#include "runtime/device.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/status.h"

struct butler_model {
    std::shared_ptr<const butler::Model> model;
    int32_t n_threads = 1;  // the OpenMP team size of its sessions
};

struct butler_session {
    std::shared_ptr<const butler::Model> model;
    std::unique_ptr<butler::Session> session;
    std::unique_ptr<butler::Sampler> sampler;
    std::vector<float> logits;  // (n_vocab): of the last token run
    bool has_logits          = false;
    int32_t n_threads        = 1;
    int64_t n_prefill_tokens = 0, n_decode_tokens = 0;
    double prefill_ms = 0, decode_ms = 0;
};

namespace {

using butler::Status;

thread_local std::string t_last_error;

// The log sink is the one piece of process-wide state, as in llama.cpp's llama_log_set.
std::mutex g_log_mutex;
butler_log_fn g_log_fn = nullptr;
void* g_log_user       = nullptr;

void log(int32_t level, const std::string& message) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (g_log_fn != nullptr) g_log_fn(level, message.c_str(), g_log_user);
}

butler_status to_c(Status s) {
    switch (s) {
        case Status::Ok:
            return BUTLER_OK;
        case Status::InvalidArg:
        case Status::Usage:
            return BUTLER_ERR_INVALID_ARG;
        case Status::Io:
            return BUTLER_ERR_IO;
        case Status::Format:
            return BUTLER_ERR_FORMAT;
        case Status::Unsupported:
            return BUTLER_ERR_UNSUPPORTED;
        case Status::Oom:
            return BUTLER_ERR_OOM;
        case Status::Device:
            return BUTLER_ERR_DEVICE;
        case Status::Interrupted:
        case Status::Internal:
            return BUTLER_ERR_INTERNAL;
    }
    return BUTLER_ERR_INTERNAL;
}

butler_status set_error(butler_status s, const std::string& message) {
    t_last_error = message;
    log(BUTLER_LOG_ERROR, message);
    return s;
}

// Runs f, converting every exception into a status. The boundary the style guide asks for: nothing escapes.
template <typename F>
butler_status guarded(const char* fn, F&& f) {
    try {
        return f();
    } catch (const butler::Error& e) {
        return set_error(to_c(e.status()), std::string(fn) + ": " + e.what());
    } catch (const std::bad_alloc&) {
        return set_error(BUTLER_ERR_OOM, std::string(fn) + ": out of memory");
    } catch (const std::exception& e) {
        return set_error(BUTLER_ERR_INTERNAL, std::string(fn) + ": internal error: " + e.what());
    } catch (...) {
        return set_error(BUTLER_ERR_INTERNAL, std::string(fn) + ": internal error (unknown exception)");
    }
}

#define BUTLER_REQUIRE_ARG(cond, what)                                                                \
    do {                                                                                              \
        if (!(cond)) return set_error(BUTLER_ERR_INVALID_ARG, std::string(__func__) + ": " + (what)); \
    } while (0)

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

butler::DType kv_dtype(int32_t t) {
    switch (t) {
        case BUTLER_KV_F16:
            return butler::DType::F16;
        case BUTLER_KV_BF16:
            return butler::DType::BF16;
        case BUTLER_KV_F32:
            return butler::DType::F32;
        default:
            butler::fail(Status::InvalidArg, "kv_type {} is not a butler_kv_type", t);
    }
}

// The session's OffloadConfig from the C params (disabled when no offload field is set).
butler::OffloadConfig offload_config(const butler_session_params& p) {
    butler::OffloadConfig c;
    c.enabled = p.device != nullptr || p.selector != nullptr || p.budget != nullptr || p.budget_tok != 0 ||
                p.device_memory != 0;
    if (!c.enabled) return c;
    if (p.budget_tok < 0) butler::fail(Status::InvalidArg, "budget_tok {} is negative", p.budget_tok);
    if (p.n_sink < 0) butler::fail(Status::InvalidArg, "n_sink {} is negative", p.n_sink);
    if (p.n_recent < -1) butler::fail(Status::InvalidArg, "n_recent {} is below -1", p.n_recent);
    if (p.page_tok <= 0) butler::fail(Status::InvalidArg, "page_tok {} is not positive", p.page_tok);
    c.device   = p.device != nullptr ? p.device : "emu";
    c.selector = p.selector != nullptr ? p.selector : "dense";
    if (p.budget_tok > 0)
        c.budget_tokens = p.budget_tok;
    else
        butler::parse_budget(p.budget != nullptr ? p.budget : "100%", c);
    c.sinks         = p.n_sink;
    c.window        = p.n_recent;
    c.page_tok      = p.page_tok;
    c.attn          = p.cpu_fallback != 0 ? butler::AttnMode::Exact : butler::AttnMode::Sparse;
    c.device_memory = p.device_memory;
    return c;
}

constexpr const char* kDeviceNames[] = {"cpu", "emu"};

}  // namespace

extern "C" {

BUTLER_API int32_t butler_api_version(void) {
    return BUTLER_API_VERSION;
}

BUTLER_API const char* butler_version(void) {
    return BUTLER_VERSION;
}

BUTLER_API const char* butler_last_error(void) {
    return t_last_error.c_str();
}

BUTLER_API void butler_log_set(butler_log_fn fn, void* user) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_fn   = fn;
    g_log_user = user;
}

BUTLER_API int32_t butler_device_count(void) {
    return static_cast<int32_t>(std::size(kDeviceNames));
}

BUTLER_API butler_status butler_device_name(int32_t i, char* buf, size_t capacity, size_t* n_bytes) {
    BUTLER_REQUIRE_ARG(i >= 0 && i < butler_device_count(),
                       fmt::format("no device {} (there are {})", i, butler_device_count()));
    const size_t n = std::strlen(kDeviceNames[i]);
    if (n_bytes != nullptr) *n_bytes = n;
    if (buf == nullptr || capacity < n + 1)
        return set_error(BUTLER_ERR_BUFFER_TOO_SMALL, "butler_device_name: buffer too small");
    std::memcpy(buf, kDeviceNames[i], n + 1);
    return BUTLER_OK;
}

BUTLER_API butler_model_params butler_model_default_params(void) {
    butler_model_params p;
    p.device    = "cpu";
    p.n_threads = 0;
    p.use_mmap  = 1;
    return p;
}

BUTLER_API butler_status butler_model_load(const char* path, const butler_model_params* params, butler_model** out) {
    BUTLER_REQUIRE_ARG(out != nullptr, "out is NULL");
    *out = nullptr;
    BUTLER_REQUIRE_ARG(path != nullptr, "path is NULL");
    return guarded(__func__, [&] {
        const butler_model_params p = params != nullptr ? *params : butler_model_default_params();
        if (p.device != nullptr && std::strcmp(p.device, "cpu") != 0)
            butler::fail(Status::Unsupported, "device '{}': this build runs on the CPU only (device 'cpu')", p.device);
        if (p.n_threads < 0) butler::fail(Status::InvalidArg, "n_threads {} is negative", p.n_threads);
        auto m       = std::make_unique<butler_model>();
        m->model     = butler::Model::load(path);
        m->n_threads = p.n_threads > 0 ? p.n_threads : std::max(1, omp_get_num_procs());
        log(BUTLER_LOG_INFO, fmt::format("loaded '{}': {} parameters, {} layers", path, m->model->n_params(),
                                         m->model->hparams().n_layer));
        *out = m.release();
        return BUTLER_OK;
    });
}

BUTLER_API void butler_model_free(butler_model* model) {
    delete model;
}

BUTLER_API int32_t butler_model_n_vocab(const butler_model* m) {
    return m ? m->model->hparams().n_vocab : 0;
}
BUTLER_API int32_t butler_model_n_ctx_train(const butler_model* m) {
    return m ? m->model->hparams().n_ctx_train : 0;
}
BUTLER_API butler_token butler_model_bos(const butler_model* m) {
    return m ? m->model->tokenizer().bos() : -1;
}
BUTLER_API butler_token butler_model_eos(const butler_model* m) {
    return m ? m->model->tokenizer().eos() : -1;
}
BUTLER_API int32_t butler_model_is_eog(const butler_model* m, butler_token t) {
    return m != nullptr && m->model->tokenizer().is_end_of_generation(t) ? 1 : 0;
}

BUTLER_API butler_status butler_tokenize(const butler_model* model, const char* text, size_t text_len,
                                         int32_t add_special, int32_t parse_special, butler_token* tokens,
                                         size_t capacity, size_t* n_tokens) {
    BUTLER_REQUIRE_ARG(model != nullptr && n_tokens != nullptr, "model or n_tokens is NULL");
    BUTLER_REQUIRE_ARG(text != nullptr || text_len == 0, "text is NULL");
    return guarded(__func__, [&] {
        const std::vector<butler::TokenId> ids =
            model->model->tokenizer().encode(std::string_view(text, text_len), add_special != 0, parse_special != 0);
        *n_tokens = ids.size();
        if (tokens == nullptr || capacity < ids.size())
            return set_error(BUTLER_ERR_BUFFER_TOO_SMALL,
                             fmt::format("butler_tokenize: {} tokens do not fit a buffer of {}", ids.size(), capacity));
        std::copy(ids.begin(), ids.end(), tokens);
        return BUTLER_OK;
    });
}

BUTLER_API butler_status butler_detokenize(const butler_model* model, const butler_token* tokens, size_t n_tokens,
                                           int32_t render_special, char* buf, size_t capacity, size_t* n_bytes) {
    BUTLER_REQUIRE_ARG(model != nullptr && n_bytes != nullptr, "model or n_bytes is NULL");
    BUTLER_REQUIRE_ARG(tokens != nullptr || n_tokens == 0, "tokens is NULL");
    return guarded(__func__, [&] {
        const butler::Tokenizer& tok = model->model->tokenizer();
        std::string s;
        for (size_t i = 0; i < n_tokens; ++i) {
            if (tokens[i] < 0 || tokens[i] >= tok.n_vocab())
                butler::fail(Status::InvalidArg, "token {} at index {} is outside the vocabulary", tokens[i], i);
            s += tok.piece(tokens[i], render_special != 0);
        }
        *n_bytes = s.size();
        if (buf == nullptr || capacity < s.size() + 1)
            return set_error(
                BUTLER_ERR_BUFFER_TOO_SMALL,
                fmt::format("butler_detokenize: {} bytes (+ NUL) do not fit a buffer of {}", s.size(), capacity));
        std::memcpy(buf, s.data(), s.size());
        buf[s.size()] = '\0';
        return BUTLER_OK;
    });
}

BUTLER_API butler_session_params butler_session_default_params(void) {
    butler_session_params p;
    p.n_ctx         = 4096;
    p.n_ubatch      = 512;
    p.kv_type       = BUTLER_KV_F16;
    p.budget_tok    = 0;
    p.n_sink        = 4;
    p.n_recent      = -1;
    p.page_tok      = 16;
    p.selector      = nullptr;
    p.cpu_fallback  = 0;
    p.device        = nullptr;
    p.budget        = nullptr;
    p.device_memory = 0;
    p.temperature   = 0.0f;
    p.top_k         = 40;
    p.top_p         = 0.95f;
    p.min_p         = 0.05f;
    p.seed          = 0xB07713Bu;
    return p;
}

BUTLER_API butler_status butler_session_create(butler_model* model, const butler_session_params* params,
                                               butler_session** out) {
    BUTLER_REQUIRE_ARG(out != nullptr, "out is NULL");
    *out = nullptr;
    BUTLER_REQUIRE_ARG(model != nullptr, "model is NULL");
    return guarded(__func__, [&] {
        const butler_session_params p = params != nullptr ? *params : butler_session_default_params();
        butler::SessionParams sp;
        sp.n_ctx    = p.n_ctx > 0 ? p.n_ctx : model->model->hparams().n_ctx_train;
        sp.n_ubatch = p.n_ubatch;
        sp.kv_type  = kv_dtype(p.kv_type);
        sp.offload  = offload_config(p);
        butler::SamplerParams smp;
        smp.temperature = p.temperature;
        smp.top_k       = p.top_k;
        smp.top_p       = p.top_p;
        smp.min_p       = p.min_p;
        smp.seed        = p.seed;
        auto s          = std::make_unique<butler_session>();
        s->model        = model->model;
        s->n_threads    = model->n_threads;
        // The session sizes its per-thread scratch from the calling thread's team size; every call that runs it
        // sets the same size on its own thread (OpenMP's thread count is per thread), whichever thread that is.
        omp_set_num_threads(s->n_threads);
        s->session = std::make_unique<butler::Session>(s->model, sp);
        s->sampler = std::make_unique<butler::Sampler>(smp, s->model->hparams().n_vocab);
        s->logits.resize(static_cast<size_t>(s->model->hparams().n_vocab));
        log(BUTLER_LOG_INFO, fmt::format("session: {} positions, KV cache {:.1f} MiB{}", sp.n_ctx,
                                         double(s->session->kv_bytes()) / (1 << 20),
                                         sp.offload.enabled ? fmt::format(", offload: device {}, selector {}",
                                                                          sp.offload.device, sp.offload.selector)
                                                            : std::string()));
        *out = s.release();
        return BUTLER_OK;
    });
}

BUTLER_API void butler_session_free(butler_session* session) {
    delete session;
}

BUTLER_API butler_status butler_session_reset(butler_session* s) {
    BUTLER_REQUIRE_ARG(s != nullptr, "session is NULL");
    s->session->reset();
    s->has_logits = false;
    return BUTLER_OK;
}

BUTLER_API int32_t butler_session_n_past(const butler_session* s) {
    return s ? s->session->n_past() : 0;
}

BUTLER_API butler_status butler_prefill(butler_session* s, const butler_token* tokens, int32_t n) {
    BUTLER_REQUIRE_ARG(s != nullptr, "session is NULL");
    BUTLER_REQUIRE_ARG(tokens != nullptr && n > 0, "no tokens");
    return guarded(__func__, [&] {
        omp_set_num_threads(s->n_threads);
        const auto t0 = std::chrono::steady_clock::now();
        s->session->eval_last(std::span<const butler::TokenId>(tokens, static_cast<size_t>(n)), s->logits.data());
        s->has_logits = true;
        s->prefill_ms += ms_since(t0);
        s->n_prefill_tokens += n;
        return BUTLER_OK;
    });
}

BUTLER_API butler_status butler_sample(butler_session* s, butler_token* out) {
    BUTLER_REQUIRE_ARG(s != nullptr && out != nullptr, "session or out is NULL");
    BUTLER_REQUIRE_ARG(s->has_logits, "no logits yet: call butler_prefill first");
    return guarded(__func__, [&] {
        *out = s->sampler->sample(s->logits);
        return BUTLER_OK;
    });
}

BUTLER_API butler_status butler_decode(butler_session* s, butler_token token, float* logits_or_null,
                                       butler_token* next_token_or_null) {
    BUTLER_REQUIRE_ARG(s != nullptr, "session is NULL");
    return guarded(__func__, [&] {
        omp_set_num_threads(s->n_threads);
        const auto t0 = std::chrono::steady_clock::now();
        s->session->eval_last(std::span<const butler::TokenId>(&token, 1), s->logits.data());
        s->has_logits = true;
        s->decode_ms += ms_since(t0);
        ++s->n_decode_tokens;
        if (logits_or_null != nullptr) std::copy(s->logits.begin(), s->logits.end(), logits_or_null);
        if (next_token_or_null != nullptr) *next_token_or_null = s->sampler->sample(s->logits);
        return BUTLER_OK;
    });
}

BUTLER_API butler_status butler_session_logits(const butler_session* s, float* logits, size_t capacity) {
    BUTLER_REQUIRE_ARG(s != nullptr && logits != nullptr, "session or logits is NULL");
    BUTLER_REQUIRE_ARG(s->has_logits, "no logits yet: call butler_prefill first");
    if (capacity < s->logits.size())
        return set_error(
            BUTLER_ERR_BUFFER_TOO_SMALL,
            fmt::format("butler_session_logits: {} logits do not fit a buffer of {}", s->logits.size(), capacity));
    std::copy(s->logits.begin(), s->logits.end(), logits);
    return BUTLER_OK;
}

BUTLER_API butler_status butler_session_stats(const butler_session* s, butler_stats* out) {
    BUTLER_REQUIRE_ARG(s != nullptr && out != nullptr, "session or out is NULL");
    butler_stats st;
    std::memset(&st, 0, sizeof st);
    st.n_past           = s->session->n_past();
    st.n_prefill_tokens = s->n_prefill_tokens;
    st.n_decode_tokens  = s->n_decode_tokens;
    st.prefill_ms       = s->prefill_ms;
    st.decode_ms        = s->decode_ms;
    st.kv_bytes         = s->session->kv_bytes();
    st.hit_rate         = 1.0;
    if (const butler::OffloadPipeline* p = s->session->offload()) {
        const butler::OffloadStats& o = p->stats();
        st.offload                    = 1;
        st.bytes_copied               = o.copy.bytes;
        st.copy_runs                  = o.copy.runs;
        st.hit_rate                   = o.copy.hit_rate();
        st.sparse_steps               = o.sparse_steps;
        st.dense_steps                = o.dense_steps;
        st.select_ms                  = o.select_ms;
        st.cpu_attn_ms                = o.cpu_attn_ms;
        st.device_attn_ms             = o.wait_ms;
    }
    *out = st;
    return BUTLER_OK;
}

}  // extern "C"
