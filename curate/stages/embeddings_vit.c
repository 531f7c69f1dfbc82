/* Fresh embeddings the way lvd-embed makes them (curate/stages/embeddings_vit.h). */
#include "curate/stages/embeddings_vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/model_registry.h"
#include "index/index.h"

/* The eval transform of the model's stored rows (models.embed_settings, see store/MANIFEST.md). */
static int stored_settings(lvd_manifest *m, const lvd_model_record *rec, const char *what,
                           lvd_stage_vit *out, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(
            m,
            "SELECT json_extract(embed_settings, '$.resize'),"
            " json_extract(embed_settings, '$.crop'),"
            " json_extract(embed_settings, '$.imported') FROM models WHERE id = ?1",
            &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, rec->id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->resize = sqlite3_column_int(st, 0);
        out->crop = sqlite3_column_int(st, 1);
    }
    int imported = rc == SQLITE_ROW && sqlite3_column_int(st, 2);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return lvd_manifest_fail(m, err, "reading the model's embedding settings");
    if (imported)
        return lvd_fail(err,
                        "model '%s' holds imported embeddings: rows %s makes with its weights "
                        "would not be comparable with them",
                        rec->name, what);
    return 0;
}

int lvd_stage_vit_open(lvd_manifest *m, const char *model, int dim, const char *what,
                       lvd_stage_vit *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    lvd_model_record rec;
    if (lvd_model_find(m, model, &rec, NULL, err))
        return -1;
    if (rec.features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err,
                        "model '%s' has no weights (external embeddings): %s needs a ViT model",
                        model, what);
    out->pool = rec.features == LVD_FEATURES_CLS ? LVD_VIT_POOL_CLS : LVD_VIT_POOL_CLS_MEANPATCH;
    snprintf(out->model, sizeof out->model, "%s", model);
    if (stored_settings(m, &rec, what, out, err) || lvd_model_open(&rec, &out->vit, err))
        return -1;
    out->dim = lvd_vit_feature_dim(out->vit, out->pool);
    if (out->dim != dim) {
        lvd_fail(err, "model '%s' gives %d values, its embeddings have %d", model, out->dim, dim);
        lvd_stage_vit_close(out);
        return -1;
    }
    return 0;
}

void lvd_stage_vit_close(lvd_stage_vit *v)
{
    if (!v)
        return;
    lvd_vit_free(v->vit);
    memset(v, 0, sizeof *v);
}

int lvd_stage_vit_embed(lvd_stage_vit *v, const lvd_image *imgs, int n, int resize, int crop,
                        float *out, lvd_error *err)
{
    if (v->resize && (resize != v->resize || crop != v->crop))
        return lvd_fail(err,
                        "model '%s' has embeddings made with --resize %d --crop %d; rows made "
                        "with --resize %d --crop %d would not be comparable with them: pass "
                        "--resize %d --crop %d",
                        v->model, v->resize, v->crop, resize, crop, v->resize, v->crop);
    size_t plane = (size_t)3 * crop * crop;
    float *chw = malloc((size_t)n * plane * sizeof *chw);
    if (!chw)
        return lvd_fail(err, "out of memory for %d images of %d x %d", n, crop, crop);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = lvd_image_preprocess(&imgs[i], resize, crop, chw + (size_t)i * plane, err);
    if (rc == 0)
        rc = lvd_vit_features(v->vit, chw, n, crop, crop, v->pool, out, err);
    if (rc == 0)
        rc = lvd_normalize_rows(out, n, v->dim, err);
    free(chw);
    return rc;
}
