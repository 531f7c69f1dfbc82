/* The dedup stage of curate/stages/dedup_stage.h: reading the embeddings, the incremental search
 * over the partition (index/index.h), its state file, decontamination and the one transaction of
 * results. */
#include "curate/stages/dedup_stage.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/index_stage.h"
#include "index/index.h"

void lvd_dedup_stage_defaults(lvd_dedup_stage_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 64;
    o->threshold = 0.6f;
    o->eval_threshold = 0.45f;
    o->nprobe = LVD_STAGE_NPROBE;
}

/* The pool, in image id order. */
static const lvd_kit_rows pool_rows = {.where = "s.role = 'pool'"};

/* The eval set; lvd-report's eval matches read it too (curate/stages/report_eval.c). */
const lvd_kit_rows lvd_dedup_eval_rows = {.where = "s.role = 'eval'"};

/* Work arrays, one entry per pool row (rows in image id order). */
typedef struct dedup_work {
    lvd_embeddings pool, eval;
    lvd_dedup_state prev, state;
    int have_prev;
    int64_t *root;    /* component root row of each row: its lowest image id, the kept row */
    uint8_t *removed; /* decontaminated */
    float *best;      /* highest similarity found to an eval image */
    float *eval_sim;  /* for a root row: highest similarity of a member to an eval image */
    char path[4096];  /* this run's state file */
} dedup_work;

static void work_free(dedup_work *w)
{
    lvd_embeddings_free(&w->pool);
    lvd_embeddings_free(&w->eval);
    lvd_dedup_state_free(&w->prev);
    lvd_dedup_state_free(&w->state);
    free(w->root);
    free(w->removed);
    free(w->best);
    free(w->eval_sim);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lvd_dedup_state_path(lvd_manifest *m, int64_t model_id, int64_t run, char *out, size_t size,
                         lvd_error *err)
{
    const char *db = sqlite3_db_filename(lvd_manifest_db(m), "main");
    if (!db || !*db)
        return lvd_fail(err, "dedup: the manifest has no file to keep the dedup state beside");
    int len =
        snprintf(out, size, "%s.dedup-m%lld-r%lld.ivf", db, (long long)model_id, (long long)run);
    return len < 0 || (size_t)len >= size ? lvd_fail(err, "%s: path too long", db) : 0;
}

/* Loads the state of the run that wrote the model's dedup rows, if any; a missing or unreadable
 * file only makes this run full (counts->why says why). */
static int load_prev(lvd_manifest *m, int64_t model_id, dedup_work *w,
                     lvd_dedup_stage_counts *counts, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT run_id FROM dedup WHERE model_id = ?1 LIMIT 1", &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, model_id);
    int rc = sqlite3_step(st);
    int64_t run = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading earlier dedup results");
    if (rc == SQLITE_DONE)
        return 0;
    char path[4096];
    lvd_error lerr;
    if (lvd_dedup_state_path(m, model_id, run, path, sizeof path, err))
        return -1;
    if (lvd_dedup_state_load(path, &w->prev, &lerr) == 0)
        w->have_prev = 1;
    else
        snprintf(counts->why, sizeof counts->why, "%.150s", lerr.msg);
    return 0;
}

static int alloc_work(dedup_work *w, lvd_error *err)
{
    size_t n = (size_t)(w->pool.n > 0 ? w->pool.n : 1);
    w->root = malloc(n * sizeof *w->root);
    w->removed = calloc(n, 1);
    w->best = malloc(n * sizeof *w->best);
    w->eval_sim = calloc(n, sizeof *w->eval_sim);
    if (!w->root || !w->removed || !w->best || !w->eval_sim)
        return lvd_fail(err, "dedup: out of memory for %lld pool rows", (long long)w->pool.n);
    return 0;
}

/* The search over the partition, extending the previous state when it can. */
static int link_rows(dedup_work *w, const lvd_dedup_stage_options *o,
                     lvd_dedup_stage_counts *counts, lvd_error *err)
{
    const lvd_embeddings *p = &w->pool;
    lvd_dedup_options dopt;
    lvd_dedup_options_default(&dopt);
    dopt.k = o->k;
    dopt.threshold = o->threshold;
    dopt.nprobe = o->nprobe;
    dopt.nlist = o->nlist;
    lvd_dedup_run_info info;
    if (lvd_dedup_ivf_run(p->x, p->image_id, p->n, p->dim, &dopt, w->have_prev ? &w->prev : NULL,
                          o->full, &w->state, w->root, &info, err))
        return -1;
    counts->new_images = info.new_rows;
    counts->incremental = info.incremental;
    counts->refitted = info.retrained;
    counts->nlist = w->state.nlist;
    counts->nprobe = w->state.nprobe;
    if (!info.incremental && !counts->why[0])
        snprintf(counts->why, sizeof counts->why, "%.150s", info.why);
    for (int64_t i = 0; i < p->n; i++)
        counts->components += w->root[i] == i;
    return 0;
}

/* Marks the contaminated components and, for each, its highest similarity found to an eval
 * image. */
static int decontaminate(dedup_work *w, const lvd_dedup_stage_options *o,
                         lvd_dedup_stage_counts *counts, lvd_error *err)
{
    if (w->eval.n == 0)
        return 0;
    if (lvd_decontaminate_ivf(&w->state, w->pool.x, w->root, w->eval.x, w->eval.n,
                              o->eval_threshold, w->removed, w->best, &counts->eval_removed, err))
        return -1;
    for (int64_t i = 0; i < w->pool.n; i++) {
        float *top = &w->eval_sim[w->root[i]];
        if (w->removed[i] && w->best[i] > *top)
            *top = w->best[i];
    }
    return 0;
}

static float dot(const float *a, const float *b, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return (float)s;
}

static int insert_row(sqlite3_stmt *st, const dedup_work *w, int64_t model_id, int64_t run,
                      int64_t i, lvd_dedup_stage_counts *counts)
{
    const lvd_embeddings *p = &w->pool;
    int64_t r = w->root[i], k = r; /* rows are in image id order: the root is the kept row */
    int is_kept = k == i && !w->removed[i];
    sqlite3_bind_int64(st, 1, model_id);
    sqlite3_bind_int64(st, 2, p->image_id[i]);
    sqlite3_bind_int64(st, 3, p->image_id[k]);
    sqlite3_bind_int(st, 4, is_kept);
    if (w->removed[i]) {
        sqlite3_bind_text(st, 5, "eval", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, w->eval_sim[r]);
    } else if (k != i) {
        sqlite3_bind_text(st, 5, "duplicate", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6,
                            dot(p->x + (size_t)i * p->dim, p->x + (size_t)k * p->dim, p->dim));
        counts->duplicates++;
    } else {
        sqlite3_bind_null(st, 5);
        sqlite3_bind_null(st, 6);
    }
    sqlite3_bind_int64(st, 7, run);
    counts->kept += is_kept;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Replaces the model's dedup rows by this run's, in one transaction. */
static int write_results(lvd_manifest *m, const dedup_work *w, int64_t model_id, int64_t run,
                         lvd_dedup_stage_counts *counts, lvd_error *err)
{
    sqlite3_stmt *del = NULL, *ins = NULL;
    if (lvd_manifest_begin(m, err))
        return -1;
    int rc = -1;
    if (lvd_manifest_prepare(m, "DELETE FROM dedup WHERE model_id = ?1", &del, err) ||
        lvd_manifest_prepare(m,
                             "INSERT INTO dedup (model_id, image_id, component, kept, reason, "
                             "similarity, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &ins, err))
        goto done;
    sqlite3_bind_int64(del, 1, model_id);
    if (sqlite3_step(del) != SQLITE_DONE) {
        lvd_manifest_fail(m, err, "clearing the dedup results");
        goto done;
    }
    for (int64_t i = 0; i < w->pool.n; i++)
        if (insert_row(ins, w, model_id, run, i, counts)) {
            lvd_manifest_fail(m, err, "recording the dedup results");
            goto done;
        }
    rc = lvd_manifest_commit(m, err);
done:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (rc)
        lvd_manifest_rollback(m);
    return rc;
}

/* Removes the model's state files other than keep (older runs, and temporaries of processes
 * that are gone): the committed results name keep's run. */
static void remove_stale(const char *keep)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", keep);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    const char *name = strrchr(keep, '/') + 1;
    /* "<db>.dedup-m<model>-r": the prefix every state file of the model shares. */
    size_t prefix = (size_t)(strrchr(name, 'r') - name) + 1;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, name, prefix) != 0 || strcmp(e->d_name, name) == 0)
            continue;
        char *end;
        strtoll(e->d_name + prefix, &end, 10);
        if (end == e->d_name + prefix || strncmp(end, ".ivf", 4) != 0)
            continue;
        if (end[4] == '.') { /* "<state>.tmp.<pid>" */
            long pid = strncmp(end + 4, ".tmp.", 5) == 0 ? strtol(end + 9, NULL, 10) : 0;
            if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                continue;
        } else if (end[4] != '\0') {
            continue;
        }
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

static int dedup(lvd_manifest *m, const lvd_dedup_stage_options *o, int64_t model_id, int dim,
                 int64_t run, lvd_dedup_stage_counts *counts, lvd_error *err)
{
    dedup_work w = {0};
    int rc = -1;
    double t0 = now();
    if (lvd_embeddings_read(m, model_id, &pool_rows, NULL, 0, dim, &w.pool, err) ||
        lvd_embeddings_read(m, model_id, &lvd_dedup_eval_rows, NULL, 0, dim, &w.eval, err) ||
        alloc_work(&w, err))
        goto done;
    counts->pool = w.pool.n;
    counts->eval = w.eval.n;
    if (w.pool.n == 0) {
        rc = lvd_fail(err, "model '%s' has no embeddings of pool images", o->model);
        goto done;
    }
    if (load_prev(m, model_id, &w, counts, err) ||
        lvd_dedup_state_path(m, model_id, run, w.path, sizeof w.path, err))
        goto done;
    double t1 = now();
    if (link_rows(&w, o, counts, err))
        goto done;
    double t2 = now();
    if (decontaminate(&w, o, counts, err))
        goto done;
    double t3 = now();
    if (lvd_dedup_state_save(&w.state, w.path, err))
        goto done;
    double t4 = now();
    rc = write_results(m, &w, model_id, run, counts, err);
    if (rc == 0)
        remove_stale(w.path);
    else
        unlink(w.path);
    double t5 = now();
    double t[5] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4};
    memcpy(counts->seconds, t, sizeof t);
done:
    work_free(&w);
    return rc;
}

static cJSON *params_json(const lvd_dedup_stage_options *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "k", o->k);
    cJSON_AddNumberToObject(j, "threshold", o->threshold);
    cJSON_AddNumberToObject(j, "eval_threshold", o->eval_threshold);
    cJSON_AddNumberToObject(j, "nprobe", (double)o->nprobe);
    cJSON_AddNumberToObject(j, "nlist", (double)o->nlist);
    cJSON_AddBoolToObject(j, "full", o->full);
    return j;
}

static cJSON *counts_json(const lvd_dedup_stage_counts *c)
{
    static const char *const phases[5] = {"read", "search", "decontaminate", "state", "write"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "pool", (double)c->pool);
    cJSON_AddNumberToObject(j, "new", (double)c->new_images);
    cJSON_AddNumberToObject(j, "eval", (double)c->eval);
    cJSON_AddNumberToObject(j, "components", (double)c->components);
    cJSON_AddNumberToObject(j, "duplicates", (double)c->duplicates);
    cJSON_AddNumberToObject(j, "eval_removed", (double)c->eval_removed);
    cJSON_AddNumberToObject(j, "kept", (double)c->kept);
    cJSON_AddNumberToObject(j, "nlist", (double)c->nlist);
    cJSON_AddNumberToObject(j, "nprobe", c->nprobe);
    cJSON_AddBoolToObject(j, "incremental", c->incremental);
    cJSON_AddBoolToObject(j, "refitted", c->refitted);
    if (!c->incremental)
        cJSON_AddStringToObject(j, "full_because", c->why);
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(t, phases[i], round(c->seconds[i] * 1000.0) / 1000.0);
    return j;
}

int lvd_dedup_stage_run(lvd_manifest *m, const lvd_dedup_stage_options *o,
                        lvd_dedup_stage_counts *counts, lvd_error *err)
{
    memset(counts, 0, sizeof *counts);
    if (o->k < 1)
        return lvd_fail(err, "dedup: k must be at least 1");
    int64_t model_id, run;
    int dim;
    if (lvd_embeddings_model(m, o->model, &model_id, &dim, err))
        return -1;
    if (lvd_kit_run_start(m, "dedup", params_json(o), &run, err))
        return -1;
    int rc = dedup(m, o, model_id, dim, run, counts, err);
    return lvd_kit_run_finish(m, run, rc, NULL, counts_json(counts), err);
}
