/* Named parameter tensors laid out one after another in one float buffer.
 *
 * Every trainable part of lvd (ViT backbone, DINO and iBOT heads) describes its parameters with a
 * layout: an ordered list of tensors, each with its name (the reference's state-dict key, e.g.
 * "blocks.0.attn.qkv.weight", "last_layer.weight_g"), shape, offset and size in floats. The values
 * live in one contiguous buffer of `total` floats; gradients, AdamW moments and the EMA teacher
 * use the same layout in buffers of their own, so an optimizer step, a gradient norm, an
 * all-reduce or a checkpoint is a loop over one array. Offsets follow insertion order with no
 * padding: tensor i starts where tensor i - 1 ends. */
#ifndef LVD_TRAIN_PARAMS_H
#define LVD_TRAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

#define LVD_PARAM_NAME_MAX 96
#define LVD_PARAM_MAX_DIMS 4

typedef struct lvd_param_tensor {
    char name[LVD_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[LVD_PARAM_MAX_DIMS];
    size_t offset; /* floats from the start of the buffer */
    size_t numel;
} lvd_param_tensor;

typedef struct lvd_param_layout {
    lvd_param_tensor *t; /* n entries in layout order */
    int n;
    int cap;
    size_t total; /* floats in a buffer of this layout */
} lvd_param_layout;

/* Appends a tensor named name with ndim (1..4) dimensions of the given (positive) sizes at the end
 * of the layout. Fails on a bad shape, a name too long or already present, or no memory. */
int lvd_param_layout_add(lvd_param_layout *l, const char *name, int ndim, const int64_t *shape,
                         lvd_error *err);

/* The tensor called name, or NULL. */
const lvd_param_tensor *lvd_param_layout_find(const lvd_param_layout *l, const char *name);

/* Releases the entries and zeroes the layout (a zeroed layout is empty and valid). */
void lvd_param_layout_free(lvd_param_layout *l);

#endif
