/* Evaluation of frozen features: the DINOv2 protocols (SPEC section 3; reference
 * dinov2/eval/knn.py and dinov2/eval/linear.py), as in-memory classifiers and as the two stages
 * of lvd-eval, which read labels and features from the manifest and record their results
 * (table `evals`, view v_evals, store/MANIFEST.md).
 *
 * k-NN (knn.py): features are unit rows (cosine similarity = inner product). Each test row gets
 * its K = min(max k, bank rows) most similar bank rows; a neighbour of similarity s weighs
 * softmax(s / T) over those K (the reference's `softmax(topk_sims / T, 1)`, taken over max k
 * even for the smaller k), the weights of each class among the first k neighbours are summed
 * (its one-hot product), and a test row is right at top-1 (top-5) when its label is the best
 * (among the 5 best) classes. Ties, which the reference leaves to torch.topk, are broken here
 * deterministically: equal similarities go to the lower bank row, equal class scores to the
 * lower class index (labels are numbered in sorted order), so a class without votes can fill
 * the top-5 when fewer than 5 classes got votes, as it does in the reference. Similarities come
 * from cblas_sgemm over blocks of test rows x bank rows (both chunk sizes bound the memory) and
 * a per-row heap; the rows that float rounding could move across the K-th are re-ranked in
 * double precision (lvd_knn_neighbours), so the result does not depend on the chunk sizes or
 * the thread count. (When nearly all similarities lie within that rounding bound of each
 * other, as for a random ViT whose cls tokens barely differ, nearly every row is re-ranked: the
 * cost approaches a double-precision brute force.) (FAISS's exact search is not used: sgemm's
 * rounding changes with the block shape, and FAISS's heap keeps either of two equal similarities at
 * the k boundary depending on their arrival order, so its answer would change with the chunking.)
 *
 * Linear probe (linear.py): one linear layer (weights N(0, 0.01), bias 0) per learning rate of
 * a grid, all trained together in each step on the same batch of precomputed features (the
 * backbone is frozen): cross-entropy, SGD with momentum 0.9 and no weight decay (PyTorch's
 * update), lr = base lr * batch / 256 (the reference's scale_lr) times the cosine schedule
 * (1 + cos(pi t / steps)) / 2 over all steps, batches drawn from a seeded shuffle of the
 * training rows each epoch (the last partial batch dropped). One sgemm gives the logits of every
 * classifier and one the gradients of all their weights. A classifier whose parameters become
 * non-finite is marked diverged and stops. The learning rate with the best validation top-1
 * (the first one on ties, as the reference) is then scored on the test rows. Unlike the
 * reference, the training features are not augmented (no random crops: they are computed once).
 *
 * Determinism: the same inputs, options and thread count give bitwise the same results. */
#ifndef LVD_TRAIN_EVAL_H
#define LVD_TRAIN_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "embed/vit.h"
#include "store/error.h"
#include "store/manifest.h"

/* ---- k-NN classifier ----------------------------------------------------------------------- */

#define LVD_KNN_MAX_KS 16

typedef struct lvd_knn_opts {
    int n_ks;
    int ks[LVD_KNN_MAX_KS]; /* neighbour counts, each >= 1, any order; clamped to the bank size */
    float temperature;      /* T of softmax(sim / T) (0.07) */
    int64_t query_chunk;    /* test rows per block (1024) */
    int64_t bank_chunk;     /* bank rows per block (8192): sims take query x bank floats */
} lvd_knn_opts;

/* k = 10, 20, 100, 200; T = 0.07; chunks 1024 x 8192. */
void lvd_knn_opts_default(lvd_knn_opts *o);

typedef struct lvd_knn_result {
    int k;      /* as asked */
    int k_used; /* min(k, bank rows) */
    int64_t n;  /* test rows */
    int64_t correct1, correct5;
    double top1, top5; /* percent */
} lvd_knn_result;

/* For each of the nq unit rows of q (dim values each), its K most similar rows of the bank
 * (n_bank unit rows; K <= n_bank): sims[i * K + j] descending, ids[i * K + j] the bank rows,
 * ties to the lower row. A similarity is the double-precision dot product of the float rows in
 * index order; the float sgemm blocks (o->query_chunk x o->bank_chunk) only preselect the rows
 * within its rounding error bound of the K-th, which are then re-ranked exactly, so the
 * answer depends on neither the chunk sizes nor the threads. */
int lvd_knn_neighbours(const float *bank, int64_t n_bank, const float *q, int64_t nq, int dim,
                       int K, const lvd_knn_opts *o, double *sims, int64_t *ids, lvd_error *err);

/* The class scores of one test row from its K neighbours (sims descending, their labels in
 * [0, n_classes)): scores[c] = sum over the first k <= K neighbours of label c of
 * exp(sims[j] / T) / sum_{j < K} exp(sims[j] / T), in double precision. */
void lvd_knn_vote(const double *sims, const int32_t *labels, int K, int k, double temperature,
                  int n_classes, double *scores);

/* The (up to) 5 best classes of scores: descending score, ties to the lower class; slots
 * beyond n_classes hold -1. */
void lvd_knn_top5(const double *scores, int n_classes, int32_t top[5]);

/* The classifier: bank rows (n_bank unit rows, labels in [0, n_classes)) and test rows (n_test
 * unit rows, labels in [0, n_classes)), one result per o->ks entry (res: o->n_ks entries, in
 * that order). pred, when not NULL, receives each test row's top-5 classes for each k:
 * pred[(i * n_ks + q) * 5 + r]. Fails on bad sizes, options, labels or a row that is not unit
 * (|norm^2 - 1| > 1e-3), or without memory. */
int lvd_knn_eval(const float *bank, const int32_t *bank_labels, int64_t n_bank, const float *test,
                 const int32_t *test_labels, int64_t n_test, int dim, int n_classes,
                 const lvd_knn_opts *o, lvd_knn_result *res, int32_t *pred, lvd_error *err);

/* ---- Linear probe -------------------------------------------------------------------------- */

#define LVD_LINEAR_MAX_LRS 32

typedef struct lvd_linear_opts {
    int n_lrs;
    float lrs[LVD_LINEAR_MAX_LRS]; /* base learning rates (> 0), scaled by batch / 256 */
    int epochs;                    /* passes over the training rows (10) */
    int batch;                     /* rows per step (128); at most the training rows */
    uint64_t seed;                 /* weight init and shuffling (0) */
} lvd_linear_opts;

/* The reference grid 1e-5 2e-5 5e-5 1e-4 2e-4 5e-4 1e-3 2e-3 5e-3 1e-2 2e-2 5e-2 0.1, 10 epochs,
 * batch 128, seed 0. */
void lvd_linear_opts_default(lvd_linear_opts *o);

typedef struct lvd_linear_result {
    int n_lrs;
    int64_t steps;                         /* SGD steps of every classifier */
    double val_top1[LVD_LINEAR_MAX_LRS];   /* percent */
    double val_top5[LVD_LINEAR_MAX_LRS];   /* percent */
    double final_loss[LVD_LINEAR_MAX_LRS]; /* mean cross-entropy of the last epoch */
    int diverged[LVD_LINEAR_MAX_LRS];      /* 1: parameters became non-finite (scores 0) */
    int best;                              /* chosen lr index; -1 when every lr diverged */
    double test_top1, test_top5;           /* of the chosen lr, percent */
} lvd_linear_result;

/* Trains the grid on the n_train rows of train_x (dim values each, labels in [0, n_classes)),
 * chooses on the n_val rows of val_x and scores the choice on the n_test rows of test_x (n_test
 * may be 0). Fails on bad sizes, options or labels, or without memory; every lr diverging is no
 * failure (best = -1, test scores 0). */
int lvd_linear_probe(const float *train_x, const int32_t *train_y, int64_t n_train,
                     const float *val_x, const int32_t *val_y, int64_t n_val, const float *test_x,
                     const int32_t *test_y, int64_t n_test, int dim, int n_classes,
                     const lvd_linear_opts *o, lvd_linear_result *r, lvd_error *err);

/* Carves a validation split: is_val[i] = 1 for the round(share * n) rows whose keys (distinct,
 * e.g. image ids) rank lowest by a seeded hash, 0 for the others. The split depends on the keys
 * and the seed only, not on the row order. share in [0, 1). */
int lvd_eval_split(const int64_t *keys, int64_t n, double share, uint64_t seed, uint8_t *is_val,
                   lvd_error *err);

/* ---- The stages (lvd-eval knn, lvd-eval linear) -------------------------------------------- */

/* Both stages take the 'ok' images of a train and a test source (view v_images), all of which
 * must carry a label (refused with a count otherwise); labels are numbered in sorted order over
 * both sources. Images that fail to decode (v_embedding_failures for stored embeddings) are
 * left out and counted. Runs are recorded (stages 'eval-knn', 'eval-linear') and their results
 * written to `evals` in one transaction. */

typedef enum lvd_eval_pool {
    LVD_EVAL_POOL_MODEL = -1, /* the model's registered features (stored embeddings) */
    LVD_EVAL_POOL_CLS = 0,    /* cls token */
    LVD_EVAL_POOL_CLS_MEAN,   /* cls token and mean patch token, concatenated */
} lvd_eval_pool;

typedef struct lvd_eval_knn_options {
    const char *model, *train, *test;
    int pool; /* an lvd_eval_pool */
    lvd_knn_opts knn;
    int embed;        /* 1: embed images without a stored embedding (lvd-embed's stage) */
    int resize, crop; /* eval transform for embedding (256, 224) */
    int batch;        /* images per forward pass (32) */
    int threads;      /* ViT threads; <= 0: OpenMP's default */
    FILE *log;        /* progress lines; NULL: silent */
} lvd_eval_knn_options;

typedef struct lvd_eval_knn_report {
    int64_t run_id;
    int64_t n_train, n_test;           /* rows evaluated */
    int64_t failed_train, failed_test; /* images left out: they do not decode */
    int64_t embedded;                  /* images this run embedded through the embed stage */
    int n_classes;
    char setting[32];                   /* "cls", "cls+mean" or "external" */
    int resize, crop;                   /* the eval transform used */
    int stored;                         /* 1: stored embeddings, 0: features computed here */
    lvd_knn_result res[LVD_KNN_MAX_KS]; /* one per k */
    double seconds_features, seconds_knn;
} lvd_eval_knn_report;

/* pool model, k 10 20 100 200, T 0.07, embed 1, transform 0 (the stored one), batch 32, log
 * stderr. */
void lvd_eval_knn_defaults(lvd_eval_knn_options *o);

/* The k-NN stage. With pool = the model's features (LVD_EVAL_POOL_MODEL, or the mode the model
 * is registered with) it uses the stored embeddings (v_embeddings) and embeds the missing ones
 * through lvd_embed_run when o->embed and the model has weights, otherwise fails naming how to
 * embed them; with the other pool it computes features from the shards through the model's
 * ViT (not stored). Fails on an unknown model or source, a source without stored images,
 * unlabeled images, and every failure of the parts. */
int lvd_eval_knn_run(lvd_manifest *m, const lvd_eval_knn_options *o, lvd_eval_knn_report *r,
                     lvd_error *err);

/* Prints the result table. */
void lvd_eval_knn_print(FILE *out, const lvd_eval_knn_options *o, const lvd_eval_knn_report *r);

typedef struct lvd_eval_linear_options {
    const char *model, *train, *test;
    int blocks;    /* cls tokens of the last 1 or 4 blocks, each final-normed (1) */
    int meanpatch; /* 1: also the mean patch token of the last block */
    lvd_linear_opts linear;
    double val_share; /* share of the train source carved out for validation (0.1) */
    int resize, crop; /* eval transform; 0 as in lvd_eval_knn_options */
    int batch;        /* images per forward pass (32) */
    int threads;      /* ViT threads; <= 0: OpenMP's default */
    FILE *log;
} lvd_eval_linear_options;

typedef struct lvd_eval_linear_report {
    int64_t run_id;
    int64_t n_train, n_val, n_test;
    int64_t failed_train, failed_test; /* images left out: they do not decode */
    int n_classes, dim;
    char setting[32]; /* "blocks=1", "blocks=4+mean", ... */
    int resize, crop; /* the eval transform used */
    lvd_linear_result res;
    double seconds_features, seconds_train;
} lvd_eval_linear_report;

/* blocks 1, no mean patch, the reference grid, 10 epochs, batch 128, seed 0, val share 0.1,
 * transform 0 (as the stored embeddings), batch 32, log stderr. */
void lvd_eval_linear_defaults(lvd_eval_linear_options *o);

/* The linear stage: features of both sources through the model's ViT from the shards, the
 * validation split carved from the train source (lvd_eval_split on image ids, seed
 * o->linear.seed), lvd_linear_probe, results recorded (a 'val' row per lr, a 'test' row for the
 * chosen one). Fails for a model without weights, too many blocks, an empty validation split,
 * every lr diverging, and as the k-NN stage does. */
int lvd_eval_linear_run(lvd_manifest *m, const lvd_eval_linear_options *o,
                        lvd_eval_linear_report *r, lvd_error *err);

void lvd_eval_linear_print(FILE *out, const lvd_eval_linear_options *o,
                           const lvd_eval_linear_report *r);

/* ---- k-NN of a model in memory (lvd-train --eval-train / --eval-test) ----------------------- */

/* The k-NN protocol of lvd_eval_knn_run for a ViT that is not registered (the teacher of a
 * running training): the labelled images of a bank and a test source are read once (labels
 * numbered as the stage numbers them), and each lvd_knn_probe_run computes features of both
 * through the given ViT from the shards (no embeddings stored, no run or evals row recorded:
 * the caller records) and classifies. Images that do not decode are left out. */
typedef struct lvd_knn_probe lvd_knn_probe;

typedef struct lvd_knn_probe_options {
    const char *train, *test;        /* source names: the bank and the test images */
    int64_t train_limit, test_limit; /* N images of each (0: all): a sample spread over the
                                        source, picked by lvd_eval_split on image ids, seed 0 */
    int pool;                        /* LVD_EVAL_POOL_CLS or LVD_EVAL_POOL_CLS_MEAN */
    int resize, crop;                /* eval transform (crop a multiple of the patch) */
    int batch;                       /* images per forward pass */
    lvd_knn_opts knn;
} lvd_knn_probe_options;

/* Reads the images of both sources. Fails as lvd_eval_knn_run does on unknown sources, sources
 * without images and unlabeled images, and on a pool other than cls or cls+mean. */
int lvd_knn_probe_open(lvd_manifest *m, const lvd_knn_probe_options *o, lvd_knn_probe **out,
                       lvd_error *err);

/* Scores vit: res receives one result per o->knn.ks entry, *n_train and *n_test the rows that
 * entered (images that decode). Fails on a ViT that does not fit the transform, an unreadable
 * shard, or when no image of a side decodes. */
int lvd_knn_probe_run(lvd_knn_probe *p, lvd_vit *vit, lvd_knn_result *res, int64_t *n_train,
                      int64_t *n_test, lvd_error *err);

/* "cls" or "cls+mean": the probe's pooling, as the evals table's setting names it. */
const char *lvd_knn_probe_setting(const lvd_knn_probe *p);

/* Releases the probe. NULL is ok. */
void lvd_knn_probe_free(lvd_knn_probe *p);

#endif
