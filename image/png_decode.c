/* The PNG part of lvd_image_decode (image/image.h). PNG decoding with libpng. Palette, gray (1..16
 * bit), tRNS and 16-bit inputs are expanded to 8-bit RGB or RGBA by libpng; 16-bit samples keep
 * their high byte (PIL's RGB;16B and RGBA;16B unpackers do the same; for 16-bit gray PIL clips the
 * value at 255 instead, which whitens the image: we keep the high byte there too). No gamma or
 * color-profile correction, as in PIL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/internal.h"

typedef struct png_job {
    png_structp png;
    png_infop info;
    const uint8_t *buf;
    size_t len, pos;
    uint8_t *pixels;
    png_bytep *rows;
    char msg[256];
} png_job;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int lvd_png_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err)
{
    /* signature (8), IHDR length (4) and type (4), width (4), height (4) */
    if (len < 24 || memcmp(buf + 12, "IHDR", 4) != 0)
        return lvd_fail_class(err, "decode", "png: no IHDR chunk after the signature");
    uint32_t w = be32(buf + 16), h = be32(buf + 20);
    if (w == 0 || h == 0 || w > PNG_UINT_31_MAX || h > PNG_UINT_31_MAX)
        return lvd_fail_class(err, "decode", "png: invalid dimensions %ux%u", (unsigned)w,
                              (unsigned)h);
    info->format = LVD_IMG_PNG;
    info->width = (int)w;
    info->height = (int)h;
    return 0;
}

static void png_job_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    snprintf(job->msg, sizeof job->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_job_warning(png_structp png, png_const_charp msg)
{
    /* Warnings concern ancillary chunks (bad sRGB profile, CRC of a text chunk): pixels are fine.
     */
    (void)png;
    (void)msg;
}

static void png_job_read(png_structp png, png_bytep data, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (job->len - job->pos < n)
        png_error(png, "truncated data");
    memcpy(data, job->buf + job->pos, n);
    job->pos += n;
}

/* Asks libpng for 8-bit RGB or RGBA whatever the stored format. */
static void request_rgb8(png_structp png, png_infop info)
{
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (depth == 16)
        png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Reads the whole image into job->pixels; libpng errors longjmp out of here. */
static int decode_body(png_job *job, const lvd_decode_opts *opts, lvd_image *out, lvd_error *err)
{
    png_set_read_fn(job->png, job, png_job_read);
    png_set_user_limits(job->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info(job->png, job->info);
    size_t w = png_get_image_width(job->png, job->info);
    size_t h = png_get_image_height(job->png, job->info);
    request_rgb8(job->png, job->info);
    size_t channels = png_get_channels(job->png, job->info);
    if ((channels != 3 && channels != 4) || png_get_rowbytes(job->png, job->info) != w * channels)
        return lvd_fail_class(err, "decode", "png: unexpected layout after expansion");
    job->pixels = malloc(w * h * channels);
    job->rows = malloc(h * sizeof *job->rows);
    if (!job->pixels || !job->rows)
        return lvd_fail(err, "png: out of memory for %zux%zu pixels", w, h);
    for (size_t y = 0; y < h; y++)
        job->rows[y] = job->pixels + y * w * channels;
    png_read_image(job->png, job->rows);
    if (channels == 4) {
        lvd_image_rgba_to_rgb(job->pixels, job->pixels, w * h, opts->alpha);
        uint8_t *shrunk = realloc(job->pixels, w * h * 3);
        if (shrunk)
            job->pixels = shrunk;
    }
    out->width = (int)w;
    out->height = (int)h;
    return 0;
}

int lvd_png_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                   lvd_error *err)
{
    /* The limit is checked on the IHDR alone, before libpng reads any further chunk. */
    lvd_image_info info;
    if (lvd_png_probe(buf, len, &info, err) ||
        lvd_image_check_size("png", info.width, info.height, opts->max_pixels, err))
        return -1;
    png_job *job = calloc(1, sizeof *job);
    if (!job)
        return lvd_fail(err, "png: out of memory");
    job->buf = buf;
    job->len = len;
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_job_error, png_job_warning);
    job->info = job->png ? png_create_info_struct(job->png) : NULL;
    int rc;
    if (!job->info) {
        rc = lvd_fail(err, "png: out of memory");
    } else if (setjmp(png_jmpbuf(job->png))) {
        rc = lvd_fail_class(err, "decode", "png: %s", job->msg);
    } else {
        rc = decode_body(job, opts, out, err);
    }
    if (rc == 0) {
        out->rgb = job->pixels;
        job->pixels = NULL;
    } else {
        memset(out, 0, sizeof *out);
    }
    png_destroy_read_struct(&job->png, &job->info, NULL);
    free(job->pixels);
    free(job->rows);
    free(job);
    return rc;
}
