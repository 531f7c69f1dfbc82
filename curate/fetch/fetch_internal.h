/* Pieces of the fetch stage shared by its source files: the job that carries one item through
 * the pipeline, the worker pool (read + validate), the sink (shards + manifest) and the report. */
#ifndef LVD_CURATE_FETCH_FETCH_INTERNAL_H
#define LVD_CURATE_FETCH_FETCH_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "curate/fetch/fetch.h"
#include "store/manifest.h"
#include "store/shard.h"

/* One item on its way. Jobs are owned by the main loop's dispatch list (in item id order) from
 * dispatch until they are recorded; the network and the worker pool only borrow them. */
typedef struct fetch_job {
    int64_t id;
    char *url, *key, *label, *caption;
    int local;     /* 1: read url (file://) in the worker */
    int done;      /* 1: finished (failed or validated), waiting to be recorded in order */
    int cancelled; /* 1: its download was cancelled by a stop: it stays pending */
    uint8_t *body; /* downloaded bytes (http items), owned by the job */
    size_t len;
    int attempts;
    int failed;
    lvd_error err;           /* the failure, with its class */
    lvd_stored stored;       /* the accepted bytes when not failed */
    int64_t duplicate_of;    /* set by the sink: the item whose stored bytes are the same */
    struct fetch_job *next;  /* in the worker pool's queues */
    struct fetch_job *order; /* in the dispatch list */
} fetch_job;

/* A job for row id with copies of the strings (key, label, caption may be NULL). */
fetch_job *fetch_job_new(int64_t id, const char *url, const char *key, const char *label,
                         const char *caption);
void fetch_job_free(fetch_job *job);
/* Frees a list of jobs linked through next (NULL allowed). */
void fetch_job_free_list(fetch_job *job);

/* Marks job failed with class cls. */
void fetch_job_fail(fetch_job *job, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Worker threads: each submitted job is read (when local) and validated, then queued as done. */
typedef struct fetch_pool fetch_pool;

/* wake(wake_ctx) is called after each finished job, from the worker thread. Local files obey
 * net's max_bytes and timeout_ms like downloads. */
int fetch_pool_start(int threads, const lvd_validate_opts *vopts, const lvd_net_opts *net,
                     void (*wake)(void *), void *wake_ctx, fetch_pool **out, lvd_error *err);
void fetch_pool_submit(fetch_pool *p, fetch_job *job);
/* The finished jobs so far, as a list (oldest first), or NULL. */
fetch_job *fetch_pool_take(fetch_pool *p);
/* Jobs submitted and not yet taken back (queued, running or finished). */
int fetch_pool_held(fetch_pool *p);
/* Hands the queued jobs that no worker started back as finished with cancelled set. */
void fetch_pool_cancel(fetch_pool *p);
/* Stops the threads (after the queued jobs) and frees the pool; the jobs stay the caller's. */
void fetch_pool_stop(fetch_pool *p);

/* Reads and validates one job in the calling thread (what a worker does). A file:// item must
 * be a regular file (a FIFO, device, socket or folder is refused without reading it: http_4xx)
 * of at most net->max_bytes bytes (too_large) read within net->timeout_ms (timeout). */
void fetch_process(fetch_job *job, const lvd_validate_opts *vopts, const lvd_net_opts *net);

/* The sink records outcomes: failures in batched transactions, accepted items into shards. */
typedef struct fetch_sink fetch_sink;

int fetch_sink_open(lvd_manifest *m, int64_t run_id, const char *out_dir, int64_t shard_size,
                    fetch_sink **out, lvd_error *err);
/* Records the outcome of job (which stays the caller's). */
int fetch_sink_record(fetch_sink *s, fetch_job *job, lvd_error *err);
/* Commits the open batch of failures when it is older than a second. */
int fetch_sink_tick(fetch_sink *s, lvd_error *err);
/* Completes the open shard and commits everything. */
int fetch_sink_flush(fetch_sink *s, lvd_error *err);
/* Shards completed so far. */
int64_t fetch_sink_shards(const fetch_sink *s);
/* Abandons what is not committed (the open shard stays registered as 'writing' so the next run
 * removes it) and frees s (NULL allowed). */
void fetch_sink_close(fetch_sink *s);

/* Deletes the files of shards left 'writing' by an interrupted run and forgets them. */
int fetch_recover(lvd_manifest *m, lvd_error *err);

/* Registers the items of every input under source_id; counts inputs and new items. When *stop
 * becomes non-zero (stop may be NULL) it keeps what it registered, sets *stopped and returns 0:
 * a signal also ends a read blocked on a list that is a FIFO. */
int fetch_register(lvd_manifest *m, int64_t source_id, const char *const *inputs, int n_inputs,
                   volatile sig_atomic_t *stop, int *stopped, int64_t *n_inputs_read,
                   int64_t *n_new, lvd_error *err);

/* Progress reporting. */
typedef struct fetch_report {
    FILE *log;
    int tty;
    double interval_s;
    double start, last;
    int64_t todo;
    const int64_t *counts; /* LVD_FETCH_N_CLASSES outcomes so far */
} fetch_report;

double fetch_now(void);
void fetch_report_tick(fetch_report *r, int force);
/* The summary lines at the end of the run. */
void fetch_report_summary(fetch_report *r, const lvd_fetch_summary *sum);

#endif
