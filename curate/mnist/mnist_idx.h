/* IDX files (the MNIST / Fashion-MNIST format), plain or gzipped, read as a stream of records.
 *
 * An IDX file is a 4-byte magic (two zero bytes, the element type, the number of dimensions), one
 * big-endian uint32 per dimension, then the elements. Only unsigned bytes (type 0x08) are
 * supported. Record i is the i-th slice along the first dimension. Every read checks the length:
 * a truncated or corrupt file gives one error line naming the file. */
#ifndef LVD_CURATE_MNIST_MNIST_IDX_H
#define LVD_CURATE_MNIST_MNIST_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

#define LVD_IDX_MAX_DIMS 4

typedef struct lvd_idx_file lvd_idx_file;

/* Opens path (gzip or plain: zlib reads both) and reads its header. Fails on a bad magic, an
 * element type other than unsigned byte, zero or more than LVD_IDX_MAX_DIMS dimensions, or a
 * record larger than 16 MiB. */
int lvd_idx_open(const char *path, lvd_idx_file **out, lvd_error *err);

/* The number of dimensions and dimension d (0 = number of records). */
int lvd_idx_ndims(const lvd_idx_file *f);
uint32_t lvd_idx_dim(const lvd_idx_file *f, int d);

/* Bytes per record: the product of dimensions 1 .. ndims-1 (1 for a label file). */
size_t lvd_idx_record_size(const lvd_idx_file *f);

/* Reads the next n records into buf (n * record size bytes). Fails when the file ends early or
 * its compressed data is corrupt, or when fewer than n records remain per the header. */
int lvd_idx_read(lvd_idx_file *f, uint8_t *buf, size_t n, lvd_error *err);

/* Checks that every record was read and nothing follows the last one. */
int lvd_idx_finish(lvd_idx_file *f, lvd_error *err);

/* Closes f (NULL allowed). */
void lvd_idx_close(lvd_idx_file *f);

/* Folder-safe name of Fashion-MNIST class label (0..9): "tshirt-top", "trouser", "pullover",
 * "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"; NULL outside 0..9. */
const char *lvd_fashion_mnist_class(int label);

/* Parses a class given as a number 0..9 or a name of lvd_fashion_mnist_class; -1 when it is
 * neither. */
int lvd_fashion_mnist_parse(const char *s);

#endif
