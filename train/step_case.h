/* The configuration of the reference's train_step case (../shared/reference/README.md): its
 * `hyper`, `backbone` and `head` metadata (JSON objects) read into C structs, for
 * lvd-train-step and the tests that replay the case. */
#ifndef LVD_TRAIN_STEP_CASE_H
#define LVD_TRAIN_STEP_CASE_H

#include "store/error.h"
#include "store/tensors.h"

typedef struct lvd_step_hyper {
    double lr, last_layer_lr, wd, momentum; /* constant over the case's two iterations */
    double teacher_temp, student_temp, center_momentum;
    double layerwise_decay, patch_embed_lr_mult, clip_grad;
    double beta1, beta2, eps; /* "betas": [beta1, beta2] */
    double koleo_weight;
    int n_local, batch, K; /* local crops, images, prototypes */
} lvd_step_hyper;

typedef struct lvd_step_backbone {
    int img_size, patch_size, embed_dim, depth, num_heads;
    double mlp_ratio, init_values;
    char ffn_layer[16]; /* "mlp" or "swiglufused" */
    int block_chunks, num_register_tokens;
    int interpolate_antialias; /* JSON boolean */
    double interpolate_offset;
} lvd_step_backbone;

typedef struct lvd_step_head {
    int in_dim, out_dim, nlayers, hidden_dim, bottleneck_dim;
} lvd_step_head;

typedef struct lvd_step_case {
    lvd_step_hyper hyper;
    lvd_step_backbone backbone;
    lvd_step_head head;
} lvd_step_case;

/* Reads the three metadata objects of an opened case file. Every field is required: the error
 * names the metadata key and the field that is missing or of the wrong type (numbers where
 * numbers are expected, integers where counts are, a boolean antialias flag). */
int lvd_step_case_read(const lvd_tensors *ts, lvd_step_case *c, lvd_error *err);

#endif
