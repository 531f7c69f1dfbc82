/* kill -9 during lvd-embed, then a rerun: no duplicate, no missing row, every recorded row points
 * at an existing file with that many rows, no unrecorded or temporary file remains, and the rows
 * equal those of an uninterrupted run. The random ViT-S/14 with --batch 1 over ~8 small shards
 * leaves a window for the kill; the kill points are conditions, not times (right after start,
 * after some recorded files, twice in one scenario), and the checks hold wherever the kill
 * actually lands, the end of the run included. */
#include "tests/embed_stage/embed_stage_test.h"

#define N_PHOTOS 16
#define DIM      384

typedef struct env {
    tools tl;
    char tmp[512], db[1024], log[1024];
} env;

static long long files_of(const env *e, const char *model)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM embedding_files f JOIN models m ON m.id = f.model_id "
             "WHERE m.name = '%s'",
             model);
    return test_sql_int(e->db, sql);
}

static pid_t start_embed(const env *e, const char *model)
{
    char *argv[] = {(char *)e->tl.embed,
                    "--db",
                    (char *)e->db,
                    "--model",
                    (char *)model,
                    "--batch",
                    "1",
                    "--resize",
                    "128",
                    "--crop",
                    "112",
                    "--threads",
                    "1",
                    "--no-progress",
                    "--log-interval",
                    "1",
                    NULL};
    return check_spawn(CHECK_LOG_QUIET, argv, e->log);
}

/* Kills the run once the model has at least `files` recorded files (0: at once), or lets it
 * finish when it ends first. */
static void kill_after(const env *e, const char *model, long long files)
{
    pid_t pid = start_embed(e, model);
    for (;;) {
        if (files_of(e, model) >= files)
            break;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return;
        usleep(5000);
    }
    kill(pid, SIGKILL);
    check_wait(pid);
}

/* Rows of model, (N_PHOTOS + 1) x DIM indexed by image id; missing rows stay NaN. */
static float *load_rows(const env *e, const char *model)
{
    return test_load_rows(e->db, model, N_PHOTOS, DIM);
}

static void scenario(const env *e, const char *model, const float *clean, const long long *kills,
                     int n_kills)
{
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.model, e->log, "add", "--db", e->db, "--name", model,
                    "--random", "vits14", NULL) == 0);
    for (int k = 0; k < n_kills; k++)
        kill_after(e, model, kills[k]);
    long long before = files_of(e, model);
    int rc = check_wait(start_embed(e, model));
    CHECK_MSG(rc == 0, "%s: rerun exited %d", model, rc);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/%s", e->tmp, model);
    CHECK_MSG(test_check_consistent(e->db, model, dir, DIM, 1) == N_PHOTOS, "%s", model);
    float *rows = load_rows(e, model);
    double d = 0;
    for (size_t i = DIM; i < (size_t)(N_PHOTOS + 1) * DIM; i++)
        d = isnan(rows[i]) ? INFINITY : fmax(d, fabs((double)rows[i] - clean[i]));
    CHECK_MSG(d <= 1e-5, "%s: rows differ from the uninterrupted run by %g", model, d);
    printf("%s: %lld files recorded before the rerun, %lld after; max diff %g\n", model, before,
           files_of(e, model), d);
    free(rows);
}

int main(int argc, char **argv)
{
    env e = {.tl = test_tools(argc, argv)};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    char in[1024];
    snprintf(in, sizeof in, "%s/in", tmp);
    CHECK(test_fetch_photos(e.tl.fetch, e.db, e.log, in, "p", N_PHOTOS, "s", "16K") == 0);
    CHECK(test_sql_int(e.db, "SELECT COUNT(*) FROM v_images WHERE status = 'ok'") == N_PHOTOS);
    CHECK(test_sql_int(e.db, "SELECT MAX(id) FROM images") == N_PHOTOS);
    CHECK(test_sql_int(e.db, "SELECT COUNT(DISTINCT shard) FROM v_images") >= 6);

    CHECK(check_run(CHECK_LOG_QUIET, e.tl.model, e.log, "add", "--db", e.db, "--name", "clean",
                    "--random", "vits14", NULL) == 0);
    CHECK(check_wait(start_embed(&e, "clean")) == 0);
    float *clean = load_rows(&e, "clean");

    const long long at_once[] = {0}, mid[] = {3}, twice[] = {1, 4};
    scenario(&e, "k-early", clean, at_once, 1);
    scenario(&e, "k-mid", clean, mid, 1);
    scenario(&e, "k-twice", clean, twice, 2);
    CHECK(test_sql_int(e.db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'embed' AND status NOT IN "
                             "('ok', 'interrupted')") == 0);
    free(clean);
    return test_finish(tmp, e.log);
}
