/* Internals of the SSL trainer shared by train/ssl.c (creation, parts, checkpoints) and
 * train/ssl_step.c (the iteration). Not a public API. */
#ifndef LVD_TRAIN_SSL_INTERNAL_H
#define LVD_TRAIN_SSL_INTERNAL_H

#include "train/ssl.h"

struct lvd_ssl {
    lvd_ssl_config cfg;
    lvd_vit_train *student, *teacher;
    lvd_head sdino, tdino; /* student and teacher DINO heads (shared with iBOT unless separate) */
    lvd_head sibot, tibot; /* separate iBOT heads (zeroed when shared) */
    int separate;
    int do_ibot, do_koleo;
    int D, N, K, Ki; /* backbone dim, global-crop patches, DINO and iBOT prototypes */
    int R;           /* register tokens */
    int max_masked;  /* room for masked patch rows */
    int n_cls;       /* student cls rows through the DINO head: (n_local + 2) B */
    int64_t step;    /* iterations done */
    int n_parts;
    lvd_ssl_part parts[LVD_SSL_MAX_PARTS];
    lvd_adamw opt[LVD_SSL_MAX_PARTS];
    float *head_grad[2]; /* DINO and iBOT student head gradients */
    lvd_center cdino, cibot;
    lvd_center saved[2]; /* both centers as they were before the last forward_backward */
    lvd_param_layout center_layout[2];

    /* Activations, allocated for the batch shape. */
    lvd_vit_pass *tpass;    /* teacher on the global crops, forward only */
    lvd_vit_pass *sglobal;  /* student on the masked global crops */
    lvd_vit_pass *slocal;   /* student on the local crops (NULL without) */
    lvd_head_acts tacts[2]; /* teacher DINO head [, iBOT head] */
    lvd_head_acts sacts[2]; /* student DINO head [, iBOT head] */
    float *t_in;     /* (2B + max_masked, D): swapped teacher cls, then masked patch tokens */
    float *t_logits; /* 2B * K + max_masked * Ki: teacher head outputs, cls rows then patches */
    float *t_dino;   /* (2B, K) DINO targets */
    float *t_ibot;   /* (max_masked, Ki) iBOT targets */
    float *s_in;     /* (n_cls + max_masked, D): local cls, global cls, masked patch tokens */
    float *s_logits; /* n_cls * K + max_masked * Ki: student head outputs, then their gradient */
    float *s_dx;     /* (n_cls + max_masked, D): gradient of s_in */
    float *s_dpatch; /* (2B, N, D): gradient of the student's global patch tokens */
    int *mask_idx;   /* (2B N) flat masked indices of the batch */
    float *mask_w;   /* (2B N) their weights */
    int n_masked;    /* of the last forward_backward */
    int ready;       /* a forward_backward filled the gradients */
};

#endif
