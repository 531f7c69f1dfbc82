/* Pipelines: an INI file lists the steps of a curation run; lvd-run runs them in order.
 *
 * File format (parsed with libinih; `;` and `#` start comment lines, ` ;` an inline comment):
 *
 *   [pipeline]              optional; keys: db (the manifest, unless lvd-run --db is given)
 *   [STAGE] or [STAGE:NAME] one step: runs the executable lvd-STAGE, looked up in the folders of
 *                           $LVD_STAGE_PATH, then beside lvd-run, then on $PATH. The step id is
 *                           the section name; ids are unique.
 *   key = value             passed as `--key value` (`-k value` for a one-letter key), in file
 *                           order; a repeated key repeats it
 *   key   or   key =        a flag: `--key` alone
 *   args = value            a positional argument (repeatable), placed before the options
 *   reads = FACT ...        the manifest state the step reads (see pipeline_fp.h), separated by
 *                           spaces or commas; `none` for nothing. Default by stage: fetch, model,
 *                           idx-export: none; embed: images models; dedup: images models
 *                           embeddings; retrieve: the same and dedup; export: curated; any
 *                           other stage: images models embeddings dedup curated
 *
 * Every value may use ${VAR} (environment). The command of a step is
 *   lvd-STAGE ARGS... --db DB --key value ...
 * Relative paths are relative to lvd-run's working directory (stages run there). */
#ifndef LVD_CURATE_PIPELINE_PIPELINE_H
#define LVD_CURATE_PIPELINE_PIPELINE_H

#include <stddef.h>
#include <stdio.h>

#include "store/error.h"

typedef struct lvd_pipeline_opt {
    char *key;   /* "--name", or "-k" for a one-letter key */
    char *value; /* NULL: a flag */
} lvd_pipeline_opt;

typedef struct lvd_pipeline_step {
    char *id;    /* section name */
    char *stage; /* id up to the first ':' */
    char *exe;   /* resolved executable path */
    int line;    /* line of the section header */
    lvd_pipeline_opt *opts;
    size_t n_opts;
    char **args;
    size_t n_args;
    char **reads; /* manifest facts, see pipeline_fp.h */
    size_t n_reads;
} lvd_pipeline_step;

typedef struct lvd_pipeline {
    char *path;
    char *db; /* [pipeline] db, or NULL */
    lvd_pipeline_step *steps;
    size_t n_steps;
} lvd_pipeline;

/* Parses the pipeline file at path and resolves every stage's executable. On failure err holds
 * "<path>:<line>: <problem>" for the first problem: a syntax error, a key outside a section, an
 * invalid section name, a duplicate step, an unknown stage (no executable), an unknown fact, a
 * value naming an unset ${VAR}, or a file with no steps. */
int lvd_pipeline_load(const char *path, lvd_pipeline **out, lvd_error *err);

/* The same from an open stream (read to its end; path names it in messages and in p->path). */
int lvd_pipeline_parse(FILE *file, const char *path, lvd_pipeline **out, lvd_error *err);

/* Frees p (NULL allowed). */
void lvd_pipeline_free(lvd_pipeline *p);

/* Finds the executable lvd-<stage> ($LVD_STAGE_PATH, lvd-run's folder, $PATH); writes a malloc'd
 * path. Fails with a line naming the places looked in. */
int lvd_pipeline_find_exe(const char *stage, char **exe, lvd_error *err);

/* The command line of step s with manifest db: a malloc'd NULL-terminated array of borrowed
 * strings (free the array only); argv[0] is the executable. */
char **lvd_pipeline_argv(const lvd_pipeline_step *s, const char *db);

typedef struct lvd_pipeline_run_opts {
    const char *db;   /* manifest path (required) */
    const char *from; /* NULL, or a step id or stage name: that step and all after it run */
    int dry_run;      /* print the plan only */
    FILE *out;        /* progress and plan lines (stdout) */
} lvd_pipeline_run_opts;

/* Runs the steps in order, skipping each step whose command line, input paths and read manifest
 * facts equal those recorded after its last run, when that run succeeded (pipeline_fp.h). Each
 * executed step is recorded in the manifest's runs table as stage "pipeline:<step id>" with
 * params {pipeline, step, stage, argv} and counts {exit, seconds, inputs, reads}. A step that
 * exits non-zero or dies stops the run: err names the step, its executable and its exit status.
 * One lvd-run per manifest at a time (the stage lock "run" of store/manifest.h). */
int lvd_pipeline_run(const lvd_pipeline *p, const lvd_pipeline_run_opts *o, lvd_error *err);

#endif
