/* Registering the items of the inputs as pending rows of the source (fetch_register in
 * curate/fetch/fetch_internal.h). Repeats are ignored, so a rerun with the same or a longer input
 * only adds what is new. Items are collected in memory and written in short transactions: the write
 * lock is never held while an input is read (a list can be a slow pipe). */
#include "curate/fetch/fetch_internal.h"
#include "curate/fetch/inputs.h"

#include <stdlib.h>
#include <string.h>

/* Rows per transaction: big enough to be fast, small enough to keep transactions short. */
#define REGISTER_BATCH 20000
/* The string bytes a batch may hold, so that long lines (captions, long URLs) keep the memory of
 * a registration bounded too, not only the number of rows. */
#define REGISTER_BYTES ((size_t)4 << 20)

typedef struct reg_item {
    char *url, *key, *label, *caption;
} reg_item;

typedef struct reg_ctx {
    lvd_manifest *m;
    volatile sig_atomic_t *stop;
    int stopped;
    sqlite3_stmt *st;
    int64_t source_id;
    int64_t inputs, added;
    reg_item items[REGISTER_BATCH];
    int n;
    size_t bytes; /* string bytes of items[0 .. n) */
} reg_ctx;

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void free_items(reg_ctx *c)
{
    for (int i = 0; i < c->n; i++) {
        reg_item *it = &c->items[i];
        free(it->url);
        free(it->key);
        free(it->label);
        free(it->caption);
    }
    c->n = 0;
    c->bytes = 0;
}

/* Writes the collected items in one transaction. */
static int flush(reg_ctx *c, lvd_error *err)
{
    if (c->n == 0)
        return 0;
    int rc = lvd_manifest_begin(c->m, err);
    for (int i = 0; i < c->n && rc == 0; i++) {
        const reg_item *it = &c->items[i];
        sqlite3_bind_int64(c->st, 1, c->source_id);
        sqlite3_bind_text(c->st, 2, it->url, -1, SQLITE_STATIC);
        bind_opt(c->st, 3, it->key);
        bind_opt(c->st, 4, it->label);
        bind_opt(c->st, 5, it->caption);
        int step = sqlite3_step(c->st);
        sqlite3_reset(c->st);
        sqlite3_clear_bindings(c->st);
        if (step != SQLITE_DONE)
            rc = lvd_manifest_fail(c->m, err, "registering an item");
        else
            c->added += sqlite3_changes(lvd_manifest_db(c->m));
    }
    if (rc == 0)
        rc = lvd_manifest_commit(c->m, err);
    else
        lvd_manifest_rollback(c->m);
    free_items(c);
    return rc;
}

static char *dup_opt(const char *s, int *oom, size_t *bytes)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = 1;
    if (s)
        *bytes += strlen(s) + 1;
    return d;
}

static int on_item(void *arg, const lvd_input_item *item, lvd_error *err)
{
    reg_ctx *c = arg;
    if (c->stop && *c->stop) {
        c->stopped = 1;
        return 1;
    }
    int oom = 0;
    reg_item *it = &c->items[c->n++];
    it->url = dup_opt(item->url, &oom, &c->bytes);
    it->key = dup_opt(item->key, &oom, &c->bytes);
    it->label = dup_opt(item->label, &oom, &c->bytes);
    it->caption = dup_opt(item->caption, &oom, &c->bytes);
    if (oom)
        return lvd_fail(err, "out of memory registering items");
    c->inputs++;
    return c->n == REGISTER_BATCH || c->bytes >= REGISTER_BYTES ? flush(c, err) : 0;
}

int fetch_register(lvd_manifest *m, int64_t source_id, const char *const *inputs, int n_inputs,
                   volatile sig_atomic_t *stop, int *stopped, int64_t *n_inputs_read,
                   int64_t *n_new, lvd_error *err)
{
    reg_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lvd_fail(err, "out of memory");
    *c = (reg_ctx){.m = m, .stop = stop, .source_id = source_id};
    int rc = lvd_manifest_prepare(m,
                                  "INSERT INTO images(source_id, url, key, label, caption)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(source_id, url) DO"
                                  " NOTHING",
                                  &c->st, err);
    for (int i = 0; i < n_inputs && rc == 0 && !c->stopped; i++) {
        rc = lvd_inputs_read(inputs[i], on_item, c, stop, err);
        if (rc != 0 && stop && *stop) { /* the signal interrupted a read, or on_item saw it */
            c->stopped = 1;
            rc = 0;
        }
    }
    if (rc == 0)
        rc = flush(c, err);
    free_items(c);
    sqlite3_finalize(c->st);
    *stopped = c->stopped;
    *n_inputs_read = c->inputs;
    *n_new = c->added;
    free(c);
    return rc;
}
