/* Parameter groups (train/optim.h) on synthetic layouts, worked out by hand from
 * get_vit_lr_decay_rate / get_params_groups_with_decay: a depth-12 ViT with registers, the
 * same with chunked block names, a head, names with a "backbone." prefix, malformed indices.
 * The reference case's own multipliers are checked in test_optim_reference. */
#include <math.h>

#include "tests/check.h"
#include "train/optim.h"

typedef struct want {
    const char *name;
    double lr_mult, wd_mult;
    int last, layer;
} want;

static void check_layout(const want *w, int n, double decay, double pe_mult)
{
    lvd_param_layout l = {0};
    lvd_error err;
    int64_t shape[1] = {4};
    for (int i = 0; i < n; i++)
        CHECK(lvd_param_layout_add(&l, w[i].name, 1, shape, &err) == 0);
    lvd_param_group g[64];
    CHECK(lvd_param_groups(&l, decay, pe_mult, g, &err) == 0);
    for (int i = 0; i < n; i++)
        CHECK_MSG(fabs(g[i].lr_mult - w[i].lr_mult) < 1e-15 && g[i].wd_mult == w[i].wd_mult &&
                      g[i].is_last_layer == w[i].last && g[i].layer_id == w[i].layer,
                  "%s: lr %.17g wd %g last %d layer %d", w[i].name, g[i].lr_mult, g[i].wd_mult,
                  g[i].is_last_layer, g[i].layer_id);
    lvd_param_layout_free(&l);
}

int main(void)
{
    const double r = 0.9;
    const want vit[] = {
        {"cls_token", pow(r, 13), 1, 0, 0},
        {"pos_embed", pow(r, 13), 1, 0, 0},
        {"register_tokens", pow(r, 13), 1, 0, 0},
        {"mask_token", pow(r, 13), 1, 0, 0},
        {"patch_embed.proj.weight", pow(r, 13) * 0.2, 1, 0, 0},
        {"patch_embed.proj.bias", pow(r, 13) * 0.2, 0, 0, 0},
        {"blocks.0.norm1.weight", pow(r, 12), 0, 0, 1},
        {"blocks.0.ls1.gamma", pow(r, 12), 0, 0, 1},
        {"blocks.0.attn.qkv.weight", pow(r, 12), 1, 0, 1},
        {"blocks.0.attn.qkv.bias", pow(r, 12), 0, 0, 1},
        {"blocks.5.mlp.w12.weight", pow(r, 7), 1, 0, 6},
        {"blocks.11.mlp.fc2.weight", r, 1, 0, 12},
        {"blocks.11.ls2.gamma", r, 0, 0, 12},
        {"norm.weight", 1, 0, 0, 13},
        {"norm.bias", 1, 0, 0, 13},
    };
    check_layout(vit, sizeof vit / sizeof vit[0], r, 0.2);

    /* chunked names blocks.C.I: I is the layer, whatever the chunk */
    const want chunked[] = {
        {"cls_token", pow(r, 13), 1, 0, 0},
        {"blocks.0.0.norm1.weight", pow(r, 12), 0, 0, 1},
        {"blocks.0.2.attn.proj.weight", pow(r, 10), 1, 0, 3},
        {"blocks.3.11.attn.proj.weight", r, 1, 0, 12},
        {"norm.weight", 1, 0, 0, 13},
    };
    check_layout(chunked, sizeof chunked / sizeof chunked[0], r, 0.2);

    /* a head: no blocks, every lr multiplier 1; weight_g decays, biases do not */
    const want head[] = {
        {"mlp.0.weight", 1, 1, 0, 1},        {"mlp.0.bias", 1, 0, 0, 1},
        {"mlp.4.weight", 1, 1, 0, 1},        {"last_layer.weight_g", 1, 1, 1, 1},
        {"last_layer.weight_v", 1, 1, 1, 1},
    };
    check_layout(head, sizeof head / sizeof head[0], r, 0.2);

    /* names under a "backbone." prefix take the reference's dotted branches */
    const want prefixed[] = {
        {"backbone.pos_embed", pow(r, 3), 1, 0, 0},
        {"backbone.patch_embed.proj.weight", pow(r, 3) * 0.5, 1, 0, 0},
        {"backbone.blocks.0.attn.qkv.weight", pow(r, 2), 1, 0, 1},
        {"backbone.blocks.1.norm2.bias", r, 0, 0, 2},
        {"backbone.norm.weight", 1, 0, 0, 3},
    };
    check_layout(prefixed, sizeof prefixed / sizeof prefixed[0], r, 0.5);

    /* decay 1: every multiplier 1 except the patch embedding's */
    const want flat[] = {
        {"cls_token", 1, 1, 0, 0},
        {"patch_embed.proj.weight", 0.2, 1, 0, 0},
        {"blocks.0.mlp.fc1.weight", 1, 1, 0, 1},
    };
    check_layout(flat, sizeof flat / sizeof flat[0], 1.0, 0.2);

    /* the decay rate alone: a head name outside the backbone, residual names, errors */
    lvd_error err;
    double rate;
    int id;
    CHECK(lvd_vit_lr_decay_rate("mlp.0.weight", r, 0, 0, 0, &rate, &id, &err) == 0 && rate == 1 &&
          id == 1);
    CHECK(lvd_vit_lr_decay_rate("backbone.x.residual.blocks.0.w", r, 4, 0, 0, &rate, &id, &err) ==
              0 &&
          id == 5 && rate == 1);
    CHECK(lvd_vit_lr_decay_rate("blocks.x.norm1.weight", r, 12, 1, 0, &rate, NULL, &err) == -1 &&
          strstr(err.msg, "blocks.x.norm1.weight"));
    CHECK(lvd_vit_lr_decay_rate("blocks.", r, 12, 1, 0, &rate, NULL, &err) == -1);
    lvd_param_layout l = {0};
    int64_t shape[1] = {2};
    lvd_param_group g[4];
    CHECK(lvd_param_layout_add(&l, "blocks.7a.w", 1, shape, &err) == 0);
    CHECK(lvd_param_groups(&l, r, 0.2, g, &err) == -1 && strstr(err.msg, "blocks.7a.w"));
    lvd_param_layout_free(&l);
    CHECK(lvd_param_layout_add(&l, "blocks.0.w", 1, shape, &err) == 0);
    CHECK(lvd_param_layout_add(&l, "blocks.0.1.w", 1, shape, &err) == 0);
    CHECK(lvd_param_groups(&l, r, 0.2, g, &err) == -1 && strstr(err.msg, "mixed"));
    lvd_param_layout_free(&l);
    return check_finish();
}
