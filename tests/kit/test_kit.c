/* The stage kit (kit/kit.h): option tables (every kind, the one error shape, --help, operands),
 * opening manifests in each mode (missing, foreign, junk, read-only never creating), stage locks
 * through other paths to the file from another process, run locks (a live run is left alone, a
 * dead one is marked interrupted by the next run of any stage), folder locks, run records and
 * lookups. */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "kit/kit.h"
#include "tests/check.h"

static char dir[] = "/tmp/lvd-kit-test-XXXXXX";

static const char *path_in(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* Runs lvd_kit_parse with stderr captured; returns its result, the message in msg. */
static int parse_capture(const lvd_kit_cmd *c, int argc, char **argv, char *msg, size_t size)
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path_in("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    int rc = lvd_kit_parse(c, argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path_in("stderr.txt"), "r");
    size_t n = f ? fread(msg, 1, size - 1, f) : 0;
    msg[n] = '\0';
    if (f)
        fclose(f);
    return rc;
}

typedef struct opts {
    const char *db, *name;
    int k, flag;
    int64_t big;
    size_t bytes;
    uint32_t small;
    float t;
    double aspect;
    const char *const *operand;
    int n_operands;
} opts;

static int twice(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    double v;
    if (lvd_kit_number(o, value, &v, err))
        return -1;
    *(int *)o->dest = (int)(2 * v);
    return 0;
}

/* Parses the NULL-terminated arguments into a fresh o; returns the parse result. */
static int parse_args(opts *o, int *fn_value, char *msg, size_t size, ...)
{
    *o = (opts){.k = 64, .bytes = (size_t)4 << 30, .t = 0.5f, .aspect = 10, .small = 7};
    *fn_value = 0;
    const lvd_kit_opt table[] = {
        LVD_OPT_STR("db", "DB", o->db, "manifest", .required = 1),
        LVD_OPT_STR("name", "NAME", o->name, "a name"),
        LVD_OPT_INT("k", "K", o->k, 1, 4096, "neighbours"),
        LVD_OPT_FLAG("full", o->flag, 1, "a flag"),
        LVD_OPT_INT("big", "N", o->big, 1, INT64_MAX, "big"),
        LVD_OPT_INT("memory", "MB", o->bytes, 1, 1 << 20, "megabytes", .scale = 1 << 20),
        LVD_OPT_INT("small", "N", o->small, 0, UINT32_MAX, "unsigned"),
        LVD_OPT_NUM("threshold", "T", o->t, -1, 1, "a float"),
        LVD_OPT_NUM("aspect", "X", o->aspect, 1, 100, "0: off", .zero = 1),
        LVD_OPT_FN("twice", "X", *fn_value, twice, "custom", .lo = 0, .hi = 10, .def = "0"),
        LVD_OPT_END,
    };
    const lvd_kit_operands files = {"at least one FILE", 1, 2, &o->operand, &o->n_operands};
    const lvd_kit_cmd c = {"lvd-test", "--db DB [options] FILE...\n\nWhat it does.", table,
                           .operands = &files};
    static char *argv[32]; /* the operands point into it after the call */
    argv[0] = "lvd-test";
    int argc = 1;
    va_list ap;
    va_start(ap, size);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    return parse_capture(&c, argc, argv, msg, size);
}

static void check_error(const char *want, const char *msg)
{
    CHECK_MSG(strstr(msg, want) != NULL && strncmp(msg, "lvd-test: ", 10) == 0 &&
                  strstr(msg, " (see --help)\n") != NULL,
              "wanted 'lvd-test: %s ... (see --help)', got '%s'", want, msg);
}

static void test_options(void)
{
    opts o;
    int fnv;
    char msg[1024];
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "in", "--db", "x.db", "-k", "12", "--full",
                     "--memory=3", "--threshold", "-0.25", "--small", "4000000000", "--aspect", "0",
                     "--twice", "2.5", "--big", "9000000000", "in2", NULL) == 0);
    CHECK(strcmp(o.db, "x.db") == 0 && o.k == 12 && o.flag == 1 && o.bytes == (size_t)3 << 20);
    CHECK(o.t == -0.25f && o.small == 4000000000u && o.aspect == 0 && fnv == 5);
    CHECK(o.big == 9000000000LL);
    CHECK(o.n_operands == 2 && strcmp(o.operand[0], "in") == 0 && strcmp(o.operand[1], "in2") == 0);
    /* Defaults stay; "--" ends the options. */
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--", "--k", NULL) == 0);
    CHECK(o.k == 64 && o.n_operands == 1 && strcmp(o.operand[0], "--k") == 0);
    /* One shape for every usage error. */
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--bogus", "in", NULL) == -1);
    check_error("--bogus: unknown option", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--bogus=3", "in", NULL) == -1);
    check_error("--bogus: unknown option", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "in", "--db", NULL) == -1);
    check_error("--db: missing value", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "-k", "0", "in", NULL) == -1);
    check_error("-k: '0' is not an integer in [1, 4096]", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "-k", "3x", "in", NULL) == -1);
    check_error("-k: '3x' is not an integer", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--big", "0", "in", NULL) == -1);
    check_error("--big: '0' is not an integer >= 1", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--threshold", "nan", "in", NULL) ==
          -1);
    check_error("--threshold: 'nan' is not a number in [-1, 1]", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--aspect", "0.5", "in", NULL) == -1);
    check_error("--aspect: '0.5' is not 0 or a number in [1, 100]", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--twice", "11", "in", NULL) == -1);
    check_error("--twice: '11' is not a number in [0, 10]", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "--full=1", "in", NULL) == -1);
    check_error("--full: takes no value", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "in", NULL) == -1);
    check_error("--db is required", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", NULL) == -1);
    check_error("expected at least one FILE", msg);
    CHECK(parse_args(&o, &fnv, msg, sizeof msg, "--db", "x", "a", "b", "c", NULL) == -1);
    check_error("unexpected argument 'c'", msg);
    /* --help wins wherever it stands, before anything is applied. */
    fflush(stdout);
    int saved = dup(1);
    int fd = open(path_in("help.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    int rc = parse_args(&o, &fnv, msg, sizeof msg, "-k", "0", "--help", NULL);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(rc == 1 && o.k == 64);
    FILE *f = fopen(path_in("help.txt"), "r");
    char help[4096];
    size_t n = f ? fread(help, 1, sizeof help - 1, f) : 0;
    help[n] = '\0';
    if (f)
        fclose(f);
    CHECK(strstr(help, "usage: lvd-test --db DB [options] FILE...\n\nWhat it does.\n\n") == help);
    CHECK(strstr(help, "  -k K                neighbours (default 64)\n") != NULL);
    CHECK(strstr(help, "  --memory MB         megabytes (default 4096)\n") != NULL);
    CHECK(strstr(help, "  --threshold T       a float (default 0.5)\n") != NULL);
    CHECK(strstr(help, "  --db DB             manifest\n") != NULL); /* required: no default */
    CHECK(strstr(help, "  --twice X           custom (default 0)\n") != NULL);
    CHECK(strstr(help, "  --help              this text\n") != NULL);
    CHECK(strstr(help, "Exit status 0 on success, 1 on failure, 2 on bad usage.\n") != NULL);
    /* An option applied later, from a check, gives the same message. */
    int later = 0;
    const lvd_kit_opt count = LVD_OPT_INT("clusters", "K", later, 1, 9, "");
    lvd_error err;
    CHECK(lvd_kit_set(&count, "10", &err) == -1);
    CHECK_MSG(strcmp(err.msg, "--clusters: '10' is not an integer in [1, 9]") == 0, "%s", err.msg);
    CHECK(lvd_kit_set(&count, "9", &err) == 0 && later == 9);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void make_foreign(const char *p)
{
    sqlite3 *db;
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE notes(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

static void test_open_modes(void)
{
    lvd_manifest *m;
    lvd_error err;
    const char *missing = path_in("missing.db");
    CHECK(lvd_kit_open(missing, LVD_MANIFEST_READ, NULL, &m, &err) == -1 && !m);
    CHECK_MSG(strstr(err.msg, "missing.db: no such manifest") != NULL, "%s", err.msg);
    CHECK(lvd_kit_open(missing, LVD_MANIFEST_WRITE, NULL, &m, &err) == -1);
    CHECK_MSG(strstr(err.msg, "missing.db: no such manifest") != NULL, "%s", err.msg);
    CHECK(!file_exists(missing));
    const char *foreign = path_in("foreign.db");
    make_foreign(foreign);
    for (int mode = LVD_MANIFEST_CREATE; mode <= LVD_MANIFEST_READ; mode++) {
        CHECK(lvd_kit_open(foreign, (lvd_manifest_mode)mode, NULL, &m, &err) == -1);
        CHECK_MSG(strstr(err.msg, "foreign.db: not an lvd manifest") != NULL, "%s", err.msg);
    }
    sqlite3 *db;
    CHECK(sqlite3_open(foreign, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master", -1, &st, NULL) == 0);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1); /* nothing added */
    sqlite3_finalize(st);
    sqlite3_close(db);
    const char *junk = path_in("junk.db");
    FILE *f = fopen(junk, "w");
    fputs("not a database at all, but long enough to be read as one .........................", f);
    fclose(f);
    CHECK(lvd_kit_open(junk, LVD_MANIFEST_READ, NULL, &m, &err) == -1);
    CHECK_MSG(strstr(err.msg, "junk.db: not an SQLite database") != NULL, "%s", err.msg);
    CHECK(lvd_kit_open(junk, LVD_MANIFEST_WRITE, NULL, &m, &err) == -1);
    CHECK_MSG(strstr(err.msg, "junk.db: not an SQLite database") != NULL, "%s", err.msg);
    /* A real one: read-only handles read, never write or record runs. */
    const char *good = path_in("good.db");
    CHECK(lvd_kit_open(good, LVD_MANIFEST_CREATE, NULL, &m, &err) == 0);
    lvd_manifest_close(m);
    CHECK(lvd_kit_open(good, LVD_MANIFEST_READ, NULL, &m, &err) == 0 && lvd_manifest_readonly(m));
    int64_t run;
    CHECK(lvd_kit_run_start(m, "x", NULL, &run, &err) == -1);
    CHECK(lvd_manifest_exec(m, "INSERT INTO sources(name, role) VALUES ('a', 'pool')", &err) == -1);
    CHECK(lvd_manifest_lock(m, "fetch", &err) == -1);
    lvd_manifest_close(m);
}

/* Runs fn in a child process; returns its exit status. */
static int in_child(int (*fn)(const char *), const char *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return check_wait(pid);
}

/* 0 when the fetch lock is refused through path as another process holds it, 1 otherwise. */
static int lock_refused(const char *path)
{
    lvd_manifest *m;
    lvd_error err;
    if (lvd_kit_open(path, LVD_MANIFEST_WRITE, "fetch", &m, &err) == 0) {
        lvd_manifest_close(m);
        return 1;
    }
    if (strstr(err.msg, "another lvd-fetch is working on this manifest"))
        return 0;
    fprintf(stderr, "%s\n", err.msg);
    return 2;
}

static int lock_taken(const char *path)
{
    return lock_refused(path) == 1;
}

static void test_stage_lock(void)
{
    /* SQLite refuses a WAL database with several hard links, so the other names are a symlink
     * to the file and a path through a symlinked folder. */
    const char *db = path_in("locked.db"), *sym = path_in("sym.db");
    const char *via = path_in("folder-link/locked.db");
    lvd_manifest *m, *other;
    lvd_error err;
    CHECK(lvd_kit_open(db, LVD_MANIFEST_CREATE, "fetch", &m, &err) == 0);
    CHECK(symlink(db, sym) == 0 && symlink(dir, path_in("folder-link")) == 0);
    CHECK(in_child(lock_refused, db) == 0);
    CHECK(in_child(lock_refused, sym) == 0);
    CHECK(in_child(lock_refused, via) == 0);
    /* Another handle of this process is refused too; another stage's lock is free. */
    CHECK(lvd_kit_open(sym, LVD_MANIFEST_WRITE, "fetch", &other, &err) == -1);
    CHECK(lvd_kit_open(sym, LVD_MANIFEST_WRITE, "embed", &other, &err) == 0);
    lvd_manifest_close(other);
    lvd_manifest_close(m);
    CHECK(in_child(lock_taken, sym) == 1);
}

/* A child that starts a run and stays alive until killed (it writes its run id to the pipe). */
static pid_t start_runner(const char *db, int64_t *run)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        lvd_manifest *m;
        lvd_error err;
        int64_t id = -1;
        if (lvd_kit_open(db, LVD_MANIFEST_WRITE, NULL, &m, &err) == 0)
            lvd_kit_run_start(m, "index", NULL, &id, &err);
        if (write(p[1], &id, sizeof id) != (ssize_t)sizeof id)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    CHECK(read(p[0], run, sizeof *run) == (ssize_t)sizeof *run && *run > 0);
    close(p[0]);
    return pid;
}

static char *run_status(lvd_manifest *m, int64_t run)
{
    static char status[32];
    sqlite3_stmt *st;
    snprintf(status, sizeof status, "?");
    if (sqlite3_prepare_v2(lvd_manifest_db(m), "SELECT status FROM runs WHERE id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return status;
}

static void test_run_locks(void)
{
    const char *db = path_in("runs.db");
    lvd_manifest *m;
    lvd_error err;
    CHECK(lvd_kit_open(db, LVD_MANIFEST_CREATE, NULL, &m, &err) == 0);
    /* What a killed process leaves: a row 'running' that nobody holds. */
    CHECK(lvd_manifest_exec(m, "INSERT INTO runs(stage) VALUES ('dedup')", &err) == 0);
    int64_t dead = sqlite3_last_insert_rowid(lvd_manifest_db(m));
    int64_t live;
    pid_t runner = start_runner(db, &live);
    int64_t mine;
    CHECK(lvd_kit_run_start(m, "retrieve", NULL, &mine, &err) == 0);
    CHECK(strcmp(run_status(m, dead), "interrupted") == 0);
    CHECK(strcmp(run_status(m, live), "running") == 0); /* its process lives */
    int n = -1;
    CHECK(lvd_manifest_reap(m, &n, &err) == 0 && n == 0);
    CHECK(strcmp(run_status(m, mine), "running") == 0); /* this handle holds it */
    kill(runner, SIGKILL);
    check_wait(runner);
    CHECK(lvd_manifest_reap(m, &n, &err) == 0 && n == 1);
    CHECK(strcmp(run_status(m, live), "interrupted") == 0);
    /* The record: ok from rc 0, failed keeps the stage's message, an explicit status. */
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "rows", 3);
    CHECK(lvd_kit_run_finish(m, mine, 0, NULL, counts, &err) == 0);
    CHECK(strcmp(run_status(m, mine), "ok") == 0);
    int64_t failed;
    CHECK(lvd_kit_run_start(m, "retrieve", NULL, &failed, &err) == 0);
    lvd_fail(&err, "the stage's own failure");
    CHECK(lvd_kit_run_finish(m, failed, -1, NULL, NULL, &err) == -1);
    CHECK(strcmp(err.msg, "the stage's own failure") == 0);
    CHECK(strcmp(run_status(m, failed), "failed") == 0);
    int64_t stopped;
    CHECK(lvd_kit_run_start(m, "fetch", NULL, &stopped, &err) == 0);
    CHECK(lvd_kit_run_finish(m, stopped, 0, "interrupted", NULL, &err) == 0);
    CHECK(strcmp(run_status(m, stopped), "interrupted") == 0);
    /* A handle closed with its run unfinished leaves it to the next reaper. */
    int64_t left;
    CHECK(lvd_kit_run_start(m, "index", NULL, &left, &err) == 0);
    lvd_manifest_close(m);
    CHECK(lvd_kit_open(db, LVD_MANIFEST_WRITE, NULL, &m, &err) == 0);
    CHECK(lvd_manifest_reap(m, &n, &err) == 0 && n == 1);
    CHECK(strcmp(run_status(m, left), "interrupted") == 0);
    lvd_manifest_close(m);
}

static int dir_refused(const char *path)
{
    int fd;
    lvd_error err;
    if (lvd_kit_lock_dir(path, "lvd-export", &fd, &err) == 0) {
        close(fd);
        return 1;
    }
    return strstr(err.msg, "another lvd-export is writing into this folder") ? 0 : 2;
}

static void test_dir_lock(void)
{
    const char *out = path_in("out"), *sym = path_in("out-link");
    CHECK(mkdir(out, 0755) == 0 && symlink(out, sym) == 0);
    int fd;
    lvd_error err;
    CHECK(lvd_kit_lock_dir(out, "lvd-export", &fd, &err) == 0);
    CHECK(in_child(dir_refused, sym) == 0);
    close(fd);
    CHECK(in_child(dir_refused, sym) == 1);
    CHECK(lvd_kit_lock_dir(path_in("nope"), "lvd-export", &fd, &err) == -1);
}

static void test_lookups(void)
{
    const char *db = path_in("lookup.db");
    lvd_manifest *m;
    lvd_error err;
    CHECK(lvd_kit_open(db, LVD_MANIFEST_CREATE, NULL, &m, &err) == 0);
    CHECK(lvd_manifest_exec(
              m,
              "INSERT INTO sources(id, name, role) VALUES (1, 'web', 'pool'),"
              " (2, 'in1k', 'seed');"
              "INSERT INTO models(id, name, arch, dim, features, config) VALUES"
              " (5, 'vits', 'vit_s14', 384, 'cls', '{\"random\":\"vits14\",\"seed\":3}')",
              &err) == 0);
    int64_t id;
    int found;
    CHECK(lvd_source_find(m, NULL, -1, &id, NULL, &err) == 0 && id == 0);
    CHECK(lvd_source_find(m, "in1k", -1, &id, NULL, &err) == 0 && id == 2);
    CHECK(lvd_source_find(m, "in1k", LVD_ROLE_SEED, &id, NULL, &err) == 0 && id == 2);
    CHECK(lvd_source_find(m, "web", LVD_ROLE_SEED, &id, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no seed source named 'web'") != NULL, "%s", err.msg);
    CHECK(lvd_source_find(m, "zzz", -1, &id, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no source named 'zzz'") != NULL, "%s", err.msg);
    CHECK(lvd_source_find(m, "zzz", -1, &id, &found, &err) == 0 && !found);
    lvd_model_record rec;
    CHECK(lvd_model_find(m, "vits", &rec, NULL, &err) == 0 && rec.id == 5 && rec.dim == 384);
    CHECK(strcmp(rec.random_spec, "vits14") == 0 && rec.seed == 3);
    CHECK(lvd_model_find(m, "nope", &rec, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no model named 'nope' (register it with lvd-model add)"), "%s",
              err.msg);
    CHECK(lvd_model_find(m, "nope", &rec, &found, &err) == 0 && !found);
    /* Embedding rows: one statement over v_embeddings, binds from ?2 on. */
    CHECK(lvd_manifest_exec(m,
                            "INSERT INTO images(id, source_id, url, status) VALUES"
                            " (1, 1, 'a', 'ok'), (2, 2, 'b', 'ok'), (3, 1, 'c', 'ok');"
                            "INSERT INTO embedding_files(id, model_id, path, rows, cols)"
                            " VALUES (1, 5, '/f.npy', 3, 384);"
                            "INSERT INTO embeddings(image_id, model_id, file_id, row) VALUES"
                            " (3, 5, 1, 0), (1, 5, 1, 1), (2, 5, 1, 2)",
                            &err) == 0);
    const lvd_kit_rows pool = {.where = "s.role = 'pool' AND i.id >= ?2", .tag = "i.source_id"};
    int64_t from = 1;
    sqlite3_stmt *st;
    CHECK(lvd_kit_embeddings(m, 5, &pool, &from, 1, &st, &err) == 0);
    int64_t got[4] = {0};
    int n = 0;
    while (n < 4 && sqlite3_step(st) == SQLITE_ROW) {
        CHECK(strcmp((const char *)sqlite3_column_text(st, 1), "/f.npy") == 0);
        CHECK(sqlite3_column_int64(st, 3) == 1);
        got[n++] = sqlite3_column_int64(st, 0) * 10 + sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    CHECK(n == 2 && got[0] == 11 && got[1] == 30);
    lvd_manifest_close(m);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_options();
    test_open_modes();
    test_stage_lock();
    test_run_locks();
    test_dir_lock();
    test_lookups();
    if (!check_failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
    return check_finish();
}
