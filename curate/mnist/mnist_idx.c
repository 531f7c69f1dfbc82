/* The IDX reader of curate/mnist/mnist_idx.h (plain or gzipped) and the Fashion-MNIST class names. */
#include "curate/mnist/mnist_idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* Bounds the buffer a caller allocates for one record. */
#define MAX_RECORD_BYTES (16u << 20)

struct lvd_idx_file {
    char *path;
    gzFile gz;
    int ndims;
    uint32_t dims[LVD_IDX_MAX_DIMS];
    size_t record_size;
    uint32_t next; /* records read so far */
};

static const char *const fashion_classes[10] = {
    "tshirt-top", "trouser", "pullover", "dress", "coat",
    "sandal",     "shirt",   "sneaker",  "bag",   "ankle-boot",
};

/* Reads exactly len bytes; what names the part being read in the error. */
static int read_exact(lvd_idx_file *f, void *buf, size_t len, const char *what, lvd_error *err)
{
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (1u << 30) ? (1u << 30) : len - done;
        int n = gzread(f->gz, (uint8_t *)buf + done, (unsigned)chunk);
        if (n < 0) {
            int code;
            const char *msg = gzerror(f->gz, &code);
            return lvd_fail(err, "%s: truncated or corrupt data in %s: %s", f->path, what,
                            code == Z_ERRNO ? strerror(errno) : msg);
        }
        if (n == 0)
            return lvd_fail(err, "%s: truncated: %s ends after %zu of %zu bytes", f->path, what,
                            done, len);
        done += (size_t)n;
    }
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int read_header(lvd_idx_file *f, lvd_error *err)
{
    uint8_t magic[4];
    if (read_exact(f, magic, 4, "the header", err) != 0)
        return -1;
    if (magic[0] != 0 || magic[1] != 0)
        return lvd_fail(err, "%s: not an IDX file (bad magic %02x%02x%02x%02x)", f->path, magic[0],
                        magic[1], magic[2], magic[3]);
    if (magic[2] != 0x08)
        return lvd_fail(err, "%s: unsupported IDX element type 0x%02x (only unsigned bytes)",
                        f->path, magic[2]);
    if (magic[3] < 1 || magic[3] > LVD_IDX_MAX_DIMS)
        return lvd_fail(err, "%s: unsupported number of IDX dimensions %d", f->path, magic[3]);
    f->ndims = magic[3];
    uint8_t dims[4 * LVD_IDX_MAX_DIMS];
    if (read_exact(f, dims, 4 * (size_t)f->ndims, "the header", err) != 0)
        return -1;
    f->record_size = 1;
    for (int d = 0; d < f->ndims; d++) {
        f->dims[d] = be32(dims + 4 * d);
        if (d == 0)
            continue;
        if (f->dims[d] == 0 || f->record_size * f->dims[d] > MAX_RECORD_BYTES)
            return lvd_fail(err, "%s: IDX record size out of range (dimension %d is %u)", f->path,
                            d, f->dims[d]);
        f->record_size *= f->dims[d];
    }
    return 0;
}

int lvd_idx_open(const char *path, lvd_idx_file **out, lvd_error *err)
{
    *out = NULL;
    lvd_idx_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return lvd_fail(err, "%s: out of memory", path);
    }
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        lvd_fail(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        lvd_idx_close(f);
        return -1;
    }
    if (read_header(f, err) != 0) {
        lvd_idx_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int lvd_idx_ndims(const lvd_idx_file *f)
{
    return f->ndims;
}

uint32_t lvd_idx_dim(const lvd_idx_file *f, int d)
{
    return d >= 0 && d < f->ndims ? f->dims[d] : 0;
}

size_t lvd_idx_record_size(const lvd_idx_file *f)
{
    return f->record_size;
}

int lvd_idx_read(lvd_idx_file *f, uint8_t *buf, size_t n, lvd_error *err)
{
    if (n > f->dims[0] - f->next)
        return lvd_fail(err, "%s: asked for %zu records, %u left", f->path, n,
                        f->dims[0] - f->next);
    char what[64];
    snprintf(what, sizeof what, "record %u", f->next);
    if (read_exact(f, buf, n * f->record_size, what, err) != 0)
        return -1;
    f->next += (uint32_t)n;
    return 0;
}

int lvd_idx_finish(lvd_idx_file *f, lvd_error *err)
{
    if (f->next != f->dims[0])
        return lvd_fail(err, "%s: %u of %u records read", f->path, f->next, f->dims[0]);
    uint8_t extra;
    int n = gzread(f->gz, &extra, 1);
    if (n < 0) {
        int code;
        return lvd_fail(err, "%s: corrupt data after the last record: %s", f->path,
                        gzerror(f->gz, &code));
    }
    if (n > 0)
        return lvd_fail(err, "%s: unexpected data after the last of %u records", f->path,
                        f->dims[0]);
    return 0;
}

void lvd_idx_close(lvd_idx_file *f)
{
    if (!f)
        return;
    if (f->gz)
        gzclose(f->gz);
    free(f->path);
    free(f);
}

const char *lvd_fashion_mnist_class(int label)
{
    return label >= 0 && label < 10 ? fashion_classes[label] : NULL;
}

int lvd_fashion_mnist_parse(const char *s)
{
    if (s[0] >= '0' && s[0] <= '9' && s[1] == '\0')
        return s[0] - '0';
    for (int i = 0; i < 10; i++)
        if (strcmp(s, fashion_classes[i]) == 0)
            return i;
    return -1;
}
