/* NumPy .npy float32 arrays: whole-array writer and a streaming row appender with bounded memory.
 *
 * Reading goes through lvd_tensors_open (store/tensors.h): a little-endian float32 ('<f4'),
 * C-order .npy of any rank up to LVD_MAX_DIMS opens as one tensor named "array", memory-mapped in
 * place (no copy) when its data is 4-byte aligned, as every NumPy-written file is.
 *
 * Files are written as .npy version 1.0 ('<f4', C order), atomically: a temporary file beside the
 * target ("<path>.tmp.XXXXXX") is flushed, fsynced and renamed over the target, so readers never
 * see a partial file. */
#ifndef LVD_STORE_NPY_H
#define LVD_STORE_NPY_H

#include <stdint.h>

#include "store/error.h"

/* Writes data (shape[0] x ... x shape[ndim-1] floats, C order; 1 <= ndim <= LVD_MAX_DIMS). */
int lvd_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                  lvd_error *err);

/* A (rows, cols) float32 .npy being written row by row; rows is known only at the end. */
typedef struct lvd_npy_appender lvd_npy_appender;

/* Starts an appender for rows of `cols` (>= 1) floats. Nothing appears at path until finish. */
int lvd_npy_appender_open(const char *path, int64_t cols, lvd_npy_appender **out, lvd_error *err);

/* Appends n_rows rows (n_rows * cols floats, C order). Memory use does not grow with the file. */
int lvd_npy_append(lvd_npy_appender *a, const float *rows, int64_t n_rows, lvd_error *err);

/* Rows appended so far. */
int64_t lvd_npy_appender_rows(const lvd_npy_appender *a);

/* Writes the header with the final row count, flushes and renames the file into place. Releases
 * the appender whatever the outcome (on failure no file appears at path). */
int lvd_npy_appender_finish(lvd_npy_appender *a, lvd_error *err);

/* Abandons the file (the temporary file is removed, path is untouched) and releases the
 * appender. NULL is ok. A process that dies before finish leaves only the temporary file. */
void lvd_npy_appender_abort(lvd_npy_appender *a);

#endif
