/* lvd-distill end to end (train/stage/train_stage.h's stage with train/distill.h) on a manifest
 * that lvd-fetch builds from 28 x 28 grayscale PNGs: a teacher pretrained by lvd-train (dim 64, 2
 * blocks, separate iBOT head) distilled into a 1-block student by its heads (rows of v_train_steps,
 * the run of stage distill, the exported output model loaded by lvd_vit_load and registered by
 * --register, its heads file usable as a teacher again), a run stopped with
 * --stop-at and resumed that ends bitwise equal to the straight one, feature distillation of
 * the same teacher's backbone alone (no heads file, head columns NULL), --ibot-masks (iBOT rows
 * of the loader's masks), a checkpoint of another
 * teacher refused, and one-line errors on bad usage.
 * Usage: test_distill_stage LVD-DISTILL LVD-TRAIN LVD-FETCH. */
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "embed/vit.h"
#include "tests/check_run.h"
#include "tests/check.h"
#include "tests/train/optim_test.h"
#include "tests/train/train_test.h"
#include "train/distill.h"

static const char *distill_exe, *train_exe, *fetch_exe;
static char dir[512], db[600];

/* Runs exe with the NULL-ended arguments, stdout to /dev/null, stderr to err_path (NULL:
 * /dev/null); returns its exit status. */
static int run(const char *exe, const char *err_path, ...)
{
    const char *argv[128];
    int n = 0;
    argv[n++] = exe;
    va_list ap;
    va_start(ap, err_path);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 127;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *e = freopen(err_path ? err_path : "/dev/null", "w", stderr);
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)e;
        (void)o;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    return pid < 0 ? -1 : check_wait(pid);
}

/* The student options and the length of every distillation below. */
#define STUDENT                                                                                    \
    "--db", db, "--source", "fm", "--dim", "64", "--depth", "1", "--patch", "4", "--global-size",  \
        "28", "--local-size", "12", "--local-crops", "2", "--batch", "8", "--epoch-length", "4",   \
        "--warmup-epochs", "1", "--teacher-temp-warmup-epochs", "1", "--steps", "8", "--seed",     \
        "3", "--threads", "1", "--workers", "2", "--ckpt-every", "4", "--log-every", "1",          \
        "--no-progress"

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = check_slurp(a, &na), *y = check_slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* One integer from the manifest (-1 on failure). */
static long long query(const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return v;
}

static void path_in(char *buf, size_t n, const char *sub, const char *file)
{
    snprintf(buf, n, "%s/%s/%s", dir, sub, file);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_distill_stage LVD-DISTILL LVD-TRAIN LVD-FETCH\n");
        return 1;
    }
    distill_exe = argv[1];
    train_exe = argv[2];
    fetch_exe = argv[3];
    snprintf(dir, sizeof dir, "%s", ot_tmpdir());
    snprintf(db, sizeof db, "%s/m.db", dir);
    /* 64 images of two kinds of stripes and gradients. */
    tt_write_stripes(dir, "fm", 32, 7);
    tt_fetch(fetch_exe, db, "fm", dir, "fm", "");
    char teacher[700], a[700], b[700], f[700], p1[900], p2[900], errf[700];
    snprintf(teacher, sizeof teacher, "%s/teacher", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(f, sizeof f, "%s/f", dir);
    snprintf(errf, sizeof errf, "%s/err.txt", dir);

    /* The teacher: a short lvd-train run. */
    int rc =
        run(train_exe, errf, "--db", db, "--source", "fm", "--out", teacher, "--dim", "64",
            "--depth", "2", "--patch", "4", "--global-size", "28", "--local-size", "12",
            "--local-crops", "2", "--prototypes", "64", "--head-hidden", "64", "--head-bottleneck",
            "32", "--ibot-separate-head", "--ibot-prototypes", "48", "--batch", "8",
            "--epoch-length", "4", "--warmup-epochs", "1", "--teacher-temp-warmup-epochs", "1",
            "--steps", "8", "--threads", "1", "--no-progress", NULL);
    size_t n;
    char *msg = check_slurp(errf, &n);
    CHECK_MSG(rc == 0, "lvd-train exited %d: %s", rc, msg ? msg : "");
    free(msg);

    /* Head distillation, straight. */
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", a, "--register",
             "student-a", NULL);
    msg = check_slurp(errf, &n);
    CHECK_MSG(rc == 0, "lvd-distill exited %d: %s", rc, msg ? msg : "");
    free(msg);
    CHECK(query("SELECT COUNT(*) FROM v_runs WHERE stage = 'distill' AND status = 'ok'") == 1);
    CHECK(query("SELECT COUNT(*) FROM v_train_steps t JOIN v_runs r ON r.id = t.run_id"
                " WHERE r.stage = 'distill' AND loss_ibot > 0 AND grad_norm_ibot_head > 0"
                " AND n_masked = 8 * 2 * 49") == 8);
    CHECK(query("SELECT COUNT(*) FROM v_models WHERE name = 'student-a'") == 1);
    path_in(p1, sizeof p1, "a", LVD_DISTILL_TEACHER_BACKBONE);
    lvd_vit *v;
    lvd_error err;
    if (lvd_vit_load(p1, &v, &err) == 0) {
        CHECK(lvd_vit_get_info(v)->depth == 1 && lvd_vit_get_info(v)->dim == 64);
        lvd_vit_free(v);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    lvd_distill_teacher t;
    CHECK_MSG(lvd_distill_teacher_load(a, NULL, &t, &err) == 0, "%s", err.msg);
    CHECK(t.has_heads && t.ibot_separate && t.dino.cfg.out_dim == 64 && t.ibot.cfg.out_dim == 48 &&
          t.dino.cfg.in_dim == 64);
    lvd_distill_teacher_free(&t);
    printf("head distillation: 8 steps, run and rows recorded, output model registered\n");

    /* Stopped at step 4 and resumed: bitwise the straight run's output and checkpoint. */
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", b, "--stop-at", "4", NULL);
    CHECK_MSG(rc == 0, "lvd-distill --stop-at exited %d", rc);
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", b, NULL);
    CHECK_MSG(rc == 0, "lvd-distill (resumed) exited %d", rc);
    path_in(p2, sizeof p2, "b", LVD_DISTILL_TEACHER_BACKBONE);
    CHECK_MSG(same_file(p1, p2), "the resumed run's output model differs");
    path_in(p1, sizeof p1, "a", "checkpoint.safetensors");
    path_in(p2, sizeof p2, "b", "checkpoint.safetensors");
    lvd_tensors *ta, *tb;
    if (lvd_tensors_open(p1, &ta, &err) == 0 && lvd_tensors_open(p2, &tb, &err) == 0) {
        int same = lvd_tensors_count(ta) == lvd_tensors_count(tb);
        for (size_t i = 0; same && i < lvd_tensors_count(ta); i++) {
            const lvd_tensor *x = lvd_tensors_at(ta, i), *y = lvd_tensors_find(tb, x->name);
            same = y && x->numel == y->numel &&
                   memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)) == 0;
        }
        CHECK_MSG(same, "the resumed run's checkpoint differs");
        lvd_tensors_close(ta);
        lvd_tensors_close(tb);
    }
    printf("stop at 4 and resume: bitwise the straight run\n");

    /* --ibot-masks: the loader's masked patches only. */
    char mk[700];
    snprintf(mk, sizeof mk, "%s/m", dir);
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", mk, "--ibot-masks",
             "--steps", "4", NULL);
    CHECK_MSG(rc == 0, "lvd-distill --ibot-masks exited %d", rc);
    CHECK(query("SELECT COUNT(*) FROM v_train_steps t JOIN v_runs r ON r.id = t.train_id"
                " WHERE r.params LIKE '%/m\"%' AND n_masked > 0 AND n_masked < 8 * 2 * 49"
                " AND loss_ibot > 0") == 4);
    printf("--ibot-masks: the masked patches only\n");

    /* The same folder with another teacher is refused. */
    rc = run(distill_exe, errf, STUDENT, "--teacher", a, "--out", b, NULL);
    msg = check_slurp(errf, &n);
    CHECK_MSG(rc == 1 && msg && strstr(msg, "distill.teacher"), "exit %d: %s", rc, msg ? msg : "");
    free(msg);

    /* Feature distillation of the backbone alone. */
    path_in(p1, sizeof p1, "teacher", LVD_DISTILL_TEACHER_BACKBONE);
    rc = run(distill_exe, errf, STUDENT, "--teacher", p1, "--out", f, "--local-crops", "0", NULL);
    CHECK_MSG(rc == 0, "lvd-distill (features) exited %d", rc);
    CHECK(query("SELECT COUNT(*) FROM v_train_steps t JOIN v_runs r ON r.id = t.train_id"
                " WHERE json_extract(r.params, '$.plan.distill.mode') = 'auto'"
                " AND r.params LIKE '%/f\"%' AND loss_total > 0 AND loss_dino_local IS NULL"
                " AND grad_norm_dino_head IS NULL AND grad_norm_backbone > 0") == 8);
    path_in(p2, sizeof p2, "f", LVD_DISTILL_TEACHER_HEADS);
    CHECK(access(p2, F_OK) != 0);
    printf("feature distillation: 8 steps, no heads file\n");

    /* Bad usage. */
    rc = run(distill_exe, errf, "--db", db, "--source", "fm", "--out", f, NULL);
    msg = check_slurp(errf, &n);
    CHECK_MSG(rc == 2 && msg && strstr(msg, "--teacher is required"), "exit %d: %s", rc,
              msg ? msg : "");
    free(msg);
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", f, "--distill-mode",
             "logits", NULL);
    msg = check_slurp(errf, &n);
    CHECK_MSG(rc == 2 && msg && strstr(msg, "--distill-mode"), "exit %d: %s", rc, msg ? msg : "");
    free(msg);
    rc = run(distill_exe, errf, STUDENT, "--teacher", teacher, "--out", f, "--drop-path", "0.1",
             NULL);
    CHECK(rc == 2);
    check_rmtree(dir);
    return check_finish();
}
