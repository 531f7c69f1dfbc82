/* Hand-assembles pickle byte streams (the opcodes torch.save uses) and writes torch.save-style
 * zip archives with libzip, for the .pth tests and the fuzz seed corpus. */
#ifndef LVD_TESTS_STORE_PICKLE_BUILDER_H
#define LVD_TESTS_STORE_PICKLE_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

typedef struct pb {
    uint8_t buf[1 << 16];
    size_t len;
    int memo; /* next BINPUT index */
} pb;

static inline void pb_bytes(pb *p, const void *s, size_t n)
{
    if (p->len + n > sizeof p->buf) {
        fprintf(stderr, "pickle builder overflow\n");
        exit(1);
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static inline void pb_op(pb *p, uint8_t op)
{
    pb_bytes(p, &op, 1);
}

static inline void pb_u32(pb *p, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    pb_bytes(p, b, 4);
}

/* BINUNICODE + BINPUT, as torch.save writes strings. */
static inline void pb_str(pb *p, const char *s)
{
    pb_op(p, 'X');
    pb_u32(p, (uint32_t)strlen(s));
    pb_bytes(p, s, strlen(s));
    pb_op(p, 'q');
    pb_op(p, (uint8_t)p->memo++);
}

static inline void pb_int(pb *p, int64_t v)
{
    if (v >= 0 && v < 256) {
        pb_op(p, 'K');
        pb_op(p, (uint8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pb_op(p, 'J');
        pb_u32(p, (uint32_t)v);
    } else {
        pb_op(p, 0x8a);
        pb_op(p, 8);
        for (int i = 0; i < 8; i++)
            pb_op(p, (uint8_t)((uint64_t)v >> (8 * i)));
    }
}

static inline void pb_global(pb *p, const char *module, const char *name)
{
    pb_op(p, 'c');
    pb_bytes(p, module, strlen(module));
    pb_op(p, '\n');
    pb_bytes(p, name, strlen(name));
    pb_op(p, '\n');
}

static inline void pb_int_tuple(pb *p, const int64_t *v, int n)
{
    pb_op(p, '(');
    for (int i = 0; i < n; i++)
        pb_int(p, v[i]);
    pb_op(p, 't');
}

/* torch._utils._rebuild_tensor_v2(storage(type, key, numel), offset, shape, stride, False,
 * OrderedDict()) */
static inline void pb_tensor(pb *p, const char *storage_type, const char *key, int64_t numel,
                             int64_t offset, int ndim, const int64_t *shape, const int64_t *stride)
{
    pb_global(p, "torch._utils", "_rebuild_tensor_v2");
    pb_op(p, '(');
    pb_op(p, '(');
    pb_str(p, "storage");
    pb_global(p, "torch", storage_type);
    pb_str(p, key);
    pb_str(p, "cpu");
    pb_int(p, numel);
    pb_op(p, 't');
    pb_op(p, 'Q');
    pb_int(p, offset);
    pb_int_tuple(p, shape, ndim);
    pb_int_tuple(p, stride, ndim);
    pb_op(p, 0x89);
    pb_global(p, "collections", "OrderedDict");
    pb_op(p, ')');
    pb_op(p, 'R');
    pb_op(p, 't');
    pb_op(p, 'R');
}

static inline void pb_begin(pb *p)
{
    p->len = 0;
    p->memo = 0;
    pb_op(p, 0x80);
    pb_op(p, 2);
}

typedef struct zip_item {
    const char *name;
    const void *data;
    size_t len;
    int deflate;
} zip_item;

/* Writes a zip archive of the items (stored, or deflated when item.deflate). 0 on success. */
static inline int write_zip(const char *path, const zip_item *items, size_t n)
{
    int code;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &code);
    if (!z)
        return -1;
    for (size_t i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(z, items[i].data, items[i].len, 0);
        zip_int64_t idx = src ? zip_file_add(z, items[i].name, src, ZIP_FL_OVERWRITE) : -1;
        if (idx < 0) {
            zip_source_free(src);
            zip_discard(z);
            return -1;
        }
        zip_set_file_compression(z, (zip_uint64_t)idx,
                                 items[i].deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 1);
    }
    return zip_close(z) == 0 ? 0 : -1;
}

#endif
