/* The train_step case's metadata (train/step_case.h): lvd_step_case_read. */
#include "train/step_case.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* One metadata object being read: the first problem is kept in err, later reads are no-ops. */
typedef struct reader {
    const char *key;
    cJSON *root;
    lvd_error *err;
    int failed;
} reader;

static const cJSON *field(reader *r, const char *name)
{
    if (r->failed)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, name);
    if (!v) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: no field \"%s\"", r->key, name);
    }
    return v;
}

static void number(reader *r, const char *name, double *out)
{
    const cJSON *v = field(r, name);
    if (!v)
        return;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: field \"%s\" is not a number", r->key, name);
        return;
    }
    *out = v->valuedouble;
}

static void integer(reader *r, const char *name, int *out)
{
    double d = 0;
    number(r, name, &d);
    if (r->failed)
        return;
    if (d != floor(d) || d < INT_MIN || d > INT_MAX) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: field \"%s\" is not an integer", r->key, name);
        return;
    }
    *out = (int)d;
}

static void boolean(reader *r, const char *name, int *out)
{
    const cJSON *v = field(r, name);
    if (!v)
        return;
    if (!cJSON_IsBool(v)) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: field \"%s\" is not true or false", r->key, name);
        return;
    }
    *out = cJSON_IsTrue(v);
}

static void string(reader *r, const char *name, char *out, size_t cap)
{
    const cJSON *v = field(r, name);
    if (!v)
        return;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: field \"%s\" is not a string of under %zu characters",
                 r->key, name, cap);
        return;
    }
    strcpy(out, v->valuestring);
}

static void pair(reader *r, const char *name, double *a, double *b)
{
    const cJSON *v = field(r, name);
    if (!v)
        return;
    const cJSON *x = cJSON_GetArrayItem(v, 0), *y = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(x) ||
        !cJSON_IsNumber(y)) {
        r->failed = 1;
        lvd_fail(r->err, "metadata %s: field \"%s\" is not a pair of numbers", r->key, name);
        return;
    }
    *a = x->valuedouble;
    *b = y->valuedouble;
}

static int open_object(reader *r, const lvd_tensors *ts, const char *key, lvd_error *err)
{
    *r = (reader){.key = key, .err = err};
    const char *text = lvd_tensors_metadata(ts, key);
    if (!text)
        return lvd_fail(err, "no metadata %s", key);
    r->root = cJSON_Parse(text);
    if (!cJSON_IsObject(r->root)) {
        cJSON_Delete(r->root);
        return lvd_fail(err, "metadata %s is not a JSON object", key);
    }
    return 0;
}

static int close_object(reader *r)
{
    cJSON_Delete(r->root);
    return r->failed ? -1 : 0;
}

int lvd_step_case_read(const lvd_tensors *ts, lvd_step_case *c, lvd_error *err)
{
    lvd_step_case v;
    memset(&v, 0, sizeof v);
    reader r;
    if (open_object(&r, ts, "hyper", err) != 0)
        return -1;
    lvd_step_hyper *h = &v.hyper;
    number(&r, "lr", &h->lr);
    number(&r, "last_layer_lr", &h->last_layer_lr);
    number(&r, "wd", &h->wd);
    number(&r, "momentum", &h->momentum);
    number(&r, "teacher_temp", &h->teacher_temp);
    number(&r, "student_temp", &h->student_temp);
    number(&r, "center_momentum", &h->center_momentum);
    number(&r, "layerwise_decay", &h->layerwise_decay);
    number(&r, "patch_embed_lr_mult", &h->patch_embed_lr_mult);
    number(&r, "clip_grad", &h->clip_grad);
    pair(&r, "betas", &h->beta1, &h->beta2);
    number(&r, "eps", &h->eps);
    number(&r, "koleo_weight", &h->koleo_weight);
    integer(&r, "n_local", &h->n_local);
    integer(&r, "batch", &h->batch);
    integer(&r, "K", &h->K);
    if (close_object(&r) != 0 || open_object(&r, ts, "backbone", err) != 0)
        return -1;
    lvd_step_backbone *b = &v.backbone;
    integer(&r, "img_size", &b->img_size);
    integer(&r, "patch_size", &b->patch_size);
    integer(&r, "embed_dim", &b->embed_dim);
    integer(&r, "depth", &b->depth);
    integer(&r, "num_heads", &b->num_heads);
    number(&r, "mlp_ratio", &b->mlp_ratio);
    number(&r, "init_values", &b->init_values);
    string(&r, "ffn_layer", b->ffn_layer, sizeof b->ffn_layer);
    integer(&r, "block_chunks", &b->block_chunks);
    integer(&r, "num_register_tokens", &b->num_register_tokens);
    boolean(&r, "interpolate_antialias", &b->interpolate_antialias);
    number(&r, "interpolate_offset", &b->interpolate_offset);
    if (close_object(&r) != 0 || open_object(&r, ts, "head", err) != 0)
        return -1;
    integer(&r, "in_dim", &v.head.in_dim);
    integer(&r, "out_dim", &v.head.out_dim);
    integer(&r, "nlayers", &v.head.nlayers);
    integer(&r, "hidden_dim", &v.head.hidden_dim);
    integer(&r, "bottleneck_dim", &v.head.bottleneck_dim);
    if (close_object(&r) != 0)
        return -1;
    *c = v;
    return 0;
}
