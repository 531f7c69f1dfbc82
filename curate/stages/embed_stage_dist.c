/* The group run of curate/stages/embed_stage.h (stage_dist_run of embed_stage_internal.h):
 * `mpirun -np N lvd-embed ...`.
 *
 * One writer: rank 0 alone opens the manifest. It takes the stage lock, recovers what dead runs
 * left, starts the run and lists the pending images (the same list, in the same order, under the
 * same limit, as one process), then broadcasts the model, the output folder, the run id and the
 * jobs. The other ranks never touch the manifest, so the OFD stage lock (one per open file
 * description) never sees two holders, and the manifest may sit on rank 0's local disk; shards,
 * weights and the output folder must be visible to every rank (a shared filesystem).
 *
 * Shares: lvd_dist_share splits the ordered list of pending images; a shard goes whole to the
 * rank whose share holds its first pending image, so every shard gives the one file, with the
 * same rows in the same batches, that one process writes (the ViT works per image anyway).
 *
 * Rounds: after each of its shards, every rank puts its file in place and joins one allgather
 * that carries its finished shard (path, image ids, failures), nothing (its jobs are done) or
 * its failure. Rank 0 records each shard of the round in its own transaction, exactly as one
 * process does. There are (most jobs of a rank) + 1 rounds, the last carrying only a status, so
 * a failure of rank 0's recording reaches everyone. After a round with a failure everyone stops
 * and the run fails with that rank's message; what was recorded stays. A killed run leaves
 * unrecorded files of a run that is no longer running, which the next run (MPI or not) deletes
 * before it starts, embedding those images again. */
#include "curate/stages/embed_stage_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Byte blocks: what ranks send each other -------------------------------------------- */

typedef struct blob {
    char *p;
    size_t n, cap;
    int oom;
} blob;

static void put(blob *b, const void *x, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

static void put_i64(blob *b, int64_t v)
{
    put(b, &v, sizeof v);
}

static void put_str(blob *b, const char *s)
{
    size_t n = strlen(s);
    put_i64(b, (int64_t)n);
    put(b, s, n);
}

/* Reads what put wrote; a short block sets bad (the sender is this same program, so that is a
 * bug, reported rather than read past). */
typedef struct reader {
    const char *p, *end;
    int bad;
} reader;

static int64_t get_i64(reader *r)
{
    int64_t v = 0;
    if (r->bad || (size_t)(r->end - r->p) < sizeof v) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p, sizeof v);
    r->p += sizeof v;
    return v;
}

/* The next string copied into buf (cap bytes, truncated), or skipped when buf is NULL. */
static const char *get_str(reader *r, char *buf, size_t cap)
{
    int64_t n = get_i64(r);
    if (r->bad || n < 0 || n > r->end - r->p) {
        r->bad = 1;
        return "";
    }
    if (buf) {
        size_t k = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
        memcpy(buf, r->p, k);
        buf[k] = '\0';
    }
    r->p += n;
    return buf;
}

/* ---- Setup: rank 0 plans, everyone learns the plan ----------------------------------------- */

/* What rank 0 broadcasts after its setup. */
typedef struct setup_msg {
    int64_t status; /* 0: go on; -1: setup failed (msg) */
    int64_t run_id, todo, jobs_bytes;
    char msg[sizeof(((lvd_error *)0)->msg)];
    char dir[PATH_MAX];
    lvd_model_record model;
} setup_msg;

/* Jobs block: count, then per job owner rank, shard id, path, n, n x (image id, member). */
static void put_job(blob *b, int64_t owner, const stage_job *job)
{
    put_i64(b, owner);
    put_i64(b, job->shard_id);
    put_str(b, job->shard_path);
    put_i64(b, (int64_t)job->n);
    for (size_t i = 0; i < job->n; i++) {
        put_i64(b, job->items[i].image_id);
        put_str(b, job->items[i].member);
    }
}

/* Rank 0: every pending job, each given to the rank whose share of the ordered pending images
 * holds its first one. */
static int plan_jobs(embed_ctx *c, blob *jobs, lvd_error *err)
{
    if (stage_plan_make(c->m, &c->filter, &c->plan, err) != 0)
        return -1;
    int64_t limit = c->o->limit > 0 ? c->o->limit : INT64_MAX;
    int64_t todo = c->plan.total < limit ? c->plan.total : limit;
    c->sum->todo = todo;
    int64_t *starts = malloc((size_t)c->dist.size * sizeof *starts);
    if (!starts)
        return lvd_fail(err, "out of memory");
    for (int r = 0; r < c->dist.size; r++) {
        lvd_dist g = {r, c->dist.size};
        int64_t end;
        lvd_dist_share(&g, todo, &starts[r], &end);
    }
    size_t n_jobs = 0;
    int64_t first = 0, budget = todo;
    for (size_t i = 0; i < c->plan.n && budget > 0; i++)
        n_jobs++, budget -= c->plan.counts[i];
    put_i64(jobs, (int64_t)n_jobs);
    int rc = 0;
    budget = todo;
    for (size_t i = 0; i < n_jobs && rc == 0; i++) {
        stage_job *job;
        rc = stage_plan_job(c->m, &c->plan, i, &c->filter, budget, &job, err);
        if (rc != 0)
            break;
        int owner = 0;
        while (owner + 1 < c->dist.size && starts[owner + 1] <= first)
            owner++;
        put_job(jobs, owner, job);
        first += (int64_t)job->n;
        budget -= (int64_t)job->n;
        stage_job_free(job);
    }
    free(starts);
    stage_plan_free(&c->plan);
    if (rc == 0 && jobs->oom)
        rc = lvd_fail(err, "out of memory for the list of %lld images", (long long)todo);
    return rc;
}

/* This rank's jobs out of the block, and the number of rounds (most jobs of a rank, plus the
 * status round). */
static int read_jobs(embed_ctx *c, const blob *b, stage_job ***out, lvd_error *err)
{
    reader r = {b->p, b->p + b->n, 0};
    int64_t n = get_i64(&r);
    int64_t *per_rank = calloc((size_t)c->dist.size, sizeof *per_rank);
    stage_job **jobs = calloc((size_t)(n > 0 ? n : 0) + 1, sizeof *jobs);
    if (!per_rank || !jobs) {
        free(per_rank);
        free(jobs);
        return lvd_fail(err, "out of memory");
    }
    size_t mine = 0;
    int oom = 0;
    for (int64_t j = 0; j < n && !r.bad && !oom; j++) {
        int64_t owner = get_i64(&r);
        if (owner < 0 || owner >= c->dist.size) {
            r.bad = 1;
            break;
        }
        per_rank[owner]++;
        stage_job *job = owner == c->dist.rank ? calloc(1, sizeof *job) : NULL;
        char path[PATH_MAX];
        int64_t shard_id = get_i64(&r);
        get_str(&r, job ? path : NULL, sizeof path);
        int64_t items = get_i64(&r);
        if (items < 0 || items > (r.end - r.p) / 16) {
            r.bad = 1;
            free(job);
            break;
        }
        if (job) {
            jobs[mine++] = job;
            job->shard_id = shard_id;
            job->shard_path = strdup(path);
            job->items = calloc((size_t)items + 1, sizeof *job->items);
            oom = !job->shard_path || !job->items;
        }
        for (int64_t i = 0; i < items && !r.bad && !oom; i++) {
            char member[PATH_MAX];
            int64_t id = get_i64(&r);
            get_str(&r, job ? member : NULL, sizeof member);
            if (job) {
                job->items[i].image_id = id;
                job->items[i].member = strdup(member);
                oom = !job->items[i].member;
                job->n = (size_t)i + 1;
            }
        }
    }
    int64_t most = 0;
    for (int k = 0; k < c->dist.size; k++)
        most = per_rank[k] > most ? per_rank[k] : most;
    free(per_rank);
    c->plan = (stage_plan){.n = mine};
    c->rounds = most + 1;
    *out = jobs;
    if (oom)
        return lvd_fail(err, "out of memory for this rank's jobs");
    if (r.bad)
        return lvd_fail(err, "malformed job list from rank 0");
    return 0;
}

/* Rank 0's part of the setup: the manifest, the run and the jobs. */
static int leader_setup(embed_ctx *c, blob *jobs, setup_msg *msg, lvd_error *err)
{
    if (lvd_kit_open(c->o->db, LVD_MANIFEST_WRITE, "embed", &c->m, err) != 0 ||
        stage_run_setup(c, err) != 0)
        return -1;
    if (plan_jobs(c, jobs, err) != 0)
        return -1;
    msg->run_id = c->sum->run_id;
    msg->todo = c->sum->todo;
    msg->jobs_bytes = (int64_t)jobs->n;
    memcpy(msg->dir, c->dir, sizeof msg->dir);
    msg->model = c->model;
    return 0;
}

/* The other ranks open the model rank 0 found. */
static int follower_setup(embed_ctx *c, const setup_msg *msg, lvd_error *err)
{
    c->model = msg->model;
    c->sum->run_id = msg->run_id;
    c->sum->todo = msg->todo;
    memcpy(c->dir, msg->dir, sizeof c->dir);
    c->pool = c->model.features == LVD_FEATURES_CLS_PATCHMEAN ? LVD_VIT_POOL_CLS_MEANPATCH
                                                              : LVD_VIT_POOL_CLS;
    if (lvd_model_open(&c->model, &c->vit, err) != 0)
        return -1;
    lvd_vit_set_threads(c->vit, c->o->threads);
    return 0;
}

/* ---- Rounds ----------------------------------------------------------------------------- */

enum { ROUND_IDLE = 0, ROUND_SHARD = 1, ROUND_FAILED = 2 };

static void put_shard(blob *b, const shard_out *s)
{
    put_i64(b, ROUND_SHARD);
    put_str(b, s->path);
    put_i64(b, s->rows);
    for (int64_t i = 0; i < s->rows; i++)
        put_i64(b, s->ids[i]);
    put_i64(b, s->n_failed);
    for (int64_t i = 0; i < s->n_failed; i++) {
        put_i64(b, s->failed_ids[i]);
        put_str(b, s->failed_msg[i]);
    }
}

/* A shard another rank finished, read into s (its own arrays; free with stage_shard_out_reset). */
static int get_shard(reader *r, shard_out *s, lvd_error *err)
{
    memset(s, 0, sizeof *s);
    get_str(r, s->path, sizeof s->path);
    s->rows = get_i64(r);
    if (r->bad || s->rows < 0 || s->rows > (r->end - r->p) / 8)
        return lvd_fail(err, "malformed shard record");
    s->ids = malloc(((size_t)s->rows + 1) * sizeof *s->ids);
    for (int64_t i = 0; s->ids && i < s->rows; i++)
        s->ids[i] = get_i64(r);
    s->n_failed = get_i64(r);
    if (r->bad || s->n_failed < 0 || s->n_failed > (r->end - r->p) / 16)
        return lvd_fail(err, "malformed shard record");
    s->failed_ids = malloc(((size_t)s->n_failed + 1) * sizeof *s->failed_ids);
    s->failed_msg = malloc(((size_t)s->n_failed + 1) * sizeof *s->failed_msg);
    if (!s->ids || !s->failed_ids || !s->failed_msg)
        return lvd_fail(err, "out of memory");
    for (int64_t i = 0; i < s->n_failed; i++) {
        s->failed_ids[i] = get_i64(r);
        get_str(r, s->failed_msg[i], STAGE_MSG);
    }
    return r->bad ? lvd_fail(err, "malformed shard record") : 0;
}

/* Rank 0 records the shard rank `from` finished; every rank counts it. */
static int take_shard(embed_ctx *c, int from, const shard_out *s, lvd_error *err)
{
    if (c->dist.rank == 0) {
        if (stage_record_shard(c, s, err) != 0)
            return -1;
        for (int64_t i = 0; from != 0 && i < s->n_failed; i++)
            stage_report_failure(&c->rep, s->failed_ids[i], s->failed_msg[i]);
        if (from != 0) {
            c->rep.done += s->rows;
            c->rep.failed += s->n_failed;
        }
    }
    c->sum->embedded += s->rows;
    c->sum->failed += s->n_failed;
    if (from != c->dist.rank && s->rows > 0)
        c->sum->files++;
    return 0;
}

/* One round: this rank gives kind (with s for a shard, err's message for a failure) and takes
 * everyone's. Returns -1 when some rank failed (err: the first such rank's message) or rank 0
 * could not record; everyone then stops after this round. */
static int round_trip(embed_ctx *c, int kind, const shard_out *s, lvd_error *err)
{
    blob b = {0};
    if (kind == ROUND_SHARD) {
        put_shard(&b, s);
    } else {
        put_i64(&b, kind);
        if (kind == ROUND_FAILED)
            put_str(&b, err->msg);
    }
    lvd_error e = {0};
    void *all = NULL;
    size_t *sizes = malloc((size_t)c->dist.size * sizeof *sizes);
    int rc = 0;
    if (b.oom || !sizes) {
        /* Every rank must take part: give a failure it can still say. */
        free(b.p);
        b = (blob){0};
        put_i64(&b, ROUND_FAILED);
        put_str(&b, "out of memory");
    }
    if (!sizes || lvd_dist_allgather(&c->dist, b.p, b.n, &all, sizes, &e) != 0)
        lvd_dist_abort(&c->dist, 1); /* the collective itself failed: no way to agree */
    free(b.p);
    c->round++;
    int failed_rank = -1;
    lvd_error first = {0};
    size_t at = 0;
    for (int from = 0; from < c->dist.size; from++) {
        reader r = {(const char *)all + at, (const char *)all + at + sizes[from], 0};
        at += sizes[from];
        int64_t k = get_i64(&r);
        if (k == ROUND_SHARD) {
            shard_out got;
            int bad = get_shard(&r, &got, &e);
            if (!bad && rc == 0 && take_shard(c, from, &got, &e) != 0)
                rc = -1;
            if (bad && failed_rank < 0)
                failed_rank = from, first = e;
            stage_shard_out_reset(&got);
        } else if (k == ROUND_FAILED || r.bad) {
            if (failed_rank < 0) {
                failed_rank = from;
                get_str(&r, first.msg, sizeof first.msg);
            }
        }
    }
    free(all);
    free(sizes);
    if (failed_rank >= 0) {
        c->stopped = 1;
        lvd_fail(err, "rank %d: %s", failed_rank, first.msg);
        return -1;
    }
    if (rc != 0) {
        /* Rank 0 could not record: it says so in the next round (there always is one). */
        *err = e;
        return -1;
    }
    return 0;
}

int stage_dist_finish_shard(embed_ctx *c, shard_out *s, lvd_error *err)
{
    if (stage_finish_file(c, s, err) != 0) {
        round_trip(c, ROUND_FAILED, NULL, err);
        return -1;
    }
    return round_trip(c, ROUND_SHARD, s, err);
}

/* After this rank's jobs (or its failure): the rounds left, so every rank joins as many. */
static int finish_rounds(embed_ctx *c, int rc, lvd_error *err)
{
    int kind = rc != 0 ? ROUND_FAILED : ROUND_IDLE;
    while (!c->stopped && c->round < c->rounds)
        if (round_trip(c, kind, NULL, err) != 0)
            kind = ROUND_FAILED; /* rank 0 could not record: it tells the others next round */
    return c->stopped ? -1 : rc;
}

int stage_dist_run(embed_ctx *c, lvd_error *err)
{
    setup_msg *msg = calloc(1, sizeof *msg);
    blob jobs = {0};
    if (!msg)
        lvd_dist_abort(&c->dist, 1);
    double start = lvd_kit_now(), cpu_start = lvd_kit_cpu_now();
    int rc = 0, started = 0;
    if (c->dist.rank == 0) {
        rc = leader_setup(c, &jobs, msg, err);
        started = c->sum->run_id > 0;
        msg->status = rc;
        if (rc != 0)
            memcpy(msg->msg, err->msg, sizeof msg->msg);
    }
    lvd_error e = {0};
    if (lvd_dist_bcast(&c->dist, msg, sizeof *msg, 0, &e) != 0)
        lvd_dist_abort(&c->dist, 1);
    if (msg->status != 0) {
        if (c->dist.rank != 0)
            memcpy(err->msg, msg->msg, sizeof err->msg);
        rc = -1;
    } else {
        jobs.n = jobs.cap = (size_t)msg->jobs_bytes;
        if (c->dist.rank != 0 && !(jobs.p = malloc(jobs.n ? jobs.n : 1)))
            lvd_dist_abort(&c->dist, 1);
        if (lvd_dist_bcast(&c->dist, jobs.p, jobs.n, 0, &e) != 0)
            lvd_dist_abort(&c->dist, 1);
        stage_job **mine = NULL;
        rc = read_jobs(c, &jobs, &mine, err);
        if (rc == 0 && c->dist.rank != 0)
            rc = follower_setup(c, msg, err);
        /* The work starts when every rank has its model, as it does after setup alone. */
        if (lvd_dist_barrier(&c->dist, &e) != 0)
            lvd_dist_abort(&c->dist, 1);
        start = lvd_kit_now();
        cpu_start = lvd_kit_cpu_now();
        c->rep = (stage_report){.log = c->dist.rank == 0 ? c->o->log : NULL,
                                .tty = c->o->progress,
                                .interval_s = c->o->log_interval_s,
                                .todo = c->sum->todo,
                                .start = start,
                                .last = start};
        if (rc == 0)
            rc = stage_embed_jobs(c, mine, err);
        rc = finish_rounds(c, rc, err);
        for (size_t i = 0; mine && i < c->plan.n; i++)
            stage_job_free(mine[i]);
        free(mine);
        c->plan = (stage_plan){0};
    }
    free(jobs.p);
    free(msg);
    c->sum->seconds = lvd_kit_now() - start;
    double cpu = lvd_kit_cpu_now() - cpu_start;
    if (lvd_dist_sum_f64(&c->dist, &cpu, 1, &e) != 0)
        lvd_dist_abort(&c->dist, 1);
    c->sum->cpu_seconds = cpu;
    if (started)
        rc = lvd_kit_run_finish(c->m, c->sum->run_id, rc, NULL, stage_counts_json(c->sum), err);
    if (rc == 0)
        stage_report_summary(&c->rep, c->sum);
    return rc;
}
