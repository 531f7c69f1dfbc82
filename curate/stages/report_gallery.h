/* The galleries of lvd-report: groups of images (a duplicate component, a decontaminated
 * component, a seed with its neighbours, a cluster's samples) read from the manifest and
 * written as one page each. */
#ifndef LVD_CURATE_STAGES_REPORT_GALLERY_H
#define LVD_CURATE_STAGES_REPORT_GALLERY_H

#include <stdint.h>
#include <stdio.h>

#include "curate/stages/report_eval.h"
#include "store/error.h"
#include "store/manifest.h"

typedef enum lvd_gallery_kind {
    LVD_GALLERY_DUPLICATES,
    LVD_GALLERY_DECONTAMINATED,
    LVD_GALLERY_NEIGHBOURS,
    LVD_GALLERY_CLUSTERS,
    LVD_GALLERY_COUNT
} lvd_gallery_kind;

/* One image shown. */
typedef struct lvd_tile {
    int64_t image_id;
    char *label, *cls, *url; /* caption, CSS class, image URL (may be NULL) */
    double sim;              /* NAN when none */
    int thumb;               /* 1 when thumbs/<image_id>.jpg was written */
} lvd_tile;

/* One group: its key (component, seed or cluster id), dataset (NULL for dedup), size and
 * tiles [first, first + n). */
typedef struct lvd_group {
    int64_t key, size, first, n;
    char *dataset;
    lvd_eval_match match; /* decontaminated groups only */
} lvd_group;

typedef struct lvd_gallery {
    lvd_gallery_kind kind;
    lvd_group *groups;
    int64_t n_groups;
    lvd_tile *tiles;
    int64_t n_tiles, cap_tiles;
} lvd_gallery;

/* The page file name of a kind ("duplicates.html", ...). */
const char *lvd_gallery_file(lvd_gallery_kind kind);

/* The page title of a kind ("Largest duplicate components", ...). */
const char *lvd_gallery_title(lvd_gallery_kind kind);

/* Loads the kind's first max_groups groups of model_id (dim-dimensional embeddings; model_id
 * < 0: none) with at most per_group tiles each. Fails on an SQL error or out of memory; g is
 * then freed. */
int lvd_gallery_load(lvd_manifest *m, lvd_gallery_kind kind, int64_t model_id, int dim,
                     int max_groups, int per_group, lvd_gallery *g, lvd_error *err);

/* Writes g as a page body (after lvd_html_begin): a heading and tiles per group, or "none". */
void lvd_gallery_write(FILE *f, const lvd_gallery *g);

/* Frees the gallery (a zeroed one is fine). */
void lvd_gallery_free(lvd_gallery *g);

#endif
