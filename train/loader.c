/* The loader's selection and bytes (train/loader.h): defaults, the manifest queries, one
 * lvd_shard_read pass per shard into memory, open, stats and the id list. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/manifest.h"
#include "store/shard.h"
#include "train/loader_internal.h"

void lvd_loader_defaults(lvd_loader_config *c)
{
    memset(c, 0, sizeof *c);
    c->batch_size = 64;
    c->workers = 2;
    c->patch_size = 14;
    lvd_aug_defaults(&c->aug);
    lvd_mask_opts_defaults(&c->mask);
}

/* One selected image before its bytes are read. */
typedef struct pick {
    int64_t id;
    char *shard, *member;
    size_t off, len;
    int found;
} pick;

typedef struct picks {
    pick *v;
    int64_t n, cap;
} picks;

static void picks_free(picks *p)
{
    for (int64_t i = 0; i < p->n; i++) {
        free(p->v[i].shard);
        free(p->v[i].member);
    }
    free(p->v);
}

/* Appends the (id, shard, member) rows of st. */
static int collect(lvd_manifest *m, sqlite3_stmt *st, picks *p, lvd_error *err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (p->n == p->cap) {
            int64_t cap = p->cap ? 2 * p->cap : 1024;
            pick *v = realloc(p->v, (size_t)cap * sizeof *v);
            if (!v)
                return lvd_fail(err, "loader: out of memory for %lld images", (long long)cap);
            p->v = v;
            p->cap = cap;
        }
        pick *k = &p->v[p->n];
        memset(k, 0, sizeof *k);
        k->id = sqlite3_column_int64(st, 0);
        k->shard = strdup((const char *)sqlite3_column_text(st, 1));
        k->member = strdup((const char *)sqlite3_column_text(st, 2));
        p->n++;
        if (!k->shard || !k->member)
            return lvd_fail(err, "loader: out of memory");
    }
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "loader: reading the selection");
}

static int exists(lvd_manifest *m, const char *sql, const char *name, const char *what,
                  lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return lvd_fail(err, "loader: unknown %s '%s'", what, name);
    return lvd_manifest_fail(m, err, "loader: looking up a name");
}

static int select_images(lvd_manifest *m, const lvd_loader_config *c, picks *p, lvd_error *err)
{
    sqlite3_stmt *st;
    if (c->model) {
        if (exists(m, "SELECT 1 FROM models WHERE name = ?1", c->model, "model", err))
            return -1;
        if (lvd_manifest_prepare(m,
                                 "SELECT DISTINCT i.id, i.shard, i.member FROM v_curated k"
                                 " JOIN v_images i ON i.id = k.image_id"
                                 " WHERE k.model = ?1 AND (?2 IS NULL OR k.method = ?2)"
                                 " AND (?3 IS NULL OR k.dataset = ?3)"
                                 " AND i.status IN ('ok', 'duplicate') AND i.shard IS NOT NULL"
                                 " AND i.member IS NOT NULL ORDER BY i.id",
                                 &st, err))
            return -1;
        sqlite3_bind_text(st, 1, c->model, -1, SQLITE_STATIC);
        if (c->method)
            sqlite3_bind_text(st, 2, c->method, -1, SQLITE_STATIC);
        if (c->dataset)
            sqlite3_bind_text(st, 3, c->dataset, -1, SQLITE_STATIC);
        int rc = collect(m, st, p, err);
        sqlite3_finalize(st);
        return rc;
    }
    if (c->n_sources < 1)
        return lvd_fail(err, "loader: no model and no sources selected");
    for (int s = 0; s < c->n_sources; s++) {
        if (exists(m, "SELECT 1 FROM sources WHERE name = ?1", c->sources[s], "source", err))
            return -1;
        if (lvd_manifest_prepare(m,
                                 "SELECT id, shard, member FROM v_images WHERE source = ?1"
                                 " AND status = 'ok' AND shard IS NOT NULL AND member IS NOT NULL",
                                 &st, err))
            return -1;
        sqlite3_bind_text(st, 1, c->sources[s], -1, SQLITE_STATIC);
        int rc = collect(m, st, p, err);
        sqlite3_finalize(st);
        if (rc)
            return -1;
    }
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = ((const pick *)a)->id, y = ((const pick *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_shard(const void *a, const void *b)
{
    const pick *x = *(pick *const *)a, *y = *(pick *const *)b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* Collects one shard's members into the arena. */
typedef struct scan_ctx {
    pick **group;
    const char **names;
    lvd_loader *l;
    size_t cap;
    int oom; /* the arena could not grow: fatal, unlike an unreadable shard */
} scan_ctx;

static int on_member(void *ctx, size_t i, const char *name, const uint8_t *data, size_t len,
                     lvd_error *err)
{
    scan_ctx *s = ctx;
    pick *k = s->group[i];
    if (k->found || strcmp(name, k->member) != 0)
        return 0; /* the key's .json member, or a repeated name (fetch recorded the first) */
    lvd_loader *l = s->l;
    if (l->n_bytes + len > s->cap) {
        size_t cap = s->cap ? s->cap : (size_t)1 << 20;
        while (cap < l->n_bytes + len)
            cap *= 2;
        uint8_t *b = realloc(l->bytes, cap);
        if (!b) {
            s->oom = 1;
            return lvd_fail(err, "loader: out of memory holding %zu bytes of images", cap);
        }
        l->bytes = b;
        s->cap = cap;
    }
    if (len)
        memcpy(l->bytes + l->n_bytes, data, len);
    k->off = l->n_bytes;
    k->len = len;
    k->found = 1;
    l->n_bytes += len;
    return 0;
}

/* Reads every pick's bytes, one pass per shard. A shard that cannot be read leaves its picks
 * not found; only running out of memory fails. */
static int read_bytes(lvd_loader *l, picks *p, lvd_error *err)
{
    pick **order = malloc((size_t)(p->n ? p->n : 1) * sizeof *order);
    const char **names = malloc((size_t)(p->n ? p->n : 1) * sizeof *names);
    if (!order || !names) {
        free(order);
        free(names);
        return lvd_fail(err, "loader: out of memory");
    }
    for (int64_t i = 0; i < p->n; i++)
        order[i] = &p->v[i];
    qsort(order, (size_t)p->n, sizeof *order, cmp_shard);
    scan_ctx s = {NULL, names, l, 0, 0};
    int rc = 0;
    for (int64_t i = 0, j; i < p->n && rc == 0; i = j) {
        for (j = i; j < p->n && strcmp(order[j]->shard, order[i]->shard) == 0; j++)
            names[j - i] = order[j]->member;
        s.group = order + i;
        lvd_error scan_err;
        if (lvd_shard_read(order[i]->shard, names, (size_t)(j - i), LVD_SHARD_BY_NAME, on_member,
                           &s, &scan_err) &&
            s.oom) {
            *err = scan_err;
            rc = -1;
        }
    }
    free(order);
    free(names);
    return rc;
}

int loader_read_images(lvd_loader *l, const lvd_loader_config *c, lvd_error *err)
{
    if (!c->db || access(c->db, R_OK) != 0)
        return lvd_fail(err, "loader: cannot read manifest %s", c->db ? c->db : "(none)");
    lvd_manifest *m;
    /* Read only: the ranks of a data-parallel run all read the selection, one writes. */
    if (lvd_manifest_open_mode(c->db, LVD_MANIFEST_READ, &m, err))
        return -1;
    picks p = {0};
    int rc = select_images(m, c, &p, err);
    lvd_manifest_close(m);
    if (rc == 0) {
        qsort(p.v, (size_t)p.n, sizeof *p.v, cmp_id);
        int64_t u = 0; /* a source listed twice selects its images twice */
        for (int64_t i = 0; i < p.n; i++) {
            if (u > 0 && p.v[u - 1].id == p.v[i].id) {
                free(p.v[i].shard);
                free(p.v[i].member);
                continue;
            }
            p.v[u++] = p.v[i];
        }
        p.n = u;
        rc = read_bytes(l, &p, err);
    }
    if (rc == 0) {
        size_t n = (size_t)(p.n ? p.n : 1);
        l->ids = malloc(n * sizeof *l->ids);
        l->off = malloc(n * sizeof *l->off);
        l->len = malloc(n * sizeof *l->len);
        l->bad = calloc(n, 1);
        if (!l->ids || !l->off || !l->len || !l->bad)
            rc = lvd_fail(err, "loader: out of memory for %lld images", (long long)p.n);
    }
    for (int64_t i = 0; rc == 0 && i < p.n; i++) {
        if (!p.v[i].found) {
            l->missing++;
            continue;
        }
        l->ids[l->n] = p.v[i].id;
        l->off[l->n] = p.v[i].off;
        l->len[l->n] = p.v[i].len;
        l->n++;
    }
    picks_free(&p);
    return rc;
}

int lvd_loader_open(const lvd_loader_config *c, lvd_loader **out, lvd_error *err)
{
    *out = NULL;
    if (c->batch_size < 1 || c->workers < 1 || c->workers > 256 || c->ring < 0 || c->start_step < 0)
        return lvd_fail(err, "loader: need batch size >= 1, 1..256 workers, ring >= 0, start >= 0");
    if (c->share_offset < 0 || c->share_size < 0 || (c->share_size == 0 && c->share_offset) ||
        c->share_size > c->batch_size - c->share_offset)
        return lvd_fail(err, "loader: share of %d images at %d outside a batch of %d",
                        c->share_size, c->share_offset, c->batch_size);
    if (lvd_aug_check(&c->aug, err))
        return -1;
    lvd_loader *l = calloc(1, sizeof *l);
    if (!l)
        return lvd_fail(err, "loader: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    l->c = *c;
    l->c.model = l->c.method = l->c.dataset = l->c.db = NULL;
    l->c.sources = NULL;
    l->c.n_sources = 0;
    if (l->c.max_pixels == 0)
        l->c.max_pixels = 89478485; /* PIL's decompression-bomb threshold */
    if (l->c.ring == 0)
        l->c.ring = 2 * c->workers;
    int rc = lvd_mask_gen_for_crops(&l->gen, c->aug.global_size, c->patch_size, err);
    if (rc == 0)
        rc = loader_read_images(l, c, err);
    if (rc == 0 && l->n < c->batch_size)
        rc = lvd_fail(err,
                      "loader: %lld usable images (%lld without a readable shard member), "
                      "fewer than one batch of %d",
                      (long long)l->n, (long long)l->missing, c->batch_size);
    if (rc == 0 && l->n > UINT32_MAX)
        rc = lvd_fail(err, "loader: %lld images are more than it can shuffle", (long long)l->n);
    if (rc == 0) {
        l->spe = l->n / c->batch_size;
        l->share = c->share_size ? c->share_size : c->batch_size;
        rc = loader_start(l, err);
    }
    if (rc) {
        lvd_loader_close(l);
        return -1;
    }
    *out = l;
    return 0;
}

void lvd_loader_stats_get(lvd_loader *l, lvd_loader_stats *st)
{
    pthread_mutex_lock(&l->mu);
    st->images = l->n;
    st->missing = l->missing;
    st->bad = l->bad_count;
    st->replaced = l->replaced_count;
    st->steps_per_epoch = l->spe;
    st->bytes = (int64_t)l->n_bytes;
    pthread_mutex_unlock(&l->mu);
}

const int64_t *lvd_loader_image_ids(const lvd_loader *l)
{
    return l->ids;
}
