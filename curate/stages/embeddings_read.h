/* A model's embeddings read from the manifest into memory, for the index, dedup and retrieve
 * stages.
 *
 * Rows are selected with the kit's statement over v_embeddings (lvd_kit_rows, kit/kit.h): a
 * condition, joins, an optional integer tag column (e.g. the image's source id) and the order
 * the caller wants; each .npy file (see store/npy.h) is opened once, whatever order its rows come
 * in. Every row is L2-normalized on reading, so inner products are cosine similarities. Memory:
 * n x dim floats plus 24 bytes a row. */
#ifndef LVD_CURATE_STAGES_EMBEDDINGS_READ_H
#define LVD_CURATE_STAGES_EMBEDDINGS_READ_H

#include <stdint.h>

#include "kit/kit.h"
#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_embeddings {
    int64_t n;
    int dim;
    float *x;          /* n x dim, unit rows */
    int64_t *image_id; /* n: the image of each row */
    int64_t *tag;      /* n: the statement's fourth column (0 when it has none) */
} lvd_embeddings;

/* Finds the model called name (lvd_model_find): writes its id and dim. Fails when it is absent or
 * has no embedding width. */
int lvd_embeddings_model(lvd_manifest *m, const char *name, int64_t *model_id, int *dim,
                         lvd_error *err);

/* Reads the rows of model_id that q selects (lvd_kit_embeddings; binds go to ?2, ?3, ...). Every
 * file must be a (rows, dim) float32 array holding the row asked for. Fails on a missing or
 * malformed file, a row out of range, or a zero row; out is then empty. An empty selection is no
 * error. */
int lvd_embeddings_read(lvd_manifest *m, int64_t model_id, const lvd_kit_rows *q,
                        const int64_t *binds, int n_binds, int dim, lvd_embeddings *out,
                        lvd_error *err);

/* Frees the arrays and zeroes e (NULL allowed). */
void lvd_embeddings_free(lvd_embeddings *e);

#endif
