/* The zip reading of store/pth_zip.h: Central directory and local header reading (APPNOTE.TXT
 * sections 4.3.7, 4.3.12, 4.3.14-16, 4.5.3). */
#include "store/pth_zip.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/tensors_internal.h"

#define SIG_LOCAL     0x04034b50u
#define SIG_CENTRAL   0x02014b50u
#define SIG_EOCD      0x06054b50u
#define SIG_EOCD64    0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define EOCD_SIZE     22
#define LOCATOR_SIZE  20
#define CENTRAL_SIZE  46
#define LOCAL_SIZE    30
#define MAX_COMMENT   0xffff

/* Zip integers are little-endian. */
static uint64_t rd(const uint8_t *p, size_t n)
{
    return load_uint(p, n, false);
}

/* True when [at, at + n) lies inside [0, len). */
static bool inside(uint64_t at, uint64_t n, size_t len)
{
    return at <= len && n <= len - at;
}

/* The end of central directory record: the last signature that leaves room for its comment. */
static int64_t find_eocd(const uint8_t *file, size_t len)
{
    if (len < EOCD_SIZE)
        return -1;
    size_t lowest = len - EOCD_SIZE > MAX_COMMENT ? len - EOCD_SIZE - MAX_COMMENT : 0;
    for (size_t at = len - EOCD_SIZE + 1; at-- > lowest;)
        if (rd(file + at, 4) == SIG_EOCD && at + EOCD_SIZE + rd(file + at + 20, 2) == len)
            return (int64_t)at;
    return -1;
}

/* Directory offset and entry count, from the zip64 record when the classic one says so. */
static int directory_bounds(const uint8_t *file, size_t len, uint64_t *offset, uint64_t *count)
{
    int64_t eocd = find_eocd(file, len);
    if (eocd < 0)
        return -1;
    const uint8_t *e = file + eocd;
    *count = rd(e + 10, 2);
    *offset = rd(e + 16, 4);
    if (*count != 0xffff && *offset != 0xffffffffu)
        return 0;
    if ((uint64_t)eocd < LOCATOR_SIZE)
        return -1;
    const uint8_t *loc = e - LOCATOR_SIZE;
    uint64_t rec = rd(loc + 8, 8);
    if (rd(loc, 4) != SIG_LOCATOR64 || !inside(rec, 56, len) || rd(file + rec, 4) != SIG_EOCD64)
        return -1;
    *count = rd(file + rec + 32, 8);
    *offset = rd(file + rec + 48, 8);
    return 0;
}

/* Replaces the 0xffffffff placeholders of s by the values of the zip64 extra field. */
static int apply_zip64(const uint8_t *extra, size_t extra_len, zip_span *s)
{
    bool need =
        s->size == 0xffffffffu || s->comp_size == 0xffffffffu || s->local_offset == 0xffffffffu;
    for (size_t at = 0; need && at + 4 <= extra_len;) {
        uint64_t id = rd(extra + at, 2), n = rd(extra + at + 2, 2);
        if (at + 4 + n > extra_len)
            return -1;
        if (id == 1) {
            const uint8_t *p = extra + at + 4, *end = p + n;
            uint64_t *fields[3] = {&s->size, &s->comp_size, &s->local_offset};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xffffffffu)
                    continue;
                if (end - p < 8)
                    return -1;
                *fields[i] = rd(p, 8);
                p += 8;
            }
            return 0;
        }
        at += 4 + n;
    }
    return need ? -1 : 0;
}

int zip_central_directory(const uint8_t *file, size_t len, zip_span **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    uint64_t at, count;
    if (directory_bounds(file, len, &at, &count) != 0 || count > len / CENTRAL_SIZE)
        return -1;
    zip_span *spans = calloc(count ? count : 1, sizeof *spans);
    if (!spans)
        return -1;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *c = file + at;
        if (!inside(at, CENTRAL_SIZE, len) || rd(c, 4) != SIG_CENTRAL)
            break;
        uint64_t name_len = rd(c + 28, 2), extra_len = rd(c + 30, 2), comment = rd(c + 32, 2);
        if (!inside(at, CENTRAL_SIZE + name_len + extra_len + comment, len))
            break;
        zip_span *s = &spans[i];
        s->method = (uint16_t)rd(c + 10, 2);
        s->comp_size = rd(c + 20, 4);
        s->size = rd(c + 24, 4);
        s->local_offset = rd(c + 42, 4);
        s->name = c + CENTRAL_SIZE;
        s->name_len = (size_t)name_len;
        if (apply_zip64(c + CENTRAL_SIZE + name_len, (size_t)extra_len, s) != 0)
            break;
        at += CENTRAL_SIZE + name_len + extra_len + comment;
        *n = (size_t)i + 1;
    }
    if (*n != count) {
        free(spans);
        *n = 0;
        return -1;
    }
    *out = spans;
    return 0;
}

int64_t zip_stored_data(const uint8_t *file, size_t len, const zip_span *span)
{
    uint64_t at = span->local_offset;
    if (span->method != 0 || span->comp_size != span->size || !inside(at, LOCAL_SIZE, len))
        return -1;
    const uint8_t *h = file + at;
    uint64_t name_len = rd(h + 26, 2), extra_len = rd(h + 28, 2);
    if (rd(h, 4) != SIG_LOCAL || rd(h + 8, 2) != 0 || (rd(h + 6, 2) & 1) /* encrypted */ ||
        name_len != span->name_len || !inside(at + LOCAL_SIZE, name_len, len) ||
        memcmp(h + LOCAL_SIZE, span->name, span->name_len) != 0)
        return -1;
    uint64_t data = at + LOCAL_SIZE + name_len + extra_len;
    if (!inside(data, span->size, len))
        return -1;
    return (int64_t)data;
}
