/* The curation report (lvd-report): one self-contained HTML file about a model's dedup and
 * retrieval results, in the manner of fastdup's galleries.
 *
 * It shows the counts of v_duplicates (kept / duplicate / eval) and v_curated (rows and images
 * by dataset and method), then galleries: the largest duplicate components and the components
 * removed by decontamination (largest first, ties by component id), each image as an inline
 * JPEG thumbnail read from its fetch shard, with its id, url, reason and similarity. An image
 * that cannot be read or decoded is shown without a thumbnail. Written atomically. */
#ifndef LVD_CURATE_EXPORT_REPORT_H
#define LVD_CURATE_EXPORT_REPORT_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_report_options {
    const char *model;
    const char *out; /* HTML file */
    int groups;      /* components per gallery (20) */
    int per_group;   /* images shown per component (12) */
    int thumb;       /* thumbnail box side in pixels (128) */
} lvd_report_options;

typedef struct lvd_report_counts {
    int64_t groups; /* components shown */
    int64_t tiles;  /* images shown */
    int64_t thumbs; /* of which with a thumbnail */
} lvd_report_counts;

/* groups 20, per_group 12, thumb 128. */
void lvd_report_defaults(lvd_report_options *o);

/* Writes the report. Fails on an unknown model, a model without dedup results ("run lvd-dedup
 * first") or an unwritable output. */
int lvd_report_run(lvd_manifest *m, const lvd_report_options *o, lvd_report_counts *counts,
                   lvd_error *err);

#endif
