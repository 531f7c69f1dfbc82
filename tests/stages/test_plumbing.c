/* The stages' plumbing as a user meets it (issue 11, defects 6, 8, 9, 11), on a small manifest
 * (lvd-fetch over generated JPEGs, embeddings recorded as the embed stage does):
 *   plumbing           lvd-index --nprobe is taken and recorded; runs that killed index, dedup
 *                      and retrieve processes left 'running' are marked interrupted by the next
 *                      run of another stage; a second lvd-export into a folder another export
 *                      holds fails with a clear message.
 *   plumbing-readonly  lvd-status, lvd-query, lvd-report and lvd-export read a manifest on a
 *                      read-only filesystem (a read-only bind mount in a user namespace, made with
 *                      unshare; skipped where that is not allowed).
 * Usage: test_plumbing [--readonly] LVD-FETCH LVD-INDEX LVD-QUERY LVD-DEDUP LVD-RETRIEVE
 *        LVD-EXPORT LVD-STATUS LVD-REPORT */
#include <sys/file.h>

#include "tests/stages/stages_test.h"

#define DIM    16
#define N_POOL 12

enum { T_FETCH, T_INDEX, T_QUERY, T_DEDUP, T_RETRIEVE, T_EXPORT, T_STATUS, T_REPORT, T_COUNT };
static const char *tool[T_COUNT];
static char dir[256], db_path[320];

static char *slurp(const char *path)
{
    static char text[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    return text;
}

static int stage(int t, const char *a1, const char *a2, const char *a3, const char *a4)
{
    char *argv[] = {(char *)tool[t], "--db",     db_path,    "--model",  "synth",
                    (char *)a1,      (char *)a2, (char *)a3, (char *)a4, NULL};
    return st_run(argv, NULL);
}

static int fetch(const char *source, const char *role)
{
    return st_fetch(tool[T_FETCH], dir, db_path, source, role, source, NULL, NULL);
}

/* Pool, seed and eval images, their embeddings (unit noise vectors, two pool near-copies),
 * dedup and retrieval: a manifest with every view filled. */
static void build_manifest(void)
{
    static const char *const sources[3] = {"pool", "seed", "eval"};
    static const int counts[3] = {N_POOL, 2, 1};
    uint32_t seed = 1;
    for (int s = 0; s < 3; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, sources[s]);
        st_mkdir(path);
        for (int i = 0; i < counts[s]; i++) {
            snprintf(path, sizeof path, "%s/%s/%s%d.jpg", dir, sources[s], sources[s], i);
            CHECK(st_write_jpeg(path, 40, 36, seed++) == 0);
        }
        CHECK(fetch(sources[s], sources[s]) == 0);
    }
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, 'synth', "
                       "'external', 16, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    int64_t n = st_int(db, "SELECT COUNT(*) FROM images WHERE status = 'ok'");
    CHECK(n == N_POOL + 3);
    float rows[(N_POOL + 3) * DIM];
    int64_t ids[N_POOL + 3];
    for (int64_t i = 0; i < n; i++) {
        ids[i] = st_int(db,
                        "SELECT id FROM images WHERE status = 'ok' ORDER BY id LIMIT 1 "
                        "OFFSET %lld",
                        (long long)i);
        double ss = 0;
        uint64_t base = i == 1 ? 0 : (uint64_t)i; /* pool image 1 is a copy of 0 */
        for (int j = 0; j < DIM; j++) {
            rows[i * DIM + j] = (float)(st_noise(base + 1, j) + (i == 1 ? 0.001 : 0));
            ss += rows[i * DIM + j] * rows[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++)
            rows[i * DIM + j] = (float)(rows[i * DIM + j] / sqrt(ss));
    }
    char npy[512];
    snprintf(npy, sizeof npy, "%s/emb.npy", dir);
    CHECK(st_add_embeddings(db, 1, npy, rows, ids, n, DIM) == 0);
    sqlite3_close(db);
    CHECK(stage(T_INDEX, NULL, NULL, NULL, NULL) == 0);
    CHECK(stage(T_DEDUP, NULL, NULL, NULL, NULL) == 0);
    CHECK(stage(T_RETRIEVE, "--per-seed", "2", NULL, NULL) == 0);
}

/* Defect 6: --nprobe was in --help but refused. */
static void test_nprobe(sqlite3 *db)
{
    CHECK(stage(T_INDEX, "--nprobe", "3", NULL, NULL) == 0);
    CHECK(st_int(db, "SELECT json_extract(params, '$.nprobe') FROM runs WHERE stage = 'index' "
                     "ORDER BY id DESC LIMIT 1") == 3);
}

/* Defect 8: what a killed run leaves ('running', no process) is marked by the next run of any
 * other stage. */
static void test_dead_runs(sqlite3 *db)
{
    static const char *const dead[3] = {"index", "dedup", "retrieve"};
    static const int next[3] = {T_DEDUP, T_RETRIEVE, T_INDEX};
    for (int k = 0; k < 3; k++) {
        CHECK(st_int(db, "INSERT INTO runs (stage) VALUES ('%s') RETURNING id", dead[k]) > 0);
        CHECK(st_int(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == 1);
        CHECK(stage(next[k], next[k] == T_RETRIEVE ? "--per-seed" : NULL, "2", NULL, NULL) == 0);
        CHECK_MSG(st_int(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == 0,
                  "a dead %s run is still 'running' after the next run", dead[k]);
        CHECK(st_int(db, "SELECT COUNT(*) FROM runs WHERE stage = '%s' AND status = 'interrupted'",
                     dead[k]) == 1);
    }
}

/* Defect 9: two exports into one folder. The first holds the folder's lock while it writes. */
static void test_export_lock(void)
{
    char out[512], log[512];
    snprintf(out, sizeof out, "%s/export", dir);
    snprintf(log, sizeof log, "%s/export.log", dir);
    st_mkdir(out);
    char *argv[] = {(char *)tool[T_EXPORT], "--db", db_path, "--out", out, NULL};
    int fd = open(out, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    int rc = check_wait(check_spawn(CHECK_LOG_QUIET, argv, log));
    CHECK_MSG(rc == 1, "an export into a folder another export holds exited %d", rc);
    CHECK_MSG(strstr(slurp(log), "another lvd-export is writing into this folder") != NULL, "%s",
              slurp(log));
    close(fd);
    CHECK(check_wait(check_spawn(CHECK_LOG_QUIET, argv, log)) == 0);
}

/* 0 when the user namespace and bind mount work here. */
static int can_unshare(void)
{
    char *argv[] = {"/usr/bin/unshare", "-rm", "/bin/true", NULL};
    return access(argv[0], X_OK) == 0 ? st_run(argv, NULL) : -1;
}

/* Runs a tool (NULL-terminated arguments) with the folder ro mounted read-only. */
static int run_readonly(const char *ro, const char *log, ...)
{
    char *argv[32] = {"/usr/bin/unshare",
                      "-rm",
                      "/bin/sh",
                      "-c",
                      "mount --bind \"$0\" \"$0\" && mount -o remount,ro,bind \"$0\" \"$0\" && "
                      "exec \"$@\"",
                      (char *)ro};
    int n = 6;
    va_list ap;
    va_start(ap, log);
    for (char *a; n < 31 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return check_wait(check_spawn(CHECK_LOG_QUIET, argv, log));
}

/* Defect 11: read-only tools on a read-only filesystem. */
static void test_readonly(void)
{
    char ro[512], db[600], log[600], out[600], report[600], id[32], cmd[2600];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    snprintf(db, sizeof db, "%s/m.db", ro);
    snprintf(log, sizeof log, "%s/ro.log", dir);
    snprintf(out, sizeof out, "%s/ro-export", dir);
    snprintf(report, sizeof report, "%s/ro-report", dir);
    st_mkdir(ro);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", db_path, db);
    CHECK(system(cmd) == 0);
    snprintf(id, sizeof id, "%d", 1);
    int rc = run_readonly(ro, log, tool[T_STATUS], "--db", db, NULL);
    CHECK_MSG(rc == 0, "lvd-status on a read-only filesystem exited %d: %s", rc, slurp(log));
    rc = run_readonly(ro, log, tool[T_QUERY], "--db", db, "--model", "synth", "--id", id, NULL);
    CHECK_MSG(rc == 0, "lvd-query on a read-only filesystem exited %d: %s", rc, slurp(log));
    rc = run_readonly(ro, log, tool[T_EXPORT], "--db", db, "--out", out, NULL);
    CHECK_MSG(rc == 0, "lvd-export on a read-only filesystem exited %d: %s", rc, slurp(log));
    rc = run_readonly(ro, log, tool[T_REPORT], "--db", db, "--out", report, NULL);
    CHECK_MSG(rc == 0, "lvd-report on a read-only filesystem exited %d: %s", rc, slurp(log));
    snprintf(cmd, sizeof cmd, "%s/m.db-wal", ro);
    CHECK(access(cmd, F_OK) != 0);
    /* A writing stage says why it cannot. */
    rc = run_readonly(ro, log, tool[T_INDEX], "--db", db, "--model", "synth", NULL);
    CHECK(rc == 1 && strstr(slurp(log), "Read-only file system") != NULL);
    /* A copy with transactions still in its write-ahead log (no -shm): reading it immutable would
     * miss them, so the tool says what to do. */
    sqlite3 *w;
    CHECK(sqlite3_open(db_path, &w) == SQLITE_OK);
    CHECK(sqlite3_exec(w,
                       "PRAGMA wal_autocheckpoint = 0; INSERT INTO sources (name, role) VALUES "
                       "('late', 'pool')",
                       NULL, NULL, NULL) == SQLITE_OK);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/w.db' && cp '%s-wal' '%s/w.db-wal'", db_path, ro,
             db_path, ro);
    CHECK(system(cmd) == 0);
    sqlite3_close(w);
    snprintf(db, sizeof db, "%s/w.db", ro);
    rc = run_readonly(ro, log, tool[T_STATUS], "--db", db, NULL);
    CHECK_MSG(rc == 1 && strstr(slurp(log), "write-ahead log") != NULL, "exit %d: %s", rc,
              slurp(log));
}

int main(int argc, char **argv)
{
    int readonly = argc > 1 && strcmp(argv[1], "--readonly") == 0;
    if (argc != 1 + readonly + T_COUNT) {
        fprintf(stderr, "usage: test_plumbing [--readonly] LVD-FETCH LVD-INDEX LVD-QUERY "
                        "LVD-DEDUP LVD-RETRIEVE LVD-EXPORT LVD-STATUS LVD-REPORT\n");
        return 1;
    }
    if (readonly && can_unshare() != 0) {
        printf("SKIP: no user namespace with mounts here (unshare -rm)\n");
        return 77;
    }
    for (int t = 0; t < T_COUNT; t++)
        tool[t] = argv[1 + readonly + t];
    snprintf(dir, sizeof dir, "%s/lvd-plumbing-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    build_manifest();
    if (readonly) {
        test_readonly();
    } else {
        sqlite3 *db;
        CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        test_nprobe(db);
        test_dead_runs(db);
        sqlite3_close(db);
        test_export_lock();
    }
    st_remove_or_keep(dir);
    return check_finish();
}
