/* The .npy reader and writers of store/npy.h. .npy: "\x93NUMPY", version (major, minor), header
 * length (2 bytes LE in 1.0, 4 bytes in 2.0 and 3.0), a Python dict literal {'descr': ...,
 * 'fortran_order': ..., 'shape': (...), } padded with spaces and ending in '\n', then the raw data.
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html */
#include "store/npy.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/tensor_file.h"
#include "store/tensors_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the in-place '<f4' path and the writer assume a little-endian host"
#endif

#define MAGIC     "\x93NUMPY"
#define MAGIC_LEN 6
/* The appender reserves this much for its header: enough for any (rows, cols) pair. */
#define APPENDER_HEADER 128

typedef struct header_info {
    char descr[16];
    int fortran; /* -1 until seen */
    int ndim;    /* -1 until seen */
    int64_t shape[LVD_MAX_DIMS];
} header_info;

/* A cursor over the header dict text. */
typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_spaces(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool take(cursor *c, char ch)
{
    skip_spaces(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool take_word(cursor *c, const char *word)
{
    skip_spaces(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* A quoted string ('...' or "...", no escapes: NumPy never writes any here). */
static bool take_string(cursor *c, char *out, size_t cap)
{
    skip_spaces(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (n + 1 >= cap)
            return false;
        out[n++] = *c->p++;
    }
    out[n] = '\0';
    return take(c, quote);
}

static bool take_int(cursor *c, int64_t *out)
{
    skip_spaces(c);
    int64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (c->p < c->end && *c->p == 'L') /* Python 2 longs */
        c->p++;
    *out = v;
    return c->p > start;
}

/* (), (n,), (a, b), (a, b,) ... */
static bool take_shape(cursor *c, header_info *h)
{
    if (!take(c, '('))
        return false;
    h->ndim = 0;
    while (!take(c, ')')) {
        if (h->ndim == LVD_MAX_DIMS || !take_int(c, &h->shape[h->ndim]))
            return false;
        h->ndim++;
        if (!take(c, ',')) /* no comma: the tuple must close now */
            return take(c, ')');
    }
    return true;
}

static bool take_value(cursor *c, const char *key, header_info *h)
{
    if (strcmp(key, "descr") == 0)
        return take_string(c, h->descr, sizeof h->descr);
    if (strcmp(key, "fortran_order") == 0) {
        if (take_word(c, "False"))
            h->fortran = 0;
        else if (take_word(c, "True"))
            h->fortran = 1;
        else
            return false;
        return true;
    }
    if (strcmp(key, "shape") == 0)
        return take_shape(c, h);
    return false;
}

static int parse_dict(const char *text, size_t len, header_info *h, lvd_error *err)
{
    cursor c = {text, text + len};
    memset(h, 0, sizeof *h);
    h->fortran = h->ndim = -1;
    if (!take(&c, '{'))
        return lvd_fail(err, "npy header is not a dict");
    while (!take(&c, '}')) {
        char key[32];
        if (!take_string(&c, key, sizeof key) || !take(&c, ':'))
            return lvd_fail(err, "npy header dict is malformed");
        if (!take_value(&c, key, h))
            return lvd_fail(err, "npy header: bad or unknown entry '%s'", key);
        if (!take(&c, ',')) {
            if (!take(&c, '}'))
                return lvd_fail(err, "npy header dict is malformed");
            break;
        }
    }
    skip_spaces(&c);
    if (c.p != c.end)
        return lvd_fail(err, "npy header has trailing bytes after the dict");
    if (!h->descr[0] || h->fortran < 0 || h->ndim < 0)
        return lvd_fail(err, "npy header lacks descr, fortran_order or shape");
    return 0;
}

int npy_parse(lvd_tensors *ts, const uint8_t *buf, size_t len, lvd_error *err)
{
    if (len < MAGIC_LEN + 4 || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return lvd_fail(err, "not a .npy file");
    int major = buf[6];
    size_t at = major == 1 ? 10 : 12;
    if (major < 1 || major > 3)
        return lvd_fail(err, "unsupported .npy version %d.%d", major, buf[7]);
    if (len < at)
        return lvd_fail(err, "truncated .npy header");
    uint64_t header_len = load_uint(buf + 8, major == 1 ? 2 : 4, false);
    if (header_len > len - at)
        return lvd_fail(err, ".npy header length %" PRIu64 " exceeds the file (%zu bytes)",
                        header_len, len);
    header_info h;
    if (parse_dict((const char *)buf + at, (size_t)header_len, &h, err) != 0)
        return -1;
    if (strcmp(h.descr, "<f4") != 0)
        return lvd_fail(err, "npy dtype '%s' is not supported (only little-endian float32 '<f4')",
                        h.descr);
    if (h.fortran)
        return lvd_fail(err, "npy arrays in Fortran order are not supported");
    int64_t numel;
    if (shape_numel(h.shape, h.ndim, &numel) != 0 || (uint64_t)numel > UINT64_MAX / 4)
        return lvd_fail(err, "npy shape overflows");
    const uint8_t *data = buf + at + header_len;
    size_t data_len = len - at - (size_t)header_len;
    if ((uint64_t)numel * 4 != data_len)
        return lvd_fail(err, "npy data holds %zu bytes, shape needs %" PRIu64, data_len,
                        (uint64_t)numel * 4);
    bool in_place = (uintptr_t)data % sizeof(float) == 0;
    float *owned = NULL;
    if (!in_place && numel > 0) {
        owned = malloc((size_t)numel * sizeof *owned);
        if (!owned)
            return lvd_fail(err, "out of memory for %" PRId64 " floats", numel);
        memcpy(owned, data, (size_t)numel * sizeof *owned);
    }
    lvd_tensor *t = tensors_add(ts, "array", owned);
    if (!t)
        return lvd_fail(err, "out of memory");
    t->dtype = LVD_F32;
    t->ndim = h.ndim;
    memcpy(t->shape, h.shape, sizeof t->shape);
    t->numel = numel;
    t->data = numel == 0 ? NULL : in_place ? (const float *)(const void *)data : owned;
    return 0;
}

/* A version 1.0 header for a '<f4' C-order array, padded with spaces (and a final '\n') to a
 * multiple of 64 bytes and to at least min_total bytes. Returns its length, 0 if cap is short. */
static size_t npy_header(char *out, size_t cap, int ndim, const int64_t *shape, size_t min_total)
{
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%" PRId64 "%s", shape[i],
                      ndim == 1      ? ","
                      : i + 1 < ndim ? ", "
                                     : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t total = (size_t)(MAGIC_LEN + 4 + n + 1 + 63) / 64 * 64;
    if (total < min_total)
        total = min_total;
    if (total > cap || total > 65535)
        return 0;
    memcpy(out, MAGIC "\x01\x00", MAGIC_LEN + 2);
    size_t header_len = total - (MAGIC_LEN + 4);
    out[8] = (char)(header_len & 0xff);
    out[9] = (char)(header_len >> 8);
    memset(out + MAGIC_LEN + 4, ' ', header_len);
    memcpy(out + MAGIC_LEN + 4, dict, (size_t)n);
    out[total - 1] = '\n';
    return total;
}

int lvd_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                  lvd_error *err)
{
    int64_t numel;
    if (ndim < 1 || ndim > LVD_MAX_DIMS || shape_numel(shape, ndim, &numel) != 0 ||
        (numel > 0 && !data))
        return lvd_fail(err, "%s: invalid array shape or data", path);
    char header[1024];
    size_t header_len = npy_header(header, sizeof header, ndim, shape, 0);
    tensor_file f;
    if (tensor_file_create(&f, path, err) != 0)
        return -1;
    if (tensor_file_write(&f, header, header_len, err) != 0 ||
        tensor_file_write(&f, data, (size_t)numel * sizeof *data, err) != 0) {
        tensor_file_abort(&f);
        return -1;
    }
    return tensor_file_commit(&f, err);
}

struct lvd_npy_appender {
    tensor_file file;
    int64_t cols, rows;
};

int lvd_npy_appender_open(const char *path, int64_t cols, lvd_npy_appender **out, lvd_error *err)
{
    *out = NULL;
    if (cols < 1 || cols > INT64_MAX / 4)
        return lvd_fail(err, "%s: invalid row width %" PRId64, path, cols);
    lvd_npy_appender *a = calloc(1, sizeof *a);
    if (!a)
        return lvd_fail(err, "%s: out of memory", path);
    a->cols = cols;
    char header[APPENDER_HEADER];
    int64_t shape[2] = {0, cols};
    size_t header_len = npy_header(header, sizeof header, 2, shape, APPENDER_HEADER);
    if (tensor_file_create(&a->file, path, err) != 0) {
        free(a);
        return -1;
    }
    if (tensor_file_write(&a->file, header, header_len, err) != 0) {
        lvd_npy_appender_abort(a);
        return -1;
    }
    *out = a;
    return 0;
}

int lvd_npy_append(lvd_npy_appender *a, const float *rows, int64_t n_rows, lvd_error *err)
{
    if (n_rows < 0 || n_rows > (INT64_MAX / 4 - a->rows) / a->cols)
        return lvd_fail(err, "%s: invalid row count %" PRId64, a->file.path, n_rows);
    if (tensor_file_write(&a->file, rows, (size_t)(n_rows * a->cols) * sizeof *rows, err) != 0)
        return -1;
    a->rows += n_rows;
    return 0;
}

int64_t lvd_npy_appender_rows(const lvd_npy_appender *a)
{
    return a->rows;
}

int lvd_npy_appender_finish(lvd_npy_appender *a, lvd_error *err)
{
    char header[APPENDER_HEADER];
    int64_t shape[2] = {a->rows, a->cols};
    size_t header_len = npy_header(header, sizeof header, 2, shape, APPENDER_HEADER);
    int rc = tensor_file_write_at(&a->file, 0, header, header_len, err);
    if (rc == 0)
        rc = tensor_file_commit(&a->file, err);
    else
        tensor_file_abort(&a->file);
    free(a);
    return rc;
}

void lvd_npy_appender_abort(lvd_npy_appender *a)
{
    if (!a)
        return;
    tensor_file_abort(&a->file);
    free(a);
}
