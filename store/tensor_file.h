/* Atomic file output for the tensor writers (internal): data goes to a temporary file beside the
 * target ("<path>.tmp.XXXXXX"), which tensor_file_commit flushes, fsyncs and renames over the
 * target (then fsyncs the folder). Until then the target is untouched; a crash leaves at most the
 * temporary file, never a partial target. */
#ifndef LVD_STORE_TENSOR_FILE_H
#define LVD_STORE_TENSOR_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "store/error.h"

typedef struct tensor_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} tensor_file;

/* Creates the temporary file. On failure nothing is left to clean up. */
int tensor_file_create(tensor_file *f, const char *path, lvd_error *err);

/* Appends n bytes (buffered). */
int tensor_file_write(tensor_file *f, const void *buf, size_t n, lvd_error *err);

/* Overwrites n bytes at byte offset `at` of what was written so far; appends continue at the end.
 */
int tensor_file_write_at(tensor_file *f, int64_t at, const void *buf, size_t n, lvd_error *err);

/* Flushes, fsyncs and renames over the target. Releases f whatever the outcome (on failure the
 * temporary file is removed). */
int tensor_file_commit(tensor_file *f, lvd_error *err);

/* Removes the temporary file and releases f. Safe on a zeroed or already released f. */
void tensor_file_abort(tensor_file *f);

#endif
