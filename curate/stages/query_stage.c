/* lvd_query_run of curate/stages/query_stage.h: the query vector and the neighbours. */
#include "curate/stages/query_stage.h"

#include <stdlib.h>
#include <string.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/embeddings_vit.h"
#include "curate/stages/index_stage.h"

void lvd_query_defaults(lvd_query_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->resize = 256;
    o->crop = 224;
}

static int stored_vector(lvd_manifest *m, int64_t model_id, int dim, int64_t image_id, float *q,
                         lvd_error *err)
{
    lvd_embeddings e;
    const lvd_kit_rows one = {.where = "e.image_id = ?2"};
    if (lvd_embeddings_read(m, model_id, &one, &image_id, 1, dim, &e, err))
        return -1;
    int rc = e.n == 1
                 ? 0
                 : lvd_fail(err, "image %lld has no embedding of this model", (long long)image_id);
    if (rc == 0)
        memcpy(q, e.x, (size_t)dim * sizeof *q);
    lvd_embeddings_free(&e);
    return rc;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, lvd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lvd_fail(err, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *p = cap < ((size_t)1 << 30) ? realloc(b, cap * 2) : NULL;
        if (!p) {
            free(b);
            b = NULL;
        } else {
            b = p;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        free(b);
        return lvd_fail(err, "%s: cannot read (or larger than 1 GiB)", path);
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Embeds the file o->image with the registered model, as lvd-embed embeds stored images, so a
 * file of the manifest finds its own stored embedding at similarity 1. */
static int embedded_vector(lvd_manifest *m, const lvd_query_options *o, int dim, float *q,
                           lvd_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    lvd_image img = {0};
    lvd_stage_vit v = {0};
    int rc = read_file(o->image, &buf, &len, err);
    if (rc == 0 && lvd_image_decode_rgb(buf, len, &img, err))
        rc = lvd_error_prefix(err, "%s", o->image);
    free(buf);
    if (rc == 0)
        rc = lvd_stage_vit_open(m, o->model, dim, "--image", &v, err);
    if (rc == 0 && lvd_stage_vit_embed(&v, &img, 1, o->resize, o->crop, q, err))
        rc = lvd_error_prefix(err, "%s", o->image);
    lvd_stage_vit_close(&v);
    lvd_image_free(&img);
    return rc;
}

static void print_row(sqlite3_stmt *st, int64_t id, float sim, FILE *out)
{
    sqlite3_bind_int64(st, 1, id);
    const char *url =
        sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    fprintf(out, "%lld\t%s\t%.6f\n", (long long)id, url ? url : "", sim);
    sqlite3_reset(st);
}

static int print_neighbours(lvd_manifest *m, const lvd_stage_index *si, const float *q,
                            const lvd_query_options *o, FILE *out, lvd_error *err)
{
    int k = o->k + (o->image_id > 0); /* the query image finds itself */
    float *sims = malloc((size_t)k * sizeof *sims);
    int64_t *ids = malloc((size_t)k * sizeof *ids);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (!sims || !ids)
        lvd_fail(err, "out of memory");
    else if (lvd_index_search(si->index, 1, q, k, 0, sims, ids, err) == 0 &&
             lvd_manifest_prepare(m, "SELECT url FROM images WHERE id = ?1", &st, err) == 0) {
        fprintf(out, "id\turl\tsimilarity\n");
        int printed = 0;
        for (int j = 0; j < k && printed < o->k; j++) {
            if (ids[j] < 0 || si->image_id[ids[j]] == o->image_id)
                continue;
            print_row(st, si->image_id[ids[j]], sims[j], out);
            printed++;
        }
        rc = 0;
    }
    sqlite3_finalize(st);
    free(sims);
    free(ids);
    return rc;
}

int lvd_query_run(lvd_manifest *m, const lvd_query_options *o, FILE *out, lvd_error *err)
{
    if (o->k < 1 || (o->image_id <= 0 && !o->image))
        return lvd_fail(err, "query: need k >= 1 and an image id or file");
    int64_t model_id;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err))
        return -1;
    lvd_stage_index si;
    if (lvd_stage_index_open(m, model_id, o->source, &si, err))
        return -1;
    float *q = malloc((size_t)dim * sizeof *q);
    int rc = q ? 0 : lvd_fail(err, "out of memory");
    if (rc == 0 && o->nprobe > 0 && lvd_index_nlist(si.index) > 0)
        rc = lvd_index_set_nprobe(si.index, (size_t)o->nprobe, err);
    if (rc == 0)
        rc = o->image_id > 0 ? stored_vector(m, model_id, dim, o->image_id, q, err)
                             : embedded_vector(m, o, dim, q, err);
    if (rc == 0)
        rc = print_neighbours(m, &si, q, o, out, err);
    free(q);
    lvd_stage_index_close(&si);
    return rc;
}
