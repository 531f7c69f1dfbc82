/* Tensor names of the ViT checkpoint layouts, mapped to the official names. */
#ifndef LVD_EMBED_VIT_KEYS_H
#define LVD_EMBED_VIT_KEYS_H

#include <stddef.h>

/* Writes into out (cap bytes) the official name for key: an optional `dinov2.` prefix is dropped,
 * chunked `blocks.C.I.x` becomes `blocks.I.x`, transformers names (`embeddings.*`,
 * `encoder.layer.I.*`, `layernorm.*`) become official ones. *part is 0, 1 or 2 for the
 * transformers query, key and value tensors (out is then the qkv name), else -1. Unknown names
 * are copied unchanged. */
void vit_canonical_name(const char *key, char *out, size_t cap, int *part);

/* The block index I (at most 4096) of an official name `blocks.I.*`, or -1. */
int vit_block_index(const char *canonical);

#endif
