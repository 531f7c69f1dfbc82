/* Distillation of a frozen teacher into a smaller student (DINOv2 paper, section 5; SPEC.md
 * section 2), in two modes.
 *
 * HEADS, the paper's: the teacher is a backbone with its DINO head (and separate iBOT head when
 * it has one), e.g. a model lvd trained. The student has its own architecture and new heads of
 * the teacher's shape on the student's width with the teacher's prototype counts K. The student
 * is trained with the pretraining losses of train/ssl.h (DINO on every local and global crop
 * against the two teacher crops, swapped for the global crops; iBOT; KoLeo on the student's
 * global cls tokens; the same normalizations and weights) on the teacher's targets (softmax
 * centering with the lazy EMA centers, or Sinkhorn-Knopp, at the scheduled teacher
 * temperature), without stochastic depth. An EMA of the student (backbone and heads, momentum
 * from the schedule as in pretraining) is the output model; AdamW with the parameter groups and
 * per-part clipping as in pretraining. The student side IS lvd_ssl's (train/ssl_student.h):
 * this module only computes the teacher's targets. In its lvd_ssl the "teacher" models are the
 * EMA student.
 *
 * iBOT in distillation. The paper: "remove the masking and stochastic depth, and apply the
 * iBOT loss on the two global crops". DINOv2's repository has no distillation code
 * (facebookresearch/dinov2 issue #119: "Model distillation as presented in the paper is not
 * implemented in this repository"; the heads of the released models were never published).
 * lvd reads the sentence literally: a batch without masks (masks NULL) gives the student the
 * global crops unmasked and the iBOT loss covers every patch token of both global crops, each
 * with weight 1 / N (the mean over the 2B crops of the mean patch cross-entropy), against the
 * teacher head's (or iBOT head's) targets on the same patches. A batch with masks keeps the
 * pretraining form instead (student sees mask tokens, iBOT on the masked patches only), as
 * DINOv3's MultiDistillationMetaArch and the community port usryokousha/dinov2 do.
 *
 * FEATURES, for teachers without heads (public DINOv2 weights, any lvd_vit_load file): the
 * student's final-normed cls and patch tokens go through a learned linear projection
 * proj (student dim -> teacher dim, with bias, nn.Linear's init) and regress the teacher's
 * final-normed cls and patch tokens on the same global crops (local crops are not used):
 *   loss = cls_weight * mean_i (1 - cos(proj(s_cls_i), t_cls_i))
 *        + patch_weight * mean_{i,n} (1 - cos(proj(s_patch_in), t_patch_in)),
 * cos(y, t) = y . t / (max(|y|, 1e-8) max(|t|, 1e-8)); weights 0.5 and 0.5 by default, so the
 * loss is the average of the cls and the patch terms (each term a mean over its own rows, so
 * the one cls token weighs as much as the N patches). Register tokens are not distilled. An EMA of
 * the student backbone and projection is the output model, AdamW and clipping per part
 * ("backbone", "proj") as above.
 *
 * Crops and patch grids (both modes). The batch is train/ssl.h's: global crops at the
 * student's size (config ssl.global_h x global_w, multiples of the student's patch Ps), local
 * crops (HEADS) at the student's local size. The teacher sees every global crop with the same
 * patch grid (gh, gw) = (Hs / Ps, Ws / Ps): at Hs x Ws when its patch Pt equals Ps, else
 * resized to (gh Pt, gw Pt) by separable antialiased bicubic (a = -0.5, exact size, the axis
 * matrices of embed/vit_layers.h), so student and teacher patch tokens correspond one to one
 * and no feature map is interpolated.
 *
 * The teacher is frozen: its backbone runs embed's inference forward (lvd_vit_forward) and is
 * never written (its weights are used in place from the mapped file); its heads run forward
 * only. It is borrowed by the trainer, used by one trainer at a time (a forward uses its
 * scratch), and gets the trainer's thread count.
 *
 * Threads: cfg.ssl.threads OpenMP threads (<= 0: OpenMP's default). Results are bitwise the
 * same for a fixed thread count. A trainer runs one call at a time. */
#ifndef LVD_TRAIN_DISTILL_H
#define LVD_TRAIN_DISTILL_H

#include <stdint.h>

#include "embed/vit.h"
#include "store/error.h"
#include "store/tensors.h"
#include "train/checkpoint.h"
#include "train/head.h"
#include "train/schedule.h"
#include "train/ssl.h"
#include "train/vit_train.h"

/* File names of a teacher folder (what lvd-train writes next to its checkpoints). */
#define LVD_DISTILL_TEACHER_BACKBONE "teacher_backbone.safetensors"
#define LVD_DISTILL_TEACHER_HEADS    "teacher_heads.safetensors"

typedef struct lvd_distill_teacher {
    lvd_vit *backbone; /* frozen, inference forward */
    lvd_tensors *file; /* the opened file the backbone borrows */
    int has_heads;     /* a DINO head was loaded */
    lvd_head dino;     /* DINO head (shared with iBOT unless ibot_separate) */
    int ibot_separate; /* a separate iBOT head was loaded */
    lvd_head ibot;
} lvd_distill_teacher;

/* Loads a teacher from path:
 *  - a folder: LVD_DISTILL_TEACHER_BACKBONE, and the heads of LVD_DISTILL_TEACHER_HEADS when
 *    that file exists;
 *  - a training checkpoint (train/ssl.h's lvd_ssl_ckpt_groups): the EMA teacher's
 *    "teacher.backbone.*", "teacher.dino_head.*" and, when present, "teacher.ibot_head.*" (of a
 *    distillation checkpoint: the EMA student, which can so be distilled further);
 *  - any other file lvd_vit_load reads (official .pth, safetensors, transformers names):
 *    a backbone without heads.
 * heads_path, unless NULL, names the heads file instead: tensors "dino_head.<name>" and
 * optionally "ibot_head.<name>" with train/head.h's names (lvd_distill_heads_save writes it),
 * or a training checkpoint's "teacher.dino_head.*" / "teacher.ibot_head.*". The backbone needs
 * head dim 64 (lvd_vit_load's rule; every DINOv2 model); heads must take its width. On failure
 * *t is zeroed and err names the file and the problem. */
int lvd_distill_teacher_load(const char *path, const char *heads_path, lvd_distill_teacher *t,
                             lvd_error *err);

/* Releases the teacher and zeroes it (a zeroed teacher is fine). */
void lvd_distill_teacher_free(lvd_distill_teacher *t);

/* Writes a heads file: dino as "dino_head.<name>", ibot (NULL: none) as "ibot_head.<name>", F32,
 * atomically (a train/checkpoint.h file of those two groups at step 0). */
int lvd_distill_heads_save(const char *path, const lvd_head *dino, const lvd_head *ibot,
                           lvd_error *err);

typedef enum lvd_distill_mode {
    LVD_DISTILL_AUTO,     /* HEADS when the teacher has a DINO head, else FEATURES */
    LVD_DISTILL_HEADS,    /* the paper's: the teacher's head targets */
    LVD_DISTILL_FEATURES, /* cls and patch token regression through a projection */
} lvd_distill_mode;

typedef struct lvd_distill_config {
    lvd_distill_mode mode;
    /* The student's training, as train/ssl.h: batch, crops (student sizes), temperatures,
     * centering or Sinkhorn, loss weights, clipping, parameter groups, AdamW, threads.
     * drop_path must be 0 (no stochastic depth); max_masked is ignored (the trainer holds every
     * patch). FEATURES uses batch, the global crop size, clipping, groups, AdamW and threads. */
    lvd_ssl_config ssl;
    double cls_weight, patch_weight; /* FEATURES: weights of the cls and patch terms (0.5, 0.5) */
} lvd_distill_config;

/* lvd_ssl_config_default for the student (drop_path 0), mode AUTO, weights 0.5 and 0.5. */
void lvd_distill_config_default(lvd_distill_config *c, int batch, int n_local, int global_size,
                                int local_size);

/* The student to create. */
typedef struct lvd_distill_spec {
    lvd_vit_info arch;           /* dim, depth, patch, grid, n_reg, ffn, heads (0: dim / 64) */
    float layerscale;            /* LayerScale init (1e-5 in DINOv2) */
    const lvd_head_config *dino; /* HEADS: NULL = the teacher's DINO head shape on the
                                    student's dim; else in_dim must be the student's dim and
                                    out_dim the teacher's K */
    const lvd_head_config *ibot; /* HEADS, teacher with a separate iBOT head: likewise */
    uint64_t seed;               /* backbone, heads and projection init */
} lvd_distill_spec;

typedef struct lvd_distill lvd_distill;

/* Makes a trainer distilling teacher (borrowed: it must outlive the trainer) into a new student,
 * its EMA equal to it, AdamW at step 0, centers at 0. Fails on a bad configuration (stochastic
 * depth, a crop size that is not a multiple of the student's patch), HEADS with a teacher
 * without heads, heads that do not fit, or no memory. */
int lvd_distill_create(const lvd_distill_config *cfg, lvd_distill_teacher *teacher,
                       const lvd_distill_spec *student, lvd_distill **out, lvd_error *err);

/* Releases the trainer (not the teacher). NULL is ok. */
void lvd_distill_free(lvd_distill *d);

/* The mode in use (HEADS or FEATURES, never AUTO) and the configuration (copied). */
lvd_distill_mode lvd_distill_get_mode(const lvd_distill *d);
const lvd_distill_config *lvd_distill_get_config(const lvd_distill *d);

/* The student being trained and its EMA, the output model (export it with lvd_vit_train_save:
 * official names). */
lvd_vit_train *lvd_distill_student(lvd_distill *d);
lvd_vit_train *lvd_distill_output(lvd_distill *d);

/* HEADS: the student's lvd_ssl (heads, centers of the teacher targets, parts); NULL in
 * FEATURES. */
lvd_ssl *lvd_distill_ssl(lvd_distill *d);

/* The trainable parts: "backbone", "dino_head" [, "ibot_head"] (HEADS) or "backbone", "proj"
 * (FEATURES); teacher = the EMA shadow. */
int lvd_distill_n_parts(const lvd_distill *d);
lvd_ssl_part lvd_distill_get_part(lvd_distill *d, int i);

/* What a call reports. */
typedef struct lvd_distill_stats {
    double loss_total;
    lvd_ssl_stats ssl;                     /* HEADS: the SSL loss terms, n_masked (iBOT rows) */
    double loss_cls, loss_patch;           /* FEATURES: mean 1 - cos over cls / patch rows */
    double grad_norm[LVD_SSL_MAX_PARTS];   /* per part, before clipping (update) */
    double t_teacher, t_student, t_update; /* wall seconds (t_student: forward and backward) */
} lvd_distill_stats;

/* Teacher targets (recording the centers' pending updates, as a training step does), student
 * forward, losses and gradients (set, unclipped). The parameters are not changed. Fails on a
 * bad batch (see train/ssl.h), a non-positive teacher temperature or a non-finite loss. */
int lvd_distill_forward_backward(lvd_distill *d, const lvd_ssl_batch *b, double teacher_temp,
                                 lvd_distill_stats *st, lvd_error *err);

/* Per part gradient norm, clipping, AdamW (s's lr, wd, last-layer lr), the EMA of the student
 * with s->momentum; the step count advances. Fails without changing a parameter when a norm is
 * not finite, or when no forward_backward precedes it. */
int lvd_distill_update(lvd_distill *d, const lvd_schedule_values *s, lvd_distill_stats *st,
                       lvd_error *err);

/* lvd_distill_forward_backward at s->teacher_temp, then lvd_distill_update. */
int lvd_distill_step(lvd_distill *d, const lvd_ssl_batch *b, const lvd_schedule_values *s,
                     lvd_distill_stats *st, lvd_error *err);

/* The losses of the student on a batch (e.g. held-out images), with fresh teacher targets but
 * no center update recorded (a pending one from training is applied first, as the next step
 * would) and no gradients kept: an update must follow a forward_backward again. */
int lvd_distill_loss(lvd_distill *d, const lvd_ssl_batch *b, double teacher_temp,
                     lvd_distill_stats *st, lvd_error *err);

/* The losses of the student on the same batch as the last call, against the teacher targets of
 * that call (no teacher forward): the loss as a function of the student's parameters alone, for
 * finite differences. No gradients kept. */
int lvd_distill_student_loss(lvd_distill *d, const lvd_ssl_batch *b, lvd_distill_stats *st,
                             lvd_error *err);

/* Iterations done (AdamW's step count), and setting it (a restored checkpoint's step). */
int64_t lvd_distill_get_step(const lvd_distill *d);
void lvd_distill_set_step(lvd_distill *d, int64_t step);

/* The checkpoint groups of the whole training state (room for LVD_DISTILL_CKPT_GROUPS), named
 * as pretraining's so one loop saves both: HEADS = lvd_ssl_ckpt_groups of the student's trainer
 * ("student.<part>.", "teacher.<part>." = the EMA student, "adamw_m.", "adamw_v.", the two
 * centers); FEATURES = the same four prefixes for "backbone" and "proj". The frozen teacher is
 * not part of it (a run records its path). Returns the count. */
#define LVD_DISTILL_CKPT_GROUPS LVD_SSL_CKPT_GROUPS
int lvd_distill_ckpt_groups(lvd_distill *d, lvd_ckpt_group *groups);

#endif
