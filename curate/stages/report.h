/* The curation report (lvd-report): static HTML pages about a manifest, in the manner of
 * fastdup's galleries, written into one folder:
 *
 *   index.html           the demo's summary when the manifest records one (pool images kept and
 *                        removed per reason, retrieval precision per seed class against chance,
 *                        k-NN accuracy per model; curate/stages/report_summary.h), then
 *                        counts per stage: images by source and status (v_status), embeddings
 *                        per model, indexes, dedup kept / duplicate / eval per model, curated
 *                        rows by model, dataset and method, the last runs (v_runs); links to:
 *   duplicates.html      the largest duplicate components, members side by side with their
 *                        similarity (largest first, ties by component id)
 *   decontaminated.html  components removed by decontamination, each with its eval match: the
 *                        eval image and the member it is most similar to (found again from the
 *                        stored embeddings, curate/stages/report_eval.h)
 *   neighbours.html      each seed with its retrieved neighbours (method 'knn', rank order)
 *   clusters.html        the samples of each cluster (method 'cluster', rank order)
 *   training.html        loss, schedule, gradient norm and k-NN charts of every training and
 *                        distillation, and the final evaluations (curate/stages/report_train.h)
 *   similarities.html    histograms of the model's dedup edges, duplicate and decontamination
 *                        similarities with the thresholds marked (curate/stages/report_sims.h)
 *   thumbs/ID.jpg        the thumbnail of every image shown (curate/stages/report_thumbs.h)
 *
 * Galleries and similarities show one model's results; counts per page are bounded by the options
 * and every order is fixed, so a rerun on the same manifest writes the same pages. An image that
 * cannot be read or decoded is shown without a thumbnail. Every file is written atomically,
 * index.html last. */
#ifndef LVD_CURATE_STAGES_REPORT_H
#define LVD_CURATE_STAGES_REPORT_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_report_options {
    const char *model; /* NULL: the manifest's only model */
    const char *out;   /* folder, created when absent */
    int groups;        /* components, seeds or clusters per gallery (20) */
    int per_group;     /* images shown per component, seed or cluster (12) */
    int thumb;         /* thumbnail box side in pixels (128) */
    int runs;          /* runs listed on the index page (20) */
} lvd_report_options;

typedef struct lvd_report_counts {
    int64_t groups;    /* components, seeds and clusters shown */
    int64_t tiles;     /* images shown */
    int64_t thumbs;    /* distinct thumbnails written */
    int64_t trainings; /* trainings on the training page */
    int64_t edges;     /* dedup pairs in the edge histogram */
} lvd_report_counts;

/* groups 20, per_group 12, thumb 128, runs 20, model and out NULL. */
void lvd_report_defaults(lvd_report_options *o);

/* Writes the pages. Fails on invalid options, an unknown model, several models and none
 * chosen, an output folder that cannot be created or a page that cannot be written. A
 * manifest without models or stage results gives pages that say "none". */
int lvd_report_run(lvd_manifest *m, const lvd_report_options *o, lvd_report_counts *counts,
                   lvd_error *err);

#endif
