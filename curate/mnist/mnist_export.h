/* Exports images of an IDX image/label file pair (Fashion-MNIST) as PNG files in class folders:
 * <out>/<class-name>/<index>.png, index being the record number zero-padded to 5 digits.
 *
 * Selection is deterministic: records are visited in file order from `offset`; a record is kept
 * when its class is selected and its class has fewer than `per_class` kept records, until
 * `limit` are kept. A file whose bytes are already those to write is left untouched (its mtime
 * too, so fingerprints of the folder stay stable); files of earlier, larger selections are not
 * removed. */
#ifndef LVD_CURATE_MNIST_MNIST_EXPORT_H
#define LVD_CURATE_MNIST_MNIST_EXPORT_H

#include <stdint.h>

#include "store/error.h"

typedef struct lvd_idx_export_opts {
    const char *images; /* IDX image file (N x rows x cols bytes), .gz or plain */
    const char *labels; /* IDX label file (N bytes, 0..9) */
    const char *out;    /* output folder (created, parents too) */
    uint32_t offset;    /* first record visited */
    uint32_t limit;     /* records kept at most; 0: no limit */
    uint32_t per_class; /* records kept per class at most; 0: no limit */
    uint16_t classes;   /* bit c set: class c selected; 0: all ten */
} lvd_idx_export_opts;

typedef struct lvd_idx_export_counts {
    uint32_t records;       /* records in the files */
    uint32_t kept;          /* files of the selection */
    uint32_t written;       /* files written (new or changed) */
    uint32_t per_class[10]; /* kept files per class */
} lvd_idx_export_counts;

/* Reads both files in full (so a truncated or corrupt one always fails, whatever the
 * selection), checks that their record counts agree and that every label is 0..9, and writes
 * the selection. Fails with one line naming the file and the problem. */
int lvd_idx_export(const lvd_idx_export_opts *o, lvd_idx_export_counts *counts, lvd_error *err);

#endif
