/* lvd_pipeline_run of curate/pipeline/pipeline.h: decide run or skip for each step, run it as a child
 * process, record it. */
#include "curate/pipeline/pipeline.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "curate/pipeline/pipeline_fp.h"
#include "kit/kit.h"
#include "store/manifest.h"

extern char **environ;

#define RUN_STAGE_PREFIX "pipeline:"

typedef struct verdict {
    int run;
    char why[512];
} verdict;

/* The manifest stage name of step s ("pipeline:<id>"), in a static-size buffer. */
static void stage_name(const lvd_pipeline_step *s, char *buf, size_t size)
{
    snprintf(buf, size, RUN_STAGE_PREFIX "%s", s->id);
}

static cJSON *argv_json(char *const *argv)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 1; a && argv[i]; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* The state a step reads now: {"inputs": {...}, "reads": {...}}. */
static cJSON *current_state(lvd_manifest *m, const lvd_pipeline_step *s, char *const *argv,
                            const char *db, lvd_error *err)
{
    cJSON *state = cJSON_CreateObject();
    cJSON *inputs = state ? cJSON_AddObjectToObject(state, "inputs") : NULL;
    cJSON *reads = inputs ? cJSON_AddObjectToObject(state, "reads") : NULL;
    if (!reads) {
        cJSON_Delete(state);
        lvd_fail(err, "out of memory");
        return NULL;
    }
    if (lvd_fp_inputs(argv, db, inputs, err) != 0 ||
        (m && lvd_fp_facts(m, s->reads, s->n_reads, reads, err) != 0)) {
        cJSON_Delete(state);
        return NULL;
    }
    return state;
}

/* Names the first member that differs between objects a (recorded) and b (now) in why. */
static int diff_members(const cJSON *a, const cJSON *b, const char *what, char *why, size_t size)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, b)
    {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(a, x->string);
        if (!y) {
            snprintf(why, size, "new %s %s", what, x->string);
            return 1;
        }
        if (!cJSON_Compare(x, y, 1)) {
            if (cJSON_IsString(x) && strcmp(what, "manifest fact") == 0)
                snprintf(why, size, "%s %s changed: '%.160s' -> '%.160s'", what, x->string,
                         y->valuestring, x->valuestring);
            else
                snprintf(why, size, "%s %s changed", what, x->string);
            return 1;
        }
    }
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_GetObjectItemCaseSensitive(b, x->string)) {
            snprintf(why, size, "%s %s is gone", what, x->string);
            return 1;
        }
    }
    return 0;
}

/* The last run of step s: its id, status, params and counts (the latter two parsed; NULL when
 * absent). Returns 0 with *id = 0 when it never ran. */
static int last_run(lvd_manifest *m, const lvd_pipeline_step *s, int64_t *id, char *status,
                    size_t status_size, cJSON **params, cJSON **counts, lvd_error *err)
{
    *id = 0;
    *params = *counts = NULL;
    if (!m)
        return 0;
    char stage[512];
    stage_name(s, stage, sizeof stage);
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT id, status, params, counts FROM runs WHERE stage = ?1 "
                             "ORDER BY id DESC LIMIT 1",
                             &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, stage, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        snprintf(status, status_size, "%s", (const char *)sqlite3_column_text(st, 1));
        *params = cJSON_Parse((const char *)sqlite3_column_text(st, 2));
        const unsigned char *c = sqlite3_column_text(st, 3);
        *counts = c ? cJSON_Parse((const char *)c) : NULL;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lvd_manifest_fail(m, err, "reading runs");
    return 0;
}

static int decide(lvd_manifest *m, const lvd_pipeline_step *s, char *const *argv, const char *db,
                  int forced, verdict *v, lvd_error *err)
{
    v->run = 1;
    if (forced) {
        snprintf(v->why, sizeof v->why, "--from");
        return 0;
    }
    int64_t id;
    char status[32] = "";
    cJSON *params, *counts;
    if (last_run(m, s, &id, status, sizeof status, &params, &counts, err) != 0)
        return -1;
    cJSON *now_argv = argv_json(argv);
    cJSON *now = current_state(m, s, argv, db, err);
    int rc = now && now_argv ? 0 : -1;
    if (!now_argv)
        lvd_fail(err, "out of memory");
    if (rc != 0) {
        /* err is filled */
    } else if (id == 0) {
        snprintf(v->why, sizeof v->why, "never ran");
    } else if (strcmp(status, "ok") != 0) {
        snprintf(v->why, sizeof v->why, "last run %lld: %s", (long long)id, status);
    } else if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(params, "argv"), now_argv, 1)) {
        snprintf(v->why, sizeof v->why, "parameters changed");
    } else if (!diff_members(cJSON_GetObjectItemCaseSensitive(counts, "inputs"),
                             cJSON_GetObjectItemCaseSensitive(now, "inputs"), "input", v->why,
                             sizeof v->why) &&
               !diff_members(cJSON_GetObjectItemCaseSensitive(counts, "reads"),
                             cJSON_GetObjectItemCaseSensitive(now, "reads"), "manifest fact",
                             v->why, sizeof v->why)) {
        v->run = 0;
        snprintf(v->why, sizeof v->why, "unchanged since run %lld", (long long)id);
    }
    cJSON_Delete(params);
    cJSON_Delete(counts);
    cJSON_Delete(now_argv);
    cJSON_Delete(now);
    return rc;
}

/* Runs argv and waits: *code is its exit status, or *signo the signal that killed it. Like
 * system(), lvd-run ignores SIGINT and SIGQUIT meanwhile (the step gets them from the terminal
 * and stops as it sees fit), so that it can record how the step ended. */
static int spawn_wait(char *const *argv, int *code, int *signo, lvd_error *err)
{
    *code = -1;
    *signo = 0;
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigemptyset(&ignore.sa_mask);
    sigset_t reset;
    sigemptyset(&reset);
    sigaddset(&reset, SIGINT);
    sigaddset(&reset, SIGQUIT);
    posix_spawnattr_t attr;
    if (posix_spawnattr_init(&attr) != 0)
        return lvd_fail(err, "%s: cannot start: out of memory", argv[0]);
    posix_spawnattr_setsigdefault(&attr, &reset);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    sigaction(SIGINT, &ignore, &old_int);
    sigaction(SIGQUIT, &ignore, &old_quit);
    pid_t pid;
    int rc = 0, e = posix_spawn(&pid, argv[0], NULL, &attr, argv, environ);
    int ws = 0;
    if (e != 0)
        rc = lvd_fail(err, "%s: cannot start: %s", argv[0], strerror(e));
    while (e == 0 && waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) {
            rc = lvd_fail(err, "%s: waitpid: %s", argv[0], strerror(errno));
            break;
        }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    posix_spawnattr_destroy(&attr);
    if (rc == 0 && WIFEXITED(ws))
        *code = WEXITSTATUS(ws);
    else if (rc == 0)
        *signo = WTERMSIG(ws);
    return rc;
}

static cJSON *run_params(const lvd_pipeline *p, const lvd_pipeline_step *s, char *const *argv)
{
    char abs[PATH_MAX];
    cJSON *params = cJSON_CreateObject();
    cJSON *a = argv_json(argv);
    if (!params || !a ||
        !cJSON_AddStringToObject(params, "pipeline", realpath(p->path, abs) ? abs : p->path) ||
        !cJSON_AddStringToObject(params, "step", s->id) ||
        !cJSON_AddStringToObject(params, "stage", s->stage) ||
        !cJSON_AddStringToObject(params, "exe", argv[0])) {
        cJSON_Delete(params);
        cJSON_Delete(a);
        return NULL;
    }
    cJSON_AddItemToObject(params, "argv", a);
    return params;
}

/* Runs step s and records it; fails when the step fails. */
static int execute(lvd_manifest *m, const lvd_pipeline *p, const lvd_pipeline_step *s,
                   char *const *argv, const char *db, FILE *out, lvd_error *err)
{
    char stage[512];
    stage_name(s, stage, sizeof stage);
    int64_t run_id;
    cJSON *params = run_params(p, s, argv);
    if (!params)
        return lvd_fail(err, "out of memory");
    if (lvd_kit_run_start(m, stage, params, &run_id, err) != 0)
        return -1;
    fflush(out);
    fflush(stderr);
    double t0 = lvd_kit_now();
    int code, signo;
    int rc = spawn_wait(argv, &code, &signo, err);
    double secs = lvd_kit_now() - t0;
    int ok = rc == 0 && code == 0;
    /* A step that succeeded records what it read (its skip fingerprint); a failed one how it
     * ended. */
    cJSON *counts = ok ? current_state(m, s, argv, db, err) : NULL;
    if (ok && !counts) {
        ok = 0;
        rc = -1;
    }
    if (!counts)
        counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "exit", code);
    cJSON_AddNumberToObject(counts, "signal", signo);
    cJSON_AddNumberToObject(counts, "seconds", secs);
    lvd_error finish_err;
    int frc = lvd_kit_run_finish(m, run_id, ok ? 0 : -1, NULL, counts, &finish_err);
    if (rc != 0)
        return -1;
    if (signo)
        return lvd_fail(err, "stage %s (step %s, %s) was killed by signal %d (%s)", s->stage, s->id,
                        argv[0], signo, strsignal(signo));
    if (code != 0)
        return lvd_fail(err, "stage %s (step %s, %s) failed with exit status %d", s->stage, s->id,
                        argv[0], code);
    if (frc != 0) { /* the step succeeded: recording it failed */
        *err = finish_err;
        return -1;
    }
    fprintf(out, "lvd-run: %s done in %.1f s\n", s->id, secs);
    return 0;
}

static void print_command(FILE *out, char *const *argv)
{
    fputs("        ", out);
    for (size_t i = 0; argv[i]; i++)
        fprintf(out, "%s%s", i ? " " : "", argv[i]);
    fputc('\n', out);
}

static int find_from(const lvd_pipeline *p, const char *from, size_t *index, lvd_error *err)
{
    *index = p->n_steps;
    if (!from)
        return 0;
    for (size_t i = 0; i < p->n_steps; i++)
        if (strcmp(p->steps[i].id, from) == 0) {
            *index = i;
            return 0;
        }
    for (size_t i = 0; i < p->n_steps; i++)
        if (strcmp(p->steps[i].stage, from) == 0) {
            *index = i;
            return 0;
        }
    return lvd_fail(err, "--from %s: no such step or stage in %s", from, p->path);
}

/* One step: its plan line, and in a real run the step itself. *earlier: the first step planned
 * to run so far (NULL: none); *n_run counts the steps planned to run. */
static int step(lvd_manifest *m, const lvd_pipeline *p, size_t i, int forced,
                const lvd_pipeline_run_opts *o, const char **earlier, size_t *n_run, lvd_error *err)
{
    const lvd_pipeline_step *s = p->steps + i;
    char **argv = lvd_pipeline_argv(s, o->db);
    if (!argv)
        return lvd_fail(err, "out of memory");
    verdict v;
    int rc = decide(m, s, argv, o->db, forced, &v, err);
    if (rc == 0) {
        fprintf(o->out, "lvd-run: [%zu/%zu] %s: %s (%s)", i + 1, p->n_steps, s->id,
                v.run ? "run" : "skip", v.why);
        if (o->dry_run && !v.run && *earlier)
            fprintf(o->out, "; checked again after %s runs", *earlier);
        fputc('\n', o->out);
        if (o->dry_run)
            print_command(o->out, argv);
        if (v.run && !*earlier)
            *earlier = s->id;
        *n_run += (size_t)v.run;
        if (v.run && !o->dry_run)
            rc = execute(m, p, s, argv, o->db, o->out, err);
    }
    free(argv);
    return rc;
}

int lvd_pipeline_run(const lvd_pipeline *p, const lvd_pipeline_run_opts *o, lvd_error *err)
{
    size_t from;
    if (find_from(p, o->from, &from, err) != 0)
        return -1;
    lvd_manifest *m = NULL;
    struct stat st;
    /* A dry run neither creates nor changes the manifest, nor waits for a running lvd-run. Marking
     * dead runs interrupted comes before deciding which steps run (run locks: store/manifest.h). */
    int rc = 0;
    if (!o->dry_run)
        rc = lvd_kit_open(o->db, LVD_MANIFEST_CREATE, "run", &m, err);
    else if (stat(o->db, &st) == 0)
        rc = lvd_kit_open(o->db, LVD_MANIFEST_READ, NULL, &m, err);
    if (rc == 0 && !o->dry_run)
        rc = lvd_manifest_reap(m, NULL, err);
    if (rc == 0 && o->dry_run)
        fprintf(o->out, "lvd-run: dry run of %s (%zu steps, manifest %s%s)\n", p->path, p->n_steps,
                o->db, m ? "" : ", not created yet");
    const char *earlier = NULL;
    size_t n_run = 0;
    for (size_t i = 0; rc == 0 && i < p->n_steps; i++)
        rc = step(m, p, i, i >= from, o, &earlier, &n_run, err);
    if (rc == 0)
        fprintf(o->out, "lvd-run: %s: %zu of %zu steps %s, %zu skipped\n",
                o->dry_run ? "plan" : "done", n_run, p->n_steps, o->dry_run ? "to run" : "run",
                p->n_steps - n_run);
    lvd_manifest_close(m);
    return rc;
}
