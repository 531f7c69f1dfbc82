/* URL helpers of curate/fetch/inputs.h: schemes and file:// URLs. */
#include "curate/fetch/inputs.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int lvd_url_has_scheme(const char *url)
{
    if (!isalpha((unsigned char)url[0]))
        return 0;
    const char *p = url + 1;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return strncmp(p, "://", 3) == 0;
}

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

int lvd_file_url(const char *abs_path, char *out, size_t cap, lvd_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char prefix[] = "file://";
    size_t n = sizeof prefix - 1;
    if (cap <= n)
        return lvd_fail(err, "%s: path too long for a URL", abs_path);
    memcpy(out, prefix, n);
    for (const unsigned char *p = (const unsigned char *)abs_path; *p; p++) {
        if (n + 4 > cap)
            return lvd_fail(err, "%s: path too long for a URL", abs_path);
        if (unreserved(*p)) {
            out[n++] = (char)*p;
            continue;
        }
        out[n++] = '%';
        out[n++] = hex[*p >> 4];
        out[n++] = hex[*p & 15];
    }
    out[n] = '\0';
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int lvd_file_url_path(const char *url, char **path, lvd_error *err)
{
    *path = NULL;
    if (strncmp(url, "file://", 7) != 0)
        return lvd_fail(err, "%s: not a file:// URL", url);
    const char *p = url + 7;
    if (strncmp(p, "localhost/", 10) == 0)
        p += 9;
    if (*p != '/')
        return lvd_fail(err, "%s: file URLs must name a local absolute path", url);
    char *out = malloc(strlen(p) + 1);
    if (!out)
        return lvd_fail(err, "%s: out of memory", url);
    size_t n = 0;
    for (; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hex_value(p[1])) >= 0 && (lo = hex_value(p[2])) >= 0) {
            if (hi == 0 && lo == 0) { /* the path would end there: another file's */
                free(out);
                return lvd_fail(err, "%s: %%00 in a file URL (a path cannot hold a NUL byte)", url);
            }
            out[n++] = (char)(hi * 16 + lo);
            p += 2;
            continue;
        }
        out[n++] = *p;
    }
    out[n] = '\0';
    *path = out;
    return 0;
}
