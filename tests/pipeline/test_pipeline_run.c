/* lvd-run's decisions on fake stages (args: lvd-run, lvd-fake, lvd-status): a second run skips
 * everything; a changed parameter reruns its step and, through the manifest facts, the steps
 * that read what it changed; a changed input file reruns the step naming it; --from forces;
 * --dry-run runs nothing; a failing step stops the run, and is rerun next time. */
#include <libgen.h>
#include <sqlite3.h>

#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

static const char *lvd_run, *lvd_status;

/* Step a makes source 'pool' hold `images` items; b reads the images; c reads nothing but names
 * the file in.txt. */
static void write_pipeline(int images, const char *a_extra, const char *b_extra)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[pipeline]\n"
             "db = m.db\n"
             "\n"
             "[fake:a]\n"
             "name = a\n"
             "images = pool:%d\n"
             "reads = none\n"
             "%s"
             "\n"
             "[fake:b]\n"
             "name = b\n"
             "reads = images\n"
             "%s"
             "\n"
             "[fake:c]\n"
             "name = c\n"
             "input = in.txt\n"
             "reads = none\n",
             images, a_extra, b_extra);
    pt_write("p.ini", text);
}

/* Runs the pipeline with extra arguments; returns the exit status. The log of step names is
 * cleared first, so pt_read("log") afterwards lists the steps that ran. */
static int run(const char *extra1, const char *extra2)
{
    remove("log");
    char *argv[] = {(char *)lvd_run, "p.ini", (char *)extra1, (char *)extra2, NULL};
    return pt_run(argv);
}

static int64_t query(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_open("m.db", &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static void test_skip_and_rerun(void)
{
    write_pipeline(3, "", "");
    pt_write("in.txt", "one\n");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "a\nb\nc\n") == 0);
    CHECK(pt_count(pt_output, "run (never ran)") == 3);
    CHECK(query("SELECT COUNT(*) FROM images WHERE status = 'ok'") == 3);

    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "") == 0);
    CHECK(pt_count(pt_output, ": skip (unchanged since run ") == 3);
    CHECK(strstr(pt_output, "lvd-run: done: 0 of 3 steps run, 3 skipped\n") != NULL);

    /* a's parameter changes the images: b, which reads them, runs too; c does not. */
    write_pipeline(4, "", "");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "a\nb\n") == 0);
    CHECK(strstr(pt_output, "fake:a: run (parameters changed)") != NULL);
    CHECK(strstr(pt_output, "fake:b: run (manifest fact images changed: "
                            "'pool(pool) ok=3' -> 'pool(pool) ok=4')") != NULL);
    CHECK(strstr(pt_output, "fake:c: skip") != NULL);

    /* A parameter of a that leaves the images alone: only a runs. */
    write_pipeline(4, "note = x\n", "");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "a\n") == 0);

    /* The file c names changes (size): only c runs. */
    pt_write("in.txt", "one two\n");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "c\n") == 0);
    CHECK(strstr(pt_output, "fake:c: run (input in.txt changed)") != NULL);

    /* --from by step id and by stage name (the first step of that stage). */
    CHECK(run("--from", "fake:b") == 0);
    CHECK(strcmp(pt_read("log"), "b\nc\n") == 0);
    CHECK(strstr(pt_output, "fake:b: run (--from)") != NULL);
    CHECK(run("--from", "fake") == 0);
    CHECK(strcmp(pt_read("log"), "a\nb\nc\n") == 0);

    /* Every executed step is one row of runs, named pipeline:<step>. */
    CHECK(query("SELECT COUNT(*) FROM runs WHERE stage = 'pipeline:fake:a'") == 4);
    CHECK(query("SELECT COUNT(*) FROM runs WHERE stage = 'pipeline:fake:b'") == 4);
    CHECK(query("SELECT COUNT(*) FROM runs WHERE stage = 'pipeline:fake:c'") == 4);
    CHECK(query("SELECT COUNT(*) FROM runs WHERE status != 'ok'") == 0);
    CHECK(query("SELECT COUNT(*) FROM runs WHERE json_extract(params, '$.step') = 'fake:a'"
                " AND json_extract(params, '$.argv[0]') = '--db'") == 4);
}

static void test_dry_run(void)
{
    write_pipeline(5, "", "");
    CHECK(run("--dry-run", NULL) == 0);
    CHECK(strcmp(pt_read("log"), "") == 0);
    CHECK(strstr(pt_output, "[1/3] fake:a: run (parameters changed)\n") != NULL);
    CHECK(strstr(pt_output, "[2/3] fake:b: skip (unchanged since run ") != NULL);
    CHECK(strstr(pt_output, "; checked again after fake:a runs\n") != NULL);
    CHECK(strstr(pt_output, "/lvd-fake --db m.db --name a --images pool:5\n") != NULL);
    CHECK(strstr(pt_output, "lvd-run: plan: 1 of 3 steps to run, 2 skipped\n") != NULL);
    CHECK(query("SELECT COUNT(*) FROM images") == 4);
    CHECK(run(NULL, NULL) == 0); /* the real run does what the plan said, and b after all */
    CHECK(strcmp(pt_read("log"), "a\nb\n") == 0);
}

static void test_failure(void)
{
    write_pipeline(5, "", "exit = 3\n");
    CHECK(run(NULL, NULL) == 1);
    CHECK(strcmp(pt_read("log"), "b\n") == 0); /* c never ran */
    CHECK(strstr(pt_output, "lvd-run: stage fake (step fake:b, ") != NULL);
    CHECK(strstr(pt_output, "lvd-fake) failed with exit status 3\n") != NULL);
    CHECK(query("SELECT status = 'failed' AND json_extract(counts, '$.exit') = 3 FROM runs"
                " WHERE stage = 'pipeline:fake:b' ORDER BY id DESC LIMIT 1") == 1);
    /* Killed by a signal: named as such, recorded as failed. */
    write_pipeline(5, "", "signal = 9\n");
    CHECK(run(NULL, NULL) == 1);
    CHECK(strcmp(pt_read("log"), "b\n") == 0);
    CHECK(strstr(pt_output, "lvd-fake) was killed by signal 9 (Killed)\n") != NULL);
    CHECK(query("SELECT status = 'failed' AND json_extract(counts, '$.signal') = 9 FROM runs"
                " WHERE stage = 'pipeline:fake:b' ORDER BY id DESC LIMIT 1") == 1);
    /* Fixed: the failed step reruns even with its old parameters; a stays skipped. */
    write_pipeline(5, "", "");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "b\n") == 0);
    CHECK(strstr(pt_output, "fake:b: run (last run ") != NULL);
}

/* Every kind of fact is computed (empty ones included) and a rerun with nothing changed skips. */
static void test_all_facts(void)
{
    pt_write("facts.ini", "[fake:d]\n"
                          "name = d\n"
                          "reads = images:pool, embeddings embeddings:x models models:x dedup\n"
                          "reads = dedup:x curated curated:x images\n");
    char *argv[] = {(char *)lvd_run, "facts.ini", "--db", "m.db", NULL};
    remove("log");
    CHECK(pt_run(argv) == 0);
    CHECK(strcmp(pt_read("log"), "d\n") == 0);
    remove("log");
    CHECK(pt_run(argv) == 0);
    CHECK(strcmp(pt_read("log"), "") == 0);
    CHECK(strstr(pt_output, "fake:d: skip (unchanged since run ") != NULL);
    CHECK(query("SELECT json_extract(counts, '$.reads.\"images:pool\"') = 'pool(pool) ok=5'"
                " FROM runs WHERE stage = 'pipeline:fake:d'") == 1);
}

/* A run left 'running' by an lvd-run that died is marked interrupted, and its step reruns. */
static void test_interrupted(void)
{
    write_pipeline(5, "", "");
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "") == 0);
    CHECK(query("INSERT INTO runs (stage, status) VALUES ('pipeline:fake:c', 'running')"
                " RETURNING 1") == 1);
    CHECK(run(NULL, NULL) == 0);
    CHECK(strcmp(pt_read("log"), "c\n") == 0);
    CHECK(strstr(pt_output, "fake:c: run (last run ") != NULL);
    CHECK(strstr(pt_output, ": interrupted)\n") != NULL);
    CHECK(query("SELECT COUNT(*) FROM runs WHERE status = 'running'") == 0);
}

static void test_status(void)
{
    char *argv[] = {(char *)lvd_status, "--db", "m.db", NULL};
    CHECK(pt_run(argv) == 0);
    CHECK(strstr(pt_output, "  pool             pool          5         5          0         0"
                            "         0\n") != NULL);
    CHECK(strstr(pt_output, "pipeline:fake:b") != NULL);
    CHECK(strstr(pt_output, " ok ") != NULL);
    char *absent[] = {(char *)lvd_status, "--db", "absent.db", NULL};
    CHECK(pt_run(absent) == 1);
    CHECK(strstr(pt_output, "absent.db: no such manifest") != NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_pipeline_run LVD-RUN LVD-FAKE LVD-STATUS\n");
        return 1;
    }
    lvd_run = pt_abs(argv[1]);
    lvd_status = pt_abs(argv[3]);
    char *fake = pt_abs(argv[2]);
    setenv("LVD_STAGE_PATH", dirname(fake), 1);
    pt_scratch("run");
    char cwd[4096];
    char log[4200];
    snprintf(log, sizeof log, "%s/log", getcwd(cwd, sizeof cwd));
    setenv("LVD_FAKE_LOG", log, 1);
    test_skip_and_rerun();
    test_dry_run();
    test_failure();
    test_all_facts();
    test_interrupted();
    test_status();
    free(fake);
    free((char *)lvd_run);
    free((char *)lvd_status);
    return check_finish();
}
