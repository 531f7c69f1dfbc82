/* The similarity page of lvd-report (similarities.html), for the report's model: histograms of
 *   - the dedup edges: every pair of pool images linked by lvd-dedup (an image's k best
 *     neighbours above the threshold, a pair found from both ends counted once), read from the
 *     state file the dedup run left beside the manifest (curate/stages/dedup_stage.h; the
 *     manifest keeps no edges), with the run's threshold and the latest calibrated threshold
 *     (lvd-calibrate's counts) marked;
 *   - the similarity of each removed duplicate to its component's kept image (v_duplicates,
 *     below the threshold for images linked through a chain);
 *   - decontamination: each removed component's highest similarity to an eval image
 *     (v_duplicates reason 'eval'), with the eval threshold marked. Only components above it
 *     are recorded, so the histogram starts there.
 * Bins are 0.01 wide, from a multiple of 0.05 below the lowest value and marker up to 1. */
#ifndef LVD_CURATE_STAGES_REPORT_SIMS_H
#define LVD_CURATE_STAGES_REPORT_SIMS_H

#include <stdint.h>
#include <stdio.h>

#include "store/error.h"
#include "store/manifest.h"

/* Writes the page body into f for model model_id (name model; model_id < 0: none), *edges
 * getting the number of dedup pairs shown. A missing or unreadable state file gives a note
 * naming the problem instead of the edge histogram. Fails on an SQL error or out of memory.
 * Memory: the state file (about 12 x nprobe + 40 bytes per pool image, plus 12 per edge). */
int lvd_report_similarities(lvd_manifest *m, FILE *f, int64_t model_id, const char *model,
                            int64_t *edges, lvd_error *err);

#endif
