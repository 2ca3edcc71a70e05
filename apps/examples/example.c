/* SPDX-License-Identifier: MIT */
/* libbutler from C: load a model, continue a prompt greedily, print the text and the session's stats.
 *   butler_example [MODEL.gguf [PROMPT [N_TOKENS]]]
 * Without a model it prints the library's version and exits (the install test runs it that way). */
#include <butler/butler.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(butler_status s, const char* what) {
    if (s != BUTLER_OK) {
        fprintf(stderr, "butler_example: %s failed (%d): %s\n", what, (int)s, butler_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    const char* prompt = argc > 2 ? argv[2] : "Once upon a time, there was a little girl named";
    const int n_predict = argc > 3 ? atoi(argv[3]) : 24;
    butler_model* model = NULL;
    butler_session* session = NULL;
    butler_token tokens[512];
    size_t n_tokens = 0;
    char text[256];
    size_t n_text = 0;
    butler_stats stats;
    butler_session_params sp;
    int i, rc = 1;

    printf("libbutler %s, API version %d (header %d)\n", butler_version(), (int)butler_api_version(),
           BUTLER_API_VERSION);
    if (butler_api_version() != BUTLER_API_VERSION) return 1;
    if (argc < 2) return 0;

    if (check(butler_model_load(argv[1], NULL, &model), "butler_model_load")) return 1;
    sp = butler_session_default_params();
    sp.n_ctx = 1024;
    if (check(butler_session_create(model, &sp, &session), "butler_session_create")) goto done;
    /* User text: special-token parsing off. */
    if (check(butler_tokenize(model, prompt, strlen(prompt), 1, 0, tokens, 512, &n_tokens), "butler_tokenize"))
        goto done;
    if (check(butler_prefill(session, tokens, (int32_t)n_tokens), "butler_prefill")) goto done;
    fputs(prompt, stdout);
    {
        butler_token next;
        if (check(butler_sample(session, &next), "butler_sample")) goto done;
        for (i = 0; i < n_predict && !butler_model_is_eog(model, next); ++i) {
            if (check(butler_detokenize(model, &next, 1, 0, text, sizeof text, &n_text), "butler_detokenize"))
                goto done;
            fwrite(text, 1, n_text, stdout);
            fflush(stdout);
            if (check(butler_decode(session, next, NULL, &next), "butler_decode")) goto done;
        }
    }
    if (check(butler_session_stats(session, &stats), "butler_session_stats")) goto done;
    printf("\nprefill %lld tokens in %.1f ms, decoded %lld tokens in %.1f ms\n", (long long)stats.n_prefill_tokens,
           stats.prefill_ms, (long long)stats.n_decode_tokens, stats.decode_ms);
    rc = 0;
done:
    butler_session_free(session);
    butler_model_free(model);
    return rc;
}
