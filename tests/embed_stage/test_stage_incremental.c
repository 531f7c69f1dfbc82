/* Incremental embedding with the built-in random ViT-S/14 (small crops to stay quick): a second
 * run embeds nothing, new images are embedded alone, --limit splits the work, --source filters,
 * an image that no longer decodes is recorded as failed and skipped afterwards unless retried, and
 * the feature mode of a model with embeddings cannot change. */
#include "tests/embed_stage/embed_stage_test.h"

typedef struct env {
    tools tl;
    char tmp[512], db[1024], log[1024], dir[1024];
} env;

/* Runs lvd-fetch on a new folder of n photos (prefix) for source. */
static void add_photos(env *e, const char *source, const char *prefix, int n)
{
    char in[1024];
    snprintf(in, sizeof in, "%s/%s", e->tmp, prefix);
    CHECK(test_fetch_photos(e->tl.fetch, e->db, e->log, in, prefix, n, source, "20K") == 0);
}

/* Runs lvd-embed on model rnd with the extra arguments (up to 4, NULL-terminated); returns the
 * run's embedded count. */
static long long embed(env *e, const char *a1, const char *a2, const char *a3, const char *a4)
{
    int rc =
        check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "rnd", "--resize",
                  "64", "--crop", "56", "--batch", "3", "--no-progress", a1, a2, a3, a4, NULL);
    CHECK_MSG(rc == 0, "lvd-embed exited %d", rc);
    if (rc != 0)
        test_print_file(e->log);
    return test_last_count(e->db, "embed", "embedded");
}

static long long count(const env *e, const char *sql)
{
    return test_sql_int(e->db, sql);
}

/* An image whose shard member no longer decodes is recorded as failed and skipped; with
 * --retry-failed it is tried again (still failing: the record is replaced), and once its bytes are
 * back it is embedded and its failure record goes. */
static void check_failures_recorded(env *e)
{
    add_photos(e, "s", "d", 2);
    sqlite3 *db = check_db_open(e->db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT shard, member FROM v_images WHERE url LIKE '%/d-000.jpg'", -1,
                       &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    char shard[1024], member[256];
    snprintf(shard, sizeof shard, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(member, sizeof member, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(db);
    uint8_t *orig = NULL;
    CHECK(test_swap_member(shard, member, NULL, &orig) == 0);
    CHECK(embed(e, NULL, NULL, NULL, NULL) == 1);
    CHECK(test_last_count(e->db, "embed", "failed") == 1);
    CHECK(test_file_has(e->log, "skipped: 0"));
    const char *failed_sql = "SELECT COUNT(*) FROM v_embedding_failures x JOIN images i ON i.id = "
                             "x.image_id WHERE x.model = 'rnd' AND i.url LIKE '%/d-000.jpg' AND "
                             "x.error <> '' AND x.run_id = (SELECT MAX(id) FROM runs)";
    CHECK(count(e, failed_sql) == 1);
    CHECK(embed(e, NULL, NULL, NULL, NULL) == 0);
    CHECK(test_last_count(e->db, "embed", "todo") == 0);

    CHECK(embed(e, "--retry-failed", NULL, NULL, NULL) == 0);
    CHECK(test_last_count(e->db, "embed", "failed") == 1);
    CHECK(count(e, failed_sql) == 1);
    CHECK(orig && test_swap_member(shard, member, orig, NULL) == 0);
    free(orig);
    CHECK(embed(e, "--retry-failed", NULL, NULL, NULL) == 1);
    CHECK(test_last_count(e->db, "embed", "failed") == 0);
    CHECK(count(e, "SELECT COUNT(*) FROM v_embedding_failures") == 0);
}

int main(int argc, char **argv)
{
    env e = {.tl = test_tools(argc, argv)};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    snprintf(e.dir, sizeof e.dir, "%s/embeddings/rnd", tmp);
    add_photos(&e, "s", "a", 6);
    CHECK(count(&e, "SELECT COUNT(DISTINCT shard) FROM v_images") >= 2);
    CHECK(check_run(CHECK_LOG_QUIET, e.tl.model, e.log, "add", "--db", e.db, "--name", "rnd",
                    "--random", "vits14", NULL) == 0);
    CHECK(count(&e, "SELECT COUNT(*) FROM v_models WHERE name = 'rnd' AND path IS NULL AND "
                    "sha256 IS NULL AND dim = 384 AND params = 22056576 AND arch = 'vit_s14 "
                    "dim=384 depth=12 heads=6 reg=0 ffn=mlp grid=37 init=random seed=0'") == 1);

    CHECK(embed(&e, NULL, NULL, NULL, NULL) == 6);
    long long files = count(&e, "SELECT COUNT(*) FROM embedding_files");
    CHECK(embed(&e, NULL, NULL, NULL, NULL) == 0);
    CHECK(test_last_count(e.db, "embed", "todo") == 0);
    CHECK(count(&e, "SELECT COUNT(*) FROM embedding_files") == files);

    add_photos(&e, "s", "b", 4);
    CHECK(embed(&e, NULL, NULL, NULL, NULL) == 4);
    CHECK(test_check_consistent(e.db, "rnd", e.dir, 384, 1) == 10);

    add_photos(&e, "s", "c", 3);
    CHECK(embed(&e, "--limit", "2", NULL, NULL) == 2);
    CHECK(embed(&e, "--limit", "2", NULL, NULL) == 1);
    CHECK(test_check_consistent(e.db, "rnd", e.dir, 384, 1) == 13);

    add_photos(&e, "t", "t", 2);
    CHECK(embed(&e, "--source", "s", NULL, NULL) == 0);
    CHECK(embed(&e, "--source", "t", NULL, NULL) == 2);

    check_failures_recorded(&e);
    CHECK(test_check_consistent(e.db, "rnd", e.dir, 384, 1) == 17);
    CHECK(count(&e, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'rnd'") == 17);

    CHECK(check_run(CHECK_LOG_QUIET, e.tl.embed, e.log, "--db", e.db, "--model", "rnd",
                    "--features", "cls+patchmean", NULL) == 1);
    CHECK(test_file_has(e.log, "already has cls embeddings"));
    CHECK(count(&e, "SELECT COUNT(*) FROM v_runs WHERE status <> 'ok'") == 0);
    return test_finish(tmp, NULL);
}
