/* SPDX-License-Identifier: MIT */
/* libbutler: the C API of the Butler runtime (C99; usable from C++ and any FFI).
 *
 * Conventions:
 *  - Opaque handles: a butler_model is immutable once loaded and may be shared by any number of sessions on any
 *    threads; a butler_session is one sequence and must be used by one thread at a time. There is no global
 *    mutable state besides the log callback, so two sessions on one model run concurrently.
 *  - Every function that can fail returns butler_status; on failure butler_last_error() (thread-local, valid until
 *    the next failing call on the same thread) holds one line naming the problem. No C++ exception crosses this
 *    boundary.
 *  - Sized integers only; output buffers are owned by the caller, with their capacity passed in. A buffer that is
 *    too small gives BUTLER_ERR_BUFFER_TOO_SMALL and the size needed.
 *  - Parameters come from butler_*_default_params() and are then edited field by field, so code written against
 *    an older header keeps its meaning. BUTLER_API_VERSION grows when the API does; butler_api_version() is the
 *    version of the library actually loaded.
 */
#ifndef BUTLER_BUTLER_H
#define BUTLER_BUTLER_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define BUTLER_API __declspec(dllexport)
#elif defined(__GNUC__)
#define BUTLER_API __attribute__((visibility("default")))
#else
#define BUTLER_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* 2: offload in the session params (device, selector, budget, device_memory) and its counters in butler_stats. */
#define BUTLER_API_VERSION 2

typedef enum butler_status {
    BUTLER_OK = 0,
    BUTLER_ERR_INVALID_ARG = 1,      /* a NULL handle, a value out of range, a prompt over the context */
    BUTLER_ERR_IO = 2,               /* a file that cannot be opened or read */
    BUTLER_ERR_FORMAT = 3,           /* a corrupt or truncated model file */
    BUTLER_ERR_UNSUPPORTED = 4,      /* a valid request this build does not handle (architecture, device, selector) */
    BUTLER_ERR_OOM = 5,              /* host or device memory exhausted */
    BUTLER_ERR_DEVICE = 6,           /* a device call failed */
    BUTLER_ERR_INTERNAL = 7,         /* a bug: please report the message */
    BUTLER_ERR_BUFFER_TOO_SMALL = 8  /* the caller's buffer is too small; the size needed was written */
} butler_status;

typedef int32_t butler_token;
typedef struct butler_model butler_model;
typedef struct butler_session butler_session;

typedef enum butler_kv_type { BUTLER_KV_F16 = 0, BUTLER_KV_BF16 = 1, BUTLER_KV_F32 = 2 } butler_kv_type;

typedef struct butler_model_params {
    const char* device; /* where the weights run: "cpu" (or NULL), the only one for now (else UNSUPPORTED). The
                           offload device of a session's KV cache is butler_session_params.device */
    int32_t n_threads;  /* CPU threads for this model's sessions; 0: all cores */
    int32_t use_mmap;   /* 1: map the file (the only mode for now) */
} butler_model_params;

typedef struct butler_session_params {
    int32_t n_ctx;          /* positions the session holds; 0: the model's training context */
    int32_t n_ubatch;       /* tokens per prefill chunk */
    int32_t kv_type;        /* a butler_kv_type */
    /* Offload (DESIGN.md "Budget"): the global-attention layers' K/V live in host memory and each decode step
       copies the rows the selector picks to the device, as `butler generate --device --selector --budget`. It is
       on when any of device, selector, budget is non-NULL or budget_tok or device_memory is non-zero; off, every
       layer attends densely on the CPU. An unknown device, selector or budget string: BUTLER_ERR_INVALID_ARG; a
       device this build lacks ("cuda:N"): BUTLER_ERR_UNSUPPORTED; slots over device_memory: BUTLER_ERR_OOM. */
    int32_t budget_tok;     /* tokens attention may read per (layer, KV head); 0: budget, else 100% (all) */
    int32_t n_sink;         /* attention-sink tokens always kept */
    int32_t n_recent;       /* recent tokens always kept; -1: max(16, budget / 8) */
    int32_t page_tok;       /* host store page in tokens (Quest's page) */
    const char* selector;   /* "dense", "oracle", "streamingllm", "h2o", "snapkv", "quest", ...; NULL: "dense" */
    int32_t cpu_fallback;   /* 1: the CPU attends over the rows not selected (equals dense); 0: sparse */
    const char* device;     /* "emu", "emu:mem=64MiB,pcie_gbps=8,..." or "cpu"; NULL: "emu" */
    const char* budget;     /* "512" (tokens) or "10%" (of the current context); used when budget_tok is 0 */
    uint64_t device_memory; /* the device memory cap in bytes (the emulated device's "VRAM"); 0: the device's own */
    /* Sampling (butler_sample, butler_decode). */
    float temperature;      /* <= 0: greedy */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    uint64_t seed;
} butler_session_params;

typedef struct butler_stats {
    int32_t n_past;             /* positions in the session */
    int64_t n_prefill_tokens;   /* tokens run through butler_prefill */
    int64_t n_decode_tokens;    /* tokens run through butler_decode */
    double prefill_ms;
    double decode_ms;
    uint64_t kv_bytes;          /* the session's KV cache */
    /* Offload counters since the session was created (all 0 without offload, hit_rate 1). */
    int32_t offload;            /* 1 when the session runs through the offload pipeline */
    uint64_t bytes_copied;      /* host->device KV traffic */
    uint64_t copy_runs;         /* coalesced copy runs */
    double hit_rate;            /* share of selected KV rows already resident on the device */
    uint64_t sparse_steps;      /* (layer, decode step) pairs attended through the selector */
    uint64_t dense_steps;       /* (layer, chunk) pairs attended densely: prefill and the first decode token */
    double select_ms;           /* host time choosing tokens */
    double cpu_attn_ms;         /* attention on the CPU over the rows not selected (cpu_fallback) */
    double device_attn_ms;      /* host time blocked on the device's attention and the copies it waits for */
} butler_stats;

/* Log levels of the callback. */
enum { BUTLER_LOG_ERROR = 0, BUTLER_LOG_WARN = 1, BUTLER_LOG_INFO = 2, BUTLER_LOG_DEBUG = 3 };
typedef void (*butler_log_fn)(int32_t level, const char* message, void* user);

BUTLER_API int32_t butler_api_version(void);
BUTLER_API const char* butler_version(void); /* the library version string, e.g. "0.1.0" */
/* The message of this thread's last failed call ("" when none). */
BUTLER_API const char* butler_last_error(void);
/* Sends the library's messages to fn (NULL: silence, the default). Process-wide; fn may be called from any thread
   that uses the library, so it must be thread-safe. */
BUTLER_API void butler_log_set(butler_log_fn fn, void* user);

/* The offload devices this build has: "cpu" and "emu" (an emulated GPU on the CPU). */
BUTLER_API int32_t butler_device_count(void);
/* Name of device i (0 <= i < butler_device_count()) into buf (NUL-terminated); *n_bytes gets its length. */
BUTLER_API butler_status butler_device_name(int32_t i, char* buf, size_t capacity, size_t* n_bytes);

BUTLER_API butler_model_params butler_model_default_params(void);
/* params may be NULL (defaults). On success *out owns the model; free it with butler_model_free. */
BUTLER_API butler_status butler_model_load(const char* path, const butler_model_params* params, butler_model** out);
/* Safe with NULL. Sessions keep the model alive: it may be freed before them. */
BUTLER_API void butler_model_free(butler_model* model);
BUTLER_API int32_t butler_model_n_vocab(const butler_model* model);
BUTLER_API int32_t butler_model_n_ctx_train(const butler_model* model);
BUTLER_API butler_token butler_model_bos(const butler_model* model); /* -1 when none */
BUTLER_API butler_token butler_model_eos(const butler_model* model); /* -1 when none */
/* 1 when token ends generation (EOS, <end_of_turn>-style control tokens). */
BUTLER_API int32_t butler_model_is_eog(const butler_model* model, butler_token token);

/* Text (text_len bytes, UTF-8) -> tokens. add_special: BOS/EOS as the vocabulary says. parse_special: match
   control tokens written in the text (1 only for chat-template markers, never for user or document text).
   *n_tokens gets the count; when it exceeds capacity nothing is written and BUTLER_ERR_BUFFER_TOO_SMALL is
   returned (tokens may then be NULL, to ask for the size). */
BUTLER_API butler_status butler_tokenize(const butler_model* model, const char* text, size_t text_len,
                                         int32_t add_special, int32_t parse_special, butler_token* tokens,
                                         size_t capacity, size_t* n_tokens);
/* Tokens -> UTF-8 bytes into buf, NUL-terminated; *n_bytes gets the length without the NUL. capacity must hold
   the NUL too, else BUTLER_ERR_BUFFER_TOO_SMALL. render_special: write control tokens' text. */
BUTLER_API butler_status butler_detokenize(const butler_model* model, const butler_token* tokens, size_t n_tokens,
                                           int32_t render_special, char* buf, size_t capacity, size_t* n_bytes);

BUTLER_API butler_session_params butler_session_default_params(void);
/* params may be NULL (defaults). */
BUTLER_API butler_status butler_session_create(butler_model* model, const butler_session_params* params,
                                               butler_session** out);
BUTLER_API void butler_session_free(butler_session* session); /* safe with NULL */
/* Forgets every position. */
BUTLER_API butler_status butler_session_reset(butler_session* session);
BUTLER_API int32_t butler_session_n_past(const butler_session* session);

/* Runs n tokens at the next positions (chunked prefill); the logits of the last one become the session's current
   logits. BUTLER_ERR_INVALID_ARG when they do not fit the context. */
BUTLER_API butler_status butler_prefill(butler_session* session, const butler_token* tokens, int32_t n);
/* One decode step: runs token at the next position. logits_or_null (n_vocab floats) receives its logits;
   next_token_or_null receives butler_sample()'s pick from them. */
BUTLER_API butler_status butler_decode(butler_session* session, butler_token token, float* logits_or_null,
                                       butler_token* next_token_or_null);
/* Samples from the current logits with the session's sampling parameters (greedy, or seeded). */
BUTLER_API butler_status butler_sample(butler_session* session, butler_token* out);
/* Copies the current logits (n_vocab floats). */
BUTLER_API butler_status butler_session_logits(const butler_session* session, float* logits, size_t capacity);
/* Counters of the session since it was created (butler_session_reset keeps them). */
BUTLER_API butler_status butler_session_stats(const butler_session* session, butler_stats* out);

#ifdef __cplusplus
}
#endif

#endif /* BUTLER_BUTLER_H */
