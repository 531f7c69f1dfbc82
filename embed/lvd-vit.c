/* lvd-vit (embed/vit.h from the command line): runs a DINOv2 ViT on the input tensors of a
 * safetensors file and writes its outputs under the names of the reference case files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/vit.h"
#include "kit/kit.h"

#define MAX_OUTPUTS_PER_INPUT 16

static const char help[] =
    "WEIGHTS IN.safetensors OUT.safetensors [--threads N] [--mask NAME]\n"
    "\n"
    "Loads a DINOv2 ViT from WEIGHTS (safetensors or torch .pth; official, chunked or\n"
    "transformers key names; the architecture is inferred from the shapes and printed), runs it\n"
    "on every input tensor xI (B, 3, H, W) of IN (normalized images, sides multiples of the\n"
    "patch size) and writes to OUT, per input: xI.cls (B, D), xI.patch (B, N, D), xI.prenorm\n"
    "(B, T, D), xI.reg (B, R, D; register models) and xI.interJ.cls / xI.interJ.patch for the\n"
    "last 2 blocks (J = 0 the second to last), all but prenorm after the final LayerNorm.";

typedef struct options {
    const char *const *files; /* WEIGHTS, IN, OUT */
    const char *weights, *in, *out, *mask;
    int threads;
} options;

/* Output tensors being collected; data buffers are owned through `buffers`. */
typedef struct outputs {
    lvd_tensor *t;
    char (*names)[64];
    size_t n, cap;
    float **buffers;
    size_t nbuf;
} outputs;

/* Inputs are named x or x followed by digits. */
static int is_input(const char *name)
{
    if (name[0] != 'x' || strlen(name) > 32) {
        return 0;
    }
    for (const char *c = name + 1; *c; c++) {
        if (*c < '0' || *c > '9') {
            return 0;
        }
    }
    return 1;
}

static void print_info(const lvd_vit_info *a)
{
    fprintf(stderr,
            "lvd-vit: ViT dim %d depth %d heads %d patch %d pos-grid %dx%d registers %d "
            "ffn %s (hidden %d) pos-resize %s eps %g params %lld\n",
            a->dim, a->depth, a->heads, a->patch, a->grid, a->grid, a->n_reg,
            a->ffn == LVD_VIT_SWIGLU ? "swiglu" : "mlp-gelu", a->ffn_hidden,
            a->pos_antialias ? "antialiased-bicubic" : "bicubic-offset-0.1", (double)a->eps,
            (long long)a->n_params);
}

/* A zeroed buffer of n floats owned by o, or NULL. */
static float *out_buffer(outputs *o, size_t n)
{
    float **b = realloc(o->buffers, (o->nbuf + 1) * sizeof *b);
    if (!b) {
        return NULL;
    }
    o->buffers = b;
    b[o->nbuf] = calloc(n ? n : 1, sizeof(float));
    return b[o->nbuf] ? b[o->nbuf++] : NULL;
}

/* Registers an output tensor prefix.suffix of shape (d0, d1[, d2]) over data. */
static int out_add(outputs *o, const char *prefix, const char *suffix, const float *data, int ndim,
                   int64_t d0, int64_t d1, int64_t d2)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        lvd_tensor *t = realloc(o->t, cap * sizeof *t);
        if (t) {
            o->t = t;
        }
        char(*names)[64] = realloc(o->names, cap * sizeof *names);
        if (names) {
            o->names = names;
        }
        if (!t || !names) {
            return -1;
        }
        o->cap = cap;
    }
    lvd_tensor *t = &o->t[o->n];
    memset(t, 0, sizeof *t);
    snprintf(o->names[o->n], sizeof o->names[0], "%s.%s", prefix, suffix);
    t->dtype = LVD_F32;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->numel = d0 * d1 * (ndim == 3 ? d2 : 1);
    t->data = data;
    o->n++;
    return 0;
}

/* The mask bytes for B images of N patches from tensor name of in, or NULL (message printed). */
static uint8_t *load_mask(const lvd_tensors *in, const char *name, int64_t B, int64_t N)
{
    const lvd_tensor *t = lvd_tensors_find(in, name);
    if (!t || t->ndim != 2 || t->shape[0] != B || t->shape[1] != N) {
        fprintf(stderr, "lvd-vit: mask %s must exist with shape (%lld, %lld)\n", name, (long long)B,
                (long long)N);
        return NULL;
    }
    uint8_t *m = malloc((size_t)(B * N));
    for (int64_t i = 0; m && i < B * N; i++) {
        m[i] = t->data[i] != 0.0f;
    }
    return m;
}

/* Runs one input tensor and registers its outputs. */
static int run_input(lvd_vit *m, const lvd_tensors *in, const lvd_tensor *x, const options *opt,
                     outputs *o)
{
    const lvd_vit_info *a = lvd_vit_get_info(m);
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[0] < 1 || x->shape[0] > 65536 ||
        x->shape[2] > 65536 || x->shape[3] > 65536) {
        fprintf(stderr, "lvd-vit: %s: input %s must have shape (B, 3, H, W)\n", opt->in, x->name);
        return -1;
    }
    int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
    int64_t D = a->dim, R = a->n_reg;
    int64_t N = (int64_t)(H / a->patch) * (W / a->patch);
    int64_t T = 1 + R + N;
    int n_inter = a->depth < 2 ? a->depth : 2;
    lvd_vit_outputs req = {0};
    req.n_inter = n_inter;
    req.cls = out_buffer(o, (size_t)(B * D));
    req.patch = out_buffer(o, (size_t)(B * N * D));
    req.prenorm = out_buffer(o, (size_t)(B * T * D));
    req.reg = out_buffer(o, (size_t)(B * R * D));
    req.inter_cls = out_buffer(o, (size_t)(n_inter * B * D));
    req.inter_patch = out_buffer(o, (size_t)(n_inter * B * N * D));
    uint8_t *mask = opt->mask ? load_mask(in, opt->mask, B, N) : NULL;
    if (!req.cls || !req.patch || !req.prenorm || !req.reg || !req.inter_cls || !req.inter_patch ||
        (opt->mask && !mask)) {
        free(mask);
        fprintf(stderr, "lvd-vit: %s: out of memory or bad mask for input %s\n", opt->in, x->name);
        return -1;
    }
    lvd_error err = {0};
    int rc = lvd_vit_forward(m, x->data, B, H, W, mask, &req, &err);
    free(mask);
    if (rc != 0) {
        fprintf(stderr, "lvd-vit: %s: input %s: %s\n", opt->in, x->name, err.msg);
        return -1;
    }
    rc = out_add(o, x->name, "cls", req.cls, 2, B, D, 0);
    rc |= out_add(o, x->name, "patch", req.patch, 3, B, N, D);
    rc |= out_add(o, x->name, "prenorm", req.prenorm, 3, B, T, D);
    if (R > 0) {
        rc |= out_add(o, x->name, "reg", req.reg, 3, B, R, D);
    }
    for (int j = 0; j < n_inter; j++) {
        char cls[32], patch[32];
        snprintf(cls, sizeof cls, "inter%d.cls", j);
        snprintf(patch, sizeof patch, "inter%d.patch", j);
        rc |= out_add(o, x->name, cls, req.inter_cls + (size_t)j * B * D, 2, B, D, 0);
        rc |= out_add(o, x->name, patch, req.inter_patch + (size_t)j * B * N * D, 3, B, N, D);
    }
    if (rc != 0) {
        fprintf(stderr, "lvd-vit: out of memory\n");
    }
    return rc;
}

static void outputs_free(outputs *o)
{
    for (size_t i = 0; i < o->nbuf; i++) {
        free(o->buffers[i]);
    }
    free(o->buffers);
    free(o->t);
    free(o->names);
}

static int run(const options *opt, lvd_vit *m, const lvd_tensors *in)
{
    outputs o = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < lvd_tensors_count(in); i++) {
        const lvd_tensor *x = lvd_tensors_at(in, i);
        if (is_input(x->name)) {
            rc = run_input(m, in, x, opt, &o);
        }
    }
    if (rc == 0 && o.n == 0) {
        fprintf(stderr, "lvd-vit: %s has no input tensor named x or xI\n", opt->in);
        rc = -1;
    }
    for (size_t i = 0; i < o.n; i++) {
        o.t[i].name = o.names[i];
    }
    lvd_error err = {0};
    if (rc == 0 && lvd_safetensors_write(opt->out, o.t, o.n, NULL, 0, &err) != 0) {
        fprintf(stderr, "lvd-vit: %s\n", err.msg);
        rc = -1;
    }
    outputs_free(&o);
    return rc;
}

static int run_tool(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    options *opt = ctx;
    opt->weights = opt->files[0];
    opt->in = opt->files[1];
    opt->out = opt->files[2];
    lvd_vit *m;
    if (lvd_vit_load(opt->weights, &m, err) != 0)
        return -1;
    print_info(lvd_vit_get_info(m));
    lvd_vit_set_threads(m, opt->threads);
    lvd_tensors *in;
    if (lvd_tensors_open(opt->in, &in, err) != 0) {
        lvd_vit_free(m);
        return -1;
    }
    int rc = run(opt, m, in);
    lvd_tensors_close(in);
    lvd_vit_free(m);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    options opt = {0};
    const lvd_kit_opt opts[] = {
        LVD_OPT_INT("threads", "N", opt.threads, 1, 1024, "threads to use", .def = "all cores"),
        LVD_OPT_STR("mask", "NAME", opt.mask,
                    "iBOT mask: tensor NAME of IN, (B, N), nonzero = patch replaced by\n"
                    "mask_token; applied to every input"),
        LVD_OPT_END,
    };
    const lvd_kit_operands io = {"WEIGHTS IN OUT", 3, 3, &opt.files, NULL};
    const lvd_kit_cmd cmd = {"lvd-vit",           help,           opts, run_tool, &opt,
                             .db = LVD_KIT_NO_DB, .operands = &io};
    return lvd_kit_main(&cmd, argc, argv);
}
