/* lvd-embed under `mpirun -np 2` equals one process: on the same manifest, model "one" is
 * embedded by one process and model "mpi" by two ranks, with the random ViT-S/14 over ~8 small
 * shards and one image that does not decode. Every image's row is bitwise the same, each shard
 * gives one file of the same rows in the same order, the same failure is recorded, the run is
 * recorded once (ok, ranks 2) and a second MPI run finds nothing to do. A shard that a rank
 * cannot read fails the whole MPI run with that rank's message, keeping what was recorded, and
 * an MPI rerun completes it. An MPI run stopped as a scheduler stops it (SIGTERM to mpirun)
 * leaves what a one-process rerun completes, with the same rows again.
 *
 * Usage: test_stage_mpi LVD-FETCH LVD-MODEL LVD-EMBED MPIRUN */
#include "tests/embed_stage/embed_stage_test.h"

#define N_PHOTOS 16
#define DIM      384

typedef struct env {
    tools tl;
    const char *mpirun;
    char tmp[512], db[1024], log[1024];
} env;

/* lvd-embed of model with the test's settings, under mpirun -np 2 when mpi; returns the pid. */
static pid_t start_embed(const env *e, const char *model, int mpi)
{
    char *argv[32];
    int n = 0;
    if (mpi) {
        argv[n++] = (char *)e->mpirun;
        argv[n++] = "--allow-run-as-root";
        argv[n++] = "--oversubscribe";
        argv[n++] = "-np";
        argv[n++] = "2";
    }
    char *rest[] = {(char *)e->tl.embed,
                    "--db",
                    (char *)e->db,
                    "--model",
                    (char *)model,
                    "--batch",
                    "2",
                    "--resize",
                    "64",
                    "--crop",
                    "56",
                    "--threads",
                    "1",
                    "--no-progress"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    return check_spawn(CHECK_LOG_QUIET, argv, e->log);
}

static int embed(const env *e, const char *model, int mpi)
{
    int rc = check_wait(start_embed(e, model, mpi));
    if (rc != 0 && !mpi)
        test_print_file(e->log);
    return rc;
}

/* Rows of model, (N_PHOTOS + 1) x DIM indexed by image id; missing rows stay NaN. */
static float *load_rows(const env *e, const char *model)
{
    return test_load_rows(e->db, model, N_PHOTOS, DIM);
}

/* Model's rows bitwise those of "one" (every image that "one" has, and no other). */
static void check_rows_equal(const env *e, const char *model, const float *one)
{
    float *rows = load_rows(e, model);
    CHECK_MSG(memcmp(rows, one, (size_t)(N_PHOTOS + 1) * DIM * sizeof *rows) == 0,
              "%s: rows differ from the one-process run", model);
    free(rows);
}

/* Files (shard name, rows, cols, normalized; the model folder and run id left out), the
 * image -> (shard, row) map and the failures of model, as one text with a line each. */
static char *manifest_text(const env *e, const char *model)
{
    static const char *const queries[] = {
        "SELECT replace(substr(f.path, instr(f.path, '/' || m.name || '/') + length(m.name) + 2),"
        " '.r' || f.run_id || '.npy', '') || ' ' || f.rows || ' ' || f.cols || ' ' ||"
        " f.normalized FROM embedding_files f JOIN models m ON m.id = f.model_id"
        " WHERE m.name = ?1 ORDER BY 1",
        "SELECT e.image_id || ' ' || replace(replace(e.file, rtrim(e.file, replace(e.file, '/',"
        " '')), ''), '.r' || f.run_id || '.npy', '') || ' ' || e.row FROM v_embeddings e"
        " JOIN embedding_files f ON f.path = e.file WHERE e.model = ?1 ORDER BY e.image_id",
        "SELECT image_id || ' ' || error FROM v_embedding_failures WHERE model = ?1"
        " ORDER BY image_id",
    };
    size_t cap = 1 << 16, n = 0;
    char *text = calloc(cap, 1);
    sqlite3 *db = check_db_open(e->db);
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, queries[q], -1, &st, NULL) != SQLITE_OK) {
            CHECK_MSG(0, "%s", sqlite3_errmsg(db));
            continue;
        }
        sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW && n + 600 < cap)
            n += (size_t)snprintf(text + n, cap - n, "%s\n", sqlite3_column_text(st, 0));
        n += (size_t)snprintf(text + n, cap - n, "--\n");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return text;
}

static void check_manifest_equal(const env *e, const char *model, const char *one)
{
    char *text = manifest_text(e, model);
    CHECK_MSG(strcmp(text, one) == 0, "%s: manifest rows differ:\n%s\nfrom one process:\n%s", model,
              text, one);
    free(text);
}

static void add_model(const env *e, const char *model)
{
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.model, e->log, "add", "--db", e->db, "--name", model,
                    "--random", "vits14", NULL) == 0);
}

static long long last_run(const env *e, const char *what)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s FROM v_runs WHERE stage = 'embed' ORDER BY id DESC LIMIT 1", what);
    return test_sql_int(e->db, sql);
}

static void check_same_run(const env *e, const float *one, const char *one_text)
{
    add_model(e, "mpi");
    CHECK_MSG(embed(e, "mpi", 1) == 0, "mpirun lvd-embed failed");
    if (check_failures)
        test_print_file(e->log);
    CHECK(last_run(e, "status = 'ok'") == 1);
    CHECK(last_run(e, "json_extract(params, '$.ranks')") == 2);
    CHECK(last_run(e, "json_extract(counts, '$.embedded')") == N_PHOTOS - 1);
    CHECK(last_run(e, "json_extract(counts, '$.failed')") == 1);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/mpi", e->tmp);
    CHECK(test_check_consistent(e->db, "mpi", dir, DIM, 1) == N_PHOTOS - 1);
    check_rows_equal(e, "mpi", one);
    check_manifest_equal(e, "mpi", one_text);
    CHECK(embed(e, "mpi", 1) == 0);
    CHECK(last_run(e, "json_extract(counts, '$.todo')") == 0);
}

/* The last shard (rank 1's) missing: the run fails naming rank 1, rank 0's files stay recorded;
 * with the shard back an MPI rerun completes the model. */
static void check_rank_failure(const env *e, const float *one, const char *one_text)
{
    char shard[1024], moved[1100];
    sqlite3 *db = check_db_open(e->db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT path FROM shards ORDER BY id DESC LIMIT 1", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    snprintf(shard, sizeof shard, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    snprintf(moved, sizeof moved, "%s.away", shard);
    CHECK(rename(shard, moved) == 0);
    add_model(e, "mpi-fail");
    CHECK(embed(e, "mpi-fail", 1) != 0);
    CHECK_MSG(test_file_has(e->log, "lvd-embed: rank 1: "), "no message naming rank 1");
    CHECK(last_run(e, "status = 'failed'") == 1);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'mpi-fail'") > 0);
    CHECK(rename(moved, shard) == 0);
    CHECK(embed(e, "mpi-fail", 1) == 0);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/mpi-fail", e->tmp);
    CHECK(test_check_consistent(e->db, "mpi-fail", dir, DIM, 1) == N_PHOTOS - 1);
    check_rows_equal(e, "mpi-fail", one);
    check_manifest_equal(e, "mpi-fail", one_text);
}

/* SIGTERM to mpirun once a file is recorded (or when the run ends first), then one process. */
static void check_stopped_run(const env *e, const float *one)
{
    add_model(e, "mpi-stop");
    pid_t pid = start_embed(e, "mpi-stop", 1);
    int status, done = 0;
    while (!done && test_sql_int(e->db, "SELECT COUNT(*) FROM embedding_files f JOIN models m ON "
                                        "m.id = f.model_id WHERE m.name = 'mpi-stop'") < 1)
        if (waitpid(pid, &status, WNOHANG) == pid)
            done = 1;
        else
            usleep(5000);
    if (!done) {
        kill(pid, SIGTERM);
        check_wait(pid);
    }
    /* Open MPI stops the ranks before mpirun exits; a rank still holding the lock would make
     * the rerun fail, which the test then reports. */
    CHECK(embed(e, "mpi-stop", 0) == 0);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/mpi-stop", e->tmp);
    CHECK(test_check_consistent(e->db, "mpi-stop", dir, DIM, 1) == N_PHOTOS - 1);
    check_rows_equal(e, "mpi-stop", one);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'embed' AND status NOT "
                              "IN ('ok', 'interrupted', 'failed')") == 0);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s LVD-FETCH LVD-MODEL LVD-EMBED MPIRUN\n", argv[0]);
        return 2;
    }
    env e = {.tl = test_tools(argc, argv), .mpirun = argv[4]};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    char in[1024];
    snprintf(in, sizeof in, "%s/in", tmp);
    CHECK(test_fetch_photos(e.tl.fetch, e.db, e.log, in, "p", N_PHOTOS, "s", "16K") == 0);
    CHECK(test_sql_int(e.db, "SELECT MAX(id) FROM images") == N_PHOTOS);
    CHECK(test_sql_int(e.db, "SELECT COUNT(DISTINCT shard) FROM v_images") >= 6);
    /* One image that does not decode, in the first shard (rank 0's). */
    sqlite3 *db = check_db_open(e.db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT shard, member FROM v_images WHERE id = 2", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    char shard[1024], member[256];
    snprintf(shard, sizeof shard, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(member, sizeof member, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(test_swap_member(shard, member, NULL, NULL) == 0);

    add_model(&e, "one");
    CHECK(embed(&e, "one", 0) == 0);
    float *one = load_rows(&e, "one");
    char *one_text = manifest_text(&e, "one");
    CHECK(test_sql_int(e.db, "SELECT COUNT(*) FROM v_embedding_failures WHERE model = 'one'") == 1);

    check_same_run(&e, one, one_text);
    check_rank_failure(&e, one, one_text);
    check_stopped_run(&e, one);

    free(one);
    free(one_text);
    return test_finish(tmp, e.log);
}
