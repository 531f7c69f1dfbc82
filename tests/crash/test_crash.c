/* Crash harness: every stage (fetch, embed, index, dedup, calibrate, retrieve, export, report)
 * and lvd-run over a pipeline of all of them is killed with SIGKILL at points chosen by what it
 * is doing (the Nth rename, the Nth write into the SQLite WAL, the Nth write into a temporary
 * file: tests/crash/killshim.c, preloaded), then run again; every view and every output file must
 * then equal those of an uninterrupted run, and no temporary file may be left.
 *
 * The chain of stages runs once in a folder; before each stage its state is copied, and each
 * kill point starts from a copy of it (recorded paths into the chain folder stay valid: stages
 * only read them). Kill points per stage: the counting run (LVD_KILL_COUNT) gives how many events
 * of each kind the stage makes; the first and last renames (each before and after the call), 3
 * WAL writes and 2 temporary-file writes spread over the run. For lvd-run: one WAL write in the
 * middle of each stage executable it runs, and two of lvd-run's own (killing the whole process
 * group). Views are compared with run ids and run-numbered file names normalized (r<N> -> r#), file
 * contents byte for byte. LVD_CRASH_ONLY=NAME (a stage, or lvd-run) limits a run to one of them.
 * Usage: test_crash KILLSHIM.so LVD-FETCH LVD-MODEL LVD-EMBED LVD-INDEX LVD-DEDUP LVD-CALIBRATE
 *        LVD-RETRIEVE LVD-EXPORT LVD-REPORT LVD-RUN */
#include <dirent.h>
#include <errno.h>
#include <signal.h>

#include "tests/check_run.h"
#include "tests/stages/stages_test.h"

enum {
    T_SHIM,
    T_FETCH,
    T_MODEL,
    T_EMBED,
    T_INDEX,
    T_DEDUP,
    T_CALIBRATE,
    T_RETRIEVE,
    T_EXPORT,
    T_REPORT,
    T_RUN,
    T_COUNT
};
static const char *tool[T_COUNT];
static char root[256], data[320];

#define N_POOL  30
#define N_NEAR  4
#define N_SEEDS 3
#define N_EVAL  2

/* A step of the chain: its tool and arguments; "@x" is x inside the run folder, "%x" x inside
 * the data folder. */
typedef struct step {
    const char *name; /* killable steps have a name */
    int tool;
    const char *args[16];
} step;

static const step chain[] = {
    {"fetch",
     T_FETCH,
     {"--db", "@m.db", "--source", "pool", "--threads", "2", "--shard-size", "24K", "--no-progress",
      "%pool", NULL}},
    {NULL,
     T_FETCH,
     {"--db", "@m.db", "--source", "seeds", "--role", "seed", "--threads", "2", "--no-progress",
      "%seeds", NULL}},
    {NULL,
     T_FETCH,
     {"--db", "@m.db", "--source", "evalset", "--role", "eval", "--threads", "2", "--no-progress",
      "%eval", NULL}},
    {NULL, T_MODEL, {"add", "--db", "@m.db", "--name", "r", "--random", "vits14", NULL}},
    {"embed",
     T_EMBED,
     {"--db", "@m.db", "--model", "r", "--resize", "56", "--crop", "56", "--batch", "8",
      "--threads", "2", "--no-progress", NULL}},
    {"index", T_INDEX, {"--db", "@m.db", "--model", "r", NULL}},
    {"dedup",
     T_DEDUP,
     {"--db", "@m.db", "--model", "r", "--threshold", "0.995", "--eval-threshold", "0.995", NULL}},
    {"calibrate",
     T_CALIBRATE,
     {"--db", "@m.db", "--model", "r", "--sample", "6", "--resize", "56", "--crop", "56", NULL}},
    {"retrieve", T_RETRIEVE, {"--db", "@m.db", "--model", "r", "--per-seed", "3", NULL}},
    {"export", T_EXPORT, {"--db", "@m.db", "--out", "@export", "--shard-size", "1", NULL}},
    {"report", T_REPORT, {"--db", "@m.db", "--out", "@report", NULL}},
};
#define N_STEPS (int)(sizeof chain / sizeof chain[0])

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Runs argv (cwd: dir) with the shim preloaded and the extra environment "K=V" strings; stdout
 * and stderr go to dir/../log. Returns the exit status, or 128 + the signal. */
static int run_in(const char *dir, char *const argv[], const char *const *env)
{
    char log[600];
    snprintf(log, sizeof log, "%s.log", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* a group kill must not reach the harness */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || chdir(dir) != 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("LD_PRELOAD", tool[T_SHIM], 1);
        setenv("ASAN_OPTIONS", "detect_leaks=0:verify_asan_link_order=0", 1);
        unsetenv("LVD_KILL_AT");
        unsetenv("LVD_KILL_EXE");
        unsetenv("LVD_KILL_GROUP");
        unsetenv("LVD_KILL_COUNT");
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_step(const step *s, const char *dir, const char *const *env)
{
    static char buf[16][600];
    char *argv[20];
    int n = 0;
    argv[n++] = (char *)tool[s->tool];
    for (int i = 0; s->args[i]; i++, n++) {
        const char *a = s->args[i];
        if (a[0] == '@')
            snprintf(buf[i], sizeof buf[i], "%s/%s", dir, a + 1);
        else if (a[0] == '%')
            snprintf(buf[i], sizeof buf[i], "%s/%s", data, a + 1);
        else
            snprintf(buf[i], sizeof buf[i], "%s", a);
        argv[n] = buf[i];
    }
    argv[n] = NULL;
    return run_in(dir, argv, env);
}

/* The pipeline file of the whole chain for lvd-run (paths relative to its folder). */
static void write_pipeline(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        exit(1);
    fprintf(f, "[pipeline]\ndb = m.db\n");
    for (int i = 0; i < N_STEPS; i++) {
        const step *s = &chain[i];
        const char *stage = base_name(tool[s->tool]) + 4; /* after "lvd-" */
        fprintf(f, "\n[%s:s%d]\n", stage, i);
        int a = 0;
        if (s->tool == T_MODEL) /* "add" is positional */
            fprintf(f, "args = %s\n", s->args[a++]);
        for (; s->args[a]; a++) {
            const char *key = s->args[a];
            if (strcmp(key, "--db") == 0) {
                a++;
                continue;
            }
            if (key[0] == '%') {
                fprintf(f, "args = %s/%s\n", data, key + 1);
                continue;
            }
            const char *value = s->args[a + 1];
            if (!value || value[0] == '-' || value[0] == '%') {
                fprintf(f, "%s\n", key + 2);
                continue;
            }
            a++;
            fprintf(f, "%s = %s\n", key + 2, value[0] == '@' ? value + 1 : value);
        }
    }
    fclose(f);
}

static int run_pipeline(const char *dir, const char *const *env)
{
    char ini[700];
    snprintf(ini, sizeof ini, "%.600s/../pipeline.ini", dir);
    char *argv[] = {(char *)tool[T_RUN], ini, NULL};
    return run_in(dir, argv, env);
}

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

/* In place: every ".r<digits>." becomes ".r#." and "-r<digits>.faiss" "-r#.faiss" (run ids in
 * file names differ once a killed run took one). */
static void normalize_runs(char *s)
{
    char *o = s;
    for (char *p = s; *p;) {
        if ((p[0] == '.' || p[0] == '-') && p[1] == 'r' && p[2] >= '0' && p[2] <= '9') {
            char *q = p + 2;
            while (*q >= '0' && *q <= '9')
                q++;
            if (*q == '.') {
                *o++ = p[0];
                *o++ = 'r';
                *o++ = '#';
                p = q;
                continue;
            }
        }
        *o++ = *p++;
    }
    *o = '\0';
}

static const char *const views[] = {
    "SELECT * FROM v_images ORDER BY id",
    "SELECT * FROM v_status ORDER BY source, status, error_class",
    "SELECT * FROM v_models ORDER BY name",
    "SELECT image_id, model, file, row FROM v_embeddings ORDER BY image_id, model",
    "SELECT image_id, model, error FROM v_embedding_failures ORDER BY image_id, model",
    "SELECT model, source, path, factory, rows, dim FROM v_indexes ORDER BY model, source",
    "SELECT x.path, r.row, r.image_id FROM index_rows r JOIN indexes x ON x.id = r.index_id"
    " ORDER BY x.path, r.row",
    "SELECT * FROM v_duplicates ORDER BY image_id, model",
    "SELECT * FROM v_curated ORDER BY image_id, dataset, method, seed_image_id, rank",
    "SELECT image_id, model, dataset, level, cluster FROM v_hkmeans"
    " ORDER BY image_id, model, dataset, level",
    "SELECT id, path, status, members, bytes FROM shards ORDER BY id",
    "SELECT counts FROM runs WHERE stage = 'calibrate' AND status = 'ok' ORDER BY id DESC"
    " LIMIT 1",
};

static uint64_t file_hash(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint64_t h = 1469598103934665603ull;
    int c;
    while (f && (c = fgetc(f)) != EOF)
        h = (h ^ (uint64_t)c) * 1099511628211ull;
    if (f)
        fclose(f);
    return h;
}

typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void append(text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

/* The hash of an HTML page of lvd-report with its "Last runs" table (run ids, timestamps) cut
 * off and the run folder and run ids in paths normalized: the rest must not depend on timing. */
static uint64_t page_hash(const char *path, const char *dir)
{
    FILE *f = fopen(path, "rb");
    text t = {0};
    char buf[4096];
    size_t n;
    append(&t, "");
    while (f && (n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
        buf[n] = '\0';
        append(&t, buf);
    }
    if (f)
        fclose(f);
    char *cut = strstr(t.s, "<h2>Last runs</h2>");
    if (cut)
        *cut = '\0';
    char *s = check_replace_all(t.s, dir, "$RUN");
    normalize_runs(s);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = s; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    free(s);
    return h;
}

/* Output files below dir (relative names): "name hash" lines; the manifest, locks and logs are
 * left out; *tmp counts names holding ".tmp". */
static void list_files(const char *dir, const char *rel, text *out, int *tmp)
{
    char path[1200];
    snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
    struct dirent **e;
    int n = scandir(path, &e, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = e[i]->d_name;
        char sub[600], line[800];
        struct stat sb;
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name);
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        if (name[0] != '.' && lstat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                list_files(dir, sub, out, tmp);
            } else if (strncmp(name, "m.db", 4) != 0 || strstr(name, ".index-")) {
                *tmp += strstr(name, ".tmp") != NULL;
                size_t k = strlen(name);
                uint64_t h = k > 5 && strcmp(name + k - 5, ".html") == 0 ? page_hash(path, dir)
                                                                         : file_hash(path);
                snprintf(line, sizeof line, "%s %016llx\n", sub, (unsigned long long)h);
                normalize_runs(line);
                append(out, line);
            }
        }
        free(e[i]);
    }
    free(e);
}

/* Every view and output file of the run folder dir, normalized; *tmp: temporary files left. */
static char *state(const char *dir, int *tmp)
{
    text t = {0};
    char db_path[600];
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    sqlite3 *db;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return strdup("<no manifest>");
    sqlite3_busy_timeout(db, 10000);
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
        append(&t, views[i]);
        append(&t, ":\n");
        char *v = check_replace_all(st_dump(db, views[i]), dir, "$RUN");
        normalize_runs(v);
        append(&t, v);
        free(v);
    }
    sqlite3_close(db);
    *tmp = 0;
    list_files(dir, "", &t, tmp);
    return t.s;
}

/* Up to k distinct event numbers spread over 1..n. */
static int spread(long n, int k, long *out)
{
    int m = 0;
    for (int j = 0; j < k && n > 0; j++) {
        long v = k == 1 ? (n + 1) / 2 : 1 + (long)j * (n - 1) / (k - 1);
        if (m == 0 || out[m - 1] != v)
            out[m++] = v;
    }
    return m;
}

/* The counts of exe's events in the counting file (summed over its processes when max is 0,
 * else the largest of one process). */
static long event_count(const char *file, const char *exe, const char *event, int max)
{
    FILE *f = fopen(file, "r");
    char e[64], ev[16];
    long n, total = 0;
    while (f && fscanf(f, "%63s %15s %ld", e, ev, &n) == 3)
        if (strcmp(e, exe) == 0 && strcmp(ev, event) == 0)
            total = max ? (n > total ? n : total) : total + n;
    if (f)
        fclose(f);
    return total;
}

typedef struct kill_point {
    char at[48];
    char exe[32];
    int group;
} kill_point;

/* The kill points of a stage run by exe, from its counting file. */
static int stage_points(const char *counts, const char *exe, kill_point *p)
{
    int n = 0;
    long v[4];
    int k = spread(event_count(counts, exe, "rename", 1), 2, v);
    for (int i = 0; i < k; i++) {
        snprintf(p[n].at, sizeof p[n].at, "rename:%ld", v[i]);
        snprintf(p[n + 1].at, sizeof p[n + 1].at, "rename:%ld:after", v[i]);
        n += 2;
    }
    k = spread(event_count(counts, exe, "commit", 1), 3, v);
    for (int i = 0; i < k; i++)
        snprintf(p[n++].at, sizeof p[0].at, "commit:%ld", v[i]);
    k = spread(event_count(counts, exe, "write", 1), 2, v);
    for (int i = 0; i < k; i++)
        snprintf(p[n++].at, sizeof p[0].at, "write:%ld", v[i]);
    for (int i = 0; i < n; i++) {
        snprintf(p[i].exe, sizeof p[i].exe, "%s", exe);
        p[i].group = 0;
    }
    return n;
}

/* Runs one kill point from a copy of base in work (step s, or lvd-run when s is NULL), then
 * again without a kill, and compares with the uninterrupted state. Returns 1 when killed. */
static int try_point(const step *s, const char *base, const char *work, const kill_point *p,
                     const char *expected, const char *label)
{
    sh("rm -rf '%s' '%s.log' && cp -a '%s' '%s'", work, work, base, work);
    char at[80], exe[64];
    snprintf(at, sizeof at, "LVD_KILL_AT=%s", p->at);
    snprintf(exe, sizeof exe, "LVD_KILL_EXE=%s", p->exe);
    const char *env[] = {at, exe, p->group ? "LVD_KILL_GROUP=1" : NULL, NULL};
    int rc = s ? run_step(s, work, env) : run_pipeline(work, env);
    int killed = rc == 128 + SIGKILL || (!s && rc != 0);
    int again = s ? run_step(s, work, NULL) : run_pipeline(work, NULL);
    CHECK_MSG(again == 0, "%s: rerun after kill at %s %s exited %d (see %s.log)", label, p->exe,
              p->at, again, work);
    int tmp;
    char *got = state(work, &tmp);
    got = check_replace_all(got, work, "$RUN");
    CHECK_MSG(
        strcmp(got, expected) == 0,
        "%s: after a kill at %s %s and a rerun the state differs:\n%s\n--- uninterrupted:\n%s",
        label, p->exe, p->at, got, expected);
    CHECK_MSG(tmp == 0, "%s: %d temporary files left after a kill at %s %s", label, tmp, p->exe,
              p->at);
    free(got);
    return killed;
}

static void make_data(void)
{
    char path[600];
    const char *dirs[] = {"pool", "seeds", "eval", "pool/a", "pool/b", "seeds/s", "eval/e"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", data, dirs[i]);
        st_mkdir(path);
    }
    for (int i = 0; i < N_POOL; i++) {
        snprintf(path, sizeof path, "%s/pool/%c/p%02d.jpg", data, i % 2 ? 'b' : 'a', i);
        CHECK(st_write_jpeg(path, 64 + i % 4, 48 + i % 3, (uint32_t)i) == 0);
    }
    sh("cp '%s/pool/a/p00.jpg' '%s/pool/b/same.jpg'", data, data);
    for (int i = 0; i < N_NEAR; i++) { /* the same pixels, 2 pixels narrower: a near-copy */
        snprintf(path, sizeof path, "%s/pool/b/near%d.jpg", data, i);
        CHECK(st_write_jpeg(path, 62 + (2 * i) % 4, 48 + (2 * i) % 3, (uint32_t)(2 * i)) == 0);
    }
    for (int i = 0; i < N_SEEDS; i++) {
        snprintf(path, sizeof path, "%s/seeds/s/seed%d.jpg", data, i);
        CHECK(st_write_jpeg(path, 64, 48, (uint32_t)(100 + i)) == 0);
    }
    for (int i = 0; i < N_EVAL; i++) {
        snprintf(path, sizeof path, "%s/eval/e/eval%d.jpg", data, i);
        CHECK(st_write_jpeg(path, 64 + (5 * i) % 4, 48 + (5 * i) % 3, (uint32_t)(5 * i)) == 0);
    }
}

/* LVD_CRASH_ONLY=NAME runs the kill points of one stage (or "lvd-run") only, when debugging. */
static const char *only;

static void stages(void)
{
    char dir[600], base[600], ref[600], work[600], counts[600];
    snprintf(dir, sizeof dir, "%s/chain", root);
    st_mkdir(dir);
    for (int i = 0; i < N_STEPS; i++) {
        if (chain[i].name) {
            snprintf(base, sizeof base, "%s/base-%s", root, chain[i].name);
            sh("cp -a '%s' '%s'", dir, base);
        }
        int rc = run_step(&chain[i], dir, NULL);
        CHECK_MSG(rc == 0, "chain step %d (%s) exited %d, see %s.log", i, tool[chain[i].tool], rc,
                  dir);
        if (rc != 0)
            return;
    }
    for (int i = 0; i < N_STEPS; i++) {
        const step *s = &chain[i];
        if (!s->name || (only && strcmp(only, s->name) != 0))
            continue;
        snprintf(base, sizeof base, "%s/base-%s", root, s->name);
        snprintf(ref, sizeof ref, "%s/ref-%s", root, s->name);
        snprintf(work, sizeof work, "%s/kill-%s", root, s->name);
        snprintf(counts, sizeof counts, "%s/counts-%s", root, s->name);
        sh("cp -a '%s' '%s'", base, ref);
        char count_env[700];
        snprintf(count_env, sizeof count_env, "LVD_KILL_COUNT=%s", counts);
        const char *env[] = {count_env, NULL};
        CHECK(run_step(s, ref, env) == 0);
        int tmp;
        char *expected = check_replace_all(state(ref, &tmp), ref, "$RUN");
        CHECK(tmp == 0);
        kill_point p[16];
        int n = stage_points(counts, base_name(tool[s->tool]), p), killed = 0;
        for (int k = 0; k < n; k++)
            killed += try_point(s, base, work, &p[k], expected, s->name);
        printf("%-9s %2d kill points, %2d killed mid-way\n", s->name, n, killed);
        CHECK_MSG(killed > 0, "%s: no kill point was reached", s->name);
        free(expected);
        sh("rm -rf '%s' '%s' '%s'", ref, work, base);
    }
}

static void pipeline(void)
{
    char ini[600], base[600], ref[600], work[600], counts[600];
    snprintf(ini, sizeof ini, "%s/pipeline.ini", root);
    write_pipeline(ini);
    snprintf(base, sizeof base, "%s/run-base", root);
    snprintf(ref, sizeof ref, "%s/run-ref", root);
    snprintf(work, sizeof work, "%s/run-kill", root);
    snprintf(counts, sizeof counts, "%s/counts-run", root);
    st_mkdir(base);
    sh("cp -a '%s' '%s'", base, ref);
    char count_env[700];
    snprintf(count_env, sizeof count_env, "LVD_KILL_COUNT=%s", counts);
    const char *env[] = {count_env, NULL};
    int rc = run_pipeline(ref, env);
    CHECK_MSG(rc == 0, "lvd-run exited %d, see %s.log", rc, ref);
    int tmp;
    char *expected = check_replace_all(state(ref, &tmp), ref, "$RUN");
    CHECK(tmp == 0);
    kill_point p[16];
    int n = 0;
    for (int t = T_FETCH; t < T_RUN; t++) {
        const char *exe = base_name(tool[t]);
        long c = event_count(counts, exe, "commit", 1);
        if (t == T_MODEL || c == 0)
            continue;
        snprintf(p[n].at, sizeof p[n].at, "commit:%ld", (c + 1) / 2);
        snprintf(p[n].exe, sizeof p[n].exe, "%s", exe);
        p[n++].group = 0;
    }
    long own = event_count(counts, "lvd-run", "commit", 1), v[2];
    for (int k = 0, m = spread(own, 2, v); k < m; k++) {
        snprintf(p[n].at, sizeof p[n].at, "commit:%ld", v[k]);
        snprintf(p[n].exe, sizeof p[n].exe, "lvd-run");
        p[n++].group = 1;
    }
    int killed = 0;
    for (int k = 0; k < n; k++)
        killed += try_point(NULL, base, work, &p[k], expected, "lvd-run");
    printf("%-9s %2d kill points, %2d killed mid-way\n", "lvd-run", n, killed);
    CHECK(killed > 0);
    free(expected);
}

int main(int argc, char **argv)
{
    if (argc != T_COUNT + 1) {
        fprintf(stderr,
                "usage: %s KILLSHIM LVD-FETCH LVD-MODEL LVD-EMBED LVD-INDEX LVD-DEDUP "
                "LVD-CALIBRATE LVD-RETRIEVE LVD-EXPORT LVD-REPORT LVD-RUN\n",
                argv[0]);
        return 1;
    }
    for (int i = 0; i < T_COUNT; i++) {
        char abs[PATH_MAX];
        tool[i] = realpath(argv[i + 1], abs) ? strdup(abs) : argv[i + 1];
    }
    snprintf(root, sizeof root, "/tmp/lvd-crash-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    snprintf(data, sizeof data, "%s/data", root);
    st_mkdir(data);
    make_data();
    /* lvd-run finds the stages in the folders of the tools it was given. */
    char stage_path[T_COUNT * (PATH_MAX + 1)] = "";
    for (int i = T_FETCH; i < T_RUN; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", tool[i]);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        size_t len = strlen(stage_path);
        snprintf(stage_path + len, sizeof stage_path - len, "%s%s", len ? ":" : "", dir);
    }
    setenv("LVD_STAGE_PATH", stage_path, 1);
    only = getenv("LVD_CRASH_ONLY");
    if (!only || strcmp(only, "lvd-run") != 0)
        stages();
    if (!only || strcmp(only, "lvd-run") == 0)
        pipeline();
    if (!check_failures)
        sh("rm -rf '%s'", root);
    else
        fprintf(stderr, "kept %s\n", root);
    return check_finish();
}
