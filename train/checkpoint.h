/* Training checkpoints: any set of parameter layouts (train/params.h) with their buffers, plus
 * the loop's state, in one safetensors file; and the export of one model (the EMA teacher's
 * backbone) under its official key names, the file lvd-model and lvd-embed load.
 *
 * A checkpoint is a list of groups (layout, buffer, prefix): the step code names what it saves,
 * e.g. "student.backbone.", "teacher.dino_head.", "adamw.m.backbone.", "center." (a layout of
 * the centers). Tensor "<prefix><name>" holds the group's tensor <name>, stored as F32 in its
 * layout shape. The safetensors metadata key "lvd_checkpoint" holds one JSON object:
 *   {"format": "lvd-checkpoint", "version": 1, "step": N, "rng": ["<16 hex digits>", ...],
 *    "config": {...}}
 * with the iterations done (which is also AdamW's step count), the RNG state words and the
 * caller's configuration object (architecture, hyperparameters).
 *
 * Durability: the file is written to a temporary beside it, fsynced and renamed over the target
 * (store/tensors.h lvd_safetensors_write), so a process killed at any moment leaves the previous
 * checkpoint whole; the temporary left by such a kill ("<path>.tmp.XXXXXX") is removed by the
 * next save to the same path. One process saves to a given path at a time.
 *
 * Loading validates everything before changing any buffer: the format, the JSON block, every
 * expected tensor present with its layout's shape and stored as F32, and no tensor left over;
 * the error names the missing, misshapen and unexpected tensors. */
#ifndef LVD_TRAIN_CHECKPOINT_H
#define LVD_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "store/error.h"
#include "store/tensors.h"
#include "train/params.h"

typedef struct lvd_ckpt_group {
    const char *prefix; /* prepended to every tensor name; NULL or "" for none */
    const lvd_param_layout *layout;
    float *data; /* layout->total floats: read by save, filled by load */
} lvd_ckpt_group;

#define LVD_CKPT_RNG_MAX 64

typedef struct lvd_ckpt_state {
    int64_t step;                   /* iterations done, 0 <= step < 2^53 */
    int n_rng;                      /* words of rng in use, 0..LVD_CKPT_RNG_MAX */
    uint64_t rng[LVD_CKPT_RNG_MAX]; /* the data loader's / augmentation RNG state */
    char *config;                   /* JSON object text; save: read (NULL: {}); load: malloc'd */
} lvd_ckpt_state;

/* Saves the groups and st atomically to path (see above), first removing temporaries a killed
 * earlier save left beside path. Fails on an invalid config (not a JSON object), a bad n_rng or
 * step, two tensors with the same full name, or any write error; the previous file is then
 * untouched. */
int lvd_ckpt_save(const char *path, const lvd_ckpt_group *groups, int n_groups,
                  const lvd_ckpt_state *st, lvd_error *err);

/* Loads a checkpoint saved with the same groups (prefixes and layouts) into their buffers and
 * st (st->config: a malloc'd copy; free it with lvd_ckpt_state_free). On failure no buffer and
 * nothing of st is changed. */
int lvd_ckpt_load(const char *path, const lvd_ckpt_group *groups, int n_groups, lvd_ckpt_state *st,
                  lvd_error *err);

/* Frees st->config and sets it to NULL. */
void lvd_ckpt_state_free(lvd_ckpt_state *st);

/* Writes one layout's tensors under their own names (no prefix): a model file as the official
 * ones (e.g. the teacher backbone: "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", ...),
 * loadable by lvd_vit_load. config (a JSON object, optional) is stored as metadata "config", for
 * humans: loaders infer the architecture from the shapes. Atomic like lvd_ckpt_save. */
int lvd_ckpt_export(const char *path, const lvd_param_layout *l, const float *data,
                    const char *config, lvd_error *err);

/* Appends to l every tensor of ts whose name starts with prefix (prefix removed), in file order:
 * a layout read from a file (e.g. "student_init.backbone." of a reference case). Fails on a name
 * or shape the layout refuses or when no tensor has the prefix. */
int lvd_ckpt_layout_from(const lvd_tensors *ts, const char *prefix, lvd_param_layout *l,
                         lvd_error *err);

/* Copies the tensors "<prefix><name>" of ts into g->data, validating that each is present with
 * its layout's shape (other tensors of ts are ignored); on failure the error names the missing or
 * misshapen tensors and g->data is unchanged. */
int lvd_ckpt_read_group(const lvd_tensors *ts, const lvd_ckpt_group *g, lvd_error *err);

#endif
