/* The fetch stage: registers the items of the inputs in the manifest under a source, downloads
 * (http, https) or reads (file) every pending item, validates it by content, stores the accepted
 * bytes in WebDataset tar shards and records one terminal status per item.
 *
 * Crash safety: an item becomes ok (or duplicate of an item of the same shard) only in the
 * transaction that marks its shard complete, after the shard was renamed into place. A shard is
 * registered as 'writing' before its file is created; on start the files of such shards are
 * deleted and the items they held are still pending, so a rerun after kill -9 redoes exactly the
 * unfinished work. Failures are committed in batches; an uncommitted one is simply redone.
 *
 * Determinism: items are processed concurrently but recorded in item id order (the order of the
 * input lines, or of the sorted folder walk), so of identical stored bytes the earliest item is
 * the one kept, shards hold their members in item order and are cut at the same places, and tar
 * members carry no timestamp: the manifest and the shards are a function of the inputs (and of
 * what earlier runs recorded), whatever the order in which answers arrive and whatever
 * --parallel. */
#ifndef LVD_CURATE_FETCH_FETCH_H
#define LVD_CURATE_FETCH_FETCH_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "curate/fetch/net.h"
#include "curate/fetch/validate.h"
#include "store/error.h"
#include "store/manifest.h"

/* The longest http(s) URL requested; a longer one fails as http_4xx (servers answer 414 well
 * before). */
#define LVD_FETCH_MAX_URL 65536

/* Every terminal class, in report order: index 0 is "ok", 1 "duplicate", then the failures. */
#define LVD_FETCH_N_CLASSES 13
extern const char *const lvd_fetch_classes[LVD_FETCH_N_CLASSES];

/* The index of cls in lvd_fetch_classes, or -1. */
int lvd_fetch_class_index(const char *cls);

typedef struct lvd_fetch_opts {
    const char *db;
    const char *source;
    lvd_source_role role;
    const char *out_dir; /* NULL: the folder "shards" beside the database. Shards are named by
                          * their id (shard-000001.tar ...); a fetch that finds a file under a new
                          * shard's name (another manifest's shard folder) fails naming it rather
                          * than overwrite it */
    const char *const *inputs;
    int n_inputs;
    int parallel; /* concurrent downloads */
    int threads;  /* read/decode workers; 0: one per online CPU */
    lvd_net_opts net;
    lvd_validate_opts validate;
    int64_t shard_size; /* bytes; a shard is closed before it would grow past this */
    int retry_failed;   /* 1: failed items of the source become pending again first */
    int progress;       /* 1: a progress line redrawn in place; 0: periodic log lines */
    double log_interval_s;
    FILE *log; /* where progress and the summary go */
    /* When *stop becomes non-zero (a signal handler sets it), the run takes no new item, cancels
     * its downloads (those items stay pending), records what its workers finish, completes the
     * open shard and returns with interrupted set. NULL: never. */
    volatile sig_atomic_t *stop;
} lvd_fetch_opts;

typedef struct lvd_fetch_summary {
    int64_t run_id;
    int64_t inputs;                      /* items read from the inputs (repeats included) */
    int64_t new_items;                   /* items the inputs added to the source */
    int64_t todo;                        /* items this run had to process */
    int64_t counts[LVD_FETCH_N_CLASSES]; /* this run's outcomes by class */
    int64_t shards;                      /* shards completed by this run */
    double seconds;
    int interrupted; /* stopped early through opts.stop; a rerun continues */
} lvd_fetch_summary;

/* Fills o with the defaults documented in lvd-fetch --help (db, source and inputs unset). */
void lvd_fetch_opts_init(lvd_fetch_opts *o);

/* Runs the stage. Returns 0 when every item reached a terminal status (failed items included),
 * -1 when the stage itself could not go on (unreadable input, database or disk failure). */
int lvd_fetch_run(const lvd_fetch_opts *o, lvd_fetch_summary *sum, lvd_error *err);

#endif
