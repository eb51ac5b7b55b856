/* Audit one transcript for spurious-context bias from C.
 *
 * Build against an installed library:
 *   cc -std=c11 audit.c -o audit $(pkg-config --cflags --libs debias-guard)
 * Run:
 *   ./audit models/SmolLM2-135M-Instruct.Q4_1.gguf
 *           assets/transcripts/multiplication_drill.txt [ITEM_ID]
 */
#include <debias_guard.h>

#include <stdio.h>
#include <stdlib.h>

/* Reads a whole text file into a NUL-terminated buffer (caller frees), or NULL. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = grown;
        }
        for (size_t i = 0; i < n; i++) text[len++] = chunk[i];
    }
    fclose(f);
    if (!text) text = calloc(1, 1);
    else text[len] = '\0';
    return text;
}

/* Prints a failed call's message and releases its error object. */
static int fail(const char *what, dg_status_t status, dg_error_t *err) {
    fprintf(stderr, "%s failed (%s): %s\n", what, dg_status_text(status), dg_error_message(err));
    dg_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf TRANSCRIPT.txt [ITEM_ID]\n", argv[0]);
        return 2;
    }
    const char *item = argc == 4 ? argv[3] : "instructional_dialogue";
    char *transcript = read_file(argv[2]);
    if (!transcript) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    printf("debias-guard %s (header %s)\n", dg_version(), DG_VERSION_STRING);

    dg_error_t *err = NULL;
    dg_model_t *model = NULL;
    dg_status_t st = dg_model_open(argv[1], NULL, &model, &err);
    if (st != DG_STATUS_OK) {
        free(transcript);
        return fail("dg_model_open", st, err);
    }

    dg_audit_options_t options = dg_audit_default_options();
    options.transcript_name = argv[2];
    dg_audit_t *audit = NULL;
    st = dg_audit(model, NULL, &item, 1, transcript, &options, &audit, &err);
    free(transcript);
    if (st != DG_STATUS_OK) {
        dg_model_free(model);
        return fail("dg_audit", st, err);
    }

    const dg_audit_condition_t *c = &audit->items[0].plain;
    printf("%s: neutral score %.3f (label %s), noise floor %.3f, flag threshold %.3f\n",
           audit->items[0].item_id, c->neutral.expected, c->neutral.labels[c->neutral.argmax],
           c->noise_floor, c->flag_threshold);
    printf("  %-16s %8s %8s  %s\n", "category", "mean d", "max|d|", "flagged");
    for (size_t i = 0; i < c->n_categories; i++) {
        const dg_audit_category_t *cat = &c->categories[i];
        printf("  %-16s %+8.3f %8.3f  %s\n", cat->id, cat->mean_delta, cat->max_abs_delta,
               cat->flagged ? "YES" : "no");
    }
    printf("worst: %s/%s moved the score by %.3f (threshold %.3f)\n", audit->worst_item_id,
           audit->worst_category_id, audit->worst_abs_delta, audit->worst_flag_threshold);
    printf("verdict: %s\n", audit->flagged ? "FLAGGED" : "PASS");
    printf("%s\n", audit->summary);

    dg_audit_free(audit);
    dg_model_free(model);
    return 0;
}
