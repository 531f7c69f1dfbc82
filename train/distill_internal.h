/* Internals of the distillation trainer shared by train/distill.c (teacher files, creation,
 * parts, checkpoints, the teacher's input), train/distill_heads.c (HEADS) and
 * train/distill_features.c (FEATURES). Not a public API. */
#ifndef LVD_TRAIN_DISTILL_INTERNAL_H
#define LVD_TRAIN_DISTILL_INTERNAL_H

#include "train/distill.h"
#include "train/optim.h"

struct lvd_distill {
    lvd_distill_config cfg;
    lvd_distill_mode mode;
    lvd_distill_teacher *teacher; /* borrowed */
    int threads;                  /* resolved thread count (>= 1) */
    int B2;                       /* 2B global crops */
    int Hs, Ws, Ht, Wt;           /* global crop size of the student and of the teacher */
    int N, Ds, Dt;                /* patches of a global crop, student and teacher widths */
    int ready;                    /* the last call left gradients for an update */
    int have_targets;             /* the last call without reuse succeeded */

    /* The teacher's input when its size differs (NULL otherwise). */
    float *t_x;     /* (2B, 3, Ht, Wt) */
    float *wy, *wx; /* (Ht, Hs), (Wt, Ws) resampling matrices */
    float *rs_tmp;  /* threads * (Ht * Ws) */

    /* HEADS */
    lvd_ssl *ssl;           /* the student side; its "teacher" is the EMA student */
    int do_ibot;            /* iBOT rows are computed */
    int n_masked;           /* iBOT rows of the last call */
    lvd_head_acts tacts[2]; /* teacher DINO head [, iBOT head] */
    float *t_cls;           /* (2B, Dt) teacher cls tokens */
    float *t_in;            /* (2B + 2B N, Dt): swapped cls, then the iBOT rows' patch tokens */

    /* FEATURES */
    lvd_vit_train *student, *ema;
    lvd_vit_pass *pass;           /* student on the global crops */
    lvd_param_layout proj_layout; /* proj.weight (Dt, Ds), proj.bias (Dt) */
    float *proj, *proj_ema, *proj_grad;
    lvd_adamw opt[2];
    lvd_ssl_part parts[2];
    int64_t step;
    float *xs;        /* (2B (1 + N), Ds) student cls rows, then patch rows */
    float *tf;        /* (2B (1 + N), Dt) teacher cls rows, then patch rows */
    float *y;         /* (2B (1 + N), Dt) projection outputs, then their gradient */
    float *dx;        /* (2B (1 + N), Ds) gradient of xs */
    double *row_loss; /* (2B (1 + N)) 1 - cos per row */
};

/* The teacher's input for global crops x at the student's size: x itself, or x resized into
 * d->t_x. */
const float *lvd_distill_teacher_input(lvd_distill *d, const float *x);

/* Mode-specific creation (buffers, student), called by lvd_distill_create with d's common
 * fields set; on failure the caller frees d. */
int lvd_distill_heads_init(lvd_distill *d, const lvd_distill_spec *s, lvd_error *err);
int lvd_distill_features_init(lvd_distill *d, const lvd_distill_spec *s, lvd_error *err);

/* One call of each mode: fresh teacher targets unless reuse (then the last call's), gradients
 * when grad, the centers' pending updates recorded when record. */
int lvd_distill_heads_pass(lvd_distill *d, const lvd_ssl_batch *b, double temp, int reuse, int grad,
                           int record, lvd_distill_stats *st, lvd_error *err);
int lvd_distill_features_pass(lvd_distill *d, const lvd_ssl_batch *b, int reuse, int grad,
                              lvd_distill_stats *st, lvd_error *err);

#endif
