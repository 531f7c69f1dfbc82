/* The JPEG part of lvd_image_decode (image/image.h). JPEG decoding with libjpeg-turbo. At full size
 * the settings are libjpeg's defaults (islow IDCT, fancy upsampling), the ones PIL uses, so the RGB
 * is bit-exact with PIL's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "image/jpeg_err.h"

/* A crafted progressive file with thousands of tiny scans costs minutes of CPU; real encoders
 * write about ten, so far fewer than this limit. */
enum { MAX_SCANS = 500 };

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    lvd_jpeg_err je;
    struct jpeg_progress_mgr progress;
    uint8_t *pixels;
    uint8_t *row;    /* one CMYK scanline */
    int orientation; /* EXIF orientation, 1 unless asked for and present */
} jpeg_job;

static void limit_scans(j_common_ptr common)
{
    j_decompress_ptr c = (j_decompress_ptr)common;
    if (c->input_scan_number <= MAX_SCANS)
        return;
    lvd_jpeg_err *je = (lvd_jpeg_err *)common->err;
    snprintf(je->msg, sizeof je->msg, "more than %d scans", MAX_SCANS);
    longjmp(je->jmp, 1);
}

/* Heap-allocated so that its fields stay well defined after longjmp. */
static jpeg_job *job_new(void)
{
    jpeg_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->cinfo.err = lvd_jpeg_err_init(&job->je);
    job->progress.progress_monitor = limit_scans;
    job->orientation = 1;
    return job;
}

static void job_free(jpeg_job *job)
{
    jpeg_destroy_decompress(&job->cinfo);
    free(job->pixels);
    free(job->row);
    free(job);
}

/* Called right after setjmp: creates the decompressor and reads the header. */
static void job_start(jpeg_job *job, const uint8_t *buf, size_t len, int save_app1)
{
    jpeg_create_decompress(&job->cinfo);
    job->cinfo.progress = &job->progress;
    jpeg_mem_src(&job->cinfo, buf, (unsigned long)len);
    if (save_app1)
        jpeg_save_markers(&job->cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&job->cinfo, TRUE);
}

int lvd_jpeg_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err)
{
    jpeg_job *job = job_new();
    if (!job)
        return lvd_fail(err, "jpeg: out of memory");
    int rc = 0;
    if (setjmp(job->je.jmp)) {
        rc = lvd_fail_class(err, "decode", "jpeg: %s", job->je.msg);
    } else {
        job_start(job, buf, len, 0);
        info->format = LVD_IMG_JPEG;
        info->width = (int)job->cinfo.image_width;
        info->height = (int)job->cinfo.image_height;
    }
    job_free(job);
    return rc;
}

/* The smallest DCT scale (1/8, 1/4, 1/2) keeping both sides >= min_side; full size otherwise. */
static void choose_scale(struct jpeg_decompress_struct *c, int min_side)
{
    if (min_side <= 0)
        return;
    for (unsigned denom = 8; denom >= 2; denom /= 2) {
        unsigned w = (c->image_width + denom - 1) / denom;
        unsigned h = (c->image_height + denom - 1) / denom;
        if (w >= (unsigned)min_side && h >= (unsigned)min_side) {
            c->scale_num = 1;
            c->scale_denom = denom;
            return;
        }
    }
}

/* PIL reads every 4-component JPEG as Adobe-inverted CMYK ("CMYK;I") and converts to RGB with
 * its cmyk2rgb: out = nk - nk*c/255 (rounded as MULDIV255) with nk = 255 - k. */
static void cmyk_inverted_to_rgb(uint8_t *dst, const uint8_t *src, int width)
{
    for (int x = 0; x < width; x++, src += 4, dst += 3) {
        int nk = src[3]; /* 255 - (255 - stored k) */
        for (int c = 0; c < 3; c++) {
            int t = (255 - src[c]) * nk + 128;
            dst[c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
        }
    }
}

/* The EXIF orientation from the saved APP1 markers (1 when none). */
static int find_orientation(struct jpeg_decompress_struct *c)
{
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return lvd_exif_orientation(m->data, m->data_length);
    }
    return 1;
}

/* Decodes scanlines into job->pixels; errors inside libjpeg longjmp out of here. */
static int decode_body(jpeg_job *job, const lvd_decode_opts *opts, lvd_error *err)
{
    struct jpeg_decompress_struct *c = &job->cinfo;
    if (lvd_image_check_size("jpeg", c->image_width, c->image_height, opts->max_pixels, err))
        return -1;
    int cmyk = 0;
    switch (c->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        c->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        c->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        return lvd_fail_class(err, "decode", "jpeg: unsupported color space with %d components",
                              c->num_components);
    }
    if (opts->apply_orientation)
        job->orientation = find_orientation(c);
    choose_scale(c, opts->min_side_hint);
    jpeg_start_decompress(c);
    size_t w = c->output_width, h = c->output_height;
    job->pixels = malloc(w * h * 3);
    if (cmyk)
        job->row = malloc(w * 4);
    if (!job->pixels || (cmyk && !job->row))
        return lvd_fail(err, "jpeg: out of memory for %zux%zu pixels", w, h);
    while (c->output_scanline < h) {
        uint8_t *dst = job->pixels + (size_t)c->output_scanline * w * 3;
        JSAMPROW row = cmyk ? job->row : dst;
        if (jpeg_read_scanlines(c, &row, 1) != 1)
            return lvd_fail_class(err, "decode", "jpeg: decoder returned no scanline");
        if (cmyk)
            cmyk_inverted_to_rgb(dst, job->row, (int)w);
    }
    return 0;
}

int lvd_jpeg_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                    lvd_error *err)
{
    jpeg_job *job = job_new();
    if (!job)
        return lvd_fail(err, "jpeg: out of memory");
    int rc;
    if (setjmp(job->je.jmp)) {
        rc = lvd_fail_class(err, "decode", "jpeg: %s", job->je.msg);
    } else {
        job_start(job, buf, len, opts->apply_orientation);
        rc = decode_body(job, opts, err);
    }
    if (rc == 0) {
        out->width = (int)job->cinfo.output_width;
        out->height = (int)job->cinfo.output_height;
        out->rgb = job->pixels;
        job->pixels = NULL;
    }
    int orientation = job->orientation;
    job_free(job);
    if (rc == 0 && orientation != 1 && lvd_image_orient(out, orientation, err) != 0) {
        lvd_image_free(out);
        return -1;
    }
    return rc;
}
