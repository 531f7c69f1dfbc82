/* lvd_crop_export of curate/crops/crop_export.h: the walk, the crops and their PNG files. */
#include "curate/crops/crop_export.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "curate/fetch/inputs.h"
#include "curate/mnist/mnist_png.h"
#include "embed/vit_rng.h"
#include "image/image.h"

/* A photo file is read whole; this bounds it (the MATE photos are at most ~30 MB). */
#define MAX_PHOTO_BYTES (512L << 20)

typedef struct walk {
    const lvd_crop_export_opts *o;
    lvd_crop_export_counts *c;
    char root[PATH_MAX]; /* the folder's real path, which the walk's paths start with */
} walk;

/* Reads the whole file at path into a malloc'd buffer. */
static int read_whole(const char *path, uint8_t **buf, size_t *len, lvd_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lvd_fail(err, "cannot open: %s", strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        lvd_fail(err, "not a regular file");
    else if (st.st_size > MAX_PHOTO_BYTES)
        lvd_fail(err, "%lld bytes, more than the %ld supported", (long long)st.st_size,
                 MAX_PHOTO_BYTES);
    else if (!(*buf = malloc(st.st_size ? (size_t)st.st_size : 1)))
        lvd_fail(err, "out of memory");
    else if (fread(*buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        lvd_fail(err, "cannot read: %s", ferror(f) ? strerror(errno) : "file shrank");
    else {
        *len = (size_t)st.st_size;
        rc = 0;
    }
    fclose(f);
    if (rc != 0) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

/* FNV-1a of the relative path: the photo's part of its stream's seed. */
static uint64_t path_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* Crop i of img: a square window resized to side x side, in gray (PIL's convert("L") weights). */
static int crop_gray(const lvd_image *img, lvd_rng *rng, const lvd_crop_export_opts *o,
                     uint8_t *gray, lvd_error *err)
{
    int short_side = img->width < img->height ? img->width : img->height;
    double frac = o->min_frac + (o->max_frac - o->min_frac) * lvd_rng_uniform(rng);
    int cs = (int)(frac * short_side + 0.5);
    cs = cs < 1 ? 1 : cs > short_side ? short_side : cs;
    int x0 = lvd_rng_below(rng, img->width - cs + 1), y0 = lvd_rng_below(rng, img->height - cs + 1);
    lvd_image win = {cs, cs, malloc((size_t)cs * (size_t)cs * 3)}, small = {0};
    if (!win.rgb)
        return lvd_fail(err, "out of memory");
    for (int y = 0; y < cs; y++)
        memcpy(win.rgb + (size_t)y * (size_t)cs * 3,
               img->rgb + ((size_t)(y0 + y) * (size_t)img->width + (size_t)x0) * 3, (size_t)cs * 3);
    int rc = lvd_image_resize(&win, o->side, o->side, &small, err);
    lvd_image_free(&win);
    if (rc != 0)
        return -1;
    for (int p = 0; p < o->side * o->side; p++) {
        const uint8_t *q = small.rgb + 3 * p;
        gray[p] = (uint8_t)((q[0] * 19595u + q[1] * 38470u + q[2] * 7471u + 0x8000u) >> 16);
    }
    lvd_image_free(&small);
    return 0;
}

/* Writes the crops of the decoded photo whose relative path is rel. */
static int write_crops(walk *w, const lvd_image *img, const char *rel, lvd_error *err)
{
    const lvd_crop_export_opts *o = w->o;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", o->out, rel);
    if (n >= (int)sizeof path - 16)
        return lvd_fail(err, "%s/%s: path too long", o->out, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (lvd_make_dirs(path, err) != 0)
        return -1;
    *slash = '/';
    lvd_rng rng = {o->seed ^ path_hash(rel)};
    uint8_t *gray = malloc((size_t)o->side * (size_t)o->side);
    if (!gray)
        return lvd_fail(err, "out of memory");
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < o->per_photo; i++) {
        snprintf(path + n, sizeof path - (size_t)n, "-%03u.png", i);
        uint8_t *png = NULL;
        size_t len;
        int written = 0;
        rc = crop_gray(img, &rng, o, gray, err);
        if (rc == 0 && lvd_png_encode_gray(gray, o->side, o->side, &png, &len, err) != 0)
            rc = lvd_error_prefix(err, "%s", path);
        if (rc == 0)
            rc = lvd_write_if_changed(path, png, len, &written, err);
        free(png);
        w->c->crops += rc == 0;
        w->c->written += (uint32_t)written;
    }
    free(gray);
    return rc;
}

/* One item of the walk: read and decode the photo (a failure skips it), then write its crops
 * (a failure stops the export). */
static int visit(void *ctx, const lvd_input_item *item, lvd_error *err)
{
    walk *w = ctx;
    w->c->photos++;
    char *path;
    if (lvd_file_url_path(item->url, &path, err) != 0)
        return -1;
    size_t root_len = strlen(w->root);
    const char *rel = path + root_len + 1;
    if (strncmp(path, w->root, root_len) != 0 || path[root_len] != '/') {
        int rc = lvd_fail(err, "%s: outside the folder %s", path, w->root);
        free(path);
        return rc;
    }
    uint8_t *buf = NULL;
    size_t len;
    lvd_error why = {0};
    lvd_image img = {0};
    /* JPEG may decode at 1/2 .. 1/8 scale as long as the smallest crop keeps `side` pixels. */
    const lvd_decode_opts dec = {.max_pixels = LVD_IMAGE_MAX_PIXELS,
                                 .alpha = LVD_ALPHA_ON_WHITE,
                                 .apply_orientation = 1,
                                 .min_side_hint = (int)(w->o->side / w->o->min_frac) + 1};
    int ok = read_whole(path, &buf, &len, &why) == 0;
    ok = ok && lvd_image_decode(buf, len, &dec, &img, &why) == 0;
    free(buf);
    int rc = 0;
    if (!ok) {
        w->c->skipped++;
        if (w->o->on_skip)
            w->o->on_skip(w->o->ctx, path, why.msg);
    } else {
        rc = write_crops(w, &img, rel, err);
        w->c->cropped += rc == 0;
    }
    lvd_image_free(&img);
    free(path);
    return rc;
}

int lvd_crop_export(const lvd_crop_export_opts *o, lvd_crop_export_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (o->per_photo < 1 || o->per_photo > 999)
        return lvd_fail(err, "crops per photo %u outside 1..999", o->per_photo);
    if (o->side < 1 || o->side > 4096)
        return lvd_fail(err, "side %d outside 1..4096", o->side);
    if (!(o->min_frac > 0 && o->min_frac <= o->max_frac && o->max_frac <= 1))
        return lvd_fail(err, "crop fractions %g..%g: need 0 < min <= max <= 1", o->min_frac,
                        o->max_frac);
    walk w = {.o = o, .c = counts};
    struct stat st;
    if (stat(o->photos, &st) != 0 || !S_ISDIR(st.st_mode) || !realpath(o->photos, w.root))
        return lvd_fail(err, "%s: not a folder", o->photos);
    if (lvd_make_dirs(o->out, err) != 0 || lvd_inputs_read(w.root, visit, &w, NULL, err) != 0)
        return -1;
    if (counts->cropped == 0)
        return lvd_fail(err, "%s: no photo could be cropped (%u files, %u skipped)", o->photos,
                        counts->photos, counts->skipped);
    return 0;
}
