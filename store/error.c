/* The error reporting of store/error.h. */
#include "store/error.h"

#include <stdio.h>
#include <string.h>

void lvd_error_clear(lvd_error *err)
{
    if (!err)
        return;
    err->msg[0] = '\0';
    err->cls = NULL;
}

static void error_vformat(lvd_error *err, const char *cls, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->cls = cls;
}

int lvd_fail(lvd_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    error_vformat(err, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

int lvd_fail_class(lvd_error *err, const char *cls, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    error_vformat(err, cls, fmt, ap);
    va_end(ap);
    return -1;
}

int lvd_error_prefix(lvd_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[512];
    char old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Long messages are cut at the buffer's end: the prefix and the start matter most. */
    size_t n = strnlen(prefix, sizeof err->msg - 3);
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t olen = strnlen(old, rest);
    memcpy(err->msg + n + 2, old, olen);
    err->msg[n + 2 + olen] = '\0';
    return -1;
}
