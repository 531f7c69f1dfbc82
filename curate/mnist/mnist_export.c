/* lvd_idx_export of curate/mnist/mnist_export.h: the selection and the PNG class folders. */
#include "curate/mnist/mnist_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/mnist/mnist_idx.h"
#include "curate/mnist/mnist_png.h"

/* A label file is read whole; this bounds it (MNIST-style sets have 10^4 .. 10^5 records). */
#define MAX_RECORDS 10000000u

/* Reads the whole label file and checks every label. */
static int read_labels(const char *path, uint8_t **labels, uint32_t *n, lvd_error *err)
{
    *labels = NULL;
    lvd_idx_file *f;
    if (lvd_idx_open(path, &f, err) != 0)
        return -1;
    int rc = -1;
    *n = lvd_idx_dim(f, 0);
    if (lvd_idx_ndims(f) != 1)
        lvd_fail(err, "%s: not a label file (%d dimensions, expected 1)", path, lvd_idx_ndims(f));
    else if (*n > MAX_RECORDS)
        lvd_fail(err, "%s: %u records, more than the %u supported", path, *n, MAX_RECORDS);
    else if (!(*labels = malloc(*n ? *n : 1)))
        lvd_fail(err, "%s: out of memory", path);
    else if (lvd_idx_read(f, *labels, *n, err) == 0 && lvd_idx_finish(f, err) == 0)
        rc = 0;
    for (uint32_t i = 0; rc == 0 && i < *n; i++)
        if ((*labels)[i] > 9)
            rc = lvd_fail(err, "%s: record %u has label %u, outside 0..9", path, i, (*labels)[i]);
    lvd_idx_close(f);
    if (rc != 0) {
        free(*labels);
        *labels = NULL;
    }
    return rc;
}

static int selected(const lvd_idx_export_opts *o, const lvd_idx_export_counts *c, uint32_t i,
                    int label)
{
    if (i < o->offset || (o->limit && c->kept >= o->limit))
        return 0;
    if (o->classes && !(o->classes & (1u << label)))
        return 0;
    return !o->per_class || c->per_class[label] < o->per_class;
}

static int write_record(const lvd_idx_export_opts *o, const uint8_t *pixels, int rows, int cols,
                        uint32_t index, int label, lvd_idx_export_counts *c, lvd_error *err)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", o->out, lvd_fashion_mnist_class(label));
    if (n >= (int)sizeof path - 16)
        return lvd_fail(err, "%s: path too long", o->out);
    if (c->per_class[label] == 0 && lvd_make_dirs(path, err) != 0)
        return -1;
    snprintf(path + n, sizeof path - (size_t)n, "/%05u.png", index);
    uint8_t *png;
    size_t len;
    if (lvd_png_encode_gray(pixels, cols, rows, &png, &len, err) != 0)
        return lvd_error_prefix(err, "%s", path);
    int written;
    int rc = lvd_write_if_changed(path, png, len, &written, err);
    free(png);
    if (rc != 0)
        return -1;
    c->written += (uint32_t)written;
    c->kept++;
    c->per_class[label]++;
    return 0;
}

/* Streams the image records, writing the selected ones, and reads to the end of the file. */
static int export_images(const lvd_idx_export_opts *o, lvd_idx_file *f, const uint8_t *labels,
                         lvd_idx_export_counts *c, lvd_error *err)
{
    int rows = (int)lvd_idx_dim(f, 1), cols = (int)lvd_idx_dim(f, 2);
    uint8_t *pixels = malloc(lvd_idx_record_size(f));
    if (!pixels)
        return lvd_fail(err, "%s: out of memory", o->images);
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < c->records; i++) {
        rc = lvd_idx_read(f, pixels, 1, err);
        if (rc == 0 && selected(o, c, i, labels[i]))
            rc = write_record(o, pixels, rows, cols, i, labels[i], c, err);
    }
    free(pixels);
    return rc == 0 ? lvd_idx_finish(f, err) : -1;
}

int lvd_idx_export(const lvd_idx_export_opts *o, lvd_idx_export_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    uint8_t *labels;
    uint32_t n_labels;
    if (read_labels(o->labels, &labels, &n_labels, err) != 0)
        return -1;
    lvd_idx_file *f;
    if (lvd_idx_open(o->images, &f, err) != 0) {
        free(labels);
        return -1;
    }
    int rc = -1;
    counts->records = lvd_idx_dim(f, 0);
    if (lvd_idx_ndims(f) != 3)
        lvd_fail(err, "%s: not an image file (%d dimensions, expected 3)", o->images,
                 lvd_idx_ndims(f));
    else if (counts->records != n_labels)
        lvd_fail(err, "%s: %u images but %s has %u labels", o->images, counts->records, o->labels,
                 n_labels);
    else if (lvd_make_dirs(o->out, err) == 0)
        rc = export_images(o, f, labels, counts, err);
    lvd_idx_close(f);
    free(labels);
    return rc;
}
