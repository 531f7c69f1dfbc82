/* Row checks of index/index.h (L2 normalization) and the module's internal helpers. */
#include "index/internal.h"

#include <faiss/c_api/error_c.h>
#include <math.h>
#include <stdlib.h>

#define UNIT_TOLERANCE 1e-3

static double row_norm2(const float *row, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)row[j] * row[j];
    return s;
}

int lvd_normalize_rows(float *x, int64_t n, int d, lvd_error *err)
{
    if (n < 0 || d < 1)
        return lvd_fail(err, "normalize rows: bad shape %lld x %d", (long long)n, d);
    for (int64_t i = 0; i < n; i++) {
        float *row = x + (size_t)i * d;
        double s = row_norm2(row, d);
        if (!(s > 0.0) || !isfinite(s))
            return lvd_fail(err, "normalize rows: row %lld is zero or not finite", (long long)i);
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < d; j++)
            row[j] *= inv;
    }
    return 0;
}

int index_check_rows(const float *x, int64_t n, int d, const char *what, lvd_error *err)
{
    if (n < 0 || (n > 0 && !x))
        return lvd_fail(err, "%s rows: bad count %lld or NULL data", what, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double s = row_norm2(x + (size_t)i * d, d);
        if (!(fabs(s - 1.0) <= UNIT_TOLERANCE))
            return lvd_fail(err, "%s row %lld has squared norm %g; rows must be L2-normalized",
                            what, (long long)i, s);
    }
    return 0;
}

int index_faiss_fail(lvd_error *err, const char *what)
{
    const char *msg = faiss_get_last_error();
    lvd_fail(err, "%s: %s", what, msg && *msg ? msg : "FAISS reported an unknown error");
    /* FAISS messages can span lines; the lvd_error contract is one line. */
    for (char *c = err ? err->msg : NULL; c && *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return -1;
}

void *index_alloc(size_t count, size_t size, const char *what, lvd_error *err)
{
    void *p = calloc(count ? count : 1, size);
    if (!p)
        lvd_fail(err, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}
