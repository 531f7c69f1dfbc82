/* The decode pipeline of curate/stages/embed_stage_internal.h: one producer thread reads the shards of posted
 * jobs (store/shard.h), decodes (lvd_image_decode_rgb) and preprocesses their images into batches
 * while the consumer runs the ViT on earlier batches. Four batch buffers: one being filled, at most
 * two ready, one with the consumer. */
#include "curate/stages/embed_stage_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "store/shard.h"

#define N_BUFFERS 4
#define MAX_READY 2
#define MAX_JOBS  4

struct stage_pipe {
    int cap, resize, crop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    stage_batch buffers[N_BUFFERS];
    stage_batch *free_list[N_BUFFERS];
    int n_free;
    stage_batch *ready[MAX_READY];
    int ready_head, n_ready;
    const stage_job *jobs[MAX_JOBS];
    int job_head, n_jobs;
    int closed;   /* no more jobs will come */
    int stopping; /* the consumer wants the producer to quit */
    int finished; /* the producer has left */
    int failed;   /* ... because of err */
    lvd_error err;
};

/* The producer's state while it fills a batch. */
typedef struct filler {
    stage_pipe *p;
    const stage_job *job;
    stage_batch *b;
    uint8_t *seen; /* the job's items found in the shard */
} filler;

static stage_batch *take_free(stage_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stopping && p->n_free == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    stage_batch *b = p->stopping ? NULL : p->free_list[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    return b;
}

static int push_ready(stage_pipe *p, stage_batch *b)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stopping && p->n_ready == MAX_READY)
        pthread_cond_wait(&p->cv, &p->mu);
    int ok = !p->stopping;
    if (ok) {
        p->ready[(p->ready_head + p->n_ready) % MAX_READY] = b;
        p->n_ready++;
    } else {
        p->free_list[p->n_free++] = b;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return ok ? 0 : -1;
}

/* Starts f->b on f->job; -1 when stopping. */
static int start_batch(filler *f)
{
    f->b = take_free(f->p);
    if (!f->b)
        return -1;
    f->b->job = f->job;
    f->b->n = 0;
    f->b->n_failed = 0;
    f->b->last = 0;
    return 0;
}

/* Hands over a full batch and starts the next. */
static int rotate_if_full(filler *f)
{
    if (f->b->n < f->p->cap && f->b->n_failed < f->p->cap)
        return 0;
    stage_batch *b = f->b;
    f->b = NULL;
    if (push_ready(f->p, b) != 0)
        return -1;
    return start_batch(f);
}

static int add_failure(filler *f, int64_t id, const char *msg)
{
    stage_batch *b = f->b;
    b->failed_ids[b->n_failed] = id;
    snprintf(b->failed_msg[b->n_failed], STAGE_MSG, "%s", msg);
    b->n_failed++;
    return rotate_if_full(f);
}

static int on_member(void *ctx, size_t item, const char *name, const uint8_t *data, size_t len,
                     lvd_error *err)
{
    (void)name;
    filler *f = ctx;
    stage_pipe *p = f->p;
    stage_batch *b = f->b;
    const stage_item *it = &f->job->items[item];
    f->seen[item] = 1;
    lvd_image img;
    lvd_error derr;
    size_t plane = (size_t)3 * p->crop * p->crop;
    int rc = lvd_image_decode_rgb(data, len, &img, &derr);
    if (rc == 0)
        rc = lvd_image_preprocess(&img, p->resize, p->crop, b->x + (size_t)b->n * plane, &derr);
    lvd_image_free(&img);
    if (rc != 0) {
        char msg[STAGE_MSG];
        /* Bounded so the line fits STAGE_MSG: the member name and the start of the reason. */
        snprintf(msg, sizeof msg, "%.100s: %.150s", it->member, derr.msg);
        if (add_failure(f, it->image_id, msg) != 0)
            return lvd_fail(err, "stopped");
        return 0;
    }
    b->ids[b->n++] = it->image_id;
    if (rotate_if_full(f) != 0)
        return lvd_fail(err, "stopped");
    return 0;
}

/* Images the shard did not hold are failures too (the shard is the source of truth). */
static int add_missing(filler *f)
{
    for (size_t i = 0; i < f->job->n; i++) {
        if (f->seen[i])
            continue;
        char msg[STAGE_MSG];
        snprintf(msg, sizeof msg, "%.100s: not found in shard %.120s", f->job->items[i].member,
                 stage_base_name(f->job->shard_path));
        if (add_failure(f, f->job->items[i].image_id, msg) != 0)
            return -1;
    }
    return 0;
}

static int run_job(stage_pipe *p, const stage_job *job, lvd_error *err)
{
    filler f = {.p = p, .job = job, .seen = calloc(job->n ? job->n : 1, 1)};
    const char **names = malloc((job->n ? job->n : 1) * sizeof *names);
    int rc = f.seen && names ? 0 : lvd_fail(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < job->n; i++)
        names[i] = job->items[i].member;
    if (rc == 0)
        rc = start_batch(&f);
    if (rc == 0)
        rc = lvd_shard_read(job->shard_path, names, job->n, LVD_SHARD_BY_NAME, on_member, &f, err);
    if (rc == 0)
        rc = add_missing(&f);
    free(f.seen);
    free(names);
    if (rc != 0) {
        if (f.b)
            stage_pipe_release(p, f.b);
        return -1;
    }
    f.b->last = 1;
    return push_ready(p, f.b);
}

static const stage_job *next_job(stage_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stopping && !p->closed && p->n_jobs == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    const stage_job *job = NULL;
    if (!p->stopping && p->n_jobs > 0) {
        job = p->jobs[p->job_head];
        p->job_head = (p->job_head + 1) % MAX_JOBS;
        p->n_jobs--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return job;
}

static void *producer(void *arg)
{
    stage_pipe *p = arg;
    lvd_error err;
    lvd_error_clear(&err);
    int failed = 0;
    const stage_job *job;
    while (!failed && (job = next_job(p)) != NULL)
        failed = run_job(p, job, &err) != 0;
    pthread_mutex_lock(&p->mu);
    p->finished = 1;
    if (failed && !p->stopping) {
        p->failed = 1;
        p->err = err;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int alloc_batch(stage_batch *b, int cap, int crop)
{
    b->ids = malloc((size_t)cap * sizeof *b->ids);
    b->x = malloc((size_t)cap * 3 * crop * crop * sizeof *b->x);
    b->failed_ids = malloc((size_t)cap * sizeof *b->failed_ids);
    b->failed_msg = malloc((size_t)cap * sizeof *b->failed_msg);
    return b->ids && b->x && b->failed_ids && b->failed_msg ? 0 : -1;
}

static void free_pipe(stage_pipe *p)
{
    for (int i = 0; i < N_BUFFERS; i++) {
        free(p->buffers[i].ids);
        free(p->buffers[i].x);
        free(p->buffers[i].failed_ids);
        free(p->buffers[i].failed_msg);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int stage_pipe_start(int batch, int resize, int crop, stage_pipe **out, lvd_error *err)
{
    *out = NULL;
    stage_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return lvd_fail(err, "out of memory");
    p->cap = batch;
    p->resize = resize;
    p->crop = crop;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int ok = 1;
    for (int i = 0; i < N_BUFFERS; i++) {
        ok = ok && alloc_batch(&p->buffers[i], batch, crop) == 0;
        p->free_list[p->n_free++] = &p->buffers[i];
    }
    if (!ok) {
        free_pipe(p);
        return lvd_fail(err, "out of memory for %d batches of %d images of %dx%d", N_BUFFERS, batch,
                        crop, crop);
    }
    if (pthread_create(&p->thread, NULL, producer, p) != 0) {
        free_pipe(p);
        return lvd_fail(err, "cannot start the decode thread");
    }
    *out = p;
    return 0;
}

void stage_pipe_post(stage_pipe *p, const stage_job *job)
{
    pthread_mutex_lock(&p->mu);
    while (p->n_jobs == MAX_JOBS && !p->finished)
        pthread_cond_wait(&p->cv, &p->mu);
    if (!p->finished) {
        p->jobs[(p->job_head + p->n_jobs) % MAX_JOBS] = job;
        p->n_jobs++;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void stage_pipe_close(stage_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int stage_pipe_next(stage_pipe *p, stage_batch **b, lvd_error *err)
{
    *b = NULL;
    pthread_mutex_lock(&p->mu);
    while (p->n_ready == 0 && !p->finished)
        pthread_cond_wait(&p->cv, &p->mu);
    int rc = 0;
    if (p->n_ready > 0) {
        *b = p->ready[p->ready_head];
        p->ready_head = (p->ready_head + 1) % MAX_READY;
        p->n_ready--;
        pthread_cond_broadcast(&p->cv);
    } else if (p->failed) {
        if (err)
            *err = p->err;
        rc = -1;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void stage_pipe_release(stage_pipe *p, stage_batch *b)
{
    pthread_mutex_lock(&p->mu);
    p->free_list[p->n_free++] = b;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void stage_pipe_stop(stage_pipe *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    free_pipe(p);
}
