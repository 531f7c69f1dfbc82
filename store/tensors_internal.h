/* Internal to the tensor readers (safetensors.c, npy.c, pth.c, tensors.c): the collection
 * behind lvd_tensors, dtype helpers and the memory-buffer parsers the fuzz targets call.
 * Not part of the public API. */
#ifndef LVD_STORE_TENSORS_INTERNAL_H
#define LVD_STORE_TENSORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/tensors.h"

/* Creates an empty collection; NULL when out of memory. */
lvd_tensors *tensors_new(void);

/* Attaches a read-only mapping that the collection unmaps when closed. */
void tensors_attach_map(lvd_tensors *ts, void *map, size_t len);

/* Appends a tensor named `name` (copied) and returns it so the caller can fill dtype, shape,
 * numel and data (the pointer is valid until the next tensors_add); `owned` (may be NULL) is a
 * malloc'd buffer freed with the collection. NULL (and owned freed) when out of memory. */
lvd_tensor *tensors_add(lvd_tensors *ts, const char *name, float *owned);

/* Appends a metadata pair (both copied). Returns 0, or -1 when out of memory. */
int tensors_add_metadata(lvd_tensors *ts, const char *key, const char *value);

/* Builds the name index; fails when two tensors share a name. Called once after the last add. */
int tensors_finish(lvd_tensors *ts, lvd_error *err);

/* An unsigned integer of n (<= 8) bytes in the given byte order: every format here stores its
 * lengths and numbers as bytes, whatever the host's alignment rules. */
static inline uint64_t load_uint(const uint8_t *p, size_t n, bool big_endian)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[big_endian ? n - 1 - i : i] << (8 * i);
    return v;
}

/* Bytes per element of a stored dtype. */
size_t dtype_size(lvd_dtype dtype);

/* The dtype spelled as safetensors spells it ("F32", ...), and back (-1 when unknown). */
const char *dtype_name(lvd_dtype dtype);
int dtype_from_name(const char *name, lvd_dtype *out);

/* Converts `count` elements of `dtype` read from src (element i at src + i * stride_elems *
 * dtype_size bytes; little-endian unless big_endian) into float32. */
void dtype_convert(lvd_dtype dtype, const uint8_t *src, int64_t stride_elems, int64_t count,
                   bool big_endian, float *dst);

/* Product of shape[0..ndim) into *numel; fails on a negative dimension or int64 overflow. */
int shape_numel(const int64_t *shape, int ndim, int64_t *numel);

/* Maps a whole file read-only. An empty file gives map NULL and len 0. */
int map_file(const char *path, void **map, size_t *len, lvd_error *err);

/* Parses a safetensors image held in buf[0..len) into ts (F32 tensors point into buf, which must
 * outlive ts). Errors are not prefixed with a file name. */
int safetensors_parse(lvd_tensors *ts, const uint8_t *buf, size_t len, lvd_error *err);

/* Parses a .npy image held in buf[0..len) into ts as one tensor "array" (pointing into buf). */
int npy_parse(lvd_tensors *ts, const uint8_t *buf, size_t len, lvd_error *err);

/* Reads a torch.save zip archive at path into ts. */
int pth_read(lvd_tensors *ts, const char *path, lvd_error *err);

#endif
