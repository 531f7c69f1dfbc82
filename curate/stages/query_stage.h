/* Queries of a recorded index (lvd-query): the query vector from an image's stored embedding or
 * from an image file embedded with the registered model, and neighbours printed as TSV. */
#ifndef LVD_CURATE_STAGES_QUERY_STAGE_H
#define LVD_CURATE_STAGES_QUERY_STAGE_H

#include <stdint.h>
#include <stdio.h>

#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_query_options {
    const char *model;
    const char *source; /* which index: NULL = the one over every source */
    int64_t image_id;   /* > 0: query with this image's embedding (the image itself is skipped) */
    const char *image;  /* else: this image file, decoded, preprocessed and embedded */
    int k;              /* neighbours printed (10) */
    int resize, crop;   /* eval transform of --image (256 / 224, as lvd-embed) */
    int nprobe;         /* lists visited by an IVF index; 0: as saved */
} lvd_query_options;

/* k 10, resize 256, crop 224, nprobe 0. */
void lvd_query_defaults(lvd_query_options *o);

/* Writes "id<TAB>url<TAB>similarity" lines (a header first, nearest first) to out. Fails on an
 * unknown model, no recorded index, an image without an embedding of the model, an undecodable
 * file, or --image with a model that has no weights (external embeddings). */
int lvd_query_run(lvd_manifest *m, const lvd_query_options *o, FILE *out, lvd_error *err);

#endif
