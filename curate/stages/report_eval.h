/* The eval match of decontaminated components, for lvd-report: dedup records only the
 * highest similarity of a removed component to the eval set, so the report finds the pair
 * behind it again by an exact search of the model's stored embeddings. */
#ifndef LVD_CURATE_STAGES_REPORT_EVAL_H
#define LVD_CURATE_STAGES_REPORT_EVAL_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

/* One component's match: its removed member and the eval image most similar to each other. */
typedef struct lvd_eval_match {
    int64_t pool_id; /* -1 when the component or the eval set has no embeddings */
    int64_t eval_id;
    float sim;
} lvd_eval_match;

/* For each of the n components (dedup component ids of model_id, dim-dimensional), the pair
 * (member removed for reason 'eval', eval-role image) of highest cosine similarity, ties to the
 * lower pool id then the lower eval id. Memory: the eval set's embeddings, as lvd-dedup uses.
 * Fails on an SQL error or an unreadable embedding file. */
int lvd_report_eval_match(lvd_manifest *m, int64_t model_id, int dim, const int64_t *components,
                          int64_t n, lvd_eval_match *out, lvd_error *err);

#endif
