/* SPDX-License-Identifier: MIT */
/* The C API compiled as C99: errors and thread-local messages, tokenize/detokenize with caller buffers, and two
 * sessions on one model on two threads, each checked against the same work done earlier on one thread.
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
    run seq[2], par[2];
    pthread_t threads[2];
    int32_t n_vocab;
    int i;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    EXPECT(butler_api_version() == BUTLER_API_VERSION);
    EXPECT(butler_device_count() >= 1);

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

    sp = butler_session_default_params();
    sp.selector = "h2o";
    EXPECT(butler_session_create(model, &sp, &s) == BUTLER_ERR_UNSUPPORTED);
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

    butler_model_free(model);
    if (g_failures == 0) printf("c api: all checks passed\n");
    return g_failures == 0 ? 0 : 1;
}
