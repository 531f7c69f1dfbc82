/* The export stage of curate/stages/export.h: the curated images copied shard by shard, the manifest
 * file, the folder lock. */
#include "curate/stages/export.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kit/kit.h"
#include "store/json.h"
#include "store/shard.h"

/* One curated image to copy: its fetch shard and its image member there. */
typedef struct export_item {
    int64_t id;
    char *shard;
    char *member;
    int started; /* a member of its key was written */
    int found;   /* its image member was written */
} export_item;

typedef struct export_state {
    const lvd_export_options *o;
    lvd_shard_writer *w;
    int64_t shard_no;
    lvd_export_counts *counts;
} export_state;

static const char *const items_sql =
    "SELECT v.id, v.shard, v.member FROM v_images v WHERE v.id IN"
    " (SELECT image_id FROM v_curated WHERE ?1 IS NULL OR model = ?1)"
    " ORDER BY v.shard, v.member, v.id";

static void items_free(export_item *items, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        free(items[i].shard);
        free(items[i].member);
    }
    free(items);
}

static int add_item(export_item **items, int64_t *n, int64_t *cap, sqlite3_stmt *st, lvd_error *err)
{
    int64_t id = sqlite3_column_int64(st, 0);
    const char *shard = (const char *)sqlite3_column_text(st, 1);
    const char *member = (const char *)sqlite3_column_text(st, 2);
    if (!shard || !member)
        return lvd_fail(err, "curated image %lld has no stored shard member", (long long)id);
    if (*n == *cap) {
        int64_t c = *cap ? *cap * 2 : 256;
        export_item *p = realloc(*items, (size_t)c * sizeof *p);
        if (!p)
            return lvd_fail(err, "export: out of memory");
        *items = p;
        *cap = c;
    }
    export_item *it = &(*items)[*n];
    *it = (export_item){id, strdup(shard), strdup(member), 0, 0};
    (*n)++;
    return it->shard && it->member ? 0 : lvd_fail(err, "export: out of memory");
}

static int load_items(lvd_manifest *m, const char *model, export_item **items, int64_t *n,
                      lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, items_sql, &st, err))
        return -1;
    if (model)
        sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    int64_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (add_item(items, n, &cap, st, err)) {
            sqlite3_finalize(st);
            return -1;
        }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "selecting the curated images");
    if (*n == 0)
        return lvd_fail(err, "nothing is curated%s%s: run lvd-retrieve first",
                        model ? " for model " : "", model ? model : "");
    return 0;
}

static int shard_path(const export_state *s, int64_t no, char *out, size_t size, lvd_error *err)
{
    int len = snprintf(out, size, "%s/curated-%06lld.tar", s->o->out_dir, (long long)no);
    return len < 0 || (size_t)len >= size ? lvd_fail(err, "%s: path too long", s->o->out_dir) : 0;
}

/* Called at every new key: closes the shard past the bound, opens one when none is. */
static int next_key(export_state *s, lvd_error *err)
{
    if (s->w && lvd_shard_bytes(s->w) >= s->o->shard_bytes) {
        lvd_shard_writer *w = s->w;
        s->w = NULL;
        if (lvd_shard_finish(w, err))
            return -1;
    }
    if (s->w)
        return 0;
    char path[PATH_MAX];
    if (shard_path(s, s->shard_no, path, sizeof path, err) || lvd_shard_open(path, &s->w, err))
        return -1;
    s->shard_no++;
    s->counts->shards++;
    return 0;
}

/* One group of items (all in one fetch shard) being copied. */
typedef struct copy_ctx {
    export_state *s;
    export_item *group;
} copy_ctx;

/* Copies one fetch member of item i's key into the output under the item's own key. */
static int copy_member(void *ctx, size_t i, const char *name, const uint8_t *data, size_t len,
                       lvd_error *err)
{
    copy_ctx *c = ctx;
    export_item *it = &c->group[i];
    const char *ext = strchr(name, '.');
    if (!ext)
        return 0; /* not a WebDataset member */
    char out[64 + NAME_MAX];
    snprintf(out, sizeof out, "%010lld%s", (long long)it->id, ext);
    if (!it->started) {
        it->started = 1;
        if (next_key(c->s, err))
            return -1;
    }
    it->found |= strcmp(it->member, name) == 0;
    if (lvd_shard_add(c->s->w, out, data, len, err))
        return -1;
    c->s->counts->members++;
    return 0;
}

/* Copies the members of one fetch shard that the items of group (all in that shard) need. */
static int copy_shard(export_state *s, export_item *group, int64_t n, lvd_error *err)
{
    const char **members = malloc((size_t)n * sizeof *members);
    if (!members)
        return lvd_fail(err, "export: out of memory");
    for (int64_t i = 0; i < n; i++)
        members[i] = group[i].member;
    copy_ctx c = {s, group};
    int rc =
        lvd_shard_read(group[0].shard, members, (size_t)n, LVD_SHARD_BY_KEY, copy_member, &c, err);
    free(members);
    for (int64_t i = 0; i < n && rc == 0; i++)
        if (!group[i].found)
            rc = lvd_fail(err, "%s: member %s of image %lld not found", group[i].shard,
                          group[i].member, (long long)group[i].id);
    return rc;
}

static int copy_all(export_state *s, export_item *items, int64_t n, lvd_error *err)
{
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && strcmp(items[j].shard, items[i].shard) == 0)
            j++;
        if (copy_shard(s, items + i, j - i, err))
            return -1;
        i = j;
    }
    s->counts->images = n;
    lvd_shard_writer *w = s->w;
    s->w = NULL;
    return w ? lvd_shard_finish(w, err) : 0;
}

static cJSON *manifest_line(sqlite3_stmt *st)
{
    char key[32];
    snprintf(key, sizeof key, "%010lld", (long long)sqlite3_column_int64(st, 0));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "key", key);
    cJSON_AddNumberToObject(j, "image_id", (double)sqlite3_column_int64(st, 0));
    lvd_json_add_url(j, "url", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddStringToObject(j, "dataset", (const char *)sqlite3_column_text(st, 2));
    cJSON_AddStringToObject(j, "method", (const char *)sqlite3_column_text(st, 3));
    static const char *const optional[] = {"similarity", "seed_image_id", "rank", "cluster"};
    for (int c = 0; c < 4; c++) {
        if (sqlite3_column_type(st, 4 + c) == SQLITE_NULL)
            cJSON_AddNullToObject(j, optional[c]);
        else
            cJSON_AddNumberToObject(j, optional[c], sqlite3_column_double(st, 4 + c));
    }
    cJSON_AddStringToObject(j, "model", (const char *)sqlite3_column_text(st, 8));
    return j;
}

static int write_lines(lvd_manifest *m, const char *model, FILE *f, int64_t *rows, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT c.image_id, i.url, c.dataset, c.method, c.similarity, "
                             "c.seed_image_id, c.rank, c.cluster, c.model FROM v_curated c "
                             "JOIN images i ON i.id = c.image_id WHERE ?1 IS NULL OR c.model "
                             "= ?1 ORDER BY c.image_id, c.model, c.dataset, c.method, "
                             "c.seed_image_id, c.rank",
                             &st, err))
        return -1;
    if (model)
        sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *j = manifest_line(st);
        char *text = lvd_json_print(j);
        cJSON_Delete(j);
        if (!text)
            break;
        fprintf(f, "%s\n", text);
        free(text);
        (*rows)++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "reading the curated rows");
}

/* manifest.jsonl, written to a temporary name, synced and renamed. */
static int write_manifest(lvd_manifest *m, const lvd_export_options *o, int64_t *rows,
                          lvd_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    if (snprintf(path, sizeof path, "%s/manifest.jsonl", o->out_dir) >= (int)sizeof path)
        return lvd_fail(err, "%s: path too long", o->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return lvd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    int rc = write_lines(m, o->model, f, rows, err);
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = lvd_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == 0)
        rc = lvd_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = lvd_fail(err, "%s: cannot rename: %s", tmp, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

/* Removes shards of an earlier, larger export (curated-NNNNNN.tar from the new count on). */
static void remove_stale(const export_state *s)
{
    char path[PATH_MAX];
    lvd_error ignored;
    for (int64_t no = s->shard_no;; no++)
        if (shard_path(s, no, path, sizeof path, &ignored) || unlink(path) != 0)
            return;
}

int lvd_export_run(lvd_manifest *m, const lvd_export_options *o, lvd_export_counts *counts,
                   lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
        return lvd_fail(err, "%s: cannot create folder: %s", o->out_dir, strerror(errno));
    int lock;
    if (lvd_kit_lock_dir(o->out_dir, "lvd-export", &lock, err))
        return -1;
    export_item *items = NULL;
    int64_t n = 0;
    export_state s = {o, NULL, 0, counts};
    int rc = load_items(m, o->model, &items, &n, err);
    if (rc == 0)
        rc = copy_all(&s, items, n, err);
    lvd_shard_abort(s.w);
    if (rc == 0)
        rc = write_manifest(m, o, &counts->rows, err);
    if (rc == 0)
        remove_stale(&s);
    items_free(items, n);
    close(lock);
    return rc;
}
