/* Shared command-line helpers of the index, dedup, retrieve and export executables: strict
 * number parsing with one-line errors, and the usage / error exits every tool shares. */
#ifndef LVD_CURATE_STAGES_CLI_H
#define LVD_CURATE_STAGES_CLI_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

/* Parses an integer in [lo, hi] given to option opt; fails with "--opt: ..." otherwise. */
int lvd_cli_int(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out,
                lvd_error *err);

/* Parses a finite float in [lo, hi] given to option opt. */
int lvd_cli_float(const char *opt, const char *text, double lo, double hi, float *out,
                  lvd_error *err);

/* Prints "<tool>: <msg>" on stderr and returns 1 (the exit status of a failed run). */
int lvd_cli_fail(const char *tool, const lvd_error *err);

/* Prints "<tool>: <msg>; see --help" on stderr and returns 2 (the exit status of bad usage). */
int lvd_cli_usage_fail(const char *tool, const char *msg);

/* Opens the manifest at db, which must exist (a mistyped path must not create an empty one);
 * on failure prints "<tool>: <msg>" and returns -1. */
int lvd_cli_open(const char *tool, const char *db, lvd_manifest **m);

#endif
