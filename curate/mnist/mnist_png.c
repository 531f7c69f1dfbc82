/* The grayscale PNG encoder and the write-if-changed of curate/idx_png.h. */
#include "curate/mnist/mnist_png.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <png.h>

typedef struct membuf {
    uint8_t *data;
    size_t len, cap;
    int oom;
} membuf;

static void mem_write(png_structp png, png_bytep data, png_size_t len)
{
    membuf *b = png_get_io_ptr(png);
    if (b->oom)
        return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void mem_flush(png_structp png)
{
    (void)png;
}

int lvd_png_encode_gray(const uint8_t *pixels, int width, int height, uint8_t **buf, size_t *len,
                        lvd_error *err)
{
    *buf = NULL;
    *len = 0;
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return lvd_fail(err, "PNG encoder: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(b.data);
        return lvd_fail(err, "PNG encoder failed");
    }
    png_set_write_fn(png, &b, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, pixels + (size_t)y * (size_t)width);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (b.oom) {
        free(b.data);
        return lvd_fail(err, "PNG encoder: out of memory");
    }
    *buf = b.data;
    *len = b.len;
    return 0;
}

/* 1 when path holds exactly buf. */
static int same_content(const char *path, const uint8_t *buf, size_t len)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != len)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint8_t chunk[4096];
    size_t off = 0, n;
    int same = 1;
    while (same && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        same = off + n <= len && memcmp(chunk, buf + off, n) == 0;
        off += n;
    }
    fclose(f);
    return same && off == len;
}

int lvd_write_if_changed(const char *path, const uint8_t *buf, size_t len, int *written,
                         lvd_error *err)
{
    *written = 0;
    if (same_content(path, buf, len))
        return 0;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return lvd_fail(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return lvd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = fwrite(buf, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return lvd_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    *written = 1;
    return 0;
}

static int make_dir(const char *path, lvd_error *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return lvd_fail(err, "%s: cannot create folder: %s", path, strerror(errno));
    return 0;
}

int lvd_make_dirs(const char *path, lvd_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return lvd_fail(err, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = make_dir(buf, err);
        *p = '/';
        if (rc != 0)
            return -1;
    }
    return make_dir(buf, err);
}
