/* The fetch stage's run (curate/fetch/fetch.h): the manifest and its lock, crash recovery, the main
 * loop over pending items and the run record. */
#include "curate/fetch/fetch.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "curate/fetch/fetch_internal.h"
#include "kit/kit.h"

/* Items read from the manifest at a time: bounds memory whatever the input length. */
#define PAGE_ROWS 256

const char *const lvd_fetch_classes[LVD_FETCH_N_CLASSES] = {
    "ok",        "duplicate", "dns",    "connect",   "timeout",    "http_4xx",        "http_5xx",
    "too_large", "not_image", "decode", "too_small", "bad_aspect", "too_many_pixels",
};

int lvd_fetch_class_index(const char *cls)
{
    for (int i = 0; cls && i < LVD_FETCH_N_CLASSES; i++)
        if (strcmp(cls, lvd_fetch_classes[i]) == 0)
            return i;
    return -1;
}

void lvd_fetch_opts_init(lvd_fetch_opts *o)
{
    memset(o, 0, sizeof *o);
    o->role = LVD_ROLE_POOL;
    o->parallel = 64;
    o->net = (lvd_net_opts){
        .connect_timeout_ms = 10000,
        .timeout_ms = 60000,
        .low_speed_bytes = 1024,
        .low_speed_s = 20,
        .max_redirects = 5,
        .max_bytes = 32 << 20,
        .retries = 3,
        .backoff_ms = 1000,
        .user_agent = "lvd-fetch/0.1",
    };
    o->validate = (lvd_validate_opts){
        .max_pixels = 89478485, /* PIL's decompression-bomb threshold */
        .min_side = 32,
        .max_aspect = 10.0,
        .max_side = 0,
        .quality = 90,
    };
    o->shard_size = 256 << 20;
    o->log_interval_s = 10.0;
    o->log = stderr;
}

int fetch_recover(lvd_manifest *m, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT path FROM shards WHERE status = 'writing'", &st, err) != 0)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        char tmp[PATH_MAX];
        if (!path)
            continue;
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        unlink(tmp);
        unlink(path);
    }
    sqlite3_finalize(st);
    return lvd_manifest_exec(m, "DELETE FROM shards WHERE status = 'writing'", err);
}

static int make_out_dir(const lvd_fetch_opts *o, char *out, lvd_error *err)
{
    char buf[PATH_MAX];
    const char *dir = o->out_dir;
    if (!dir) {
        snprintf(buf, sizeof buf, "%s", o->db);
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s/shards", dirname(buf));
        snprintf(buf, sizeof buf, "%s", parent);
        dir = buf;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return lvd_fail(err, "%s: cannot create: %s", dir, strerror(errno));
    if (!realpath(dir, out))
        return lvd_fail(err, "%s: cannot resolve: %s", dir, strerror(errno));
    return 0;
}

static cJSON *params_json(const lvd_fetch_opts *o, const char *out_dir)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "source", o->source);
    cJSON_AddStringToObject(p, "role", lvd_role_name(o->role));
    cJSON_AddStringToObject(p, "out", out_dir);
    cJSON *inputs = cJSON_AddArrayToObject(p, "inputs");
    for (int i = 0; i < o->n_inputs; i++)
        cJSON_AddItemToArray(inputs, cJSON_CreateString(o->inputs[i]));
    cJSON_AddNumberToObject(p, "parallel", o->parallel);
    cJSON_AddNumberToObject(p, "connect_timeout_ms", (double)o->net.connect_timeout_ms);
    cJSON_AddNumberToObject(p, "timeout_ms", (double)o->net.timeout_ms);
    cJSON_AddNumberToObject(p, "low_speed_bytes", (double)o->net.low_speed_bytes);
    cJSON_AddNumberToObject(p, "low_speed_s", (double)o->net.low_speed_s);
    cJSON_AddNumberToObject(p, "max_redirects", o->net.max_redirects);
    cJSON_AddNumberToObject(p, "max_bytes", (double)o->net.max_bytes);
    cJSON_AddNumberToObject(p, "retries", o->net.retries);
    cJSON_AddNumberToObject(p, "backoff_ms", (double)o->net.backoff_ms);
    cJSON_AddStringToObject(p, "user_agent", o->net.user_agent ? o->net.user_agent : "");
    cJSON_AddNumberToObject(p, "max_pixels", (double)o->validate.max_pixels);
    cJSON_AddNumberToObject(p, "min_side", o->validate.min_side);
    cJSON_AddNumberToObject(p, "max_aspect", o->validate.max_aspect);
    cJSON_AddNumberToObject(p, "max_side", o->validate.max_side);
    cJSON_AddNumberToObject(p, "quality", o->validate.quality);
    cJSON_AddNumberToObject(p, "shard_size", (double)o->shard_size);
    cJSON_AddBoolToObject(p, "retry_failed", o->retry_failed);
    return p;
}

static cJSON *counts_json(const lvd_fetch_summary *sum)
{
    cJSON *c = cJSON_CreateObject();
    for (int i = 0; i < LVD_FETCH_N_CLASSES; i++)
        cJSON_AddNumberToObject(c, lvd_fetch_classes[i], (double)sum->counts[i]);
    cJSON_AddNumberToObject(c, "inputs", (double)sum->inputs);
    cJSON_AddNumberToObject(c, "new_items", (double)sum->new_items);
    cJSON_AddNumberToObject(c, "todo", (double)sum->todo);
    cJSON_AddNumberToObject(c, "shards", (double)sum->shards);
    return c;
}

/* Dispatched jobs not yet recorded, per allowed download: a finished item waits there for every
 * earlier one (so that what is kept and the shards' member order depend on the inputs only, not
 * on which answer came first), so a slow download holds back recording but not downloading. */
#define WINDOW_PER_DOWNLOAD 4
/* The bytes finished items may hold while they wait for an earlier one. */
#define MAX_HELD_BYTES ((int64_t)256 << 20)

/* The state of one run of the main loop. */
typedef struct fetch_loop {
    const lvd_fetch_opts *o;
    lvd_manifest *m;
    int64_t source_id;
    sqlite3_stmt *page;
    int64_t cursor;   /* the last item id read from the manifest */
    fetch_job *queue; /* items read but not dispatched yet */
    fetch_job *queue_tail;
    int exhausted; /* no more items in the manifest */
    /* Dispatched, not yet recorded, in item id order (the order they are recorded in). */
    fetch_job *order_head, *order_tail;
    int in_flight; /* the length of that list */
    int max_in_flight;
    int max_pooled;     /* local items handed to the workers at a time */
    int64_t held_bytes; /* of the finished jobs in the list */
    lvd_net *net;
    fetch_pool *pool;
    fetch_sink *sink;
    int64_t counts[LVD_FETCH_N_CLASSES];
    lvd_error *err;
    int stopping; /* a stop was requested: finish what is in hand */
} fetch_loop;

/* Keyset paging on images_by_status (source_id, status, then rowid): no sort, whatever the size. */
static const char *sql_page = "SELECT id, url, key, label, caption FROM images WHERE source_id = ?1"
                              " AND status = 'pending' AND id > ?2 ORDER BY id LIMIT ?3";

static const char *column(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Reads the next page of items to do into the queue. */
static int read_page(fetch_loop *l)
{
    sqlite3_stmt *st = l->page;
    sqlite3_bind_int64(st, 1, l->source_id);
    sqlite3_bind_int64(st, 2, l->cursor);
    sqlite3_bind_int(st, 3, PAGE_ROWS);
    int rows = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fetch_job *job = fetch_job_new(sqlite3_column_int64(st, 0), column(st, 1), column(st, 2),
                                       column(st, 3), column(st, 4));
        if (!job) {
            sqlite3_reset(st);
            return lvd_fail(l->err, "out of memory");
        }
        l->cursor = job->id;
        if (l->queue_tail)
            l->queue_tail->next = job;
        else
            l->queue = job;
        l->queue_tail = job;
        rows++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return lvd_manifest_fail(l->m, l->err, "reading pending items");
    l->exhausted = rows < PAGE_ROWS;
    return 0;
}

/* The bytes a finished job holds. */
static int64_t job_bytes(const fetch_job *job)
{
    return (int64_t)(job->len + job->stored.len);
}

static void finished(fetch_loop *l, fetch_job *job)
{
    job->done = 1;
    l->held_bytes += job_bytes(job);
}

static int record(fetch_loop *l, fetch_job *job)
{
    int rc = fetch_sink_record(l->sink, job, l->err);
    int cls = job->failed ? lvd_fetch_class_index(job->err.cls) : job->duplicate_of ? 1 : 0;
    if (cls < 0)
        cls = lvd_fetch_class_index("decode");
    fetch_job_free(job);
    if (rc == 0)
        l->counts[cls]++;
    return rc;
}

/* Records the finished jobs at the head of the dispatch list, up to the first unfinished or
 * cancelled one: outcomes reach the sink in item id order. */
static int record_ready(fetch_loop *l)
{
    while (l->order_head && l->order_head->done && !l->order_head->cancelled) {
        fetch_job *job = l->order_head;
        l->order_head = job->order;
        if (!l->order_head)
            l->order_tail = NULL;
        l->in_flight--;
        l->held_bytes -= job_bytes(job);
        if (record(l, job) != 0)
            return -1;
    }
    return 0;
}

static void on_download(void *ctx, lvd_net_result *res)
{
    fetch_loop *l = ctx;
    fetch_job *job = res->tag;
    job->attempts = res->attempts;
    if (res->failed) {
        job->failed = 1;
        job->err = res->err;
        finished(l, job);
    } else {
        job->body = res->body;
        job->len = res->len;
        fetch_pool_submit(l->pool, job);
    }
}

static int is_http(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* Starts the queued items, in id order, while there is room: downloads go to the network, local
 * files and finished downloads to the workers. */
static int dispatch(fetch_loop *l)
{
    while (l->in_flight < l->max_in_flight && l->held_bytes < MAX_HELD_BYTES) {
        if (!l->queue && !l->exhausted && read_page(l) != 0)
            return -1;
        fetch_job *job = l->queue;
        if (!job)
            return 0;
        int http = is_http(job->url);
        int local = !http && strncmp(job->url, "file://", 7) == 0;
        if (http && lvd_net_pending(l->net) >= l->o->parallel)
            return 0;
        if (local && fetch_pool_held(l->pool) >= l->max_pooled)
            return 0;
        l->queue = job->next;
        if (!l->queue)
            l->queue_tail = NULL;
        job->next = NULL;
        if (l->order_tail)
            l->order_tail->order = job;
        else
            l->order_head = job;
        l->order_tail = job;
        l->in_flight++;
        job->attempts = 1;
        size_t url_len = strlen(job->url);
        if (http && url_len > LVD_FETCH_MAX_URL) {
            fetch_job_fail(job, "http_4xx",
                           "URL of %zu bytes: longer than the %d bytes lvd-fetch"
                           " requests (servers refuse far shorter ones with 414)",
                           url_len, LVD_FETCH_MAX_URL);
            finished(l, job);
        } else if (http) {
            if (lvd_net_add(l->net, job->url, job, l->err) != 0)
                return -1;
        } else if (local) {
            job->local = 1;
            fetch_pool_submit(l->pool, job);
        } else {
            fetch_job_fail(job, "connect", "unsupported URL scheme (http, https and file only)");
            finished(l, job);
        }
    }
    return 0;
}

static int drain(fetch_loop *l)
{
    for (fetch_job *job = fetch_pool_take(l->pool); job; job = job->next)
        finished(l, job);
    return record_ready(l);
}

static void wake(void *ctx)
{
    lvd_net_wakeup(ctx);
}

static void cancel_job(void *job)
{
    ((fetch_job *)job)->cancelled = 1;
}

/* Honours a stop request: no new items, downloads and items no worker started are cancelled
 * (they stay pending, and so does every item after the first of them). */
static void stop(fetch_loop *l)
{
    l->stopping = 1;
    lvd_net_cancel(l->net, cancel_job);
    fetch_pool_cancel(l->pool);
}

static int main_loop(fetch_loop *l, fetch_report *rep)
{
    for (;;) {
        if (!l->stopping && l->o->stop && *l->o->stop)
            stop(l);
        if (!l->stopping && dispatch(l) != 0)
            return -1;
        if (!l->stopping && l->in_flight == 0 && !l->queue && l->exhausted)
            return 0;
        if (l->stopping && fetch_pool_held(l->pool) == 0)
            return drain(l);
        if (lvd_net_poll(l->net, 250, on_download, l, l->err) != 0 || drain(l) != 0 ||
            fetch_sink_tick(l->sink, l->err) != 0)
            return -1;
        fetch_report_tick(rep, 0);
    }
}

/* With --retry-failed, the failures of the source become pending again (with their error
 * cleared), then counts what is pending. */
static int prepare_todo(lvd_manifest *m, int64_t source_id, int retry_failed, int64_t *n,
                        lvd_error *err)
{
    sqlite3_stmt *st;
    if (retry_failed) {
        if (lvd_manifest_prepare(m,
                                 "UPDATE images SET status = 'pending', error_class = NULL,"
                                 " error = NULL WHERE source_id = ?1 AND status = 'failed'",
                                 &st, err) != 0)
            return -1;
        sqlite3_bind_int64(st, 1, source_id);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return lvd_manifest_fail(m, err, "resetting failed items");
    }
    if (lvd_manifest_prepare(m,
                             "SELECT COUNT(*) FROM images WHERE source_id = ?1"
                             " AND status = 'pending'",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_int64(st, 1, source_id);
    int rc = sqlite3_step(st);
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : lvd_manifest_fail(m, err, "counting items");
}

/* Everything after the manifest is open and locked. */
static int run_stage(const lvd_fetch_opts *o, lvd_manifest *m, const char *out_dir,
                     lvd_fetch_summary *sum, lvd_error *err)
{
    int64_t source_id;
    if (lvd_manifest_source(m, o->source, o->role, &source_id, err) != 0 ||
        fetch_recover(m, err) != 0 ||
        lvd_kit_run_start(m, "fetch", params_json(o, out_dir), &sum->run_id, err) != 0)
        return -1;
    double start = fetch_now();
    fetch_loop l = {.o = o, .m = m, .source_id = source_id, .err = err};
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    l.max_pooled = 2 * threads;
    l.max_in_flight = WINDOW_PER_DOWNLOAD * o->parallel + l.max_pooled;
    fetch_report rep = {
        .log = o->log, .tty = o->progress, .interval_s = o->log_interval_s, .counts = l.counts};
    int rc = fetch_register(m, source_id, o->inputs, o->n_inputs, o->stop, &l.stopping, &sum->inputs,
                        &sum->new_items, err);
    if (rc == 0)
        rc = prepare_todo(m, source_id, o->retry_failed, &sum->todo, err);
    rep.todo = sum->todo;
    rep.start = rep.last = fetch_now();
    if (rc == 0)
        rc = lvd_manifest_prepare(m, sql_page, &l.page, err);
    if (rc == 0)
        rc = lvd_net_create(&o->net, &l.net, err);
    if (rc == 0)
        rc = fetch_pool_start(threads, &o->validate, &o->net, wake, l.net, &l.pool, err);
    if (rc == 0)
        rc = fetch_sink_open(m, sum->run_id, out_dir, o->shard_size, &l.sink, err);
    if (rc == 0 && !l.stopping)
        rc = main_loop(&l, &rep);
    if (rc == 0)
        rc = fetch_sink_flush(l.sink, err);
    fetch_pool_stop(l.pool);
    sum->shards = l.sink ? fetch_sink_shards(l.sink) : 0;
    fetch_sink_close(l.sink);
    lvd_net_destroy(l.net, NULL);
    fetch_job_free_list(l.queue);
    while (l.order_head) {
        fetch_job *next = l.order_head->order;
        fetch_job_free(l.order_head);
        l.order_head = next;
    }
    sqlite3_finalize(l.page);
    memcpy(sum->counts, l.counts, sizeof sum->counts);
    sum->seconds = fetch_now() - start;
    sum->interrupted = l.stopping;
    rc = lvd_kit_run_finish(m, sum->run_id, rc, rc == 0 && l.stopping ? "interrupted" : NULL,
                            counts_json(sum), err);
    if (rc == 0)
        fetch_report_summary(&rep, sum);
    return rc;
}

int lvd_fetch_run(const lvd_fetch_opts *o, lvd_fetch_summary *sum, lvd_error *err)
{
    memset(sum, 0, sizeof *sum);
    char out_dir[PATH_MAX];
    lvd_manifest *m = NULL;
    /* One fetch per manifest at a time: a second one would take the first one's open shard for
     * the leftover of a crash. */
    if (make_out_dir(o, out_dir, err) != 0 ||
        lvd_kit_open(o->db, LVD_MANIFEST_CREATE, "fetch", &m, err) != 0)
        return -1;
    int rc = run_stage(o, m, out_dir, sum, err);
    lvd_manifest_close(m);
    return rc;
}
