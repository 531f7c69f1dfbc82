/* Baseline JPEG encoding with libjpeg-turbo (default 4:2:0 subsampling, standard tables). */
#include <stdlib.h>

#include "image/image.h"
#include "image/jpeg_err.h"

typedef struct encode_job {
    struct jpeg_compress_struct cinfo;
    lvd_jpeg_err je;
    unsigned char *buf; /* grown by jpeg_mem_dest with malloc */
    unsigned long len;
} encode_job;

static void encode_body(encode_job *job, const lvd_image *in, int quality)
{
    struct jpeg_compress_struct *c = &job->cinfo;
    jpeg_create_compress(c);
    jpeg_mem_dest(c, &job->buf, &job->len);
    c->image_width = (JDIMENSION)in->width;
    c->image_height = (JDIMENSION)in->height;
    c->input_components = 3;
    c->in_color_space = JCS_RGB;
    jpeg_set_defaults(c);
    jpeg_set_quality(c, quality, TRUE);
    jpeg_start_compress(c, TRUE);
    size_t stride = (size_t)in->width * 3;
    while (c->next_scanline < c->image_height) {
        JSAMPROW row = in->rgb + (size_t)c->next_scanline * stride;
        jpeg_write_scanlines(c, &row, 1);
    }
    jpeg_finish_compress(c);
}

int lvd_image_encode_jpeg(const lvd_image *in, int quality, uint8_t **buf, size_t *len,
                          lvd_error *err)
{
    *buf = NULL;
    *len = 0;
    if (!in->rgb || in->width <= 0 || in->height <= 0 || in->width > 65500 || in->height > 65500)
        return lvd_fail(err, "jpeg encode: cannot encode a %dx%d image", in->width, in->height);
    if (quality < 1 || quality > 100)
        return lvd_fail(err, "jpeg encode: quality %d is outside 1..100", quality);
    /* Heap-allocated so that its fields stay well defined after longjmp. */
    encode_job *job = calloc(1, sizeof *job);
    if (!job)
        return lvd_fail(err, "jpeg encode: out of memory");
    job->cinfo.err = lvd_jpeg_err_init(&job->je);
    int rc = 0;
    if (setjmp(job->je.jmp))
        rc = lvd_fail(err, "jpeg encode: %s", job->je.msg);
    else
        encode_body(job, in, quality);
    jpeg_destroy_compress(&job->cinfo);
    if (rc == 0) {
        *buf = job->buf;
        *len = job->len;
    } else {
        free(job->buf);
    }
    free(job);
    return rc;
}
