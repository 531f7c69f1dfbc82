/* Training checkpoints (train/checkpoint.h): save with stale-temporary cleanup, validated load,
 * model export, layouts and groups read from tensor files. */
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FORMAT   "lvd-checkpoint"
#define VERSION  1
#define META_KEY "lvd_checkpoint"
/* Longest prefix accepted: full names must fit the fixed buffers below. */
#define PREFIX_MAX 200
/* Names listed per kind of problem in an error message; the rest are counted. */
#define LIST_MAX 6

static const char *prefix_of(const lvd_ckpt_group *g)
{
    return g->prefix ? g->prefix : "";
}

static int check_groups(const lvd_ckpt_group *groups, int n_groups, lvd_error *err)
{
    if (n_groups < 0)
        return lvd_fail(err, "%d groups", n_groups);
    for (int g = 0; g < n_groups; g++) {
        if (!groups[g].layout)
            return lvd_fail(err, "group %d has no layout", g);
        if (strlen(prefix_of(&groups[g])) > PREFIX_MAX)
            return lvd_fail(err, "group %d: prefix longer than %d characters", g, PREFIX_MAX);
        if (groups[g].layout->total && !groups[g].data)
            return lvd_fail(err, "group %d (%s) has no buffer", g, prefix_of(&groups[g]));
    }
    return 0;
}

/* Removes "<path>.tmp.XXXXXX" files: the temporaries of saves killed before their rename. */
static void remove_stale_temporaries(const char *path)
{
    char *d = strdup(path), *b = strdup(path);
    if (!d || !b) {
        free(d);
        free(b);
        return;
    }
    const char *dir = dirname(d), *base = basename(b);
    size_t len = strlen(base);
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (strlen(e->d_name) == len + 11 && strncmp(e->d_name, base, len) == 0 &&
                strncmp(e->d_name + len, ".tmp.", 5) == 0) {
                char full[4096];
                if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < (int)sizeof full)
                    unlink(full);
            }
        }
        closedir(dp);
    }
    free(d);
    free(b);
}

/* Tensors of the groups named "<prefix><name>", pointing into the groups' buffers; *names owns
 * the strings. */
static int collect(const lvd_ckpt_group *groups, int n_groups, lvd_tensor **out, size_t *n_out,
                   char **names, lvd_error *err)
{
    if (check_groups(groups, n_groups, err) != 0)
        return -1;
    size_t n = 0, bytes = 0;
    for (int g = 0; g < n_groups; g++) {
        n += (size_t)groups[g].layout->n;
        bytes += (size_t)groups[g].layout->n * (strlen(prefix_of(&groups[g])) + 1);
        for (int i = 0; i < groups[g].layout->n; i++)
            bytes += strlen(groups[g].layout->t[i].name);
    }
    lvd_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    char *s = malloc(bytes ? bytes : 1);
    if (!ts || !s) {
        free(ts);
        free(s);
        return lvd_fail(err, "out of memory for %zu tensor names", n);
    }
    size_t k = 0;
    char *p = s;
    for (int g = 0; g < n_groups; g++) {
        const lvd_param_layout *l = groups[g].layout;
        for (int i = 0; i < l->n; i++, k++) {
            const lvd_param_tensor *t = &l->t[i];
            ts[k].name = p;
            p += sprintf(p, "%s%s", prefix_of(&groups[g]), t->name) + 1;
            ts[k].dtype = LVD_F32;
            ts[k].ndim = t->ndim;
            memcpy(ts[k].shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
            ts[k].numel = (int64_t)t->numel;
            ts[k].data = groups[g].data + t->offset;
        }
    }
    *out = ts;
    *n_out = n;
    *names = s;
    return 0;
}

/* The "lvd_checkpoint" JSON text of st, or NULL with err filled. */
static char *state_json(const lvd_ckpt_state *st, lvd_error *err)
{
    if (st->step < 0 || st->step >= (INT64_C(1) << 53))
        return lvd_fail(err, "step %" PRId64 " out of range", st->step), NULL;
    if (st->n_rng < 0 || st->n_rng > LVD_CKPT_RNG_MAX)
        return lvd_fail(err, "%d RNG words (0 to %d allowed)", st->n_rng, LVD_CKPT_RNG_MAX), NULL;
    cJSON *config = cJSON_Parse(st->config ? st->config : "{}");
    if (!cJSON_IsObject(config)) {
        cJSON_Delete(config);
        return lvd_fail(err, "config is not a JSON object"), NULL;
    }
    cJSON *root = cJSON_CreateObject(), *rng = cJSON_CreateArray();
    int ok = root && rng && cJSON_AddStringToObject(root, "format", FORMAT) &&
             cJSON_AddNumberToObject(root, "version", VERSION) &&
             cJSON_AddNumberToObject(root, "step", (double)st->step);
    for (int i = 0; ok && i < st->n_rng; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, st->rng[i]);
        ok = cJSON_AddItemToArray(rng, cJSON_CreateString(hex));
    }
    if (ok)
        ok = cJSON_AddItemToObject(root, "rng", rng);
    else
        cJSON_Delete(rng);
    if (ok)
        ok = cJSON_AddItemToObject(root, "config", config);
    else
        cJSON_Delete(config);
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        lvd_fail(err, "out of memory for the checkpoint metadata");
    return text;
}

int lvd_ckpt_save(const char *path, const lvd_ckpt_group *groups, int n_groups,
                  const lvd_ckpt_state *st, lvd_error *err)
{
    char *json = state_json(st, err);
    if (!json)
        return lvd_error_prefix(err, "%s", path);
    lvd_tensor *ts = NULL;
    size_t n = 0;
    char *names = NULL;
    if (collect(groups, n_groups, &ts, &n, &names, err) != 0) {
        free(json);
        return lvd_error_prefix(err, "%s", path);
    }
    remove_stale_temporaries(path);
    const char *meta[2] = {META_KEY, json};
    int rc = lvd_safetensors_write(path, ts, n, meta, 1, err);
    free(ts);
    free(names);
    free(json);
    return rc;
}

/* A bounded list of names for an error message: "a, b, c (and 4 more)". */
typedef struct name_list {
    char text[400];
    int count;
} name_list;

static void name_list_add(name_list *nl, const char *fmt, ...)
{
    if (nl->count++ >= LIST_MAX)
        return;
    size_t len = strlen(nl->text);
    if (len + 2 >= sizeof nl->text)
        return;
    if (len)
        len += (size_t)snprintf(nl->text + len, sizeof nl->text - len, ", ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nl->text + len, sizeof nl->text - len, fmt, ap);
    va_end(ap);
}

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (len < cap)
        snprintf(buf + len, cap - len, ndim == 1 ? ",)" : ")");
}

/* Appends "; <what> <names> (and N more)" to msg when the list is not empty. */
static void report(char *msg, size_t cap, const char *what, const name_list *nl)
{
    if (!nl->count)
        return;
    size_t len = strlen(msg);
    if (nl->count > LIST_MAX)
        snprintf(msg + len, cap - len, "%s%s %s (and %d more)", len ? "; " : "", what, nl->text,
                 nl->count - LIST_MAX);
    else
        snprintf(msg + len, cap - len, "%s%s %s", len ? "; " : "", what, nl->text);
}

/* Checks that every tensor of group g is in ts with its shape (F32 when require_f32), adding
 * problems to the lists. */
static void check_group(const lvd_tensors *ts, const lvd_ckpt_group *g, int require_f32,
                        name_list *missing, name_list *wrong)
{
    const char *prefix = prefix_of(g);
    for (int i = 0; i < g->layout->n; i++) {
        const lvd_param_tensor *t = &g->layout->t[i];
        char name[LVD_PARAM_NAME_MAX + PREFIX_MAX + 1];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const lvd_tensor *f = lvd_tensors_find(ts, name);
        if (!f) {
            name_list_add(missing, "%s", name);
            continue;
        }
        int same = f->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = f->shape[d] == t->shape[d];
        char have[128], want[128];
        if (!same) {
            shape_text(have, sizeof have, f->ndim, f->shape);
            shape_text(want, sizeof want, t->ndim, t->shape);
            name_list_add(wrong, "%s is %s, expected %s", name, have, want);
        } else if (require_f32 && f->dtype != LVD_F32) {
            name_list_add(wrong, "%s is not stored as F32", name);
        }
    }
}

static void copy_group(const lvd_tensors *ts, const lvd_ckpt_group *g)
{
    const char *prefix = prefix_of(g);
    for (int i = 0; i < g->layout->n; i++) {
        const lvd_param_tensor *t = &g->layout->t[i];
        char name[LVD_PARAM_NAME_MAX + PREFIX_MAX + 1];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const lvd_tensor *f = lvd_tensors_find(ts, name);
        if (t->numel)
            memcpy(g->data + t->offset, f->data, t->numel * sizeof(float));
    }
}

/* Whether a file tensor is one of the groups' tensors. */
static int expected(const char *name, const lvd_ckpt_group *groups, int n_groups)
{
    for (int g = 0; g < n_groups; g++) {
        size_t len = strlen(prefix_of(&groups[g]));
        if (strncmp(name, prefix_of(&groups[g]), len) == 0 &&
            lvd_param_layout_find(groups[g].layout, name + len))
            return 1;
    }
    return 0;
}

/* Parses the "lvd_checkpoint" block into st (config malloc'd). */
static int parse_state(const char *json, lvd_ckpt_state *st, lvd_error *err)
{
    if (!json)
        return lvd_fail(err, "not an lvd checkpoint (no \"%s\" metadata)", META_KEY);
    cJSON *root = cJSON_Parse(json);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(root, "step");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(root, "rng");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "config");
    int rc = 0;
    if (!cJSON_IsObject(root) || !cJSON_IsString(format) || strcmp(format->valuestring, FORMAT))
        rc = lvd_fail(err, "\"%s\" metadata is not an lvd checkpoint block", META_KEY);
    else if (!cJSON_IsNumber(version) || version->valuedouble != VERSION)
        rc = lvd_fail(err, "checkpoint version not supported (this build reads version %d)",
                      VERSION);
    else if (!cJSON_IsNumber(step) || !(step->valuedouble >= 0) ||
             step->valuedouble >= 9007199254740992.0 ||
             step->valuedouble != (double)(int64_t)step->valuedouble)
        rc = lvd_fail(err, "checkpoint step is not a non-negative integer");
    else if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) > LVD_CKPT_RNG_MAX)
        rc = lvd_fail(err, "checkpoint rng is not an array of at most %d words", LVD_CKPT_RNG_MAX);
    else if (!cJSON_IsObject(config))
        rc = lvd_fail(err, "checkpoint config is not a JSON object");
    lvd_ckpt_state s = {0};
    for (int i = 0; rc == 0 && i < cJSON_GetArraySize(rng); i++) {
        const cJSON *w = cJSON_GetArrayItem(rng, i);
        char *end = NULL;
        if (cJSON_IsString(w) && strlen(w->valuestring) == 16)
            s.rng[i] = strtoull(w->valuestring, &end, 16);
        if (!end || *end)
            rc = lvd_fail(err, "checkpoint rng word %d is not 16 hex digits", i);
        s.n_rng = i + 1;
    }
    if (rc == 0) {
        s.step = (int64_t)step->valuedouble;
        s.config = cJSON_PrintUnformatted(config);
        if (!s.config)
            rc = lvd_fail(err, "out of memory for the checkpoint config");
    }
    cJSON_Delete(root);
    if (rc == 0)
        *st = s;
    return rc;
}

int lvd_ckpt_load(const char *path, const lvd_ckpt_group *groups, int n_groups, lvd_ckpt_state *st,
                  lvd_error *err)
{
    if (check_groups(groups, n_groups, err) != 0)
        return lvd_error_prefix(err, "%s", path);
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err) != 0)
        return -1;
    lvd_ckpt_state s;
    if (parse_state(lvd_tensors_metadata(ts, META_KEY), &s, err) != 0) {
        lvd_tensors_close(ts);
        return lvd_error_prefix(err, "%s", path);
    }
    name_list missing = {0}, wrong = {0}, extra = {0};
    for (int g = 0; g < n_groups; g++)
        check_group(ts, &groups[g], 1, &missing, &wrong);
    for (size_t i = 0; i < lvd_tensors_count(ts); i++) {
        const char *name = lvd_tensors_at(ts, i)->name;
        if (!expected(name, groups, n_groups))
            name_list_add(&extra, "%s", name);
    }
    if (missing.count || wrong.count || extra.count) {
        char msg[sizeof err->msg];
        msg[0] = 0;
        report(msg, sizeof msg, "missing", &missing);
        report(msg, sizeof msg, "wrong shape or type:", &wrong);
        report(msg, sizeof msg, "unexpected", &extra);
        free(s.config);
        lvd_tensors_close(ts);
        return lvd_fail(err, "%s: checkpoint does not match the model: %s", path, msg);
    }
    for (int g = 0; g < n_groups; g++)
        copy_group(ts, &groups[g]);
    lvd_tensors_close(ts);
    *st = s;
    return 0;
}

void lvd_ckpt_state_free(lvd_ckpt_state *st)
{
    free(st->config);
    st->config = NULL;
}

int lvd_ckpt_export(const char *path, const lvd_param_layout *l, const float *data,
                    const char *config, lvd_error *err)
{
    if (config) {
        cJSON *c = cJSON_Parse(config);
        int ok = cJSON_IsObject(c);
        cJSON_Delete(c);
        if (!ok)
            return lvd_fail(err, "%s: config is not a JSON object", path);
    }
    lvd_ckpt_group g = {NULL, l, (float *)data};
    lvd_tensor *ts = NULL;
    size_t n = 0;
    char *names = NULL;
    if (collect(&g, 1, &ts, &n, &names, err) != 0)
        return lvd_error_prefix(err, "%s", path);
    remove_stale_temporaries(path);
    const char *meta[2] = {"config", config};
    int rc = lvd_safetensors_write(path, ts, n, meta, config ? 1 : 0, err);
    free(ts);
    free(names);
    return rc;
}

int lvd_ckpt_layout_from(const lvd_tensors *ts, const char *prefix, lvd_param_layout *l,
                         lvd_error *err)
{
    size_t len = strlen(prefix);
    int found = 0;
    for (size_t i = 0; i < lvd_tensors_count(ts); i++) {
        const lvd_tensor *t = lvd_tensors_at(ts, i);
        if (strncmp(t->name, prefix, len) != 0)
            continue;
        if (t->ndim > LVD_PARAM_MAX_DIMS)
            return lvd_fail(err, "tensor %s: %d dimensions (at most %d)", t->name, t->ndim,
                            LVD_PARAM_MAX_DIMS);
        if (lvd_param_layout_add(l, t->name + len, t->ndim, t->shape, err) != 0)
            return -1;
        found++;
    }
    if (!found)
        return lvd_fail(err, "no tensor named %s*", prefix);
    return 0;
}

int lvd_ckpt_read_group(const lvd_tensors *ts, const lvd_ckpt_group *g, lvd_error *err)
{
    if (check_groups(g, 1, err) != 0)
        return -1;
    name_list missing = {0}, wrong = {0};
    check_group(ts, g, 0, &missing, &wrong);
    if (missing.count || wrong.count) {
        char msg[sizeof err->msg];
        msg[0] = 0;
        report(msg, sizeof msg, "missing", &missing);
        report(msg, sizeof msg, "wrong shape:", &wrong);
        return lvd_fail(err, "tensors %s*: %s", prefix_of(g), msg);
    }
    copy_group(ts, g);
    return 0;
}
