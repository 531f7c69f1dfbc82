/* Internals of the embed stage (curate/stages/embed_stage.h): the decode pipeline and the manifest
 * bookkeeping shared by embedding and import. */
#ifndef LVD_CURATE_STAGES_EMBED_STAGE_INTERNAL_H
#define LVD_CURATE_STAGES_EMBED_STAGE_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "curate/stages/embed_stage.h"
#include "dist/dist.h"
#include "embed/vit.h"
#include "kit/kit.h"
#include "store/manifest.h"
#include "store/npy.h"

#define STAGE_MSG 256 /* bytes kept of one failure message */

/* One image to embed: its id and its member name in the shard. */
typedef struct stage_item {
    int64_t image_id;
    char *member;
} stage_item;

/* The images to embed from one shard, sorted by member name. */
typedef struct stage_job {
    int64_t shard_id;
    char *shard_path;
    stage_item *items;
    size_t n;
} stage_job;

/* Frees the job's contents and the job. NULL is ok. */
void stage_job_free(stage_job *job);

/* Up to `cap` preprocessed images of one job, and the images of it that failed. */
typedef struct stage_batch {
    const stage_job *job;
    int n;        /* images in x */
    int64_t *ids; /* (cap) their image ids */
    float *x;     /* (cap, 3, crop, crop) */
    int n_failed; /* images that could not be used */
    int64_t *failed_ids;
    char (*failed_msg)[STAGE_MSG];
    int last; /* 1: the job's final batch (possibly empty) */
} stage_batch;

typedef struct stage_pipe stage_pipe;

/* Starts the producer thread, which decodes and preprocesses the images of posted jobs into
 * batches of `batch` images; at most 2 finished batches wait for the consumer. */
int stage_pipe_start(int batch, int resize, int crop, stage_pipe **out, lvd_error *err);

/* Queues a job (processed in posting order); the caller keeps ownership and frees it only after
 * its last batch was released. */
void stage_pipe_post(stage_pipe *p, const stage_job *job);

/* No more jobs will be posted. */
void stage_pipe_close(stage_pipe *p);

/* Waits for the next batch: 0 with *b set, 0 with *b NULL when every posted job is done (after
 * stage_pipe_close), -1 when the producer failed (err says why: a shard could not be read). */
int stage_pipe_next(stage_pipe *p, stage_batch **b, lvd_error *err);

/* Gives a batch back to the producer. */
void stage_pipe_release(stage_pipe *p, stage_batch *b);

/* Stops the producer (abandoning the jobs not done), joins it and frees everything. NULL ok. */
void stage_pipe_stop(stage_pipe *p);

/* Which images a run embeds: 'ok' images of the source (any source when source_id < 0) without
 * an embedding of the model and, unless retry_failed, without a recorded failure. */
typedef struct stage_filter {
    int64_t model_id, source_id;
    int retry_failed;
} stage_filter;

/* The shards holding images to embed for a model, in shard id order. */
typedef struct stage_plan {
    int64_t *shard_ids;
    char **paths;
    int64_t *counts; /* images to embed in each */
    size_t n;
    int64_t total;
} stage_plan;

/* Lists the shards holding images that pass the filter. */
int stage_plan_make(lvd_manifest *m, const stage_filter *f, stage_plan *plan, lvd_error *err);

void stage_plan_free(stage_plan *plan);

/* The job of plan shard i: at most limit (> 0) of its images to embed, by member name. */
int stage_plan_job(lvd_manifest *m, const stage_plan *plan, size_t i, const stage_filter *f,
                   int64_t limit, stage_job **out, lvd_error *err);

/* The part of path after its last '/'. */
const char *stage_base_name(const char *path);

/* Progress of an embed run: a line rewritten in place on a terminal, else a log line every
 * interval_s seconds. */
typedef struct stage_report {
    FILE *log; /* NULL: silent */
    int tty;
    double interval_s, start, last;
    int64_t todo, done, failed;
} stage_report;

/* Prints the progress when due (always when force). */
void stage_report_tick(stage_report *r, int force);

/* Prints one failed image (clearing the progress line first on a terminal). */
void stage_report_failure(stage_report *r, int64_t image_id, const char *msg);

/* Prints the end-of-run summary. */
void stage_report_summary(stage_report *r, const lvd_embed_summary *sum);

/* Creates and writes the model's output folder: <out_dir or "embeddings" beside db>/<model>,
 * absolute. */
int stage_model_dir(const char *db, const char *out_dir, const char *model, char dir[PATH_MAX],
                    lvd_error *err);

/* Marks dead runs interrupted and deletes what they left in dir: temporary .npy files and
 * "*.r<run>.npy" files of runs that are not running and not recorded in embedding_files. */
int stage_recover(lvd_manifest *m, const char *dir, lvd_error *err);

/* How a model's rows were made (models.embed_settings, JSON): lvd-embed's eval transform and
 * normalization, or rows attached by import (settings unknown). Rows made otherwise are not
 * comparable, so every row of a model is made the same way. */
typedef struct stage_settings {
    int imported;     /* 1: {"imported": true, "normalize": B}; resize and crop unused */
    int resize, crop; /* lvd-embed's eval transform */
    int normalize;    /* unit rows */
} stage_settings;

/* Reads the model's recorded settings; *recorded is 0 when it has none yet. */
int stage_settings_read(lvd_manifest *m, int64_t model_id, stage_settings *s, int *recorded,
                        lvd_error *err);

/* Inside the caller's transaction: records s as the model's settings unless some are. */
int stage_settings_record(lvd_manifest *m, int64_t model_id, const stage_settings *s,
                          lvd_error *err);

/* 1 when a and b make the same rows. */
int stage_settings_equal(const stage_settings *a, const stage_settings *b);

/* "--resize 256 --crop 224" (plus " --no-normalize"), or "lvd-embed --import of (un)normalized
 * rows". */
void stage_settings_describe(const stage_settings *s, char *buf, size_t cap);

/* Inside the caller's transaction: records the file (rows x cols) and row i of it for ids[i];
 * writes the new file id. */
int stage_record_file(lvd_manifest *m, int64_t model_id, int64_t run_id, const char *path,
                      int64_t rows, int cols, int normalized, const int64_t *ids, lvd_error *err);

/* ---- One run (embed_stage_run.c), shared with the group run (embed_stage_dist.c) ---------- */

/* What one run works with once set up. */
typedef struct embed_ctx {
    const lvd_embed_opts *o;
    lvd_dist dist;
    lvd_manifest *m; /* NULL on the ranks other than 0 of a group */
    lvd_model_record model;
    lvd_vit *vit;
    lvd_vit_pool pool;
    stage_filter filter;
    char dir[PATH_MAX];
    lvd_embed_summary *sum;
    stage_report rep;
    stage_plan plan;         /* a rank of a group: only n, its number of jobs */
    stage_settings settings; /* of this run's rows */
    float *feats;            /* (batch, dim) */
    int64_t round, rounds;   /* a group: rounds done, and in all (embed_stage_dist.c) */
    int stopped;             /* a group: a rank failed, everyone stops */
} embed_ctx;

/* The output of one shard being written (or, in a group, a rank's finished shard received). */
typedef struct shard_out {
    const stage_job *job;
    char path[PATH_MAX];
    lvd_npy_appender *app;
    int64_t *ids; /* (job->n) ids of the rows written so far */
    int64_t rows;
    int64_t *failed_ids;
    char (*failed_msg)[STAGE_MSG];
    int64_t n_failed;
} shard_out;

/* Aborts the file being written and frees everything, leaving s zeroed. */
void stage_shard_out_reset(shard_out *s);

/* Opens the manifest's model (its ViT, checks of features, settings and crop) into c. */
int stage_open_model(embed_ctx *c, lvd_error *err);

/* On the manifest: the model, the source filter, the output folder, crash recovery and the
 * run's start. */
int stage_run_setup(embed_ctx *c, lvd_error *err);

/* The run's parameters and counts (JSON for lvd_kit_run_start / _finish). */
cJSON *stage_params_json(const embed_ctx *c);
cJSON *stage_counts_json(const lvd_embed_summary *s);

/* Embeds the c->plan.n jobs (jobs[i] NULL: listed from the manifest when its turn comes, under
 * the run's limit), finishing each shard as it ends. */
int stage_embed_jobs(embed_ctx *c, stage_job **jobs, lvd_error *err);
int stage_consume(embed_ctx *c, stage_pipe *p, stage_job **jobs, lvd_error *err);

/* Puts the finished file in place (when rows were written) and counts it. */
int stage_finish_file(embed_ctx *c, shard_out *s, lvd_error *err);

/* One transaction: the file's rows, the shard's failures, the model's settings. */
int stage_record_shard(embed_ctx *c, const shard_out *s, lvd_error *err);

/* A group run (c->dist.size > 1), see embed_stage_dist.c: rank 0 sets up and plans on the
 * manifest, every rank embeds its share, rank 0 records. */
int stage_dist_run(embed_ctx *c, lvd_error *err);

/* In a group: puts s's file in place, exchanges the round's finished shards and, on rank 0,
 * records them. -1 when any rank failed (err says which and why): everyone stops. */
int stage_dist_finish_shard(embed_ctx *c, shard_out *s, lvd_error *err);

#endif
