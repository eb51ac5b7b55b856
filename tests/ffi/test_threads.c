/* Sixteen threads share one model handle (and one rubric handle) and must get exactly the
 * results a serial run gets. Each round a thread scores, checks and measures a delta with its own
 * context and makes one failing call (so error objects are created concurrently too): four calls
 * a round, 25 rounds by default, so 16 threads x 100 calls on one handle.
 *
 * Usage: test_threads MODEL.gguf [ROUNDS [KINDS]]   (ROUNDS 1..25, default 25; KINDS 1..4,
 * default 4: how many of bias delta, check, score and the failing call each round makes;
 * valgrind runs a smaller size)
 */
#include "check.h"

#include <pthread.h>

#define THREADS 16
#define MAX_ROUNDS 25

static const char *TRANSCRIPT =
    "TEACHER: How many groups of four can we make from twenty counters?\n"
    "STUDENT: Five, because four plus four plus four plus four plus four is twenty.\n"
    "TEACHER: Can someone check that another way?\n"
    "STUDENT: Five times four is twenty, so it matches.\n";

static const char *CONTEXTS[THREADS] = {
    "The teacher has taught for 25 years.",
    "The teacher is in her first year of teaching.",
    "The teacher holds a doctorate in mathematics education.",
    "The teacher has no teaching certificate.",
    "The school is in a wealthy suburb.",
    "The school serves a low-income neighbourhood.",
    "I think this teacher is excellent.",
    "The classroom has a window facing the playground.",
    "The teacher is a man in his sixties.",
    "The teacher is a young woman.",
    "The teacher is Black.",
    "The teacher is white.",
    "The teacher studied at a community college.",
    "The teacher graduated from an elite university.",
    "I think this lesson went poorly.",
    "The walls of the room are painted pale green.",
};

static const char *ITEM = "student_reasoning";

/* What one unit of work produces: only doubles, so no padding and memcmp compares values. */
typedef struct {
    double expected;
    double probs[7];
    double check_delta;
    double check_flagged;
    double delta;
    double wasserstein;
} outcome_t;

static const dg_model_t *model;
static const dg_rubric_t *rubric;
static outcome_t serial[THREADS];
static outcome_t parallel[THREADS][MAX_ROUNDS];
static int rounds = MAX_ROUNDS;
static int kinds = 4;
static int thread_failures[THREADS];

/* One round for thread i: the first `kinds` of (bias delta, check, score, failing call). */
static int work(int i, outcome_t *out) {
    dg_error_t *err = NULL;
    dg_scores_t *scores = NULL;
    dg_checks_t *checks = NULL;
    dg_bias_delta_t d;
    memset(out, 0, sizeof *out);
    if (dg_bias_delta(model, rubric, ITEM, TRANSCRIPT, CONTEXTS[i], false, &d, &err) !=
        DG_STATUS_OK)
        goto failed;
    out->delta = d.delta;
    out->wasserstein = d.wasserstein;
    if (kinds >= 2) {
        if (dg_check(model, rubric, &ITEM, 1, TRANSCRIPT, CONTEXTS[i], NULL, &checks, &err) !=
            DG_STATUS_OK)
            goto failed;
        out->check_delta = checks->results[0].delta.delta;
        out->check_flagged = checks->results[0].flagged ? 1.0 : 0.0;
        dg_checks_free(checks);
    }
    if (kinds >= 3) {
        if (dg_score(model, rubric, &ITEM, 1, TRANSCRIPT, CONTEXTS[i], false, &scores, &err) !=
            DG_STATUS_OK)
            goto failed;
        out->expected = scores->distributions[0].expected;
        for (size_t l = 0; l < 7; l++) out->probs[l] = scores->distributions[0].probs[l];
        dg_scores_free(scores);
    }
    if (kinds >= 4) {
        /* A failing call on a shared handle: its error object belongs to this thread. */
        const char *unknown = "no_such_item";
        dg_status_t st =
            dg_score(model, rubric, &unknown, 1, TRANSCRIPT, NULL, false, &scores, &err);
        int bad = st != DG_STATUS_NOT_FOUND || dg_error_status(err) != DG_STATUS_NOT_FOUND;
        dg_error_free(err);
        return bad;
    }
    return 0;
failed:
    fprintf(stderr, "thread %d: %s\n", i, dg_error_message(err));
    dg_error_free(err);
    return 1;
}

static void *thread_main(void *arg) {
    int i = (int)(size_t)arg;
    for (int r = 0; r < rounds; r++) thread_failures[i] += work(i, &parallel[i][r]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4 || (argc >= 3 && (atoi(argv[2]) < 1 || atoi(argv[2]) > MAX_ROUNDS)) ||
        (argc == 4 && (atoi(argv[3]) < 1 || atoi(argv[3]) > 4))) {
        fprintf(stderr, "usage: %s MODEL.gguf [ROUNDS 1..%d [KINDS 1..4]]\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    if (argc >= 3) rounds = atoi(argv[2]);
    if (argc == 4) kinds = atoi(argv[3]);
    dg_model_t *m = NULL;
    dg_rubric_t *r = NULL;
    dg_model_options_t o = dg_model_default_options();
    o.threads = 2; /* fewer workers than host threads: calls queue on the pool */
    OK(dg_model_open(argv[1], &o, &m, &err));
    OK(dg_rubric_builtin(&r, &err));
    model = m;
    rubric = r;

    for (int i = 0; i < THREADS; i++) EXPECT(work(i, &serial[i]) == 0);

    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        EXPECT(pthread_create(&threads[i], NULL, thread_main, (void *)(size_t)i) == 0);
    for (int i = 0; i < THREADS; i++) EXPECT(pthread_join(threads[i], NULL) == 0);

    /* Identical work gives bit-identical results, however the calls interleave. */
    for (int i = 0; i < THREADS; i++) {
        EXPECT(thread_failures[i] == 0);
        for (int round = 0; round < rounds; round++) {
            if (memcmp(&parallel[i][round], &serial[i], sizeof serial[i]) != 0) {
                fprintf(stderr, "thread %d round %d differs from the serial run: "
                        "delta %.17g vs %.17g\n",
                        i, round, parallel[i][round].delta, serial[i].delta);
                dg_test_failures++;
            }
        }
    }
    /* Different contexts give different results (the threads did not all see one prompt). */
    EXPECT(serial[0].delta != serial[1].delta);

    printf("test_threads: %d threads x %d calls on one handle, bit-identical to serial\n", THREADS,
           kinds * rounds);
    dg_rubric_free(r);
    dg_model_free(m);
    return dg_test_finish("test_threads");
}
