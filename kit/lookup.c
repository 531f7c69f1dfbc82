/* Part 4 of kit/kit.h, lookups: models, sources and the statement selecting embedding rows. */
#include "kit/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const feature_names[] = {"cls", "cls+patchmean", "external"};

const char *lvd_model_features_name(lvd_model_features f)
{
    return feature_names[f];
}

int lvd_model_features_parse(const char *name, lvd_model_features *f, lvd_error *err)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, feature_names[i]) == 0) {
            *f = (lvd_model_features)i;
            return 0;
        }
    }
    return lvd_fail(err, "unknown features '%s' (cls, cls+patchmean or external)", name);
}

int lvd_kit_features_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    lvd_model_features f;
    if (lvd_model_features_parse(value, &f, err) != 0 || f == LVD_FEATURES_EXTERNAL)
        return lvd_fail(err, "'%s' is not cls or cls+patchmean", value);
    *(int *)o->dest = (int)f;
    return 0;
}

static void copy_column(sqlite3_stmt *st, int col, char *dst, size_t size)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", s ? s : "");
}

/* Reads config {"random": SPEC, "seed": S} into rec (other configs leave it a file model). */
static void parse_config(const char *config, lvd_model_record *rec)
{
    cJSON *j = cJSON_Parse(config);
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "random");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (cJSON_IsString(spec) && cJSON_IsNumber(seed)) {
        snprintf(rec->random_spec, sizeof rec->random_spec, "%s", spec->valuestring);
        rec->seed = (uint64_t)seed->valuedouble;
    }
    cJSON_Delete(j);
}

static const char sql_model[] =
    "SELECT id, name, path, sha256, arch, dim, params, features, config "
    "FROM models WHERE name = ?1";

int lvd_model_find(lvd_manifest *m, const char *name, lvd_model_record *out, int *found,
                   lvd_error *err)
{
    memset(out, 0, sizeof *out);
    if (found)
        *found = 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql_model, &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (found)
            *found = 1;
        out->id = sqlite3_column_int64(st, 0);
        copy_column(st, 1, out->name, sizeof out->name);
        copy_column(st, 2, out->path, sizeof out->path);
        copy_column(st, 3, out->sha256, sizeof out->sha256);
        copy_column(st, 4, out->arch, sizeof out->arch);
        out->dim = sqlite3_column_int(st, 5);
        out->params = sqlite3_column_int64(st, 6);
        const char *features = (const char *)sqlite3_column_text(st, 7);
        if (lvd_model_features_parse(features ? features : "", &out->features, err) != 0)
            rc = SQLITE_CORRUPT;
        const char *config = (const char *)sqlite3_column_text(st, 8);
        parse_config(config ? config : "{}", out);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_CORRUPT)
        return lvd_error_prefix(err, "model '%s'", name);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "looking up a model");
    if (rc == SQLITE_DONE && !found)
        return lvd_fail(err, "%s: no model named '%s' (register it with lvd-model add)",
                        lvd_manifest_path(m), name);
    return 0;
}

int lvd_source_find(lvd_manifest *m, const char *name, int role, int64_t *id, int *found,
                    lvd_error *err)
{
    *id = 0;
    if (found)
        *found = 0;
    if (!name)
        return 0;
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id FROM sources WHERE name = ?1 AND (?2 IS NULL OR role = ?2)",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (role >= 0)
        sqlite3_bind_text(st, 2, lvd_role_name((lvd_source_role)role), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "looking up a source");
    if (found)
        *found = rc == SQLITE_ROW;
    else if (rc == SQLITE_DONE)
        return lvd_fail(err, "%s: no %s%ssource named '%s'", lvd_manifest_path(m),
                        role >= 0 ? lvd_role_name((lvd_source_role)role) : "", role >= 0 ? " " : "",
                        name);
    return 0;
}

int lvd_kit_embeddings(lvd_manifest *m, int64_t model_id, const lvd_kit_rows *q,
                       const int64_t *binds, int n_binds, sqlite3_stmt **st, lvd_error *err)
{
    const char *tag = q && q->tag ? q->tag : NULL;
    const char *join = q && q->join ? q->join : "";
    const char *where = q && q->where ? q->where : NULL;
    const char *order = q && q->order ? q->order : "e.image_id";
    size_t need =
        512 + (tag ? strlen(tag) : 0) + strlen(join) + (where ? strlen(where) : 0) + strlen(order);
    char *sql = malloc(need);
    if (!sql)
        return lvd_fail(err, "out of memory");
    snprintf(sql, need,
             "SELECT e.image_id, e.file, e.row%s%s FROM v_embeddings e"
             " JOIN images i ON i.id = e.image_id JOIN sources s ON s.id = i.source_id %s"
             " WHERE e.model = (SELECT name FROM models WHERE id = ?1)%s%s%s ORDER BY %s",
             tag ? ", " : "", tag ? tag : "", join, where ? " AND (" : "", where ? where : "",
             where ? ")" : "", order);
    int rc = lvd_manifest_prepare(m, sql, st, err);
    free(sql);
    if (rc != 0)
        return -1;
    sqlite3_bind_int64(*st, 1, model_id);
    for (int k = 0; k < n_binds; k++)
        sqlite3_bind_int64(*st, k + 2, binds[k]);
    return 0;
}
