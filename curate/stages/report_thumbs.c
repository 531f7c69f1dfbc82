/* lvd_report_thumbs of curate/stages/report_thumbs.h: the shown images read shard by shard,
 * shrunk and written as JPEG files. */
#include "curate/stages/report_thumbs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/report_html.h"
#include "image/image.h"
#include "store/shard.h"

/* One wanted image: where it is and whether its thumbnail was written. */
typedef struct want {
    int64_t index; /* into ids / made */
    char *shard, *member;
} want;

typedef struct scan_ctx {
    want *w;
    const int64_t *ids;
    unsigned char *made;
    const char *dir;
    int box;
    int write_failed; /* the scan failed writing, not reading */
} scan_ctx;

/* Decodes data and shrinks it into the box; returns JPEG bytes, or NULL when it cannot. */
static uint8_t *thumb_jpeg(const unsigned char *data, size_t len, int box, size_t *jlen)
{
    lvd_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = LVD_IMAGE_MAX_PIXELS; /* larger images get no thumbnail */
    o.alpha = LVD_ALPHA_ON_WHITE;
    o.apply_orientation = 1;
    lvd_image img, small = {0};
    lvd_error err;
    if (lvd_image_decode(data, len, &o, &img, &err))
        return NULL;
    int wide = img.width >= img.height;
    int w = wide ? box : (int)((int64_t)box * img.width / img.height);
    int h = wide ? (int)((int64_t)box * img.height / img.width) : box;
    uint8_t *jpeg = NULL;
    if (lvd_image_resize(&img, w > 0 ? w : 1, h > 0 ? h : 1, &small, &err) != 0 ||
        lvd_image_encode_jpeg(&small, 80, &jpeg, jlen, &err) != 0) {
        free(jpeg);
        jpeg = NULL;
    }
    lvd_image_free(&small);
    lvd_image_free(&img);
    return jpeg;
}

static int write_thumb(const char *dir, int64_t id, const uint8_t *jpeg, size_t len, lvd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%lld.jpg", dir, (long long)id);
    lvd_html_file h;
    if (lvd_html_open(&h, path, err))
        return -1;
    int ok = fwrite(jpeg, 1, len, h.f) == len;
    if (!ok)
        lvd_fail(err, "%s: cannot write", h.tmp);
    return lvd_html_close(&h, ok, err);
}

static int scan_member(void *ctx, size_t i, const char *name, const uint8_t *data, size_t len,
                       lvd_error *err)
{
    (void)name;
    scan_ctx *c = ctx;
    want *w = &c->w[i];
    if (c->made[w->index])
        return 0; /* a second copy */
    size_t jlen = 0;
    uint8_t *jpeg = thumb_jpeg(data, len, c->box, &jlen);
    if (!jpeg)
        return 0;
    int rc = write_thumb(c->dir, c->ids[w->index], jpeg, jlen, err);
    free(jpeg);
    c->made[w->index] = rc == 0;
    c->write_failed = rc != 0;
    return rc;
}

static int cmp_shard(const void *a, const void *b)
{
    const want *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Fills w with the images that have a shard member; returns how many, or -1. */
static int64_t locate(lvd_manifest *m, const int64_t *ids, int64_t n, want *w, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT shard, member FROM v_images WHERE id = ?1", &st, err))
        return -1;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        int step = sqlite3_step(st);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            sqlite3_finalize(st);
            return lvd_manifest_fail(m, err, "reading image locations");
        }
        const char *s = (const char *)sqlite3_column_text(st, 0);
        const char *mem = (const char *)sqlite3_column_text(st, 1);
        if (step != SQLITE_ROW || !s || !mem)
            continue;
        w[k] = (want){i, strdup(s), strdup(mem)};
        if (!w[k].shard || !w[k].member) {
            free(w[k].shard);
            free(w[k].member);
            sqlite3_finalize(st);
            return lvd_fail(err, "report: out of memory");
        }
        k++;
    }
    sqlite3_finalize(st);
    return k;
}

int lvd_report_thumbs(lvd_manifest *m, const int64_t *ids, int64_t n, const char *thumbs_dir,
                      int box, unsigned char *made, lvd_error *err)
{
    memset(made, 0, (size_t)n);
    size_t cap = (size_t)(n > 0 ? n : 1);
    want *w = calloc(cap, sizeof *w);
    const char **members = calloc(cap, sizeof *members);
    int64_t k = w && members ? locate(m, ids, n, w, err) : lvd_fail(err, "report: out of memory");
    int rc = k < 0 ? -1 : 0;
    if (rc == 0)
        qsort(w, (size_t)k, sizeof *w, cmp_shard);
    for (int64_t i = 0; rc == 0 && i < k;) {
        int64_t j = i;
        for (; j < k && strcmp(w[j].shard, w[i].shard) == 0; j++)
            members[j - i] = w[j].member;
        scan_ctx c = {w + i, ids, made, thumbs_dir, box, 0};
        lvd_error scan_err;
        /* An unreadable shard leaves its images without thumbnails; a write failure is fatal. */
        if (lvd_shard_read(w[i].shard, members, (size_t)(j - i), LVD_SHARD_BY_NAME, scan_member, &c,
                           &scan_err) &&
            c.write_failed) {
            *err = scan_err;
            rc = -1;
        }
        i = j;
    }
    for (int64_t i = 0; i < (k > 0 ? k : 0); i++) {
        free(w[i].shard);
        free(w[i].member);
    }
    free(w);
    free(members);
    return rc;
}
