/* SPDX-License-Identifier: MIT */
/* The C API compiled as C99: errors and thread-local messages, tokenize/detokenize with caller buffers, two
 * sessions on one model on two threads, each checked against the same work done earlier on one thread, and
 * sessions through the offload pipeline: exact attention (the CPU attends the rows not selected) equals the plain
 * session, sparse attention copies rows and counts them, a device too small for the slots is BUTLER_ERR_OOM.
 *   butler_c_api_test MODEL.gguf      (tests/test_c_api_driver.cpp writes the tiny fixture and runs this) */
#define _POSIX_C_SOURCE 200809L
#include <butler/butler.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_STEPS 12

static int g_failures = 0;

#define EXPECT(cond)                                                                          \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, butler_last_error());                                              \
            ++g_failures;                                                                     \
        }                                                                                     \
    } while (0)

typedef struct run {
    butler_model* model;
    const char* prompt;
    const char* selector; /* NULL: no offload */
    const char* budget;
    int32_t cpu_fallback;
    butler_stats stats;
    butler_token generated[N_STEPS];
    float* logits; /* (n_vocab): after the last step */
    int ok;
    int error_isolated; /* the other thread's error did not leak into this thread's butler_last_error */
} run;

/* Prompt -> prefill -> N_STEPS greedy decode steps on a fresh session. */
static void* generate(void* arg) {
    run* r = (run*)arg;
    butler_session* s = NULL;
    butler_token tokens[256];
    size_t n = 0;
    butler_token next = -1;
    int i;
    butler_session_params sp = butler_session_default_params();
    sp.n_ctx = 128;
    sp.selector = r->selector;
    sp.budget = r->budget;
    sp.cpu_fallback = r->cpu_fallback;
    if (r->selector != NULL) sp.device = "emu:delay_us=50,seed=5";
    r->ok = 0;
    if (butler_session_create(r->model, &sp, &s) != BUTLER_OK) return NULL;
    if (butler_tokenize(r->model, r->prompt, strlen(r->prompt), 1, 0, tokens, 256, &n) != BUTLER_OK) goto done;
    if (butler_prefill(s, tokens, (int32_t)n) != BUTLER_OK) goto done;
    if (butler_sample(s, &next) != BUTLER_OK) goto done;
    for (i = 0; i < N_STEPS; ++i) {
        r->generated[i] = next;
        if (butler_decode(s, next, r->logits, &next) != BUTLER_OK) goto done;
    }
    r->error_isolated = butler_last_error()[0] == '\0';
    if (butler_session_stats(s, &r->stats) != BUTLER_OK) goto done;
    r->ok = butler_session_n_past(s) == (int32_t)n + N_STEPS;
done:
    butler_session_free(s);
    return NULL;
}

static double max_abs_diff(const float* a, const float* b, int32_t n) {
    double m = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (d > m) m = d;
    }
    return m;
}

int main(int argc, char** argv) {
    butler_model* model = NULL;
    butler_session* s = NULL;
    butler_session_params sp;
    butler_model_params mp;
    butler_token tokens[64];
    size_t n = 0, n_bytes = 0;
    char text[64];
    const char* prompts[2] = {"the cat sat on the hat", "a hat sat at the cat tea"};
    run seq[2], par[2], off;
    char name[8];
    pthread_t threads[2];
    int32_t n_vocab;
    int i;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    EXPECT(butler_api_version() == BUTLER_API_VERSION);
    EXPECT(butler_device_count() == 2);
    EXPECT(butler_device_name(1, name, sizeof name, &n_bytes) == BUTLER_OK);
    EXPECT(strcmp(name, "emu") == 0 && n_bytes == 3);
    EXPECT(butler_device_name(1, name, 3, &n_bytes) == BUTLER_ERR_BUFFER_TOO_SMALL);
    EXPECT(butler_device_name(2, name, sizeof name, &n_bytes) == BUTLER_ERR_INVALID_ARG);

    /* Errors: a status, a message naming the problem, and a NULL handle. */
    model = (butler_model*)&model;
    EXPECT(butler_model_load("/nonexistent/model.gguf", NULL, &model) == BUTLER_ERR_IO);
    EXPECT(model == NULL);
    EXPECT(strstr(butler_last_error(), "/nonexistent/model.gguf") != NULL);
    EXPECT(butler_model_load(argv[1], NULL, NULL) == BUTLER_ERR_INVALID_ARG);
    mp = butler_model_default_params();
    mp.device = "cuda:7";
    EXPECT(butler_model_load(argv[1], &mp, &model) == BUTLER_ERR_UNSUPPORTED);
    mp = butler_model_default_params();
    mp.n_threads = 2;
    EXPECT(butler_model_load(argv[1], &mp, &model) == BUTLER_OK);
    if (model == NULL) return 1;
    n_vocab = butler_model_n_vocab(model);
    EXPECT(n_vocab > 0);

    /* Offload parameters are checked when the session is made (at a context the fixture has). */
    sp = butler_session_default_params();
    sp.n_ctx = 128;
    sp.selector = "no-such-selector";
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_INVALID_ARG);
    EXPECT(s == NULL);
    EXPECT(strstr(butler_last_error(), "no-such-selector") != NULL);
    sp = butler_session_default_params();
    sp.n_ctx = 128;
    sp.budget = "ten percent";
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_INVALID_ARG);
    EXPECT(strstr(butler_last_error(), "ten percent") != NULL);
    sp = butler_session_default_params();
    sp.n_ctx = 128;
    sp.device = "cuda:7";
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_UNSUPPORTED);
    EXPECT(strstr(butler_last_error(), "cuda:7") != NULL);
    sp = butler_session_default_params();
    sp.n_ctx = 128;
    sp.selector = "oracle";
    sp.device_memory = 64; /* bytes: no room for the slots */
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_OOM);
    EXPECT(s == NULL);
    sp = butler_session_default_params();
    sp.n_ctx = 1 << 20;
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_INVALID_ARG);

    /* Caller-owned buffers: too small says how much is needed. */
    EXPECT(butler_tokenize(model, "the cat sat", 11, 0, 0, tokens, 1, &n) == BUTLER_ERR_BUFFER_TOO_SMALL);
    EXPECT(n > 1);
    EXPECT(butler_tokenize(model, "the cat sat", 11, 0, 0, tokens, 64, &n) == BUTLER_OK);
    EXPECT(butler_detokenize(model, tokens, n, 0, text, 4, &n_bytes) == BUTLER_ERR_BUFFER_TOO_SMALL);
    EXPECT(n_bytes == 11);
    EXPECT(butler_detokenize(model, tokens, n, 0, text, sizeof text, &n_bytes) == BUTLER_OK);
    EXPECT(strcmp(text, "the cat sat") == 0);

    /* Sessions on one thread first, then both at once on two threads: the same tokens and logits. */
    for (i = 0; i < 2; ++i) {
        memset(&seq[i], 0, sizeof seq[i]);
        seq[i].model = model;
        seq[i].prompt = prompts[i];
        seq[i].logits = (float*)malloc(sizeof(float) * (size_t)n_vocab);
        generate(&seq[i]);
        EXPECT(seq[i].ok);
        par[i] = seq[i];
        par[i].logits = (float*)malloc(sizeof(float) * (size_t)n_vocab);
        memset(par[i].generated, 0, sizeof par[i].generated);
        par[i].ok = 0;
    }
    /* This thread's error must not show in the workers' butler_last_error. */
    EXPECT(butler_session_create(NULL, NULL, &s) == BUTLER_ERR_INVALID_ARG);
    for (i = 0; i < 2; ++i) EXPECT(pthread_create(&threads[i], NULL, generate, &par[i]) == 0);
    for (i = 0; i < 2; ++i) EXPECT(pthread_join(threads[i], NULL) == 0);
    for (i = 0; i < 2; ++i) {
        EXPECT(par[i].ok);
        EXPECT(par[i].error_isolated);
        EXPECT(memcmp(par[i].generated, seq[i].generated, sizeof seq[i].generated) == 0);
        EXPECT(max_abs_diff(par[i].logits, seq[i].logits, n_vocab) < 1e-4);
        free(seq[i].logits);
        free(par[i].logits);
    }
    /* The two prompts lead to different states: the comparison above could tell the sessions apart. */
    EXPECT(memcmp(seq[0].generated, seq[1].generated, sizeof seq[0].generated) != 0 ||
           butler_model_n_vocab(model) < 3);
    EXPECT(seq[0].stats.offload == 0 && seq[0].stats.bytes_copied == 0);

    /* Offload sessions on two threads at once: oracle at half the context with the CPU attending the rest gives
       the plain session's tokens and (up to summation order) logits; both count their work. */
    for (i = 0; i < 2; ++i) {
        par[i] = seq[i];
        par[i].selector = "oracle";
        par[i].budget = "50%";
        par[i].cpu_fallback = 1;
        par[i].logits = (float*)malloc(sizeof(float) * (size_t)n_vocab);
        memset(par[i].generated, 0, sizeof par[i].generated);
        par[i].ok = 0;
        seq[i].logits = (float*)malloc(sizeof(float) * (size_t)n_vocab);
        generate(&seq[i]); /* the plain run again, for its logits */
    }
    for (i = 0; i < 2; ++i) EXPECT(pthread_create(&threads[i], NULL, generate, &par[i]) == 0);
    for (i = 0; i < 2; ++i) EXPECT(pthread_join(threads[i], NULL) == 0);
    for (i = 0; i < 2; ++i) {
        EXPECT(par[i].ok);
        EXPECT(memcmp(par[i].generated, seq[i].generated, sizeof seq[i].generated) == 0);
        EXPECT(max_abs_diff(par[i].logits, seq[i].logits, n_vocab) < 1e-3);
        EXPECT(par[i].stats.offload == 1);
        EXPECT(par[i].stats.sparse_steps > 0 && par[i].stats.dense_steps > 0);
        EXPECT(par[i].stats.bytes_copied > 0);
        free(seq[i].logits);
        free(par[i].logits);
    }

    /* Sparse attention at a small budget: it runs, copies rows to the device and reports the traffic. */
    memset(&off, 0, sizeof off);
    off.model = model;
    off.prompt = prompts[0];
    off.selector = "quest";
    off.budget = "8";
    off.logits = (float*)malloc(sizeof(float) * (size_t)n_vocab);
    generate(&off);
    EXPECT(off.ok);
    EXPECT(off.stats.offload == 1 && off.stats.sparse_steps > 0 && off.stats.bytes_copied > 0);
    EXPECT(off.stats.hit_rate >= 0.0 && off.stats.hit_rate <= 1.0);
    free(off.logits);

    butler_model_free(model);
    if (g_failures == 0) printf("c api: all checks passed\n");
    return g_failures == 0 ? 0 : 1;
}
