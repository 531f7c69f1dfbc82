/* The model registry of embed/model_registry.h: registering, changing and opening models (they
 * are found with the kit's lvd_model_find). */
#include "embed/model_registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct random_spec {
    const char *name;
    int dim, depth;
    lvd_vit_ffn ffn;
} random_spec;

/* The released DINOv2 layouts (patch 14, 37x37 positional grid, no registers). */
static const random_spec random_specs[] = {
    {"vits14", 384, 12, LVD_VIT_MLP},
    {"vitb14", 768, 12, LVD_VIT_MLP},
    {"vitl14", 1024, 24, LVD_VIT_MLP},
    {"vitg14", 1536, 40, LVD_VIT_SWIGLU},
};

static const random_spec *find_random(const char *name)
{
    for (size_t i = 0; i < sizeof random_specs / sizeof random_specs[0]; i++) {
        if (strcmp(random_specs[i].name, name) == 0)
            return &random_specs[i];
    }
    return NULL;
}

static int feature_dim(int width, lvd_model_features f)
{
    return f == LVD_FEATURES_CLS_PATCHMEAN ? 2 * width : width;
}

static const char sql_insert[] = "INSERT INTO models (name, path, sha256, arch, dim, params, "
                                 "features, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s[0])
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Inserts rec (its id is filled in) with config JSON. */
static int insert_model(lvd_manifest *m, lvd_model_record *rec, const char *config, lvd_error *err)
{
    int found;
    lvd_model_record old;
    if (lvd_model_find(m, rec->name, &old, &found, err) != 0)
        return -1;
    if (found)
        return lvd_fail(err, "model '%s' is already registered (arch %s)", rec->name, old.arch);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql_insert, &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, rec->name, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 2, rec->path);
    bind_text_or_null(st, 3, rec->sha256);
    sqlite3_bind_text(st, 4, rec->arch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, rec->dim);
    if (rec->params > 0)
        sqlite3_bind_int64(st, 6, rec->params);
    sqlite3_bind_text(st, 7, lvd_model_features_name(rec->features), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, config, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "registering the model");
    rec->id = sqlite3_last_insert_rowid(lvd_manifest_db(m));
    return 0;
}

static int start_record(const char *name, lvd_model_features features, lvd_model_record *rec,
                        lvd_error *err)
{
    memset(rec, 0, sizeof *rec);
    if (lvd_model_name_check(name, err) != 0)
        return -1;
    snprintf(rec->name, sizeof rec->name, "%s", name);
    rec->features = features;
    return 0;
}

int lvd_model_add_weights(lvd_manifest *m, const char *name, const char *weights,
                          lvd_model_features features, lvd_model_record *out, lvd_error *err)
{
    if (start_record(name, features, out, err) != 0)
        return -1;
    if (features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err, "model '%s': a weights file gives cls or cls+patchmean features",
                        name);
    if (!realpath(weights, out->path))
        return lvd_fail(err, "%s: %s", weights, strerror(errno));
    if (lvd_file_sha256(out->path, out->sha256, err) != 0)
        return -1;
    lvd_vit *vit;
    if (lvd_vit_load(out->path, &vit, err) != 0)
        return -1;
    const lvd_vit_info *info = lvd_vit_get_info(vit);
    lvd_model_arch_string(info, out->arch, sizeof out->arch);
    out->dim = feature_dim(info->dim, features);
    out->params = info->n_params;
    lvd_vit_free(vit);
    return insert_model(m, out, "{}", err);
}

static void random_info(const random_spec *s, lvd_vit_info *info)
{
    memset(info, 0, sizeof *info);
    info->dim = s->dim;
    info->depth = s->depth;
    info->patch = 14;
    info->grid = 37;
    info->ffn = s->ffn;
}

int lvd_model_add_random(lvd_manifest *m, const char *name, const char *spec, uint64_t seed,
                         lvd_model_features features, lvd_model_record *out, lvd_error *err)
{
    if (start_record(name, features, out, err) != 0)
        return -1;
    const random_spec *s = find_random(spec);
    if (!s)
        return lvd_fail(err, "unknown random model '%s' (vits14, vitb14, vitl14 or vitg14)", spec);
    if (features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err, "model '%s': a random ViT gives cls or cls+patchmean features", name);
    lvd_vit_info arch;
    random_info(s, &arch);
    lvd_vit *vit;
    if (lvd_vit_init_random(&arch, seed, &vit, err) != 0)
        return -1;
    const lvd_vit_info *info = lvd_vit_get_info(vit);
    char base[200];
    lvd_model_arch_string(info, base, sizeof base);
    snprintf(out->arch, sizeof out->arch, "%s init=random seed=%llu", base,
             (unsigned long long)seed);
    out->dim = feature_dim(info->dim, features);
    out->params = info->n_params;
    lvd_vit_free(vit);
    snprintf(out->random_spec, sizeof out->random_spec, "%s", spec);
    out->seed = seed;
    char config[128];
    snprintf(config, sizeof config, "{\"random\":\"%s\",\"seed\":%llu}", spec,
             (unsigned long long)seed);
    return insert_model(m, out, config, err);
}

int lvd_model_add_external(lvd_manifest *m, const char *name, int dim, lvd_model_record *out,
                           lvd_error *err)
{
    if (start_record(name, LVD_FEATURES_EXTERNAL, out, err) != 0)
        return -1;
    if (dim < 1)
        return lvd_fail(err, "model '%s': embedding width %d", name, dim);
    snprintf(out->arch, sizeof out->arch, "external dim=%d (no weights)", dim);
    out->dim = dim;
    return insert_model(m, out, "{}", err);
}

static int count_embeddings(lvd_manifest *m, int64_t model_id, int64_t *n, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM embedding_files WHERE model_id = ?1", &st,
                             err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    int rc = sqlite3_step(st);
    *n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : lvd_manifest_fail(m, err, "counting embeddings");
}

int lvd_model_set_features(lvd_manifest *m, lvd_model_record *rec, lvd_model_features features,
                           lvd_error *err)
{
    if (features == rec->features)
        return 0;
    if (rec->features == LVD_FEATURES_EXTERNAL || features == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err, "model '%s': external features cannot be changed", rec->name);
    int64_t n;
    if (count_embeddings(m, rec->id, &n, err) != 0)
        return -1;
    if (n > 0)
        return lvd_fail(err,
                        "model '%s' already has %s embeddings; register the model again under "
                        "another name for %s features",
                        rec->name, lvd_model_features_name(rec->features),
                        lvd_model_features_name(features));
    int width = rec->features == LVD_FEATURES_CLS_PATCHMEAN ? rec->dim / 2 : rec->dim;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "UPDATE models SET features = ?2, dim = ?3 WHERE id = ?1", &st,
                             err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, rec->id);
    sqlite3_bind_text(st, 2, lvd_model_features_name(features), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, feature_dim(width, features));
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "changing the model's features");
    rec->features = features;
    rec->dim = feature_dim(width, features);
    return 0;
}

int lvd_model_open(const lvd_model_record *rec, lvd_vit **out, lvd_error *err)
{
    *out = NULL;
    if (rec->random_spec[0]) {
        const random_spec *s = find_random(rec->random_spec);
        if (!s)
            return lvd_fail(err, "model '%s': unknown random model '%s'", rec->name,
                            rec->random_spec);
        lvd_vit_info arch;
        random_info(s, &arch);
        return lvd_vit_init_random(&arch, rec->seed, out, err);
    }
    if (!rec->path[0])
        return lvd_fail(err, "model '%s' has no weights (external embeddings only)", rec->name);
    char sha[65];
    if (lvd_file_sha256(rec->path, sha, err) != 0)
        return lvd_error_prefix(err, "model '%s'", rec->name);
    if (strcmp(sha, rec->sha256) != 0)
        return lvd_fail(err,
                        "model '%s': weights file %s changed since it was registered (sha256 %s, "
                        "registered %s); register it again under a new name",
                        rec->name, rec->path, sha, rec->sha256);
    if (lvd_vit_load(rec->path, out, err) != 0)
        return lvd_error_prefix(err, "model '%s'", rec->name);
    return 0;
}
