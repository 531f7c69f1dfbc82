/* Parameter groups (train/optim.h): lvd_vit_lr_decay_rate and lvd_param_groups, a literal
 * transcription of get_vit_lr_decay_rate and get_params_groups_with_decay
 * (dinov2/utils/param_groups.py), substring tests included. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "train/optim.h"

static int has(const char *s, const char *part)
{
    return strstr(s, part) != NULL;
}

/* int() of the dot-separated field `field` (0-based) of s, as the reference's
 * int(s.split(".")[field]); fails where int() would raise or the value does not fit. */
static int field_int(const char *s, int field, int *out)
{
    for (int f = 0; f < field; f++) {
        s = strchr(s, '.');
        if (!s)
            return -1;
        s++;
    }
    long v = 0;
    const char *p = s;
    for (; *p && *p != '.'; p++) {
        if (*p < '0' || *p > '9' || v > INT_MAX / 20)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (p == s)
        return -1;
    *out = (int)v;
    return 0;
}

int lvd_vit_lr_decay_rate(const char *name, double lr_decay_rate, int num_layers,
                          int force_is_backbone, int chunked_blocks, double *rate, int *layer_id,
                          lvd_error *err)
{
    static const char *const first[] = {"pos_embed", "patch_embed", "mask_token", "cls_token",
                                        "register_tokens"};
    int id = num_layers + 1;
    if (strncmp(name, "backbone", 8) == 0 || force_is_backbone) {
        int dotted = 0, bare = 0;
        for (size_t i = 0; i < sizeof first / sizeof first[0]; i++) {
            const char *hit = strstr(name, first[i]);
            /* ".pos_embed" in name: some occurrence preceded by a dot */
            for (const char *h = hit; h; h = strstr(h + 1, first[i]))
                if (h > name && h[-1] == '.')
                    dotted = 1;
            bare |= hit != NULL;
        }
        int index = 0, rc = 0;
        if (dotted || (force_is_backbone && bare)) {
            id = 0;
        } else if (has(name, ".blocks.") && !has(name, ".residual.")) {
            rc = field_int(strstr(name, ".blocks."), 2, &index);
            id = index + 1;
        } else if (chunked_blocks && has(name, "blocks.") && !has(name, "residual.")) {
            rc = field_int(strstr(name, "blocks."), 2, &index);
            id = index + 1;
        } else if (has(name, "blocks.") && !has(name, "residual.")) {
            rc = field_int(strstr(name, "blocks."), 1, &index);
            id = index + 1;
        }
        if (rc != 0)
            return lvd_fail(err, "parameter %s: no block index after \"blocks.\"", name);
    }
    *rate = pow(lr_decay_rate, (double)(num_layers + 1 - id));
    if (layer_id)
        *layer_id = id;
    return 0;
}

/* n_blocks and chunked_blocks as the model's attributes give them, read from the names. */
static int count_blocks(const lvd_param_layout *l, int *n_blocks, int *chunked, lvd_error *err)
{
    *n_blocks = 0;
    *chunked = 0;
    int seen = 0;
    for (int i = 0; i < l->n; i++) {
        const char *b = strstr(l->t[i].name, "blocks.");
        if (!b || (b > l->t[i].name && b[-1] != '.'))
            continue;
        int first, second;
        if (field_int(b, 1, &first) != 0)
            return lvd_fail(err, "parameter %s: no block index after \"blocks.\"", l->t[i].name);
        int is_chunked = field_int(b, 2, &second) == 0;
        if (seen && is_chunked != *chunked)
            return lvd_fail(err, "parameter %s: chunked and plain block names mixed", l->t[i].name);
        *chunked = is_chunked;
        seen = 1;
        int index = is_chunked ? second : first;
        if (index + 1 > *n_blocks)
            *n_blocks = index + 1;
    }
    return 0;
}

int lvd_param_groups(const lvd_param_layout *l, double lr_decay_rate, double patch_embed_lr_mult,
                     lvd_param_group *out, lvd_error *err)
{
    int n_blocks, chunked;
    if (count_blocks(l, &n_blocks, &chunked, err) != 0)
        return -1;
    for (int i = 0; i < l->n; i++) {
        const lvd_param_tensor *t = &l->t[i];
        lvd_param_group *g = &out[i];
        if (lvd_vit_lr_decay_rate(t->name, lr_decay_rate, n_blocks, n_blocks > 0, chunked,
                                  &g->lr_mult, &g->layer_id, err) != 0)
            return -1;
        size_t len = strlen(t->name);
        g->is_last_layer = has(t->name, "last_layer");
        g->wd_mult = (len >= 5 && strcmp(t->name + len - 5, ".bias") == 0) ||
                             has(t->name, "norm") || has(t->name, "gamma")
                         ? 0.0
                         : 1.0;
        if (has(t->name, "patch_embed"))
            g->lr_mult *= patch_embed_lr_mult;
    }
    return 0;
}
