#include "tests/image/imgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

uint8_t *test_pattern(int w, int h, int comps)
{
    uint8_t *px = malloc((size_t)w * h * comps);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                int v = (x * 255 / (w > 1 ? w - 1 : 1) * (c + 1) +
                         y * 255 / (h > 1 ? h - 1 : 1) * (3 - c % 3)) /
                        4;
                px[((size_t)y * w + x) * comps + c] = (uint8_t)(v & 0xff);
            }
    return px;
}

test_buf test_write_jpeg(const uint8_t *px, int w, int h, const test_jpeg_opts *o)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.in_color_space = o->in_space;
    c.input_components = o->in_space == JCS_GRAYSCALE ? 1 : o->in_space == JCS_CMYK ? 4 : 3;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, o->file_space);
    jpeg_set_quality(&c, o->quality, TRUE);
    if (o->progressive)
        jpeg_simple_progression(&c);
    if (o->scans) {
        c.scan_info = o->scans;
        c.num_scans = o->n_scans;
    }
    jpeg_start_compress(&c, TRUE);
    if (o->app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, o->app1, (unsigned)o->app1_len);
    size_t stride = (size_t)w * c.input_components;
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + c.next_scanline * stride);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return (test_buf){out, len};
}

static void png_append(png_structp png, png_bytep data, size_t n)
{
    test_buf *b = png_get_io_ptr(png);
    b->data = realloc(b->data, b->len + n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void png_flush_none(png_structp png)
{
    (void)png;
}

test_buf test_write_png(const uint8_t *px, int w, int h, const test_png_opts *o)
{
    test_buf b = {NULL, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "test_write_png: libpng failed\n");
        abort();
    }
    png_set_write_fn(png, &b, png_append, png_flush_none);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, o->depth, o->color_type,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (o->palette_rgb) {
        png_color pal[256];
        for (int i = 0; i < o->n_palette; i++)
            pal[i] = (png_color){o->palette_rgb[3 * i], o->palette_rgb[3 * i + 1],
                                 o->palette_rgb[3 * i + 2]};
        png_set_PLTE(png, info, pal, o->n_palette);
    }
    if (o->trans)
        png_set_tRNS(png, info, o->trans, o->n_trans, NULL);
    png_write_info(png, info);
    int channels = o->color_type == PNG_COLOR_TYPE_RGB          ? 3
                   : o->color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                   : o->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                                : 1;
    size_t rowbytes = ((size_t)w * channels * o->depth + 7) / 8;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(px + (size_t)y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return b;
}

static void put16(uint8_t *p, unsigned v, int be)
{
    p[be ? 0 : 1] = (uint8_t)(v >> 8);
    p[be ? 1 : 0] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v, int be)
{
    put16(p + (be ? 0 : 2), v >> 16, be);
    put16(p + (be ? 2 : 0), v & 0xffff, be);
}

size_t test_exif_orientation(uint8_t *buf, int orientation, int big_endian)
{
    /* "Exif\0\0", TIFF header (8), IFD0: count (2), one entry (12), next-IFD offset (4). */
    memcpy(buf, "Exif\0\0", 6);
    uint8_t *t = buf + 6;
    memcpy(t, big_endian ? "MM\0*" : "II*\0", 4);
    put32(t + 4, 8, big_endian);
    put16(t + 8, 1, big_endian);
    put16(t + 10, 0x0112, big_endian); /* Orientation */
    put16(t + 12, 3, big_endian);      /* SHORT */
    put32(t + 14, 1, big_endian);
    memset(t + 18, 0, 4);
    put16(t + 18, (unsigned)orientation, big_endian);
    put32(t + 22, 0, big_endian);
    return 6 + 26;
}
