/* Tensor names: official, chunked (`blocks.C.I.*`) and transformers `Dinov2Model` keys mapped to
 * the official names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit_keys.h"

typedef struct prefix_map {
    const char *from;
    const char *to;
    int part;
} prefix_map;

/* Top-level transformers names. */
static const prefix_map hf_top[] = {
    {"embeddings.patch_embeddings.projection.", "patch_embed.proj.", -1},
    {"embeddings.cls_token", "cls_token", -1},
    {"embeddings.mask_token", "mask_token", -1},
    {"embeddings.position_embeddings", "pos_embed", -1},
    {"embeddings.register_tokens", "register_tokens", -1},
    {"layernorm.", "norm.", -1},
};

/* Names inside a transformers `encoder.layer.I.` block. */
static const prefix_map hf_block[] = {
    {"attention.attention.query.", "attn.qkv.", 0},
    {"attention.attention.key.", "attn.qkv.", 1},
    {"attention.attention.value.", "attn.qkv.", 2},
    {"attention.output.dense.", "attn.proj.", -1},
    {"layer_scale1.lambda1", "ls1.gamma", -1},
    {"layer_scale2.lambda1", "ls2.gamma", -1},
    {"mlp.weights_in.", "mlp.w12.", -1},
    {"mlp.weights_out.", "mlp.w3.", -1},
};

/* Writes pre + the mapped rest of name into out, using the first matching prefix of the table
 * (the rest unchanged when none matches). */
static void map_prefix(const prefix_map *map, size_t n, const char *pre, const char *name,
                       char *out, size_t cap, int *part)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(map[i].from);
        if (strncmp(name, map[i].from, len) == 0) {
            snprintf(out, cap, "%s%s%s", pre, map[i].to, name + len);
            *part = map[i].part;
            return;
        }
    }
    snprintf(out, cap, "%s%s", pre, name);
}

/* Parses "N." at *s (a decimal block index and a dot); advances *s past it. */
static int parse_index(const char **s, long *v)
{
    char *end;
    if (**s < '0' || **s > '9') {
        return -1;
    }
    *v = strtol(*s, &end, 10);
    if (*end != '.') {
        return -1;
    }
    *s = end + 1;
    return 0;
}

void vit_canonical_name(const char *key, char *out, size_t cap, int *part)
{
    const char *k = key;
    long a, b;
    *part = -1;
    if (strncmp(k, "dinov2.", 7) == 0) {
        k += 7;
    }
    if (strncmp(k, "encoder.layer.", 14) == 0) {
        const char *rest = k + 14;
        if (parse_index(&rest, &a) == 0) {
            char pre[32];
            snprintf(pre, sizeof pre, "blocks.%ld.", a);
            map_prefix(hf_block, sizeof hf_block / sizeof hf_block[0], pre, rest, out, cap, part);
            return;
        }
    }
    if (strncmp(k, "blocks.", 7) == 0) {
        const char *rest = k + 7;
        if (parse_index(&rest, &a) == 0 && parse_index(&rest, &b) == 0) {
            /* blocks.C.I.*: I is already the global index */
            snprintf(out, cap, "blocks.%ld.%s", b, rest);
            return;
        }
        snprintf(out, cap, "%s", k);
        return;
    }
    map_prefix(hf_top, sizeof hf_top / sizeof hf_top[0], "", k, out, cap, part);
}

int vit_block_index(const char *canonical)
{
    const char *rest = canonical;
    long v;
    if (strncmp(rest, "blocks.", 7) != 0) {
        return -1;
    }
    rest += 7;
    if (parse_index(&rest, &v) != 0 || v > 4096) {
        return -1;
    }
    return (int)v;
}
