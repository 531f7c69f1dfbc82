/* Internal to the evaluation stages (train/eval/eval_stage.c): the labelled images of a source,
 * their stored embeddings, and features computed through a ViT from the tar shards the way
 * lvd-embed reads them (curate/embeddings_vit.h: decoding, eval transform). */
#ifndef LVD_TRAIN_EVAL_DATA_H
#define LVD_TRAIN_EVAL_DATA_H

#include <stdint.h>
#include <stdio.h>

#include "embed/vit.h"
#include "store/error.h"
#include "store/manifest.h"

/* Sorted distinct labels (byte order, as SQLite's BINARY collation): class c is name[c]. */
typedef struct eval_labels {
    int n;
    char **name;
} eval_labels;

/* The 'ok' images of one source in image id order. */
typedef struct eval_images {
    int64_t n;
    int64_t *id;
    int32_t *label; /* class index into eval_labels */
    char **shard;   /* tar path */
    char **member;  /* image member name in it */
} eval_images;

/* The id of source name; fails with "unknown source 'name'". */
int eval_source(lvd_manifest *m, const char *name, int64_t *id, lvd_error *err);

/* The labels of the 'ok' images of sources a and b. */
int eval_labels_read(lvd_manifest *m, int64_t a, int64_t b, eval_labels *out, lvd_error *err);
void eval_labels_free(eval_labels *l);

/* The 'ok' images of source src (called name in messages). Fails when it has none, or when any
 * has no label (NULL or empty), with their count. */
int eval_images_read(lvd_manifest *m, int64_t src, const char *name, const eval_labels *l,
                     eval_images *out, lvd_error *err);
void eval_images_free(eval_images *im);

/* The stored embeddings of model_id (dim values, unit rows) for the images of im: x[i] and
 * have[i] = 1 where image i has one. n_missing counts the images without one, n_failed those of
 * them the embed stage recorded as failed (v_embedding_failures). */
int eval_stored_read(lvd_manifest *m, int64_t model_id, int64_t src, int dim, const eval_images *im,
                     float *x, uint8_t *have, int64_t *n_missing, int64_t *n_failed,
                     lvd_error *err);

/* What eval_vit_features computes per image: the cls tokens of the last `blocks` blocks (each
 * final-normed; earliest first), then with meanpatch the mean patch token of the last block. */
typedef struct eval_vit_spec {
    int blocks, meanpatch;
    int resize, crop; /* eval transform */
    int batch;        /* images per forward pass */
} eval_vit_spec;

/* Values per image: (blocks + meanpatch) * D. */
int eval_vit_dim(const lvd_vit *vit, const eval_vit_spec *s);

/* Checks s against the model: 1 <= blocks <= depth, crop a multiple of the patch size,
 * resize >= crop, batch >= 1. */
int eval_vit_check(const lvd_vit *vit, const eval_vit_spec *s, lvd_error *err);

/* Features (not normalized) of every image of im into x (n x eval_vit_dim), reading shard by
 * shard; have[i] = 0 for an image that does not decode (counted in *n_failed). Fails as
 * eval_vit_check does, on an unreadable shard, a member missing from its shard, or a ViT error.
 * Progress lines go to log (NULL: none). */
int eval_vit_features(lvd_vit *vit, const eval_images *im, const eval_vit_spec *s, float *x,
                      uint8_t *have, int64_t *n_failed, FILE *log, lvd_error *err);

#endif
