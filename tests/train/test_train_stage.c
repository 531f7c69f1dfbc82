/* lvd-train end to end (train/stage/train_stage.h) on a manifest that lvd-fetch builds from 28 x 28
 * grayscale PNGs, with a tiny ViT (dim 64, depth 2, patch 4, stochastic depth, separate iBOT
 * head): a straight run of 40 steps (rows of v_train_steps, the run record, the exported teacher
 * loaded by lvd_vit_load and registered through --register and lvd-model add, the heads file);
 * runs stopped and resumed that must end bitwise equal to it (--stop-at with the first half's
 * options from an INI file, kill -9 after a checkpoint, SIGTERM, a kill during a checkpoint
 * write by a file-size limit); a checkpoint of other options refused, one written before the
 * plan recorded the colour options resumed; a diverging lr stopped with the last checkpoint
 * kept; the curated set as input; one-line errors on bad usage and a missing source. Usage:
 * test_train_stage LVD-TRAIN LVD-FETCH LVD-MODEL. */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "embed/vit.h"
#include "store/tensors.h"
#include "tests/check_run.h"
#include "tests/check.h"
#include "tests/train/train_test.h"
#include "train/head.h"

static const char *train_exe, *fetch_exe, *model_exe;
static char dir[512], db[600];

/* The options of every run below (the straight run's); each adds --out and its own. */
static const char *const common[] = {"--dim",
                                     "64",
                                     "--depth",
                                     "2",
                                     "--heads",
                                     "1",
                                     "--patch",
                                     "4",
                                     "--global-size",
                                     "28",
                                     "--local-size",
                                     "12",
                                     "--local-crops",
                                     "2",
                                     "--prototypes",
                                     "128",
                                     "--head-hidden",
                                     "64",
                                     "--head-bottleneck",
                                     "32",
                                     "--ibot-separate-head",
                                     NULL,
                                     "--ibot-prototypes",
                                     "96",
                                     "--drop-path",
                                     "0.2",
                                     "--batch",
                                     "8",
                                     "--epoch-length",
                                     "8",
                                     "--warmup-epochs",
                                     "1",
                                     "--teacher-temp-warmup-epochs",
                                     "2",
                                     "--seed",
                                     "7",
                                     "--threads",
                                     "2",
                                     "--workers",
                                     "2",
                                     "--ckpt-every",
                                     "4",
                                     "--log-every",
                                     "1"};
#define N_COMMON (sizeof common / sizeof common[0])
#define STEPS    "40"

/* argv of lvd-train: the common options (when with_common), --steps, then the NULL-ended extras.
 * Returns the argument count; strings are borrowed. */
static int build_argv(const char **argv, int with_common, va_list ap)
{
    int n = 0;
    argv[n++] = train_exe;
    if (with_common) {
        argv[n++] = "--db";
        argv[n++] = db;
        argv[n++] = "--steps";
        argv[n++] = STEPS;
        for (size_t i = 0; i < N_COMMON; i++)
            if (common[i])
                argv[n++] = common[i];
    }
    for (const char *a; (a = va_arg(ap, const char *));)
        argv[n++] = a;
    argv[n] = NULL;
    return n;
}

/* Starts lvd-train; stderr goes to err_path (NULL: /dev/null) or, when pipe_fd is not NULL, to
 * a pipe of one page whose read end is stored there. fsize > 0 limits the size of files the
 * child writes (it dies of SIGXFSZ beyond). */
static pid_t spawn(const char *err_path, int *pipe_fd, rlim_t fsize, int with_common, va_list ap)
{
    const char *argv[160];
    build_argv(argv, with_common, ap);
    int p[2] = {-1, -1};
    if (pipe_fd && pipe(p) != 0)
        return -1;
    if (pipe_fd)
        fcntl(p[1], F_SETPIPE_SZ, 4096);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = pipe_fd
                     ? p[1]
                     : open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0666);
        dup2(fd, 2);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        if (fsize > 0) {
            struct rlimit r = {fsize, fsize}, none = {0, 0};
            setrlimit(RLIMIT_FSIZE, &r);
            setrlimit(RLIMIT_CORE, &none);
        }
        execv(train_exe, (char *const *)argv);
        _exit(127);
    }
    if (pipe_fd) {
        close(p[1]);
        *pipe_fd = p[0];
    }
    return pid;
}

/* Runs lvd-train with the common options and the NULL-ended extras; returns its status. */
static int train(const char *err_path, rlim_t fsize, ...)
{
    va_list ap;
    va_start(ap, fsize);
    pid_t pid = spawn(err_path, NULL, fsize, 1, ap);
    va_end(ap);
    return pid < 0 ? -1 : check_wait(pid);
}

/* The same without the common options. */
static int train_bare(const char *err_path, ...)
{
    va_list ap;
    va_start(ap, err_path);
    pid_t pid = spawn(err_path, NULL, 0, 0, ap);
    va_end(ap);
    return pid < 0 ? -1 : check_wait(pid);
}

static pid_t train_piped(int *fd, ...)
{
    va_list ap;
    va_start(ap, fd);
    pid_t pid = spawn(NULL, fd, 0, 1, ap);
    va_end(ap);
    return pid;
}

/* Reads fd line by line until a line holds want (returns 1) or the end (0). */
static int read_until(int fd, const char *want)
{
    char line[4096];
    size_t n = 0;
    char c;
    while (read(fd, &c, 1) == 1) {
        if (c != '\n') {
            if (n + 1 < sizeof line)
                line[n++] = c;
            continue;
        }
        line[n] = '\0';
        n = 0;
        if (want && strstr(line, want))
            return 1;
    }
    return 0;
}

/* 1 when path holds exactly one line containing want. */
static int one_line_with(const char *path, const char *want)
{
    size_t len;
    char *t = check_slurp(path, &len);
    int ok = t && len > 0 && strchr(t, '\n') == t + len - 1 && strstr(t, want);
    if (!ok)
        fprintf(stderr, "%s: expected one line with '%s', got: %s", path, want, t ? t : "(none)");
    free(t);
    return ok;
}

static int same_bytes(const char *a, const char *b)
{
    size_t la, lb;
    char *x = check_slurp(a, &la), *y = check_slurp(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* Every tensor of a and b present in both with the same shape and bits (metadata may differ). */
static int same_tensors(const char *a, const char *b)
{
    lvd_tensors *x, *y;
    lvd_error err;
    if (lvd_tensors_open(a, &x, &err))
        return 0;
    if (lvd_tensors_open(b, &y, &err)) {
        lvd_tensors_close(x);
        return 0;
    }
    int same = lvd_tensors_count(x) == lvd_tensors_count(y) && lvd_tensors_count(x) > 0;
    for (size_t i = 0; same && i < lvd_tensors_count(x); i++) {
        const lvd_tensor *t = lvd_tensors_at(x, i), *u = lvd_tensors_find(y, t->name);
        same = u && u->numel == t->numel && u->ndim == t->ndim &&
               memcmp(u->shape, t->shape, sizeof t->shape) == 0 &&
               memcmp(u->data, t->data, (size_t)t->numel * sizeof(float)) == 0;
        if (!same)
            fprintf(stderr, "%s and %s differ at %s\n", a, b, t->name);
    }
    lvd_tensors_close(x);
    lvd_tensors_close(y);
    return same;
}

/* Folder out's checkpoint opened, its path in path (PATH_LEN); NULL when none or unreadable. */
#define PATH_LEN 1024
static lvd_tensors *open_ckpt(const char *out, char *path)
{
    snprintf(path, PATH_LEN, "%s/checkpoint.safetensors", out);
    lvd_tensors *ts;
    lvd_error err;
    return lvd_tensors_open(path, &ts, &err) ? NULL : ts;
}

/* The step of the checkpoint in folder out (-1: none or unreadable). */
static long ckpt_step(const char *out)
{
    char path[PATH_LEN];
    lvd_tensors *ts = open_ckpt(out, path);
    if (!ts)
        return -1;
    const char *meta = lvd_tensors_metadata(ts, "lvd_checkpoint");
    const char *s = meta ? strstr(meta, "\"step\":") : NULL;
    long step = s ? strtol(s + 7, NULL, 10) : -1;
    lvd_tensors_close(ts);
    return step;
}

/* Rewrites out's checkpoint as lvd-train wrote it before the plan recorded the blur sigmas, the
 * jitter and the solarization probabilities: the same tensors, the plan without those keys. */
static int strip_new_plan_keys(const char *out)
{
    char path[PATH_LEN];
    lvd_tensors *ts = open_ckpt(out, path);
    if (!ts)
        return -1;
    cJSON *meta = cJSON_Parse(lvd_tensors_metadata(ts, "lvd_checkpoint"));
    cJSON *config = cJSON_GetObjectItemCaseSensitive(meta, "config");
    cJSON *plan = cJSON_GetObjectItemCaseSensitive(config, "plan");
    cJSON *crops = cJSON_GetObjectItemCaseSensitive(plan, "crops");
    int rc = -1;
    if (cJSON_IsObject(crops) && cJSON_HasObjectItem(crops, "jitter")) {
        cJSON_DeleteItemFromObjectCaseSensitive(crops, "blur_sigma");
        cJSON_DeleteItemFromObjectCaseSensitive(crops, "jitter");
        cJSON_DeleteItemFromObjectCaseSensitive(crops, "solarize");
        size_t n = lvd_tensors_count(ts);
        lvd_tensor *copy = malloc(n * sizeof *copy);
        for (size_t i = 0; i < n; i++)
            copy[i] = *lvd_tensors_at(ts, i);
        char *json = cJSON_PrintUnformatted(meta);
        const char *kv[2] = {"lvd_checkpoint", json};
        lvd_error err;
        rc = lvd_safetensors_write(path, copy, n, kv, 1, &err);
        free(json);
        free(copy);
    }
    cJSON_Delete(meta);
    lvd_tensors_close(ts);
    return rc;
}

static sqlite3 *sq;

/* The first column of the query's first row; -1 when there is none. */
static int64_t sql_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = tt_first_row(sq, fmt, ap);
    va_end(ap);
    int64_t v = st ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

/* The folder named name under dir. */
static const char *out_dir(const char *name)
{
    static char bufs[16][600];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static const char *file_in(const char *name, const char *file)
{
    static char bufs[16][700];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s/%s", dir, name, file);
    return b;
}

/* A resumed training in folder name ended bitwise as the straight one: checkpoint tensors,
 * exported files, and its 40 rows equal to the straight run's. */
static void check_equal_to_straight(const char *name)
{
    CHECK_MSG(same_tensors(file_in("straight", "checkpoint.safetensors"),
                           file_in(name, "checkpoint.safetensors")),
              "%s", name);
    CHECK_MSG(same_bytes(file_in("straight", "teacher_backbone.safetensors"),
                         file_in(name, "teacher_backbone.safetensors")),
              "%s", name);
    CHECK_MSG(same_tensors(file_in("straight", "teacher_heads.safetensors"),
                           file_in(name, "teacher_heads.safetensors")),
              "%s", name);
    CHECK_MSG(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", out_dir(name)) == 40,
              "%s", name);
    CHECK_MSG(sql_int("SELECT COUNT(*) FROM v_train_steps a JOIN v_train_steps b ON a.step = b.step"
                      " WHERE a.out = '%s' AND b.out = '%s' AND a.loss_total = b.loss_total"
                      " AND a.loss_ibot = b.loss_ibot AND a.lr = b.lr AND a.wd = b.wd"
                      " AND a.grad_norm_backbone = b.grad_norm_backbone"
                      " AND a.grad_norm_ibot_head = b.grad_norm_ibot_head"
                      " AND a.n_masked = b.n_masked",
                      out_dir("straight"), out_dir(name)) == 40,
              "%s", name);
}

static const char *last_run_status(const char *name)
{
    static char status[32];
    sqlite3_stmt *st;
    status[0] = '\0';
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT status FROM v_runs WHERE stage = 'train' AND json_extract(params, '$.out') ="
             " '%s' ORDER BY id DESC LIMIT 1",
             out_dir(name));
    if (sqlite3_prepare_v2(sq, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return status;
}

static void test_usage(void)
{
    char err[700];
    snprintf(err, sizeof err, "%s/usage.err", dir);
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("u"), "--arch", "bogus", NULL) == 2);
    CHECK(one_line_with(err, "--arch: unknown preset 'bogus'"));
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("u"), "--global-size", "30", NULL) == 2);
    CHECK(one_line_with(err, "not a multiple of the patch"));
    CHECK(train(err, 0, "--source", "fm", NULL) == 2);
    CHECK(one_line_with(err, "--out is required"));
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("u"), "--warmup-epochs", "9", NULL) ==
          2);
    CHECK(one_line_with(err, "longer than training"));
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("u"), "--lr", "x", NULL) == 2);
    CHECK(one_line_with(err, "--lr: 'x' is not"));
    CHECK(train(err, 0, "--source", "nosuch", "--out", out_dir("u"), NULL) == 1);
    CHECK(one_line_with(err, "nosuch"));
    CHECK(train(err, 0, "--curated", "nomodel", "--out", out_dir("u"), NULL) == 1);
    CHECK(one_line_with(err, "nomodel"));
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("u"), "--resume", NULL) == 1);
    CHECK(one_line_with(err, "holds no checkpoint"));
}

static void test_straight(void)
{
    CHECK(train(NULL, 0, "--source", "fm", "--out", out_dir("straight"), "--register", "tiny1",
                NULL) == 0);
    const char *sd = out_dir("straight");
    CHECK(ckpt_step(sd) == 40);
    CHECK(strcmp(last_run_status("straight"), "ok") == 0);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", sd) == 40);
    CHECK(sql_int("SELECT MIN(step) * 100 + MAX(step) FROM v_train_steps WHERE out = '%s'", sd) ==
          140);
    /* lr warm-up from 0 over 8 steps, every loss finite, images per second measured */
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s' AND step = 1 AND lr = 0",
                  sd) == 1);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s' AND loss_total > 0"
                  " AND loss_total < 100 AND grad_norm_backbone > 0 AND grad_norm_ibot_head > 0"
                  " AND images_per_s > 0 AND teacher_temp >= 0.04 AND momentum >= 0.992",
                  sd) == 40);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s' AND abs(loss_total -"
                  " (loss_dino_local + loss_dino_global + loss_koleo + loss_ibot)) < 1e-9",
                  sd) == 40);
    CHECK(sql_int("SELECT json_extract(counts, '$.end_step') FROM v_runs WHERE stage = 'train'"
                  " AND json_extract(params, '$.out') = '%s'",
                  sd) == 40);
    /* The export: official names, loadable by lvd_vit_load, equal to the checkpoint's teacher. */
    lvd_vit *vit;
    lvd_error err;
    const char *bb = file_in("straight", "teacher_backbone.safetensors");
    CHECK_MSG(lvd_vit_load(bb, &vit, &err) == 0, "%s", err.msg);
    if (vit) {
        const lvd_vit_info *a = lvd_vit_get_info(vit);
        CHECK(a->dim == 64 && a->depth == 2 && a->patch == 4 && a->grid == 7 && a->heads == 1);
        lvd_vit_free(vit);
    }
    lvd_tensors *x, *c;
    if (lvd_tensors_open(bb, &x, &err) == 0 &&
        lvd_tensors_open(file_in("straight", "checkpoint.safetensors"), &c, &err) == 0) {
        CHECK(lvd_tensors_find(x, "blocks.1.attn.qkv.weight") != NULL);
        for (size_t i = 0; i < lvd_tensors_count(x); i++) {
            const lvd_tensor *t = lvd_tensors_at(x, i);
            char name[256];
            snprintf(name, sizeof name, "teacher.backbone.%s", t->name);
            const lvd_tensor *u = lvd_tensors_find(c, name);
            CHECK_MSG(u && u->numel == t->numel &&
                          memcmp(u->data, t->data, (size_t)t->numel * sizeof(float)) == 0,
                      "%s", name);
        }
        lvd_tensors_close(c);
        lvd_tensors_close(x);
    }
    lvd_head h = {0};
    CHECK(lvd_head_load(&h, file_in("straight", "teacher_heads.safetensors"), "dino_head.", &err) ==
              0 &&
          h.cfg.out_dim == 128 && h.cfg.in_dim == 64);
    lvd_head_free(&h);
    CHECK(lvd_head_load(&h, file_in("straight", "teacher_heads.safetensors"), "ibot_head.", &err) ==
              0 &&
          h.cfg.out_dim == 96);
    lvd_head_free(&h);
    /* --register and lvd-model add take the file as it is. */
    CHECK(sql_int("SELECT COUNT(*) FROM v_models WHERE name = 'tiny1' AND path = '%s'", bb) == 1);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' add --db '%s' --name tiny2 '%s' >/dev/null", model_exe, db, bb);
    CHECK(system(cmd) == 0);
    CHECK(sql_int("SELECT dim FROM v_models WHERE name = 'tiny2'") == 64);
    /* A rerun has nothing to do, and the registration stands. */
    CHECK(train(NULL, 0, "--source", "fm", "--out", sd, "--register", "tiny1", NULL) == 0);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", sd) == 40);
}

/* First half from an INI file (its wrong --steps and --source overridden on the command line),
 * the rest from the command line: the checkpoint's options match, the result is the straight
 * run's. A checkpoint of other options is refused. */
static void test_resume(void)
{
    char ini[700], err[700];
    snprintf(ini, sizeof ini, "%s/train.ini", dir);
    snprintf(err, sizeof err, "%s/resume.err", dir);
    FILE *f = fopen(ini, "w");
    fprintf(f,
            "; lvd-train options\n[pipeline]\ndb = %s\n\n[fetch]\nsource = ignored\n\n[train]\n"
            "steps = 99\nsource = nosuch\n",
            db);
    for (size_t i = 0; i < N_COMMON; i += 2) {
        if (common[i + 1])
            fprintf(f, "%s = %s\n", common[i] + 2, common[i + 1]);
        else
            fprintf(f, "%s\n", common[i] + 2); /* a flag */
    }
    fclose(f);
    CHECK(train_bare(err, "--config", ini, "--steps", STEPS, "--source", "fm", "--out",
                     out_dir("resume"), "--stop-at", "6", NULL) == 0);
    CHECK(ckpt_step(out_dir("resume")) == 6);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", out_dir("resume")) == 6);
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("resume"), "--lr", "0.01", NULL) == 1);
    CHECK(one_line_with(err, "optim.lr_base is 0.004 in the checkpoint, 0.01 now"));
    /* A checkpoint from before the plan recorded the colour options stands for their defaults. */
    CHECK(strip_new_plan_keys(out_dir("resume")) == 0);
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("resume"), "--jitter", "0.5", NULL) ==
          1);
    CHECK(one_line_with(err, "crops.jitter is 0.8 in the checkpoint, 0.5 now"));
    CHECK(train(NULL, 0, "--source", "fm", "--out", out_dir("resume"), "--resume", NULL) == 0);
    check_equal_to_straight("resume");
}

/* kill -9 once the checkpoint of step 4 is on disk (the progress line says so). The child's
 * stderr is a one-page pipe that this process stops reading, so the child cannot finish before
 * the kill: 36 more progress lines do not fit. */
static void test_kill(void)
{
    int fd;
    pid_t pid = train_piped(&fd, "--source", "fm", "--out", out_dir("kill"), NULL);
    CHECK(pid > 0 && read_until(fd, "checkpoint step 4:") == 1);
    kill(pid, SIGKILL);
    CHECK(check_wait(pid) == 128 + SIGKILL);
    close(fd);
    long k = ckpt_step(out_dir("kill"));
    CHECK_MSG(k >= 4 && k < 40, "checkpoint step %ld", k);
    CHECK(strcmp(last_run_status("kill"), "running") == 0); /* until someone reaps it */
    CHECK(train(NULL, 0, "--source", "fm", "--out", out_dir("kill"), NULL) == 0);
    CHECK(sql_int("SELECT COUNT(*) FROM v_runs WHERE stage = 'train' AND status = 'interrupted'"
                  " AND json_extract(params, '$.out') = '%s'",
                  out_dir("kill")) == 1);
    check_equal_to_straight("kill");
}

/* SIGTERM after step 6: a checkpoint at the step reached, the run interrupted, exit 130. */
static void test_sigterm(void)
{
    int fd;
    pid_t pid = train_piped(&fd, "--source", "fm", "--out", out_dir("term"), NULL);
    CHECK(pid > 0 && read_until(fd, "step 6/40") == 1);
    kill(pid, SIGTERM);
    read_until(fd, NULL);
    close(fd);
    CHECK(check_wait(pid) == 130);
    long k = ckpt_step(out_dir("term"));
    CHECK_MSG(k >= 6 && k < 40, "checkpoint step %ld", k);
    CHECK(strcmp(last_run_status("term"), "interrupted") == 0);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", out_dir("term")) == k);
    CHECK(train(NULL, 0, "--source", "fm", "--out", out_dir("term"), NULL) == 0);
    check_equal_to_straight("term");
}

/* A run killed while writing a checkpoint (SIGXFSZ at half its size) leaves the previous one
 * loadable; the next run resumes from it and removes the partial file. */
static void test_kill_in_write(void)
{
    const char *out = out_dir("write");
    CHECK(train(NULL, 0, "--source", "fm", "--out", out, "--stop-at", "4", NULL) == 0);
    struct stat st;
    CHECK(stat(file_in("write", "checkpoint.safetensors"), &st) == 0);
    CHECK(train(NULL, (rlim_t)st.st_size / 2, "--source", "fm", "--out", out, NULL) ==
          128 + SIGXFSZ);
    CHECK(ckpt_step(out) == 4);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'checkpoint.safetensors.tmp.'", out);
    CHECK(system(cmd) == 0); /* the partial write is there */
    CHECK(train(NULL, 0, "--source", "fm", "--out", out, NULL) == 0);
    CHECK(system(cmd) != 0);
    check_equal_to_straight("write");
}

/* An absurd lr diverges: the run stops at the first non-finite step, naming it, with the
 * checkpoint of the step before kept (every step is checkpointed here). */
static void test_nan(void)
{
    char err[700];
    snprintf(err, sizeof err, "%s/nan.err", dir);
    CHECK(train(err, 0, "--source", "fm", "--out", out_dir("nan"), "--lr", "1e20", "--epoch-length",
                "2", "--ckpt-every", "1", "--no-progress", NULL) == 1);
    size_t len;
    char *t = check_slurp(err, &len);
    const char *line = t ? strstr(t, "lvd-train: step ") : NULL;
    long bad = line ? strtol(line + 16, NULL, 10) : -1;
    long k = ckpt_step(out_dir("nan"));
    CHECK_MSG(bad >= 2 && k == bad - 1 && strstr(line, "the last checkpoint") &&
                  (strstr(line, "nan") || strstr(line, "inf")),
              "%s", t ? t : "");
    free(t);
    CHECK(strcmp(last_run_status("nan"), "failed") == 0);
    CHECK(sql_int("SELECT COUNT(*) FROM v_train_steps WHERE out = '%s'", out_dir("nan")) ==
          bad - 1);
}

/* The curated set of a model as input: 20 images. */
static void test_curated(void)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO curated (model_id, image_id, source_id, method) SELECT"
             " (SELECT id FROM models WHERE name = 'tiny1'), id, source_id, 'seed' FROM images"
             " ORDER BY id LIMIT 20");
    CHECK(sqlite3_exec(sq, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(train(NULL, 0, "--curated", "tiny1", "--method", "seed", "--out", out_dir("cur"),
                "--stop-at", "1", NULL) == 0);
    CHECK(sql_int("SELECT json_extract(counts, '$.images') FROM v_runs WHERE stage = 'train'"
                  " AND json_extract(params, '$.out') = '%s'",
                  out_dir("cur")) == 20);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s LVD-TRAIN LVD-FETCH LVD-MODEL\n", argv[0]);
        return 2;
    }
    train_exe = argv[1];
    fetch_exe = argv[2];
    model_exe = argv[3];
    tt_scratch("lvd-train-test", dir, sizeof dir, db, sizeof db);
    /* The INI file's other sections name stages that lvd-run would find here. */
    char stages[2048];
    snprintf(stages, sizeof stages, "%s", fetch_exe);
    char *slash = strrchr(stages, '/');
    if (slash)
        *slash = '\0';
    setenv("LVD_STAGE_PATH", stages, 1);
    /* One compute thread on a shared machine: spinning OpenMP threads would only wait. */
    setenv("OMP_WAIT_POLICY", "passive", 1);
    tt_write_stripes(dir, "fm", 32, 7);
    tt_fetch(fetch_exe, db, "fm", dir, "fm", "");
    if (sqlite3_open(db, &sq) != SQLITE_OK)
        return 1;
    sqlite3_busy_timeout(sq, 60000);
    test_usage();
    test_straight();
    test_resume();
    test_kill();
    test_sigterm();
    test_kill_in_write();
    test_nan();
    test_curated();
    sqlite3_close(sq);
    if (!check_failures) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
    return check_finish();
}
