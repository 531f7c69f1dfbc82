/* Fingerprints of what a pipeline step reads, compared by lvd-run to decide whether a step can
 * be skipped.
 *
 * Input paths: every argument of a step's command line that names an existing file or folder
 * (relative to the working directory), except the manifest database itself. A file is
 * fingerprinted by size and mtime (ns); a folder by the relative path, type, size and mtime of
 * every entry below it (folders included: adding or removing an entry changes its folder's
 * mtime), walked in directory order without following symbolic links into folders. The cost is
 * bounded: a walk stops after LVD_FP_MAX_ENTRIES entries or LVD_FP_MAX_DEPTH levels (changes
 * past that bound go unseen). The fingerprint is a SHA-256 in hex.
 *
 * Manifest facts (the `reads` of a step) are text summaries of manifest state:
 *   images[:SOURCE]       item counts by status per source (role included): one pass over the
 *                         images_by_status index
 *   embeddings[:MODEL]    per model, its embedding files: count, rows, last id (cheap: one row
 *                         per file, not per embedding)
 *   models[:NAME]         registered models: name, arch, dim, features, sha256, path
 *   dedup[:MODEL]         dedup results per model: kept, removed as duplicate, as eval
 *   curated[:MODEL]       curated rows per model, source and method, with the last run id
 * A fact whose table the manifest lacks (built before the stage that adds it) is empty.
 * Because they are recorded after the step ran, a step's own writes never make it rerun; a later
 * step that changes what an earlier step reads does. */
#ifndef LVD_CURATE_PIPELINE_PIPELINE_FP_H
#define LVD_CURATE_PIPELINE_PIPELINE_FP_H

#include <cjson/cJSON.h>

#include "store/error.h"
#include "store/manifest.h"

#define LVD_FP_MAX_ENTRIES 200000
#define LVD_FP_MAX_DEPTH   32

/* Writes the fingerprint of the file or folder at path (65 bytes with the NUL). */
int lvd_fp_path(const char *path, char hex[65], lvd_error *err);

/* Adds to obj one member "<arg>": "<fingerprint>" per argument of argv (NULL-terminated, argv[0]
 * excluded) that names an existing path other than db. */
int lvd_fp_inputs(char *const *argv, const char *db, cJSON *obj, lvd_error *err);

/* 1 when fact is a valid fact name (see above). */
int lvd_fp_fact_valid(const char *fact);

/* Adds to obj one member "<fact>": "<summary>" per fact. */
int lvd_fp_facts(lvd_manifest *m, char *const *facts, size_t n, cJSON *obj, lvd_error *err);

#endif
