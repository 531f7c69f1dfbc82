/* Error reporting shared by every lvd module.
 *
 * A function that can fail returns 0 on success and -1 on failure, after filling an lvd_error with
 * one human-readable line (naming the file and the problem) and, where the caller sorts failures
 * into classes (the fetch stage's "decode", "timeout", ...), a static class string. */
#ifndef LVD_STORE_ERROR_H
#define LVD_STORE_ERROR_H

#include <stdarg.h>

typedef struct lvd_error {
    char msg[1024];
    const char *cls; /* static string such as "decode"; NULL when unclassified */
} lvd_error;

/* Clears err (a NULL err is allowed everywhere and ignored). */
void lvd_error_clear(lvd_error *err);

/* Formats the message into err, sets no class, and returns -1 so callers can write
 * `return lvd_fail(err, "...")`. */
int lvd_fail(lvd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like lvd_fail, and records cls (a string with static lifetime). */
int lvd_fail_class(lvd_error *err, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (for adding a file name or stage context);
 * returns -1. */
int lvd_error_prefix(lvd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
