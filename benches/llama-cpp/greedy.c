// Greedy continuation with llama.cpp, printing token ids: the reference for hearth's parity tests.
//
//   greedy MODEL.gguf N_PREDICT THREADS < prompts.txt
//
// Each input line is one prompt, JSON-escaped (\n, \t, \\, \" and \uXXXX for ASCII control characters only).
// For each prompt it prints one line: the prompt's token ids, a tab, and the N_PREDICT greedy token ids (EOS is not
// special: generation continues past it). Build: see make_greedy_golden.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

// Decodes the escapes listed above in place; returns the new length.
static size_t unescape(char *s) {
    char *out = s;
    for (char *p = s; *p; p++) {
        if (*p != '\\') { *out++ = *p; continue; }
        p++;
        switch (*p) {
            case 'n': *out++ = '\n'; break;
            case 't': *out++ = '\t'; break;
            case 'r': *out++ = '\r'; break;
            case 'u': { unsigned v = 0; sscanf(p + 1, "%4x", &v); *out++ = (char) v; p += 4; break; }
            default: *out++ = *p; break;
        }
    }
    *out = 0;
    return (size_t) (out - s);
}

static void print_ids(const llama_token *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: greedy MODEL N_PREDICT THREADS < prompts\n"); return 2; }
    const int n_predict = atoi(argv[2]);
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    static char line[1 << 20];
    llama_token *prompt = malloc(sizeof(llama_token) * 65536);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        size_t len = unescape(line);
        int n_prompt = llama_tokenize(vocab, line, (int32_t) len, prompt, 65536, true, true);
        if (n_prompt < 0) { fprintf(stderr, "prompt too long\n"); return 1; }

        // A fresh context per prompt: no state carries over.
        struct llama_context_params cparams = llama_context_default_params();
        cparams.n_ctx = n_prompt + n_predict + 8;
        cparams.n_batch = cparams.n_ctx;
        cparams.n_threads = cparams.n_threads_batch = atoi(argv[3]);
        struct llama_context *ctx = llama_init_from_model(model, cparams);
        struct llama_sampler *greedy = llama_sampler_init_greedy();

        print_ids(prompt, n_prompt);
        printf("\t");
        struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
        llama_token next;
        for (int i = 0; i < n_predict; i++) {
            if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
            next = llama_sampler_sample(greedy, ctx, -1);
            printf(i ? " %d" : "%d", next);
            batch = llama_batch_get_one(&next, 1);
        }
        printf("\n");
        fflush(stdout);
        llama_sampler_free(greedy);
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
