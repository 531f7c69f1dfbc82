/* The train_step case's metadata reader (train/step_case.h) on files written here: the
 * README's metadata parses into the structs, and each kind of broken field is named in the
 * error. The real case file is read in test_optim_reference. */
#include "tests/train/optim_test.h"
#include "train/step_case.h"

static const char *hyper =
    "{\"lr\": 0.002, \"last_layer_lr\": 0.001, \"wd\": 0.04, \"momentum\": 0.99, \"teacher_temp\": "
    "0.05, \"student_temp\": 0.1, \"center_momentum\": 0.9, \"layerwise_decay\": 0.9, "
    "\"patch_embed_lr_mult\": 0.2, \"clip_grad\": 3.0, \"betas\": [0.9, 0.999], \"eps\": 1e-08, "
    "\"koleo_weight\": 0.1, \"n_local\": 2, \"batch\": 3, \"K\": 128}";
static const char *backbone =
    "{\"img_size\": 16, \"patch_size\": 4, \"embed_dim\": 64, \"depth\": 2, \"num_heads\": 2, "
    "\"mlp_ratio\": 4, \"init_values\": 0.1, \"ffn_layer\": \"mlp\", \"block_chunks\": 0, "
    "\"num_register_tokens\": 4, \"interpolate_antialias\": true, \"interpolate_offset\": 0.1}";
static const char *head = "{\"in_dim\": 64, \"out_dim\": 128, \"nlayers\": 3, \"hidden_dim\": 96, "
                          "\"bottleneck_dim\": 32}";

/* Writes a case with the three metadata strings (NULL: left out) and reads it back. */
static int read_case(const char *dir, const char *h, const char *b, const char *d, lvd_step_case *c,
                     lvd_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/case.safetensors", dir);
    float x = 1;
    lvd_tensor t = {.name = "x", .dtype = LVD_F32, .ndim = 1, .shape = {1}, .numel = 1, .data = &x};
    const char *meta[6];
    size_t n = 0;
    const char *keys[3] = {"hyper", "backbone", "head"}, *vals[3] = {h, b, d};
    for (int i = 0; i < 3; i++)
        if (vals[i]) {
            meta[2 * n] = keys[i];
            meta[2 * n + 1] = vals[i];
            n++;
        }
    lvd_tensors *ts;
    if (lvd_safetensors_write(path, &t, 1, meta, n, err) != 0 ||
        lvd_tensors_open(path, &ts, err) != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
    int rc = lvd_step_case_read(ts, c, err);
    lvd_tensors_close(ts);
    return rc;
}

/* src with the first `from` replaced by `to`, in a static buffer. */
static const char *replace(const char *src, const char *from, const char *to)
{
    static char out[2048];
    const char *at = strstr(src, from);
    if (!at)
        exit(1);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
    return out;
}

static void expect_error(const char *dir, const char *h, const char *b, const char *d,
                         const char *part)
{
    lvd_step_case c, before;
    memset(&c, 0x5a, sizeof c);
    memcpy(&before, &c, sizeof c);
    lvd_error err;
    CHECK_MSG(read_case(dir, h, b, d, &c, &err) == -1 && strstr(err.msg, part), "%s: '%s'", part,
              err.msg);
    CHECK(memcmp(&c, &before, sizeof c) == 0);
}

int main(void)
{
    char *dir = ot_tmpdir();
    lvd_step_case c;
    lvd_error err;
    CHECK_MSG(read_case(dir, hyper, backbone, head, &c, &err) == 0, "%s", err.msg);
    CHECK(c.hyper.lr == 0.002 && c.hyper.last_layer_lr == 0.001 && c.hyper.wd == 0.04);
    CHECK(c.hyper.momentum == 0.99 && c.hyper.teacher_temp == 0.05 && c.hyper.student_temp == 0.1);
    CHECK(c.hyper.center_momentum == 0.9 && c.hyper.layerwise_decay == 0.9);
    CHECK(c.hyper.patch_embed_lr_mult == 0.2 && c.hyper.clip_grad == 3.0);
    CHECK(c.hyper.beta1 == 0.9 && c.hyper.beta2 == 0.999 && c.hyper.eps == 1e-8);
    CHECK(c.hyper.koleo_weight == 0.1 && c.hyper.n_local == 2 && c.hyper.batch == 3 &&
          c.hyper.K == 128);
    CHECK(c.backbone.img_size == 16 && c.backbone.patch_size == 4 && c.backbone.embed_dim == 64);
    CHECK(c.backbone.depth == 2 && c.backbone.num_heads == 2 && c.backbone.mlp_ratio == 4);
    CHECK(c.backbone.init_values == 0.1 && strcmp(c.backbone.ffn_layer, "mlp") == 0);
    CHECK(c.backbone.block_chunks == 0 && c.backbone.num_register_tokens == 4);
    CHECK(c.backbone.interpolate_antialias == 1 && c.backbone.interpolate_offset == 0.1);
    CHECK(c.head.in_dim == 64 && c.head.out_dim == 128 && c.head.nlayers == 3 &&
          c.head.hidden_dim == 96 && c.head.bottleneck_dim == 32);

    expect_error(dir, NULL, backbone, head, "no metadata hyper");
    expect_error(dir, hyper, NULL, head, "no metadata backbone");
    expect_error(dir, hyper, backbone, NULL, "no metadata head");
    expect_error(dir, "[1, 2]", backbone, head, "metadata hyper is not a JSON object");
    expect_error(dir, "{\"lr\": ", backbone, head, "not a JSON object");
    expect_error(dir, "{\"lr\": 0.1}", backbone, head,
                 "metadata hyper: no field \"last_layer_lr\"");
    expect_error(dir, "{\"lr\": \"0.1\"}", backbone, head, "\"lr\" is not a number");
    CHECK(read_case(dir, replace(hyper, "0.999]", "0.9]"), backbone, head, &c, &err) == 0 &&
          c.hyper.beta2 == 0.9);
    expect_error(dir, replace(hyper, "0.999]", "\"0.9\"]"), backbone, head,
                 "\"betas\" is not a pair of numbers");
    expect_error(dir, replace(hyper, "0.999]", "0.9, 1]"), backbone, head, "\"betas\"");
    expect_error(dir, replace(hyper, "\"batch\": 3", "\"batch\": 3.5"), backbone, head,
                 "\"batch\" is not an integer");
    expect_error(dir, replace(hyper, "\"K\": 128", "\"K\": 1e300"), backbone, head,
                 "\"K\" is not an integer");
    expect_error(dir, hyper, replace(backbone, "true", "1"), head,
                 "\"interpolate_antialias\" is not true or false");
    expect_error(dir, hyper, replace(backbone, "\"mlp\"", "7"), head,
                 "\"ffn_layer\" is not a string");
    expect_error(dir, hyper, replace(backbone, "\"mlp\"", "\"a_very_long_ffn_name\""), head,
                 "\"ffn_layer\" is not a string of under 16");
    expect_error(dir, hyper, backbone, "{\"in_dim\": 64}", "metadata head: no field \"out_dim\"");
    check_rmtree(dir);
    return check_finish();
}
