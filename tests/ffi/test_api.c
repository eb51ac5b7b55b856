/* Calls every function of the debias-guard C ABI, with valid arguments and with every NULL or
 * invalid one, and checks the results against each other. Built with -Werror and run on a tiny
 * generated model, plainly, under valgrind and under AddressSanitizer.
 *
 * Usage: test_api TINY_MODEL.gguf SCRATCH_DIR
 */
#include "check.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>

static const char *TRANSCRIPT =
    "TEACHER: What do you notice about these two fractions?\n"
    "STUDENT: The bottom numbers are different.\n"
    "TEACHER: Why might that matter when we compare them?\n"
    "STUDENT: Because the pieces are different sizes, so you cannot just look at the top.\n";

static const char *CUSTOM_RUBRIC =
    "{\"version\": 1, \"items\": [{\"id\": \"pacing\", \"name\": \"Pacing\","
    " \"description\": \"How well the lesson's pace fits the students.\","
    " \"question\": \"How well paced is the lesson?\","
    " \"labels\": [\"low\", \"mid\", \"high\"]}]}";

static const char *BAD_UTF8 = "TEACHER: caf\xc3 au lait\n";

/* A compact prompt layout keeps prompts short, so the test runs quickly under valgrind (the tiny
 * model's vocabulary has few merges: about one token per byte). */
static const char *COMPACT_LAYOUT =
    "{\"system\": \"\", \"user_template\": \"{{ transcript }}\\nQ: {{ item.question }} "
    "({{ first }}-{{ last }}){% if instruction %}\\n{{ instruction }}{% endif %}"
    "{% if context %}\\nNote: {{ context }}{% endif %}\"}";

/* A probe catalog with one category (one wording per pole) and one control. */
static const char *SMALL_PROBES =
    "{\"version\": 1, \"categories\": [{\"id\": \"experience\", \"name\": \"Experience\","
    " \"description\": \"Years of teaching.\", \"poles\": {"
    " \"high\": {\"label\": \"veteran\", \"wordings\": [{\"id\": \"experience.high.1\","
    " \"text\": \"The teacher has taught for 25 years.\", \"split\": \"heldout\"}]},"
    " \"low\": {\"label\": \"novice\", \"wordings\": [{\"id\": \"experience.low.1\","
    " \"text\": \"The teacher is in her first year.\", \"split\": \"heldout\"}]}}}],"
    " \"controls\": [{\"id\": \"control.window\", \"text\": \"The room has a window.\","
    " \"split\": \"heldout\"}]}";

/* Out-parameters start at this address; a failed call must leave them there. */
static char sentinel_byte;
#define SENTINEL ((void *)&sentinel_byte)

static const char *scratch;

static const char *scratch_path(const char *name) {
    static char buf[4][4200];
    static int next = 0;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", scratch, name);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* Every distribution must be a proper distribution over its scale. */
static void check_distribution(const dg_distribution_t *d, const char *item_id, size_t n_labels) {
    EXPECT(d->item_id != NULL && strcmp(d->item_id, item_id) == 0);
    EXPECT(d->n_labels == n_labels);
    EXPECT(d->labels != NULL && d->values != NULL && d->probs != NULL);
    double sum = 0.0, expected = 0.0;
    size_t argmax = 0;
    for (size_t i = 0; i < d->n_labels; i++) {
        EXPECT(d->labels[i] != NULL && d->labels[i][0] != '\0');
        EXPECT(d->probs[i] >= 0.0 && d->probs[i] <= 1.0);
        sum += d->probs[i];
        expected += d->probs[i] * d->values[i];
        if (d->probs[i] > d->probs[argmax]) argmax = i;
    }
    EXPECT_NEAR(sum, 1.0, 1e-9);
    EXPECT_NEAR(d->expected, expected, 1e-9);
    EXPECT(d->argmax == argmax);
    EXPECT(d->label_mass > 0.0 && d->label_mass <= 1.0 + 1e-9);
    EXPECT(d->prompt_tokens > 0);
}

static void same_distribution(const dg_distribution_t *a, const dg_distribution_t *b) {
    EXPECT(strcmp(a->item_id, b->item_id) == 0);
    EXPECT(a->n_labels == b->n_labels);
    EXPECT(a->argmax == b->argmax);
    EXPECT(a->prompt_tokens == b->prompt_tokens);
    EXPECT_NEAR(a->expected, b->expected, 1e-5);
    for (size_t i = 0; i < a->n_labels && i < b->n_labels; i++) {
        EXPECT(strcmp(a->labels[i], b->labels[i]) == 0);
        EXPECT_NEAR(a->probs[i], b->probs[i], 1e-5);
    }
}

static void test_version_and_status(void) {
    EXPECT(strcmp(dg_version(), DG_VERSION_STRING) == 0);
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", DG_VERSION_MAJOR, DG_VERSION_MINOR, DG_VERSION_PATCH);
    EXPECT(strcmp(v, DG_VERSION_STRING) == 0);
    EXPECT(DG_VERSION_NUMBER ==
           DG_VERSION_MAJOR * 10000 + DG_VERSION_MINOR * 100 + DG_VERSION_PATCH);

    for (int s = DG_STATUS_OK; s <= DG_STATUS_CANCELLED; s++) {
        EXPECT(strlen(dg_status_text(s)) > 0);
        EXPECT(strcmp(dg_status_text(s), "unknown status") != 0);
    }
    EXPECT(strcmp(dg_status_text(DG_STATUS_OK), "success") == 0);
    EXPECT(strcmp(dg_status_text(-1), "unknown status") == 0);
    EXPECT(strcmp(dg_status_text(DG_STATUS_CANCELLED + 1), "unknown status") == 0);

    /* A NULL error object means "no error". */
    EXPECT(dg_error_status(NULL) == DG_STATUS_OK);
    EXPECT(strcmp(dg_error_message(NULL), "") == 0);
    dg_error_free(NULL);
}

static dg_model_t *test_model(const char *path) {
    dg_model_options_t o = dg_model_default_options();
    EXPECT(o.threads == 0 && o.prefill_chunk == 0);
    EXPECT(o.weight_format == DG_WEIGHT_FORMAT_AUTO);
    EXPECT(o.adapter_path == NULL && o.prompt_layout_json == NULL);
    EXPECT(o.prompt_layout_path == NULL);

    dg_model_t *model = SENTINEL;
    FAILS(DG_STATUS_NULL_ARGUMENT, "`path`", dg_model_open(NULL, NULL, &model, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_model`", dg_model_open(path, NULL, NULL, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`path`", dg_model_open("\xff\xfe.gguf", NULL, &model, &err));
    FAILS(DG_STATUS_IO, "no-such-model.gguf",
          dg_model_open(scratch_path("no-such-model.gguf"), NULL, &model, &err));
    const char *garbage = scratch_path("garbage.gguf");
    write_file(garbage, "this is not a GGUF file, just some text that is long enough to parse");
    FAILS(DG_STATUS_MODEL_INVALID, NULL, dg_model_open(garbage, NULL, &model, &err));
    /* Without an error object only the status comes back. */
    EXPECT(dg_model_open(NULL, NULL, &model, NULL) == DG_STATUS_NULL_ARGUMENT);

    dg_model_options_t bad = dg_model_default_options();
    bad.weight_format = 7;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "weight_format", dg_model_open(path, &bad, &model, &err));
    bad = dg_model_default_options();
    bad.adapter_path = scratch_path("no-such-adapter");
    FAILS(DG_STATUS_IO, "no-such-adapter", dg_model_open(path, &bad, &model, &err));
    bad = dg_model_default_options();
    bad.prompt_layout_json = "{\"answer_prefix\": ";
    FAILS(DG_STATUS_CONFIG, "prompt_layout_json", dg_model_open(path, &bad, &model, &err));
    bad.prompt_layout_json = "{\"no_such_key\": 1}";
    FAILS(DG_STATUS_CONFIG, "no_such_key", dg_model_open(path, &bad, &model, &err));
    bad.prompt_layout_json = "{\"answer_prefix\": \"\xff\"}";
    FAILS(DG_STATUS_INVALID_UTF8, "prompt_layout_json", dg_model_open(path, &bad, &model, &err));
    bad.prompt_layout_json = "{\"answer_prefix\": \"  \"}";
    FAILS(DG_STATUS_INVALID_ARGUMENT, "answer prefix", dg_model_open(path, &bad, &model, &err));
    remove(scratch_path("layout.json")); /* left by an earlier run */
    bad.prompt_layout_path = scratch_path("layout.json");
    FAILS(DG_STATUS_INVALID_ARGUMENT, "not both", dg_model_open(path, &bad, &model, &err));
    bad.prompt_layout_json = NULL;
    FAILS(DG_STATUS_IO, "layout.json", dg_model_open(path, &bad, &model, &err));
    write_file(scratch_path("layout.json"), "{\"answer_prefix\": 7}");
    FAILS(DG_STATUS_CONFIG, "layout.json", dg_model_open(path, &bad, &model, &err));
    EXPECT(model == SENTINEL);

    o.threads = 2;
    o.prefill_chunk = 64;
    o.weight_format = DG_WEIGHT_FORMAT_DENSE_F32;
    const char *layout = scratch_path("compact-layout.json");
    write_file(layout, COMPACT_LAYOUT);
    o.prompt_layout_path = layout;
    OK(dg_model_open(path, &o, &model, &err));
    EXPECT(model != NULL && model != SENTINEL);

    dg_model_info_t info;
    memset(&info, 0xAB, sizeof info);
    dg_model_info_t untouched = info;
    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`", dg_model_get_info(NULL, &info, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_info`", dg_model_get_info(model, NULL, &err));
    EXPECT(memcmp(&info, &untouched, sizeof info) == 0);
    OK(dg_model_get_info(model, &info, &err));
    EXPECT(strcmp(info.architecture, "llama") == 0);
    EXPECT(info.context_length == 4096);
    EXPECT(info.vocab_size > 256);
    EXPECT(info.threads == 2);
    EXPECT(info.load_seconds >= 0.0);
    /* The matrix kernel: one of the named paths (the tiny model is dense f32), static text. */
    const char *kernel = dg_model_kernel_path(model);
    EXPECT(kernel != NULL);
    EXPECT(strcmp(kernel, "avx512") == 0 || strcmp(kernel, "avx2") == 0 ||
           strcmp(kernel, "portable") == 0 || strcmp(kernel, "candle") == 0);
    EXPECT(dg_model_kernel_path(NULL) == NULL);

    /* A second model with NULL options: all defaults, the default (longer) prompt layout. */
    dg_model_t *other = NULL;
    OK(dg_model_open(path, NULL, &other, &err));
    dg_scores_t *a = NULL, *b = NULL;
    const char *item = "teacher_uptake";
    OK(dg_score(model, NULL, &item, 1, TRANSCRIPT, NULL, false, &a, &err));
    OK(dg_score(other, NULL, &item, 1, TRANSCRIPT, NULL, false, &b, &err));
    check_distribution(&a->distributions[0], item, 7);
    check_distribution(&b->distributions[0], item, 7);
    EXPECT(a->distributions[0].prompt_tokens < b->distributions[0].prompt_tokens);
    dg_scores_free(b);
    dg_model_free(other);

    /* The same layout given as JSON text instead of a file gives the same prompts. */
    o = dg_model_default_options();
    o.threads = 1;
    o.prompt_layout_json = COMPACT_LAYOUT;
    OK(dg_model_open(path, &o, &other, &err));
    OK(dg_score(other, NULL, &item, 1, TRANSCRIPT, NULL, false, &b, &err));
    EXPECT(a->distributions[0].prompt_tokens == b->distributions[0].prompt_tokens);
    EXPECT_NEAR(a->distributions[0].expected, b->distributions[0].expected, 1e-5);
    dg_scores_free(a);
    dg_scores_free(b);
    dg_model_free(other);
    dg_model_free(NULL);
    return model;
}

static void test_rubric(void) {
    dg_rubric_t *r = SENTINEL;
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_rubric`", dg_rubric_builtin(NULL, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`json`", dg_rubric_parse(NULL, &r, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_rubric`", dg_rubric_parse(CUSTOM_RUBRIC, NULL, &err));
    FAILS(DG_STATUS_CONFIG, "line", dg_rubric_parse("{\"version\": 1, \"items\": [}", &r, &err));
    FAILS(DG_STATUS_CONFIG, "version",
          dg_rubric_parse("{\"version\": 2, \"items\": []}", &r, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`json`", dg_rubric_parse("{\"version\": \xc0}", &r, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`path`", dg_rubric_load(NULL, &r, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_rubric`", dg_rubric_load("x.json", NULL, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`path`", dg_rubric_load("\xff.json", &r, &err));
    FAILS(DG_STATUS_IO, "missing.json", dg_rubric_load(scratch_path("missing.json"), &r, &err));
    const char *bad = scratch_path("bad-rubric.json");
    write_file(bad, "{\n  \"version\": 1,\n  \"items\": [\n    {\"id\": \"x\"}\n  ]\n}\n");
    FAILS(DG_STATUS_CONFIG, "line 4", dg_rubric_load(bad, &r, &err));
    EXPECT(r == SENTINEL);

    OK(dg_rubric_builtin(&r, &err));
    EXPECT(dg_rubric_item_count(r) == 3);
    EXPECT(strcmp(dg_rubric_item_id(r, 0), "instructional_dialogue") == 0);
    EXPECT(strcmp(dg_rubric_item_id(r, 2), "teacher_uptake") == 0);
    EXPECT(dg_rubric_item_id(r, 3) == NULL);
    EXPECT(dg_rubric_item_id(NULL, 0) == NULL);
    EXPECT(dg_rubric_item_count(NULL) == 0);
    dg_rubric_free(r);

    const char *good = scratch_path("custom-rubric.json");
    write_file(good, CUSTOM_RUBRIC);
    OK(dg_rubric_load(good, &r, &err));
    EXPECT(dg_rubric_item_count(r) == 1);
    EXPECT(strcmp(dg_rubric_item_id(r, 0), "pacing") == 0);
    dg_rubric_free(r);
    dg_rubric_free(NULL);
}

static void test_score(const dg_model_t *model) {
    const char *items[] = {"teacher_uptake", "instructional_dialogue"};
    const char *null_item[] = {NULL};
    const char *unknown[] = {"no_such_item"};
    char long_context[1101];
    memset(long_context, 'a', 1100);
    long_context[1100] = '\0';
    dg_scores_t *s = SENTINEL;

    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`",
          dg_score(NULL, NULL, NULL, 0, TRANSCRIPT, NULL, false, &s, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_scores`",
          dg_score(model, NULL, NULL, 0, TRANSCRIPT, NULL, false, NULL, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`transcript`",
          dg_score(model, NULL, NULL, 0, NULL, NULL, false, &s, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_ids`",
          dg_score(model, NULL, NULL, 1, TRANSCRIPT, NULL, false, &s, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_ids[0]`",
          dg_score(model, NULL, null_item, 1, TRANSCRIPT, NULL, false, &s, &err));
    FAILS(DG_STATUS_NOT_FOUND, "no_such_item",
          dg_score(model, NULL, unknown, 1, TRANSCRIPT, NULL, false, &s, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "offset 12",
          dg_score(model, NULL, NULL, 0, BAD_UTF8, NULL, false, &s, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "empty",
          dg_score(model, NULL, NULL, 0, "  \n\n ", NULL, false, &s, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "context is empty",
          dg_score(model, NULL, NULL, 0, TRANSCRIPT, "   ", false, &s, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "limit",
          dg_score(model, NULL, NULL, 0, TRANSCRIPT, long_context, false, &s, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`context`",
          dg_score(model, NULL, NULL, 0, TRANSCRIPT, "\xe2\x82", false, &s, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "control token",
          dg_score(model, NULL, NULL, 0, TRANSCRIPT, "<|im_start|>system", false, &s, &err));
    EXPECT(dg_score(NULL, NULL, NULL, 0, NULL, NULL, false, NULL, NULL) ==
           DG_STATUS_NULL_ARGUMENT);
    EXPECT(s == SENTINEL);

    /* Every item of the built-in rubric, in rubric order. */
    dg_scores_t *all = NULL;
    OK(dg_score(model, NULL, NULL, 0, TRANSCRIPT, NULL, false, &all, &err));
    EXPECT(all->count == 3);
    check_distribution(&all->distributions[0], "instructional_dialogue", 7);
    check_distribution(&all->distributions[1], "student_reasoning", 7);
    check_distribution(&all->distributions[2], "teacher_uptake", 7);
    for (size_t i = 0; i < 7; i++) {
        char label[2] = {(char)('1' + i), '\0'};
        EXPECT(strcmp(all->distributions[0].labels[i], label) == 0);
        EXPECT(all->distributions[0].values[i] == (double)(i + 1));
    }

    /* Chosen items come back in the order asked, equal to the full pass. */
    OK(dg_score(model, NULL, items, 2, TRANSCRIPT, NULL, false, &s, &err));
    EXPECT(s->count == 2);
    same_distribution(&s->distributions[0], &all->distributions[2]);
    same_distribution(&s->distributions[1], &all->distributions[0]);
    dg_scores_free(s);

    /* A context and the mitigation instruction make longer prompts. */
    OK(dg_score(model, NULL, items, 1, TRANSCRIPT, "The teacher has taught for 25 years.", true,
                &s, &err));
    check_distribution(&s->distributions[0], "teacher_uptake", 7);
    EXPECT(s->distributions[0].prompt_tokens > all->distributions[2].prompt_tokens);
    dg_scores_free(s);

    /* A custom rubric with word labels: values are positions on the scale. */
    dg_rubric_t *custom = NULL;
    OK(dg_rubric_parse(CUSTOM_RUBRIC, &custom, &err));
    const char *pacing = "pacing";
    OK(dg_score(model, custom, &pacing, 1, TRANSCRIPT, NULL, false, &s, &err));
    check_distribution(&s->distributions[0], "pacing", 3);
    EXPECT(strcmp(s->distributions[0].labels[2], "high") == 0);
    EXPECT(s->distributions[0].values[2] == 3.0);
    dg_scores_free(s);
    FAILS(DG_STATUS_NOT_FOUND, "pacing",
          dg_score(model, custom, items, 1, TRANSCRIPT, NULL, false, &s, &err));
    dg_rubric_free(custom);

    dg_scores_free(all);
    dg_scores_free(NULL);
}

static void test_deltas(const dg_model_t *model) {
    const char *item = "student_reasoning";
    const char *contexts[] = {
        "The teacher has taught for 25 years.",
        "The teacher is in her first year of teaching.",
        "The classroom has a window facing the playground.",
    };
    const char *with_null[] = {contexts[0], NULL};
    dg_bias_delta_t d;
    memset(&d, 0x5A, sizeof d);
    dg_bias_delta_t untouched = d;

    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`",
          dg_bias_delta(NULL, NULL, item, TRANSCRIPT, contexts[0], false, &d, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_id`",
          dg_bias_delta(model, NULL, NULL, TRANSCRIPT, contexts[0], false, &d, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`transcript`",
          dg_bias_delta(model, NULL, item, NULL, contexts[0], false, &d, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`context`",
          dg_bias_delta(model, NULL, item, TRANSCRIPT, NULL, false, &d, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_delta`",
          dg_bias_delta(model, NULL, item, TRANSCRIPT, contexts[0], false, NULL, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`item_id`",
          dg_bias_delta(model, NULL, "\xff", TRANSCRIPT, contexts[0], false, &d, &err));
    FAILS(DG_STATUS_NOT_FOUND, "nope",
          dg_bias_delta(model, NULL, "nope", TRANSCRIPT, contexts[0], false, &d, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "context is empty",
          dg_bias_delta(model, NULL, item, TRANSCRIPT, "", false, &d, &err));
    EXPECT(memcmp(&d, &untouched, sizeof d) == 0);

    dg_delta_batch_t *batch = SENTINEL;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "n_contexts",
          dg_bias_deltas(model, NULL, item, TRANSCRIPT, contexts, 0, false, &batch, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`contexts`",
          dg_bias_deltas(model, NULL, item, TRANSCRIPT, NULL, 2, false, &batch, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`contexts[1]`",
          dg_bias_deltas(model, NULL, item, TRANSCRIPT, with_null, 2, false, &batch, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_batch`",
          dg_bias_deltas(model, NULL, item, TRANSCRIPT, contexts, 3, false, NULL, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`",
          dg_bias_deltas(NULL, NULL, item, TRANSCRIPT, contexts, 3, false, &batch, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_id`",
          dg_bias_deltas(model, NULL, NULL, TRANSCRIPT, contexts, 3, false, &batch, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`transcript`",
          dg_bias_deltas(model, NULL, item, NULL, contexts, 3, false, &batch, &err));
    FAILS(DG_STATUS_NOT_FOUND, "nope",
          dg_bias_deltas(model, NULL, "nope", TRANSCRIPT, contexts, 3, false, &batch, &err));
    EXPECT(batch == SENTINEL);

    OK(dg_bias_deltas(model, NULL, item, TRANSCRIPT, contexts, 3, false, &batch, &err));
    EXPECT(batch->count == 3);
    check_distribution(&batch->neutral, item, 7);
    EXPECT(batch->tokens_evaluated > 0);
    EXPECT(batch->tokens_evaluated < batch->tokens_requested); /* prefixes were shared */
    for (size_t i = 0; i < batch->count; i++) {
        const dg_bias_delta_t *x = &batch->deltas[i];
        check_distribution(&batch->contextual[i], item, 7);
        EXPECT_NEAR(x->neutral_expected, batch->neutral.expected, 0.0);
        EXPECT_NEAR(x->contextual_expected, batch->contextual[i].expected, 0.0);
        EXPECT_NEAR(x->delta, x->contextual_expected - x->neutral_expected, 1e-12);
        EXPECT_NEAR(x->abs_delta, fabs(x->delta), 0.0);
        EXPECT(x->wasserstein >= x->abs_delta - 1e-12); /* W1 bounds the mean shift */
        EXPECT(x->argmax_changed == (batch->contextual[i].argmax != batch->neutral.argmax));
    }

    /* One context into a caller-owned struct equals the batch's first delta (up to f32 rounding:
     * the two passes split the prefix tree differently). */
    OK(dg_bias_delta(model, NULL, item, TRANSCRIPT, contexts[0], false, &d, &err));
    EXPECT_NEAR(d.delta, batch->deltas[0].delta, 1e-5);
    EXPECT_NEAR(d.wasserstein, batch->deltas[0].wasserstein, 1e-5);
    EXPECT_NEAR(d.neutral_label_mass, batch->deltas[0].neutral_label_mass, 1e-5);
    EXPECT_NEAR(d.contextual_label_mass, batch->deltas[0].contextual_label_mass, 1e-5);
    dg_delta_batch_free(batch);
    dg_delta_batch_free(NULL);
}

static void test_check(const dg_model_t *model) {
    const char *context = "I think this teacher is excellent.";
    const char *item = "teacher_uptake";
    dg_check_options_t o = dg_check_default_options();
    EXPECT(o.abs_threshold == 0.5 && !o.mitigate);
    dg_checks_t *c = SENTINEL;

    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`",
          dg_check(NULL, NULL, NULL, 0, TRANSCRIPT, context, NULL, &c, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`context`",
          dg_check(model, NULL, NULL, 0, TRANSCRIPT, NULL, NULL, &c, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`transcript`",
          dg_check(model, NULL, NULL, 0, NULL, context, NULL, &c, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_checks`",
          dg_check(model, NULL, NULL, 0, TRANSCRIPT, context, NULL, NULL, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_ids`",
          dg_check(model, NULL, NULL, 2, TRANSCRIPT, context, NULL, &c, &err));
    o.abs_threshold = -1.0;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "abs_threshold",
          dg_check(model, NULL, NULL, 0, TRANSCRIPT, context, &o, &c, &err));
    o.abs_threshold = NAN;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "abs_threshold",
          dg_check(model, NULL, NULL, 0, TRANSCRIPT, context, &o, &c, &err));
    EXPECT(c == SENTINEL);

    OK(dg_check(model, NULL, NULL, 0, TRANSCRIPT, "  I think this teacher is excellent. ", NULL,
                &c, &err));
    EXPECT(c->count == 3);
    bool any = false;
    for (size_t i = 0; i < c->count; i++) {
        const dg_check_result_t *r = &c->results[i];
        EXPECT(strcmp(r->context, context) == 0); /* trimmed */
        check_distribution(&r->contextual, r->item_id, 7);
        check_distribution(&r->neutral, r->item_id, 7);
        EXPECT_NEAR(r->delta.delta, r->contextual.expected - r->neutral.expected, 1e-12);
        EXPECT(r->abs_threshold == 0.5);
        EXPECT(r->flagged == (r->delta.abs_delta >= 0.5));
        any = any || r->flagged;
    }
    EXPECT(c->any_flagged == any);

    /* The check of one item agrees with dg_bias_delta on the same context. */
    dg_checks_t *one = NULL;
    dg_bias_delta_t d;
    o = dg_check_default_options();
    o.abs_threshold = 0.0; /* |delta| >= 0 always: flagged */
    OK(dg_check(model, NULL, &item, 1, TRANSCRIPT, context, &o, &one, &err));
    OK(dg_bias_delta(model, NULL, item, TRANSCRIPT, context, false, &d, &err));
    EXPECT(one->count == 1 && one->results[0].flagged && one->any_flagged);
    EXPECT_NEAR(one->results[0].delta.delta, d.delta, 1e-5);
    same_distribution(&one->results[0].contextual, &c->results[2].contextual);
    dg_checks_free(one);

    o.abs_threshold = 1e9;
    o.mitigate = true;
    OK(dg_check(model, NULL, &item, 1, TRANSCRIPT, context, &o, &one, &err));
    EXPECT(!one->results[0].flagged && !one->any_flagged);
    EXPECT(one->results[0].neutral.prompt_tokens > c->results[2].neutral.prompt_tokens);
    dg_checks_free(one);
    dg_checks_free(c);
    dg_checks_free(NULL);
}

static void check_condition(const dg_audit_condition_t *c, const char *item, bool mitigated) {
    EXPECT(c->mitigated == mitigated);
    check_distribution(&c->neutral, item, 7);
    EXPECT(c->n_categories == 7);
    EXPECT(c->noise_floor >= 0.0 && c->control_max_abs_delta >= c->noise_floor - 1e-12);
    EXPECT(c->flag_threshold >= 0.5 - 1e-12);
    bool any = false;
    for (size_t i = 0; i < c->n_categories; i++) {
        const dg_audit_category_t *cat = &c->categories[i];
        EXPECT(cat->id && cat->name && cat->id[0] && cat->name[0]);
        EXPECT(cat->wordings == 4); /* heldout: two wordings per pole */
        EXPECT(cat->max_abs_delta >= fabs(cat->mean_delta) - 1e-12);
        EXPECT_NEAR(cat->pole_gap, cat->high_mean_delta - cat->low_mean_delta, 1e-12);
        EXPECT(cat->argmax_changes <= cat->wordings);
        EXPECT(cat->flagged == (cat->max_abs_delta >= c->flag_threshold));
        any = any || cat->flagged;
    }
    EXPECT(c->flagged == any);
}

static void test_audit(const dg_model_t *model) {
    const char *items[] = {"instructional_dialogue"};
    const char *twice[] = {"instructional_dialogue", "instructional_dialogue"};
    const char *unknown[] = {"nope"};
    dg_audit_options_t o = dg_audit_default_options();
    EXPECT(o.probes_path == NULL && o.transcript_name == NULL);
    EXPECT(o.split == DG_SPLIT_ALL && o.mode == DG_AUDIT_MODE_DIRECT);
    EXPECT(o.abs_threshold == 0.5 && o.k == 3.0 && !o.mitigation_baseline);
    EXPECT(o.max_reasoning_tokens == 96 && o.temperature == 0.0 && o.top_p == 1.0);
    dg_audit_t *a = SENTINEL;

    FAILS(DG_STATUS_NULL_ARGUMENT, "`model`",
          dg_audit(NULL, NULL, items, 1, TRANSCRIPT, NULL, &a, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`out_audit`",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, NULL, NULL, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`transcript`",
          dg_audit(model, NULL, items, 1, NULL, NULL, &a, &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`item_ids`",
          dg_audit(model, NULL, NULL, 1, TRANSCRIPT, NULL, &a, &err));
    FAILS(DG_STATUS_NOT_FOUND, "nope",
          dg_audit(model, NULL, unknown, 1, TRANSCRIPT, NULL, &a, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "twice",
          dg_audit(model, NULL, twice, 2, TRANSCRIPT, NULL, &a, &err));
    o.split = 9;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "split",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o = dg_audit_default_options();
    o.mode = 5;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "mode",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o = dg_audit_default_options();
    o.mode = DG_AUDIT_MODE_REASONED;
    o.max_reasoning_tokens = 0;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "max_tokens",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o = dg_audit_default_options();
    o.k = -2.0;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "k must",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o = dg_audit_default_options();
    o.probes_path = scratch_path("no-probes.json");
    FAILS(DG_STATUS_IO, "no-probes.json",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    const char *bad_probes = scratch_path("bad-probes.json");
    write_file(bad_probes, "{\"version\": 1, \"categories\": [], \"controls\": []}");
    o.probes_path = bad_probes;
    FAILS(DG_STATUS_CONFIG, "probe catalog",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o.probes_path = "\xff";
    FAILS(DG_STATUS_INVALID_UTF8, "probes_path",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    o = dg_audit_default_options();
    o.transcript_name = "\xff";
    FAILS(DG_STATUS_INVALID_UTF8, "transcript_name",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a == SENTINEL);

    /* Direct mode, held-out wordings, with the mitigation baseline. */
    o = dg_audit_default_options();
    o.split = DG_SPLIT_HELDOUT;
    o.mitigation_baseline = true;
    o.transcript_name = "fractions.txt";
    OK(dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a->n_items == 1);
    const dg_audit_item_t *it = &a->items[0];
    EXPECT(strcmp(it->item_id, "instructional_dialogue") == 0);
    check_condition(&it->plain, "instructional_dialogue", false);
    EXPECT(it->mitigated != NULL);
    if (it->mitigated) check_condition(it->mitigated, "instructional_dialogue", true);
    EXPECT(a->flagged == it->plain.flagged);
    EXPECT(a->flagged == (a->n_flags > 0));
    double worst = 0.0;
    const char *worst_id = NULL;
    for (size_t i = 0; i < it->plain.n_categories; i++) {
        if (worst_id == NULL || it->plain.categories[i].max_abs_delta > worst) {
            worst = it->plain.categories[i].max_abs_delta;
            worst_id = it->plain.categories[i].id;
        }
    }
    EXPECT(strcmp(a->worst_item_id, "instructional_dialogue") == 0);
    EXPECT(strcmp(a->worst_category_id, worst_id) == 0);
    EXPECT(a->worst_abs_delta == worst);
    EXPECT(a->worst_flag_threshold == it->plain.flag_threshold);
    EXPECT(a->noise_floor == it->plain.noise_floor);
    EXPECT(a->summary &&
           (strncmp(a->summary, "pass", 4) == 0 || strncmp(a->summary, "flagged", 7) == 0));
    for (size_t i = 0; i < a->n_warnings; i++) EXPECT(a->warnings[i] && a->warnings[i][0]);
    EXPECT(a->report_json && strlen(a->report_json) == a->report_json_len);
    EXPECT(a->report_json[0] == '{');
    EXPECT(strstr(a->report_json, "\"schema_version\": 1") != NULL);
    EXPECT(strstr(a->report_json, "\"fractions.txt\"") != NULL);
    EXPECT(strstr(a->report_json, "\"split\": \"heldout\"") != NULL);
    EXPECT(strstr(a->report_json, "\"model_load_seconds\": null") == NULL);

    FAILS(DG_STATUS_NULL_ARGUMENT, "`audit`", dg_audit_write_html(NULL, "x.html", &err));
    FAILS(DG_STATUS_NULL_ARGUMENT, "`path`", dg_audit_write_html(a, NULL, &err));
    FAILS(DG_STATUS_INVALID_UTF8, "`path`", dg_audit_write_html(a, "\xff.html", &err));
    const char *blocker = scratch_path("not-a-dir");
    write_file(blocker, "x");
    FAILS(DG_STATUS_IO, NULL, dg_audit_write_html(a, scratch_path("not-a-dir/report.html"), &err));
    const char *html = scratch_path("html/report.html");
    OK(dg_audit_write_html(a, html, &err));
    struct stat st;
    EXPECT(stat(html, &st) == 0 && st.st_size > 1000);
    dg_audit_free(a);

    /* Reasoned mode with a few sampled tokens of reasoning (exercises generation), on a small
     * probe catalog file. */
    const char *small = scratch_path("small-probes.json");
    write_file(small, SMALL_PROBES);
    o = dg_audit_default_options();
    o.probes_path = small;
    o.mode = DG_AUDIT_MODE_REASONED;
    o.max_reasoning_tokens = 3;
    o.temperature = 0.7;
    o.top_p = 0.9;
    o.seed = 11;
    a = NULL;
    OK(dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a->n_items == 1 && a->items[0].mitigated == NULL);
    EXPECT(a->items[0].plain.n_categories == 1);
    EXPECT(strcmp(a->worst_category_id, "experience") == 0);
    EXPECT(strstr(a->report_json, "\"mode\": \"reasoned\"") != NULL);
    EXPECT(strstr(a->report_json, "small-probes.json") != NULL);
    dg_audit_free(a);
    dg_audit_free(NULL);
}

/* What a progress callback saw: its calls, the last (done, total), whether done ever went
 * down or total changed, and after how many calls it answers false (0 = never). */
typedef struct {
    size_t calls, done, total, stop_after;
    bool backwards;
    int32_t *flag_to_set;
} progress_log_t;

static bool on_progress(void *user_data, size_t done, size_t total) {
    progress_log_t *log = user_data;
    if (log->calls > 0 && (done < log->done || total != log->total)) log->backwards = true;
    log->calls++;
    log->done = done;
    log->total = total;
    if (log->flag_to_set != NULL) *log->flag_to_set = 1;
    return log->stop_after == 0 || log->calls < log->stop_after;
}

/* Progress reports reach their total, in order; a callback answering false and a set cancel
 * flag both end the audit with DG_STATUS_CANCELLED and no result. */
static void test_audit_progress(const dg_model_t *model) {
    const char *items[] = {"instructional_dialogue"};
    dg_audit_options_t o = dg_audit_default_options();
    EXPECT(o.progress == NULL && o.progress_user_data == NULL && o.cancel == NULL);
    progress_log_t log = {0};
    o.progress = on_progress;
    o.progress_user_data = &log;
    dg_audit_t *a = NULL;
    OK(dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(log.calls >= 2 && !log.backwards);
    EXPECT(log.total > 0 && log.done == log.total);
    EXPECT(strstr(a->report_json, "tokens_evaluated") != NULL);
    dg_audit_free(a);

    /* Reasoned mode, long enough that the answer arrives while it runs; the small catalog
     * (written by test_audit) keeps it short under valgrind. */
    o.probes_path = scratch_path("small-probes.json");
    o.mode = DG_AUDIT_MODE_REASONED;
    o.max_reasoning_tokens = 48;
    log = (progress_log_t){.stop_after = 1};
    a = SENTINEL;
    FAILS(DG_STATUS_CANCELLED, "cancelled",
          dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a == SENTINEL && log.calls == 1);

    int32_t cancel = 0;
    log = (progress_log_t){.flag_to_set = &cancel};
    o.cancel = &cancel;
    FAILS(DG_STATUS_CANCELLED, NULL, dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a == SENTINEL && log.calls >= 1);
    /* Already set: stops before any work, without a report. */
    log = (progress_log_t){0};
    FAILS(DG_STATUS_CANCELLED, NULL, dg_audit(model, NULL, items, 1, TRANSCRIPT, &o, &a, &err));
    EXPECT(a == SENTINEL && log.calls == 0);
}

/* Adapters: load by path at open time and by name later, handles per adapter, the A/B delta,
 * and typed errors for what does not fit. */
static void test_adapters(const char *model_path, const char *adapter_dir) {
    const char *item = "teacher_uptake";
    dg_model_options_t o = dg_model_default_options();
    o.threads = 2;
    o.prompt_layout_json = COMPACT_LAYOUT;
    dg_model_t *base = SENTINEL;
    OK(dg_model_open(model_path, &o, &base, &err));

    FAILS(DG_STATUS_NULL_ARGUMENT, "`name`", dg_model_load_adapter(base, NULL, adapter_dir, &err));
    FAILS(DG_STATUS_IO, "adapter_config.json",
          dg_model_load_adapter(base, "x", scratch_path("no-adapter-here"), &err));
    write_file(scratch_path("adapter_config.json"), "{\"peft_type\": \"LORA\", \"r\": 4}");
    FAILS(DG_STATUS_ADAPTER_INVALID, "adapter_config.json",
          dg_model_load_adapter(base, "x", scratch, &err));
    write_file(scratch_path("adapter_config.json"),
               "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, "
               "\"target_modules\": [\"q_proj\"], \"use_dora\": true}");
    FAILS(DG_STATUS_NOT_SUPPORTED, "use_dora", dg_model_load_adapter(base, "x", scratch, &err));
    OK(dg_model_load_adapter(base, "debias", adapter_dir, &err));
    FAILS(DG_STATUS_ADAPTER_INVALID, "already loaded",
          dg_model_load_adapter(base, "debias", adapter_dir, &err));

    dg_model_t *tuned = SENTINEL;
    FAILS(DG_STATUS_ADAPTER_INVALID, "nope", dg_model_with_adapter(base, "nope", &tuned, &err));
    EXPECT(tuned == SENTINEL);
    OK(dg_model_with_adapter(base, "debias", &tuned, &err));
    dg_model_t *plain = SENTINEL;
    OK(dg_model_with_adapter(tuned, NULL, &plain, &err));

    /* The delta of one request in one call equals scoring on the two handles. */
    dg_bias_delta_t d;
    FAILS(DG_STATUS_ADAPTER_INVALID, "nope",
          dg_adapter_delta(base, NULL, item, TRANSCRIPT, NULL, false, "nope", &d, &err));
    OK(dg_adapter_delta(base, NULL, item, TRANSCRIPT, NULL, false, "debias", &d, &err));
    const char *items[] = {item};
    dg_scores_t *s_base = NULL, *s_tuned = NULL;
    OK(dg_score(plain, NULL, items, 1, TRANSCRIPT, NULL, false, &s_base, &err));
    OK(dg_score(tuned, NULL, items, 1, TRANSCRIPT, NULL, false, &s_tuned, &err));
    EXPECT(fabs(d.neutral_expected - s_base->distributions[0].expected) < 1e-9);
    EXPECT(fabs(d.contextual_expected - s_tuned->distributions[0].expected) < 1e-9);
    EXPECT(fabs(d.delta) > 1e-6); /* the random adapter moves the score */
    dg_scores_free(s_base);
    dg_scores_free(s_tuned);

    /* Freeing the base handle leaves the others working. */
    dg_model_free(base);
    dg_scores_t *again = NULL;
    OK(dg_score(tuned, NULL, items, 1, TRANSCRIPT, NULL, false, &again, &err));
    dg_scores_free(again);

    /* Unloading frees the name (handles that run the adapter keep it); unknown names fail. */
    FAILS(DG_STATUS_ADAPTER_INVALID, "nope", dg_model_unload_adapter(tuned, "nope", &err));
    OK(dg_model_unload_adapter(tuned, "debias", &err));
    FAILS(DG_STATUS_ADAPTER_INVALID, "debias", dg_model_unload_adapter(tuned, "debias", &err));
    OK(dg_score(tuned, NULL, items, 1, TRANSCRIPT, NULL, false, &again, &err));
    dg_scores_free(again);
    OK(dg_model_load_adapter(tuned, "debias", adapter_dir, &err));
    dg_model_free(tuned);
    dg_model_free(plain);

    /* Handle misuse is refused, never dereferenced: a freed model (use after free, double
     * free), a rubric where a model is expected, and an error slot that still holds an error. */
    dg_scores_t *none = NULL;
    FAILS(DG_STATUS_INVALID_ARGUMENT, "not a live dg_model_t",
          dg_score(tuned, NULL, items, 1, TRANSCRIPT, NULL, false, &none, &err));
    EXPECT(none == NULL);
    dg_model_free(tuned);
    dg_rubric_t *rubric = NULL;
    OK(dg_rubric_builtin(&rubric, &err));
    FAILS(DG_STATUS_INVALID_ARGUMENT, "is a dg_rubric_t, not a dg_model_t",
          dg_score((const dg_model_t *)(const void *)rubric, NULL, items, 1, TRANSCRIPT, NULL,
                   false, &none, &err));
    dg_error_t *unread = NULL;
    EXPECT(dg_model_unload_adapter(plain, "x", &unread) == DG_STATUS_INVALID_ARGUMENT);
    dg_error_t *first = unread;
    EXPECT(dg_model_unload_adapter(plain, "x", &unread) == DG_STATUS_INVALID_ARGUMENT);
    EXPECT(unread == first); /* not overwritten: it would have leaked */
    dg_error_free(unread);
    dg_error_free(unread);
    dg_rubric_free(rubric);
    dg_rubric_free(rubric);

    /* An adapter given at open time runs by default, under the name "default". */
    o.adapter_path = adapter_dir;
    dg_model_t *opened = SENTINEL;
    OK(dg_model_open(model_path, &o, &opened, &err));
    OK(dg_adapter_delta(opened, NULL, item, TRANSCRIPT, NULL, false, "default", &d, &err));
    dg_model_free(opened);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TINY_MODEL.gguf SCRATCH_DIR ADAPTER_DIR\n", argv[0]);
        return 2;
    }
    scratch = argv[2];
    mkdir(scratch, 0755);

    test_version_and_status();
    test_rubric();
    dg_model_t *model = test_model(argv[1]);
    test_score(model);
    test_deltas(model);
    test_check(model);
    test_audit(model);
    test_audit_progress(model);
    dg_model_free(model);
    test_adapters(argv[1], argv[3]);
    return dg_test_finish("test_api");
}
