/* Small file helpers of the IDX export: grayscale PNG encoding into memory, writing a file
 * only when its content changes, and mkdir -p. Shared by lvd-idx-export and lvd-crop-export. */
#ifndef LVD_CURATE_MNIST_MNIST_PNG_H
#define LVD_CURATE_MNIST_MNIST_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

/* Encodes width x height 8-bit gray pixels (row-major) as PNG into a malloc'd buffer. */
int lvd_png_encode_gray(const uint8_t *pixels, int width, int height, uint8_t **buf, size_t *len,
                        lvd_error *err);

/* Writes buf to path (through path.tmp and a rename) unless path already holds exactly these
 * bytes; *written tells which. */
int lvd_write_if_changed(const char *path, const uint8_t *buf, size_t len, int *written,
                         lvd_error *err);

/* Creates the folder path and its missing parents (mkdir -p); an existing folder is fine. */
int lvd_make_dirs(const char *path, lvd_error *err);

#endif
