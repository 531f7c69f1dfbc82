#include "curate/stages_cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lvd_cli_int(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out,
                lvd_error *err)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return lvd_fail(err, "%s: '%s' is not an integer in [%lld, %lld]", opt, text, (long long)lo,
                        (long long)hi);
    *out = v;
    return 0;
}

int lvd_cli_float(const char *opt, const char *text, double lo, double hi, float *out,
                  lvd_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi)
        return lvd_fail(err, "%s: '%s' is not a number in [%g, %g]", opt, text, lo, hi);
    *out = (float)v;
    return 0;
}

int lvd_cli_fail(const char *tool, const lvd_error *err)
{
    fprintf(stderr, "%s: %s\n", tool, err->msg);
    return 1;
}

int lvd_cli_usage_fail(const char *tool, const char *msg)
{
    fprintf(stderr, "%s: %s; see --help\n", tool, msg);
    return 2;
}

int lvd_cli_open(const char *tool, const char *db, lvd_manifest **m)
{
    lvd_error err;
    if (access(db, F_OK) != 0)
        lvd_fail(&err, "%s: no such manifest: %s", db, strerror(errno));
    else if (lvd_manifest_open(db, m, &err) == 0)
        return 0;
    lvd_cli_fail(tool, &err);
    return -1;
}
