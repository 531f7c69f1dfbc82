/* The output folder of train/stage/train_stage_internal.h: its paths, the checkpoint (metadata
 * first, then the whole state through train/checkpoint.h) and the teacher export. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/tensors.h"
#include "train/stage/train_stage_internal.h"

/* mkdir -p */
static int make_dirs(const char *path, lvd_error *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return lvd_fail(err, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        int end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return lvd_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
            if (end)
                break;
            *p = '/';
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return lvd_fail(err, "%s: not a folder", path);
    return 0;
}

int train_files_init(train_files *f, const char *out, lvd_error *err)
{
    if (make_dirs(out, err))
        return -1;
    if (!realpath(out, f->dir))
        return lvd_fail(err, "%s: %s", out, strerror(errno));
    snprintf(f->ckpt, sizeof f->ckpt, "%s/checkpoint.safetensors", f->dir);
    snprintf(f->backbone, sizeof f->backbone, "%s/teacher_backbone.safetensors", f->dir);
    snprintf(f->heads, sizeof f->heads, "%s/teacher_heads.safetensors", f->dir);
    return 0;
}

void train_ckpt_info_free(train_ckpt_info *info)
{
    cJSON_Delete(info->plan);
    info->plan = NULL;
}

int train_ckpt_info_read(const char *path, train_ckpt_info *info, int *found, lvd_error *err)
{
    memset(info, 0, sizeof *info);
    *found = access(path, F_OK) == 0;
    if (!*found)
        return 0;
    lvd_tensors *ts;
    if (lvd_tensors_open(path, &ts, err))
        return -1;
    const char *meta = lvd_tensors_metadata(ts, "lvd_checkpoint");
    cJSON *root = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(root, "step");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(config, "plan");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(config, "train_id");
    int rc = 0;
    if (!cJSON_IsNumber(step) || !cJSON_IsObject(plan) || !cJSON_IsNumber(id))
        rc = lvd_fail(err, "%s: not a checkpoint of lvd-train (no step, plan and train_id)", path);
    else {
        info->step = (int64_t)step->valuedouble;
        info->train_id = (int64_t)id->valuedouble;
        info->plan = cJSON_Duplicate(plan, 1);
    }
    cJSON_Delete(root);
    lvd_tensors_close(ts);
    return rc;
}

static int all_finite(const float *x, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    return !bad;
}

int train_ckpt_save(const train_files *f, train_model *t, const cJSON *plan, int64_t train_id,
                    uint64_t seed, lvd_error *err)
{
    lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
    int n = train_model_groups(t, g);
    for (int i = 0; i < n; i++)
        if (!all_finite(g[i].data, g[i].layout->total))
            return lvd_fail(err, "step %lld: %s* holds non-finite values: not saved",
                            (long long)train_model_get_step(t), g[i].prefix);
    cJSON *config = cJSON_CreateObject();
    cJSON_AddItemToObject(config, "plan", cJSON_Duplicate(plan, 1));
    cJSON_AddNumberToObject(config, "train_id", (double)train_id);
    lvd_ckpt_state st = {.step = train_model_get_step(t), .n_rng = 1, .rng = {seed}};
    st.config = cJSON_PrintUnformatted(config);
    cJSON_Delete(config);
    int rc = st.config ? lvd_ckpt_save(f->ckpt, g, n, &st, err)
                       : lvd_fail(err, "%s: out of memory", f->ckpt);
    free(st.config);
    return rc;
}

int train_ckpt_load(const train_files *f, train_model *t, int64_t *step, lvd_error *err)
{
    lvd_ckpt_group g[LVD_SSL_CKPT_GROUPS];
    int n = train_model_groups(t, g);
    lvd_ckpt_state st = {0};
    if (lvd_ckpt_load(f->ckpt, g, n, &st, err))
        return lvd_error_prefix(err, "%s", f->ckpt);
    lvd_ckpt_state_free(&st);
    train_model_set_step(t, st.step);
    *step = st.step;
    return 0;
}

int train_export(const train_files *f, train_model *t, const cJSON *plan, lvd_error *err)
{
    if (lvd_vit_train_save(train_model_output(t), f->backbone, err))
        return lvd_error_prefix(err, "%s", f->backbone);
    lvd_ckpt_group g[LVD_SSL_MAX_PARTS];
    int n = 0;
    for (int i = 0; i < train_model_n_parts(t); i++) {
        lvd_ssl_part p = train_model_get_part(t, i);
        if (strcmp(p.name, "dino_head") == 0)
            g[n++] = (lvd_ckpt_group){"dino_head.", p.layout, p.teacher};
        else if (strcmp(p.name, "ibot_head") == 0)
            g[n++] = (lvd_ckpt_group){"ibot_head.", p.layout, p.teacher};
    }
    if (n == 0)
        return 0; /* feature distillation: no heads */
    cJSON *config = cJSON_CreateObject();
    cJSON_AddItemToObject(config, "plan", cJSON_Duplicate(plan, 1));
    lvd_ckpt_state st = {.step = train_model_get_step(t)};
    st.config = cJSON_PrintUnformatted(config);
    cJSON_Delete(config);
    int rc = st.config ? lvd_ckpt_save(f->heads, g, n, &st, err)
                       : lvd_fail(err, "%s: out of memory", f->heads);
    free(st.config);
    return rc;
}
