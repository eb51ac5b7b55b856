/* Tiny assertion helpers shared by the C tests of the debias-guard C ABI. */
#ifndef DG_TEST_CHECK_H
#define DG_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debias_guard.h"

static int dg_test_failures = 0;

#define EXPECT(cond)                                                            \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            dg_test_failures++;                                                 \
        }                                                                       \
    } while (0)

#define EXPECT_NEAR(a, b, tol)                                                      \
    do {                                                                            \
        double a_ = (a), b_ = (b);                                                  \
        if (!(fabs(a_ - b_) <= (tol))) {                                            \
            fprintf(stderr, "%s:%d: %s = %.17g but %s = %.17g (tolerance %g)\n",    \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));             \
            dg_test_failures++;                                                     \
        }                                                                           \
    } while (0)

/* Runs `call`, which must pass `&err` as its error argument, and requires success. */
#define OK(call)                                                                    \
    do {                                                                            \
        dg_error_t *err = NULL;                                                     \
        dg_status_t st_ = (call);                                                   \
        if (st_ != DG_STATUS_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s failed with status %d: %s\n", __FILE__,      \
                    __LINE__, #call, (int)st_, dg_error_message(err));              \
            dg_test_failures++;                                                     \
            dg_error_free(err);                                                     \
            exit(1);                                                                \
        }                                                                           \
        EXPECT(err == NULL);                                                        \
    } while (0)

/* Runs `call`, which must pass `&err` as its error argument, and requires status `want` with
 * an error object whose status matches and whose message contains `needle`. */
#define FAILS(want, needle, call)                                                   \
    do {                                                                            \
        dg_error_t *err = NULL;                                                     \
        dg_status_t st_ = (call);                                                   \
        dg_test_expect_failure(st_, err, (want), (needle), #call, __FILE__,         \
                               __LINE__);                                           \
        dg_error_free(err);                                                         \
    } while (0)

static inline void dg_test_expect_failure(dg_status_t got, const dg_error_t *err, dg_status_t want,
                                   const char *needle, const char *call, const char *file,
                                   int line) {
    if (got != want) {
        fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d; message: %s\n", file, line,
                call, (int)got, dg_status_text(got), (int)want, dg_error_message(err));
        dg_test_failures++;
        return;
    }
    if (err == NULL) {
        fprintf(stderr, "%s:%d: %s failed without an error object\n", file, line, call);
        dg_test_failures++;
        return;
    }
    if (dg_error_status(err) != want) {
        fprintf(stderr, "%s:%d: error object of %s has status %d\n", file, line, call,
                (int)dg_error_status(err));
        dg_test_failures++;
    }
    if (needle != NULL && strstr(dg_error_message(err), needle) == NULL) {
        fprintf(stderr, "%s:%d: message of %s lacks \"%s\": %s\n", file, line, call, needle,
                dg_error_message(err));
        dg_test_failures++;
    }
}

static inline int dg_test_finish(const char *name) {
    if (dg_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, dg_test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif /* DG_TEST_CHECK_H */
