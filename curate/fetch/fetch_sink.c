/* The sink of curate/fetch_internal.h. Recording outcomes: failures and duplicates of already
 * stored images go into a batch that is committed about every second; accepted images go into the
 * open shard and become ok only in the transaction that marks the shard complete. */
#include "curate/fetch/fetch_internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/json.h"

#define BATCH_SECONDS 1.0

/* An item of the open shard: stored in it, or a duplicate of one stored in it (first != 0). */
typedef struct member {
    int64_t id;
    int64_t first;
    char sha[65];
    int width, height;
    const char *format;
    size_t bytes;
    int attempts;
} member;

struct fetch_sink {
    lvd_manifest *m;
    int64_t run_id;
    char *out_dir;
    int64_t shard_size;
    int batch_open;
    double batch_started;
    lvd_shard_writer *shard;
    int64_t shard_id;
    char shard_path[PATH_MAX];
    member *members;
    int n_members, cap_members;
    int64_t *slots; /* open-addressing set of member indexes + 1 keyed by sha, 0 = empty */
    int n_slots;
    int64_t shards_done;
    sqlite3_stmt *st_fail, *st_done, *st_find;
};

static const char *sql_fail = "UPDATE images SET status = 'failed', error_class = ?2, error = ?3,"
                              " run_id = ?4, attempts = attempts + ?5 WHERE id = ?1";
static const char *sql_done =
    "UPDATE images SET status = ?2, error_class = ?2, error = NULL, sha256 = ?3, width = ?4,"
    " height = ?5, format = ?6, bytes = ?7, shard_id = ?8, member = ?9, duplicate_of = ?10,"
    " run_id = ?11, attempts = attempts + ?12 WHERE id = ?1";
static const char *sql_find = "SELECT id FROM images WHERE sha256 = ?1 AND status = 'ok' LIMIT 1";

int fetch_sink_open(lvd_manifest *m, int64_t run_id, const char *out_dir, int64_t shard_size,
                    fetch_sink **out, lvd_error *err)
{
    *out = NULL;
    fetch_sink *s = calloc(1, sizeof *s);
    if (!s || !(s->out_dir = strdup(out_dir))) {
        free(s);
        return lvd_fail(err, "out of memory");
    }
    s->m = m;
    s->run_id = run_id;
    s->shard_size = shard_size;
    if (lvd_manifest_prepare(m, sql_fail, &s->st_fail, err) != 0 ||
        lvd_manifest_prepare(m, sql_done, &s->st_done, err) != 0 ||
        lvd_manifest_prepare(m, sql_find, &s->st_find, err) != 0) {
        fetch_sink_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void fetch_sink_close(fetch_sink *s)
{
    if (!s)
        return;
    lvd_manifest_rollback(s->m);
    lvd_shard_abort(s->shard);
    sqlite3_finalize(s->st_fail);
    sqlite3_finalize(s->st_done);
    sqlite3_finalize(s->st_find);
    free(s->members);
    free(s->slots);
    free(s->out_dir);
    free(s);
}

int64_t fetch_sink_shards(const fetch_sink *s)
{
    return s->shards_done;
}

static int ensure_batch(fetch_sink *s, lvd_error *err)
{
    if (s->batch_open)
        return 0;
    if (lvd_manifest_begin(s->m, err) != 0)
        return -1;
    s->batch_open = 1;
    s->batch_started = fetch_now();
    return 0;
}

static int commit(fetch_sink *s, lvd_error *err)
{
    if (!s->batch_open)
        return 0;
    s->batch_open = 0;
    return lvd_manifest_commit(s->m, err);
}

int fetch_sink_tick(fetch_sink *s, lvd_error *err)
{
    if (s->batch_open && fetch_now() - s->batch_started >= BATCH_SECONDS)
        return commit(s, err);
    return 0;
}

/* Runs a bound UPDATE and resets it. */
static int step(fetch_sink *s, sqlite3_stmt *st, lvd_error *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(s->m, err, "updating an item");
}

static int record_failure(fetch_sink *s, fetch_job *job, lvd_error *err)
{
    if (ensure_batch(s, err) != 0)
        return -1;
    sqlite3_bind_int64(s->st_fail, 1, job->id);
    sqlite3_bind_text(s->st_fail, 2, job->err.cls ? job->err.cls : "decode", -1, SQLITE_STATIC);
    sqlite3_bind_text(s->st_fail, 3, job->err.msg, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->st_fail, 4, s->run_id);
    sqlite3_bind_int(s->st_fail, 5, job->attempts);
    return step(s, s->st_fail, err);
}

/* Records m as ok (stored in shard_id as name) or as a duplicate of first. */
static int record_done(fetch_sink *s, const member *mb, int64_t shard_id, const char *name,
                       lvd_error *err)
{
    sqlite3_stmt *st = s->st_done;
    sqlite3_bind_int64(st, 1, mb->id);
    sqlite3_bind_text(st, 2, mb->first ? "duplicate" : "ok", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, mb->sha, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, mb->width);
    sqlite3_bind_int(st, 5, mb->height);
    sqlite3_bind_text(st, 6, mb->format, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)mb->bytes);
    if (!mb->first) {
        sqlite3_bind_int64(st, 8, shard_id);
        sqlite3_bind_text(st, 9, name, -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_int64(st, 10, mb->first);
    }
    sqlite3_bind_int64(st, 11, s->run_id);
    sqlite3_bind_int(st, 12, mb->attempts);
    return step(s, st, err);
}

/* The shard member name of item id with extension ext: "<key>.<ext>", the key being the
 * zero-padded id (unique in the manifest and dot-free, as WebDataset keys must be). */
static void member_name(int64_t id, const char *ext, char *name, size_t cap)
{
    snprintf(name, cap, "%010lld.%s", (long long)id, ext);
}

static uint64_t sha_slot(const char *sha)
{
    uint64_t h = 0;
    for (int i = 0; i < 16; i++)
        h = h * 16 + (uint64_t)(sha[i] <= '9' ? sha[i] - '0' : sha[i] - 'a' + 10);
    return h;
}

/* The index of the shard member stored with sha, or -1. */
static int find_member(const fetch_sink *s, const char *sha)
{
    if (!s->n_slots)
        return -1;
    for (uint64_t i = sha_slot(sha) & (s->n_slots - 1);; i = (i + 1) & (s->n_slots - 1)) {
        int64_t v = s->slots[i];
        if (!v)
            return -1;
        if (strcmp(s->members[v - 1].sha, sha) == 0)
            return (int)(v - 1);
    }
}

static void insert_slot(fetch_sink *s, int index)
{
    uint64_t i = sha_slot(s->members[index].sha) & (s->n_slots - 1);
    while (s->slots[i])
        i = (i + 1) & (s->n_slots - 1);
    s->slots[i] = index + 1;
}

/* Makes room for one more member (and keeps the set at most half full). */
static int grow(fetch_sink *s, lvd_error *err)
{
    if (s->n_members == s->cap_members) {
        int cap = s->cap_members ? s->cap_members * 2 : 256;
        member *mb = realloc(s->members, (size_t)cap * sizeof *mb);
        if (!mb)
            return lvd_fail(err, "out of memory");
        s->members = mb;
        s->cap_members = cap;
    }
    if (2 * (s->n_members + 1) <= s->n_slots)
        return 0;
    int n = s->n_slots ? s->n_slots * 2 : 512;
    int64_t *slots = calloc((size_t)n, sizeof *slots);
    if (!slots)
        return lvd_fail(err, "out of memory");
    free(s->slots);
    s->slots = slots;
    s->n_slots = n;
    for (int i = 0; i < s->n_members; i++)
        if (!s->members[i].first)
            insert_slot(s, i);
    return 0;
}

/* Registers a new shard as 'writing' (committed before its file exists) and opens its file. */
static int open_shard(fetch_sink *s, lvd_error *err)
{
    if (ensure_batch(s, err) != 0)
        return -1;
    sqlite3 *db = lvd_manifest_db(s->m);
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO shards(run_id) VALUES (%lld)", (long long)s->run_id);
    if (lvd_manifest_exec(s->m, sql, err) != 0)
        return -1;
    s->shard_id = sqlite3_last_insert_rowid(db);
    if (snprintf(s->shard_path, sizeof s->shard_path, "%s/shard-%06lld.tar", s->out_dir,
                 (long long)s->shard_id) >= (int)sizeof s->shard_path)
        return lvd_fail(err, "%s: shard path too long", s->out_dir);
    /* fetch_recover removed every file of this manifest's unfinished shards, so a file under a
     * new shard's name belongs to something else: most often another manifest fetching into the
     * same folder. Writing it would destroy that manifest's images. */
    if (access(s->shard_path, F_OK) == 0)
        return lvd_fail(err,
                        "%s exists and is not a shard of this manifest (does another manifest "
                        "write into %s? give each manifest its own shard folder, lvd-fetch --out)",
                        s->shard_path, s->out_dir);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(s->m, "UPDATE shards SET path = ?2 WHERE id = ?1", &st, err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, s->shard_id);
    sqlite3_bind_text(st, 2, s->shard_path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(s->m, err, "registering a shard");
    if (commit(s, err) != 0)
        return -1;
    return lvd_shard_open(s->shard_path, &s->shard, err);
}

static int complete_shard(fetch_sink *s, lvd_error *err)
{
    if (!s->shard)
        return 0;
    uint64_t bytes = lvd_shard_bytes(s->shard);
    int stored = lvd_shard_members(s->shard) / 2;
    lvd_shard_writer *w = s->shard;
    s->shard = NULL;
    if (lvd_shard_finish(w, err) != 0 || ensure_batch(s, err) != 0)
        return -1;
    char sql[160];
    snprintf(sql, sizeof sql,
             "UPDATE shards SET status = 'complete', members = %d, bytes = %llu WHERE id = %lld",
             stored, (unsigned long long)bytes, (long long)s->shard_id);
    if (lvd_manifest_exec(s->m, sql, err) != 0)
        return -1;
    for (int i = 0; i < s->n_members; i++) {
        const member *mb = &s->members[i];
        char name[48];
        member_name(mb->id, mb->format, name, sizeof name);
        if (record_done(s, mb, s->shard_id, name, err) != 0)
            return -1;
    }
    if (commit(s, err) != 0)
        return -1;
    s->n_members = 0;
    memset(s->slots, 0, (size_t)s->n_slots * sizeof *s->slots);
    s->shards_done++;
    return 0;
}

int fetch_sink_flush(fetch_sink *s, lvd_error *err)
{
    if (complete_shard(s, err) != 0)
        return -1;
    return commit(s, err);
}

/* The <key>.json member: what a WebDataset reader needs without the manifest. */
static char *member_json(const fetch_job *job)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    lvd_json_add_url(o, "url", job->url);
    cJSON_AddStringToObject(o, "sha256", job->stored.sha256_hex);
    cJSON_AddNumberToObject(o, "width", job->stored.width);
    cJSON_AddNumberToObject(o, "height", job->stored.height);
    if (job->label)
        cJSON_AddStringToObject(o, "label", job->label);
    else
        cJSON_AddNullToObject(o, "label");
    if (job->key)
        cJSON_AddStringToObject(o, "key", job->key);
    if (job->caption)
        cJSON_AddStringToObject(o, "caption", job->caption);
    char *text = lvd_json_print(o);
    cJSON_Delete(o);
    return text;
}

static int store(fetch_sink *s, fetch_job *job, member *mb, lvd_error *err)
{
    char *json = member_json(job);
    if (!json)
        return lvd_fail(err, "out of memory");
    size_t json_len = strlen(json);
    uint64_t need = lvd_shard_member_bytes(job->stored.len) + lvd_shard_member_bytes(json_len);
    int rc = 0;
    if (s->shard && lvd_shard_members(s->shard) > 0 &&
        lvd_shard_bytes(s->shard) + need > (uint64_t)s->shard_size)
        rc = complete_shard(s, err);
    if (rc == 0 && !s->shard)
        rc = open_shard(s, err);
    char name[48];
    member_name(job->id, mb->format, name, sizeof name);
    if (rc == 0)
        rc = lvd_shard_add(s->shard, name, job->stored.data, job->stored.len, err);
    member_name(job->id, "json", name, sizeof name);
    if (rc == 0)
        rc = lvd_shard_add(s->shard, name, json, json_len, err);
    free(json);
    return rc;
}

/* Looks sha up among the ok items of the manifest; writes the id or 0. */
static int find_stored(fetch_sink *s, const char *sha, int64_t *id, lvd_error *err)
{
    sqlite3_bind_text(s->st_find, 1, sha, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s->st_find);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(s->st_find, 0) : 0;
    sqlite3_reset(s->st_find);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(s->m, err, "looking up a sha256");
    return 0;
}

int fetch_sink_record(fetch_sink *s, fetch_job *job, lvd_error *err)
{
    if (job->failed)
        return record_failure(s, job, err);
    member mb = {
        .id = job->id,
        .width = job->stored.width,
        .height = job->stored.height,
        .format = lvd_image_format_ext(job->stored.format),
        .bytes = job->stored.len,
        .attempts = job->attempts,
    };
    memcpy(mb.sha, job->stored.sha256_hex, sizeof mb.sha);
    int in_shard = find_member(s, mb.sha);
    if (in_shard >= 0) {
        mb.first = s->members[in_shard].id;
    } else {
        if (find_stored(s, mb.sha, &mb.first, err) != 0)
            return -1;
        job->duplicate_of = mb.first;
        if (mb.first) {
            if (ensure_batch(s, err) != 0)
                return -1;
            return record_done(s, &mb, 0, NULL, err);
        }
        if (store(s, job, &mb, err) != 0)
            return -1;
    }
    job->duplicate_of = mb.first;
    if (grow(s, err) != 0)
        return -1;
    s->members[s->n_members] = mb;
    if (!mb.first)
        insert_slot(s, s->n_members);
    s->n_members++;
    return 0;
}
