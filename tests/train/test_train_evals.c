/* k-NN during training (lvd-train --eval-train / --eval-test / --eval-every,
 * train/stage/train_stage.h; rows in v_train_evals, migration 8): on a manifest of two labelled
 * sources that lvd-fetch builds from 28 x 28 grayscale PNGs (three classes of distinct patterns), a
 * tiny ViT trained 12 steps with an evaluation every 4 steps writes the rows of steps 4, 8 and 12
 * (k, setting, bank and test counts, growing training seconds), its last score equals lvd-eval
 * knn's on the registered teacher (the same protocol), and the evaluations leave the training
 * bitwise as it is without them. A run stopped at step 6 (--stop-at) evaluates at its end; a row
 * planted past its checkpoint is replaced when the rerun resumes, the rows up to the checkpoint are
 * kept, and the resumed training scores as the straight one. Bad usage is refused. The fmnist
 * preset's recipe (train/stage/train_stage.h) reaches the plan, explicit options override it, and
 * the other presets keep the reference's defaults. Usage: test_train_evals LVD-TRAIN LVD-FETCH
 * LVD-EVAL. */
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/train/train_test.h"

static const char *train_exe, *fetch_exe, *eval_exe;
static char dir[512], db[600];
static sqlite3 *sq;

/* The training options of every run: a ViT of width 64, depth 2, patch 4 on 28-pixel crops. */
#define COMMON                                                                                     \
    "--source fmtrain --dim 64 --depth 2 --heads 1 --patch 4 --global-size 28 --local-size 12 "    \
    "--local-crops 2 --prototypes 64 --head-hidden 64 --head-bottleneck 32 --batch 8 "             \
    "--epoch-length 4 --warmup-epochs 1 --teacher-temp-warmup-epochs 1 --layerscale 0.1 "          \
    "--seed 3 --threads 2 --workers 2 --ckpt-every 4 --log-every 2 --steps 12 --no-progress"
#define EVAL "--eval-train fmtrain --eval-test fmtest --eval-every 4"

/* Source name: n images per class of three classes (stripes, rings, a gradient), varied per
 * image, fetched with lvd-fetch. */
static void make_source(const char *name, int n, int salt)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mkdir(path, 0777);
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s/class%d", dir, name, c);
        mkdir(path, 0777);
        for (int i = 0; i < n; i++) {
            uint8_t px[28 * 28];
            int v = i * 7 + salt;
            for (int p = 0; p < 28 * 28; p++) {
                int x = p % 28, y = p / 28, dx = x - 14, dy = y - 14;
                int val = c == 0   ? ((x + v % 5) / 3 % 2) * 200
                          : c == 1 ? ((dx * dx + dy * dy) / (20 + v % 9) % 2) * 220
                                   : (x + y) * 4 + v % 30;
                px[p] = (uint8_t)(val + (p * (v + 3)) % 23);
            }
            snprintf(path, sizeof path, "%s/%s/class%d/%02d.png", dir, name, c, i);
            tt_write_png(path, px);
        }
    }
    tt_fetch(fetch_exe, db, name, dir, name, "");
}

/* Runs lvd-train with --db and the formatted options; stderr to dir/NAME.log. Returns its exit
 * status. */
static int train(const char *log, const char *fmt, ...)
{
    char opts[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(opts, sizeof opts, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' --db '%s' %s >/dev/null 2>'%s/%s.log'", train_exe, db, opts,
             dir, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The first column of the query's first row; -1e30 when there is none. */
static double sql_num(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = tt_first_row(sq, fmt, ap);
    va_end(ap);
    double v = st ? sqlite3_column_double(st, 0) : -1e30;
    sqlite3_finalize(st);
    return v;
}

static void sql_exec(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(sq, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", sql, msg);
        sqlite3_free(msg);
        check_failures++;
    }
}

/* The train id of the training in folder name. */
static int64_t train_id(const char *name)
{
    return (int64_t)sql_num("SELECT MIN(train) FROM v_train_evals WHERE out = '%s/%s'", dir, name);
}

static int same_bytes(const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s '%s/%s' '%s/%s'", dir, a, dir, b);
    return system(cmd) == 0;
}

/* A straight run with evaluations, its rows, lvd-eval's score of the same teacher, and a run
 * without evaluations ending bitwise the same. */
static void test_straight(void)
{
    CHECK(train("straight", COMMON " " EVAL " --out %s/straight --register evt", dir) == 0);
    int64_t t = train_id("straight");
    CHECK(t > 0);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld", (long long)t) == 3);
    for (int s = 4; s <= 12; s += 4)
        CHECK_MSG(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND step = %d AND "
                          "protocol = 'knn' AND setting = 'cls' AND k = 20 AND n_train = 30 AND "
                          "n_test = 15 AND top1 BETWEEN 0 AND 100 AND top5 >= top1 AND "
                          "top5 <= 100 AND seconds > 0 AND run_id = %lld",
                          (long long)t, s, (long long)t) == 1,
                  "step %d", s);
    /* seconds grow with the steps and stay within the training's steps' total */
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals a JOIN v_train_evals b ON a.train = b.train "
                  "AND b.step > a.step WHERE a.train = %lld AND b.seconds <= a.seconds",
                  (long long)t) == 0);
    CHECK(sql_num("SELECT seconds FROM v_train_evals WHERE train = %lld AND step = 12",
                  (long long)t) <=
          sql_num("SELECT SUM(seconds) FROM v_train_steps WHERE train_id = %lld", (long long)t) +
              1e-6);
    CHECK(sql_num("SELECT json_extract(params, '$.eval.k') FROM v_runs WHERE id = %lld",
                  (long long)t) == 20);
    CHECK(sql_num("SELECT json_extract(counts, '$.eval_seconds') > 0 FROM v_runs WHERE id = %lld",
                  (long long)t) == 1);

    /* The same protocol as lvd-eval knn on the final teacher (cls, T 0.07, at 28 px). */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' knn --db '%s' --model evt --train fmtrain --test fmtest --pool cls "
             "--resize 28 --crop 28 -k 20 >/dev/null 2>'%s/eval.log'",
             eval_exe, db, dir);
    CHECK(system(cmd) == 0);
    double a =
        sql_num("SELECT top1 FROM v_train_evals WHERE train = %lld AND step = 12", (long long)t);
    double b = sql_num("SELECT top1 FROM v_evals WHERE model = 'evt' AND k = 20");
    double a5 =
        sql_num("SELECT top5 FROM v_train_evals WHERE train = %lld AND step = 12", (long long)t);
    double b5 = sql_num("SELECT top5 FROM v_evals WHERE model = 'evt' AND k = 20");
    CHECK_MSG(a == b && a5 == b5, "in training %g / %g, lvd-eval %g / %g", a, a5, b, b5);

    /* Evaluating changes nothing in the training. */
    CHECK(train("plain", COMMON " --out %s/plain", dir) == 0);
    CHECK(
        same_bytes("straight/teacher_backbone.safetensors", "plain/teacher_backbone.safetensors"));
    CHECK(same_bytes("straight/teacher_heads.safetensors", "plain/teacher_heads.safetensors"));

    /* cls+mean features and limits on the bank and the test images. */
    CHECK(train("limits",
                COMMON " " EVAL " --stop-at 4 --eval-pool cls+mean --eval-limit 12 "
                       "--eval-test-limit 5 --eval-k 50 --out %s/limits",
                dir) == 0);
    int64_t l = train_id("limits");
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND step = 4 AND "
                  "setting = 'cls+mean' AND n_train = 12 AND n_test = 5 AND k = 12",
                  (long long)l) == 1);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld", (long long)l) == 1);
}

/* Stopped at step 6, a planted row past the checkpoint, resumed to the end. */
static void test_resume(void)
{
    CHECK(train("half", COMMON " " EVAL " --stop-at 6 --out %s/half", dir) == 0);
    int64_t t = train_id("half");
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld", (long long)t) == 2);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND step = 6",
                  (long long)t) == 1);
    double s6 =
        sql_num("SELECT seconds FROM v_train_evals WHERE train = %lld AND step = 6", (long long)t);
    /* as a crash after an evaluation past the checkpoint would leave it */
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO train_evals (train_id, run_id, step, seconds, k, top1, top5, n_train, "
             "n_test) VALUES (%lld, %lld, 8, 1, 20, -1, -1, 1, 1)",
             (long long)t, (long long)t);
    sql_exec(sql);
    CHECK(train("half2", COMMON " " EVAL " --out %s/half", dir) == 0);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld", (long long)t) == 4);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND top1 < 0",
                  (long long)t) == 0);
    /* rows up to the checkpoint are the first run's, the others the resumption's */
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND step <= 6 AND "
                  "run_id = %lld",
                  (long long)t, (long long)t) == 2);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld AND step > 6 AND "
                  "run_id > %lld",
                  (long long)t, (long long)t) == 2);
    CHECK(sql_num("SELECT seconds FROM v_train_evals WHERE train = %lld AND step = 8",
                  (long long)t) > s6);
    int64_t s = train_id("straight");
    for (int step = 4; step <= 12; step += 4)
        CHECK_MSG(sql_num("SELECT a.top1 = b.top1 AND a.top5 = b.top5 FROM v_train_evals a, "
                          "v_train_evals b WHERE a.train = %lld AND b.train = %lld AND "
                          "a.step = %d AND b.step = %d",
                          (long long)t, (long long)s, step, step) == 1,
                  "step %d", step);
    /* a rerun of the finished training evaluates nothing again */
    CHECK(train("half3", COMMON " " EVAL " --out %s/half", dir) == 0);
    CHECK(sql_num("SELECT COUNT(*) FROM v_train_evals WHERE train = %lld", (long long)t) == 4);
}

/* The fmnist preset's recipe as the plan records it, an explicit option overriding it, and the
 * reference's defaults for the other presets (the straight run: tiny's sizes given). */
static void test_preset(void)
{
    CHECK(train("preset",
                "--source fmtrain --arch fmnist --batch 8 --momentum 0.995 --stop-at 1 --seed 1 "
                "--threads 2 --no-progress --out %s/preset",
                dir) == 0);
    const char *plan = "(SELECT params FROM v_runs WHERE stage = 'train' AND "
                       "json_extract(params, '$.out') LIKE '%%/preset')";
    char q[1024];
#define PLAN(key) (snprintf(q, sizeof q, "SELECT json_extract(%s, '$.plan.%s')", plan, key), q)
    CHECK(sql_num(PLAN("arch.dim")) == 192);
    CHECK(sql_num(PLAN("arch.depth")) == 4);
    CHECK(sql_num(PLAN("arch.heads")) == 3);
    CHECK(sql_num(PLAN("arch.patch")) == 28);
    CHECK(fabs(sql_num(PLAN("arch.layerscale")) - 0.1) < 1e-7);
    CHECK(sql_num(PLAN("heads.prototypes")) == 1024);
    CHECK(sql_num(PLAN("crops.local_size")) == 28);
    CHECK(sql_num(PLAN("crops.local_crops")) == 4);
    CHECK(sql_num(PLAN("optim.steps")) == 1000);
    CHECK(sql_num(PLAN("optim.epoch_length")) == 100);
    CHECK(sql_num(PLAN("optim.warmup_epochs")) == 1);
    CHECK(sql_num(PLAN("optim.teacher_temp_warmup_epochs")) == 3);
    CHECK(sql_num(PLAN("optim.momentum")) == 0.995);
    CHECK(sql_num("SELECT json_extract(%s, '$.plan.optim.centering') = 'sinkhorn'", plan) == 1);
    plan = "(SELECT params FROM v_runs WHERE stage = 'train' AND "
           "json_extract(params, '$.out') LIKE '%%/straight')";
    CHECK(sql_num(PLAN("optim.momentum")) == 0.992);
    CHECK(sql_num(PLAN("optim.warmup_epochs")) == 1);
    CHECK(sql_num(PLAN("optim.teacher_temp_warmup_epochs")) == 1);
    CHECK(sql_num("SELECT json_extract(%s, '$.plan.optim.centering') = 'softmax'", plan) == 1);
#undef PLAN
}

static void test_usage(void)
{
    CHECK(train("u1", COMMON " --eval-train fmtrain --out %s/u", dir) == 2);
    CHECK(train("u2", COMMON " --eval-every 3 --out %s/u", dir) == 2);
    CHECK(train("u3", COMMON " " EVAL " --eval-pool mean --out %s/u", dir) == 2);
    CHECK(train("u4", COMMON " --eval-train fmtrain --eval-test nosuch --out %s/u", dir) == 1);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s LVD-TRAIN LVD-FETCH LVD-EVAL\n", argv[0]);
        return 2;
    }
    train_exe = argv[1];
    fetch_exe = argv[2];
    eval_exe = argv[3];
    tt_scratch("lvd-train-evals", dir, sizeof dir, db, sizeof db);
    setenv("OMP_WAIT_POLICY", "passive", 1);
    make_source("fmtrain", 10, 0);
    make_source("fmtest", 5, 1000);
    if (sqlite3_open(db, &sq) != SQLITE_OK)
        return 1;
    sqlite3_busy_timeout(sq, 60000);
    test_usage();
    test_straight();
    test_resume();
    test_preset();
    sqlite3_close(sq);
    if (check_failures == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    } else
        fprintf(stderr, "kept %s\n", dir);
    return check_finish();
}
