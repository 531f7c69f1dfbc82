/* Key layouts and loading errors: chunked `blocks.C.I.*` keys, transformers keys under a
 * `dinov2.` prefix, missing / unexpected / mis-shaped tensors, and bad input sizes. Variants of
 * the reference weights are written to a temporary folder. */
#include <stdlib.h>
#include <unistd.h>

#include "embed/vit_model.h"
#include "tests/embed/vit_check.h"

typedef struct variant {
    const char *drop;        /* name of a tensor left out, or NULL */
    const char *reshape;     /* name of a tensor whose last dim shrinks by one, or NULL */
    const char *prefix;      /* prepended to every name, or NULL */
    int chunk;               /* 1: blocks.I.* written as blocks.I.I.* */
    const lvd_tensor *extra; /* an added tensor, or NULL */
} variant;

static char tmpdir[] = "/tmp/lvd-test-vit-keys-XXXXXX";
static char written[16][1024]; /* files to remove at the end */
static int n_written;

/* Writes the tensors of src changed as v says to tmpdir/file; returns the path in buf. */
static const char *write_variant(const lvd_tensors *src, const variant *v, const char *file,
                                 char *buf, size_t cap)
{
    size_t n = lvd_tensors_count(src);
    lvd_tensor *t = calloc(n + 1, sizeof *t);
    char(*names)[160] = calloc(n + 1, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const lvd_tensor *s = lvd_tensors_at(src, i);
        if (v->drop && strcmp(s->name, v->drop) == 0) {
            continue;
        }
        t[k] = *s;
        int block;
        char rest[128];
        if (v->chunk && sscanf(s->name, "blocks.%d.%127s", &block, rest) == 2) {
            snprintf(names[k], sizeof names[k], "blocks.%d.%d.%s", block, block, rest);
        } else {
            snprintf(names[k], sizeof names[k], "%s%s", v->prefix ? v->prefix : "", s->name);
        }
        if (v->reshape && strcmp(s->name, v->reshape) == 0) {
            int64_t last = t[k].shape[t[k].ndim - 1];
            t[k].numel = t[k].numel / last * (last - 1);
            t[k].shape[t[k].ndim - 1] = last - 1;
        }
        t[k].name = names[k];
        k++;
    }
    if (v->extra) {
        t[k++] = *v->extra;
    }
    snprintf(buf, cap, "%s/%s", tmpdir, file);
    if (n_written < 16) {
        snprintf(written[n_written++], sizeof written[0], "%s", buf);
    }
    lvd_error err = {0};
    int rc = lvd_safetensors_write(buf, t, k, NULL, 0, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    free(t);
    free(names);
    return buf;
}

/* Loads path and checks that the cls output of input x0 matches the reference. */
static void check_loads(const char *label, const char *path, const lvd_tensors *ref)
{
    lvd_error err = {0};
    lvd_vit *m;
    int rc = lvd_vit_load(path, &m, &err);
    CHECK_MSG(rc == 0, "%s: %s", label, err.msg);
    if (rc != 0) {
        return;
    }
    const lvd_tensor *x = vit_need(ref, "x0");
    const lvd_tensor *cls = vit_need(ref, "x0.cls");
    float *out = malloc(sizeof(float) * (size_t)cls->numel);
    lvd_vit_outputs o = {0};
    o.cls = out;
    rc = lvd_vit_forward(m, x->data, (int)x->shape[0], (int)x->shape[2], (int)x->shape[3], NULL, &o,
                         &err);
    CHECK_MSG(rc == 0, "%s: %s", label, err.msg);
    vit_compare(label, out, cls);
    free(out);
    lvd_vit_free(m);
}

/* Loads path expecting a failure whose message holds every string of want (NULL-ended). */
static void check_fails(const char *label, const char *path, const char *const *want)
{
    lvd_error err = {0};
    lvd_vit *m;
    int rc = lvd_vit_load(path, &m, &err);
    CHECK_MSG(rc != 0, "%s: loading succeeded", label);
    printf("  %s: %s\n", label, err.msg);
    for (int i = 0; want[i]; i++) {
        CHECK_MSG(strstr(err.msg, want[i]) != NULL, "%s: message lacks '%s'", label, want[i]);
    }
    if (rc == 0) {
        lvd_vit_free(m);
    }
}

/* F32 weights are used in place from the mapped file; only transformers q/k/v are copied. */
static void check_in_place(lvd_tensors *w, lvd_tensors *hf)
{
    lvd_error err = {0};
    lvd_vit *m, *mh;
    int rc = lvd_vit_load_tensors(w, &m, &err);
    rc |= lvd_vit_load_tensors(hf, &mh, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    CHECK(m->p.patch_w == lvd_tensors_find(w, "patch_embed.proj.weight")->data);
    CHECK(m->p.blocks[1].qkv_w == lvd_tensors_find(w, "blocks.1.attn.qkv.weight")->data);
    CHECK(m->p.blocks[1].fc2_w == lvd_tensors_find(w, "blocks.1.mlp.fc2.weight")->data);
    CHECK(m->p.pos_embed == lvd_tensors_find(w, "pos_embed")->data);
    CHECK(mh->p.blocks[0].proj_w ==
          lvd_tensors_find(hf, "encoder.layer.0.attention.output.dense.weight")->data);
    const lvd_tensor *q = lvd_tensors_find(hf, "encoder.layer.0.attention.attention.query.weight");
    const lvd_tensor *v = lvd_tensors_find(hf, "encoder.layer.0.attention.attention.value.weight");
    CHECK(memcmp(mh->p.blocks[0].qkv_w, q->data, sizeof(float) * (size_t)q->numel) == 0);
    CHECK(memcmp(mh->p.blocks[0].qkv_w + 2 * q->numel, v->data, sizeof(float) * (size_t)v->numel) ==
          0);
    lvd_vit_free(m);
    lvd_vit_free(mh);
}

static void check_bad_inputs(const char *dir)
{
    char path[1024];
    lvd_error err = {0};
    lvd_vit *m;
    int rc = lvd_vit_load(vit_ref_path(path, sizeof path, dir, "vits14_d2.weights.safetensors"), &m,
                          &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return;
    }
    static float x[3 * 28 * 42];
    float cls[384];
    lvd_vit_outputs o = {0};
    o.cls = cls;
    static const int sizes[][3] = {{1, 28, 41}, {1, 27, 28}, {1, 0, 28}, {0, 28, 28}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rc = lvd_vit_forward(m, x, sizes[i][0], sizes[i][1], sizes[i][2], NULL, &o, &err);
        CHECK_MSG(rc != 0, "input %dx%dx%d accepted", sizes[i][0], sizes[i][1], sizes[i][2]);
        CHECK_MSG(strstr(err.msg, "multiples of 14") != NULL, "message: %s", err.msg);
        printf("  input %dx%dx%d: %s\n", sizes[i][0], sizes[i][1], sizes[i][2], err.msg);
    }
    o.n_inter = 3;
    rc = lvd_vit_forward(m, x, 1, 28, 42, NULL, &o, &err);
    CHECK_MSG(rc != 0, "3 intermediate blocks of 2 accepted");
    o.n_inter = 0;
    rc = lvd_vit_forward(m, x, 1, 28, 42, NULL, &o, &err);
    CHECK_MSG(rc == 0, "a valid input after errors: %s", err.msg);
    lvd_vit_free(m);
}

int main(void)
{
    const char *dir = check_reference_dir();
    CHECK(mkdtemp(tmpdir) != NULL);
    char path[1024], out[1024];
    lvd_error err = {0};
    lvd_tensors *w, *hf, *ref;
    int rc = lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "vits14_d2.weights.safetensors"),
                              &w, &err);
    rc |= lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "vits14_d2.hf.safetensors"), &hf,
                           &err);
    rc |= lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "vits14_d2.case.safetensors"), &ref,
                           &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0) {
        return check_finish();
    }

    check_in_place(w, hf);
    variant chunked = {.chunk = 1};
    check_loads("chunked keys blocks.C.I.*", write_variant(w, &chunked, "chunked.st", out, 1024),
                ref);
    variant prefixed = {.prefix = "dinov2."};
    check_loads("transformers keys with dinov2. prefix",
                write_variant(hf, &prefixed, "prefixed.st", out, 1024), ref);

    variant missing = {.drop = "blocks.1.attn.proj.weight"};
    check_fails("missing tensor", write_variant(w, &missing, "missing.st", out, 1024),
                (const char *[]){"missing", "blocks.1.attn.proj.weight", "(384, 384)", NULL});
    static const float head[10 * 384];
    lvd_tensor extra = {.name = "head.weight",
                        .dtype = LVD_F32,
                        .ndim = 2,
                        .shape = {10, 384},
                        .numel = 3840,
                        .data = head};
    variant extra_v = {.extra = &extra};
    check_fails("extra tensor", write_variant(w, &extra_v, "extra.st", out, 1024),
                (const char *[]){"unexpected", "head.weight", "(10, 384)", NULL});
    variant shaped = {.reshape = "blocks.1.mlp.fc2.weight"};
    check_fails("mis-shaped tensor", write_variant(w, &shaped, "shaped.st", out, 1024),
                (const char *[]){"blocks.1.mlp.fc2.weight", "(384, 1535)", "(384, 1536)", NULL});
    variant hf_shaped = {.reshape = "encoder.layer.0.attention.attention.key.weight"};
    check_fails("mis-shaped transformers key",
                write_variant(hf, &hf_shaped, "hf_shaped.st", out, 1024),
                (const char *[]){"encoder.layer.0.attention.attention.key.weight", "(384, 383)",
                                 "(384, 384)", NULL});
    variant hf_missing = {.drop = "encoder.layer.1.attention.attention.value.bias"};
    check_fails("missing transformers value",
                write_variant(hf, &hf_missing, "hf_missing.st", out, 1024),
                (const char *[]){"missing", "value", "blocks.1.attn.qkv.bias", NULL});
    variant no_patch = {.drop = "patch_embed.proj.weight"};
    check_fails("missing patch embedding", write_variant(w, &no_patch, "no_patch.st", out, 1024),
                (const char *[]){"missing", "patch_embed.proj.weight", NULL});
    check_fails("not a tensor file", vit_ref_path(path, sizeof path, dir, "README.md"),
                (const char *[]){"README.md", NULL});
    check_bad_inputs(dir);

    lvd_tensors_close(w);
    lvd_tensors_close(hf);
    lvd_tensors_close(ref);
    for (int i = 0; i < n_written; i++) {
        unlink(written[i]);
    }
    rmdir(tmpdir);
    return check_finish();
}
