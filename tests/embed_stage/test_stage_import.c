/* lvd-embed --import: the happy path (ids and urls, an unknown model registered as external, the
 * file copied and recorded, or referenced in place) and the errors (row count mismatch, unknown
 * id or url naming the line, a repeated image, a wrong width, an image already embedded), none of
 * which records anything or leaves a file. */
#include "tests/embed_stage/embed_stage_test.h"

#include "store/npy.h"

#define N   5
#define DIM 8

typedef struct env {
    tools tl;
    char tmp[512], db[1024], log[1024];
} env;

/* Writes rows x cols values i * 0.5 + j at path. */
static void write_npy(const char *path, int64_t rows, int64_t cols)
{
    float *x = malloc((size_t)(rows * cols) * sizeof *x);
    for (int64_t i = 0; i < rows * cols; i++)
        x[i] = (float)(i / cols) * 0.5f + (float)(i % cols);
    int64_t shape[2] = {rows, cols};
    lvd_error err;
    if (lvd_npy_write(path, x, 2, shape, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    free(x);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static int import(env *e, const char *model, const char *npy, const char *ids)
{
    return check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", model,
                     "--import", npy, "--ids", ids, NULL);
}

/* The import must fail with a message containing want, and change nothing. */
static void expect_error(env *e, const char *model, const char *npy, const char *ids,
                         const char *want)
{
    long long rows = test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings");
    long long models = test_sql_int(e->db, "SELECT COUNT(*) FROM models");
    int rc = import(e, model, npy, ids);
    CHECK_MSG(rc == 1, "import of %s / %s exited %d", npy, ids, rc);
    CHECK_MSG(test_file_has(e->log, want), "message lacks '%s'", want);
    if (!test_file_has(e->log, want))
        test_print_file(e->log);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings") == rows);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM models") == models);
}

static void happy_path(env *e, const char *url3)
{
    char npy[1024], ids[1024], text[2048], dir[1024];
    snprintf(npy, sizeof npy, "%s/ext.npy", e->tmp);
    snprintf(ids, sizeof ids, "%s/ids.txt", e->tmp);
    write_npy(npy, N, DIM);
    snprintf(text, sizeof text, "5\n4\n%s\n2\r\n1\n", url3);
    write_text(ids, text);
    CHECK(import(e, "ext", npy, ids) == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_models WHERE name = 'ext' AND dim = 8 AND "
                              "path IS NULL AND arch LIKE 'external%'") == 1);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM models WHERE features = 'external'") == 1);
    snprintf(dir, sizeof dir, "%s/embeddings/ext", e->tmp);
    CHECK(test_check_consistent(e->db, "ext", dir, DIM, 1) == N);
    /* Line k (0-based) holds image order[k]; its row is row k of the copy. */
    const int order[N] = {5, 4, 3, 2, 1};
    for (int k = 0; k < N; k++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT row FROM v_embeddings WHERE model = 'ext' AND image_id = %d AND file "
                 "LIKE '%%/embeddings/ext/ext.r%%.npy'",
                 order[k]);
        CHECK(test_sql_int(e->db, sql) == k);
    }
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embedding_files WHERE normalized = 0") == 1);
    CHECK(test_last_count(e->db, "embed-import", "rows") == N);
}

static void in_place(env *e)
{
    char dir[1024], npy[1200], ids[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/here", e->tmp);
    test_mkdir(dir);
    snprintf(npy, sizeof npy, "%s/mine.npy", dir);
    snprintf(ids, sizeof ids, "%s/ids2.txt", e->tmp);
    write_npy(npy, 2, 4);
    write_text(ids, "3\n1\n");
    CHECK(import(e, "here", npy, ids) == 0);
    char sql[1400];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM v_embeddings WHERE model = 'here' AND file = '%s'", npy);
    CHECK(test_sql_int(e->db, sql) == 2);
    CHECK(test_check_consistent(e->db, "here", dir, 4, 0) == 2);
}

static void errors(env *e)
{
    char npy[1024], bad4[1024], ids[1024], text[1024];
    snprintf(npy, sizeof npy, "%s/five.npy", e->tmp);
    snprintf(bad4, sizeof bad4, "%s/four.npy", e->tmp);
    snprintf(ids, sizeof ids, "%s/bad.txt", e->tmp);
    write_npy(npy, N, DIM);
    write_npy(bad4, 4, DIM);
    write_text(ids, "1\n2\n3\n4\n5\n");
    expect_error(e, "new1", bad4, ids, "has 4 rows but");
    write_text(ids, "1\n2\n999\n4\n5\n");
    expect_error(e, "new1", npy, ids, "bad.txt:3: no image with id '999'");
    write_text(ids, "1\n2\n3\nfile:///nowhere.jpg\n5\n");
    expect_error(e, "new1", npy, ids, "bad.txt:4: no image with url 'file:///nowhere.jpg'");
    write_text(ids, "1\n2\n3\n2\n5\n");
    expect_error(e, "new1", npy, ids, "bad.txt:4: image 2 is already on line 2");
    write_text(ids, "1\n2\n\n4\n5\n");
    expect_error(e, "new1", npy, ids, "bad.txt:3: empty line");
    write_text(ids, "1\n2\n3\n4\n5\n");
    expect_error(e, "ext", npy, ids, "image 1 already has an embedding of model 'ext'");
    snprintf(text, sizeof text, "%s/wide.npy", e->tmp);
    write_npy(text, N, DIM + 1);
    expect_error(e, "ext", text, ids, "model 'ext' has dim 8");
    snprintf(text, sizeof text, "%s/missing.npy", e->tmp);
    expect_error(e, "new1", text, ids, "missing.npy");
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "x", "--import",
                    npy, NULL) == 2);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_runs WHERE status = 'running'") == 0);
}

int main(int argc, char **argv)
{
    env e = {.tl = test_tools(argc, argv)};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    char in[1024];
    snprintf(in, sizeof in, "%s/in", tmp);
    CHECK(test_fetch_photos(e.tl.fetch, e.db, e.log, in, "p", N, "s", NULL) == 0);
    CHECK(test_sql_int(e.db, "SELECT COUNT(*) FROM images WHERE id BETWEEN 1 AND 5") == N);
    char url3[1200];
    snprintf(url3, sizeof url3, "file://%s/p-002.jpg", in);
    char sql[1400];
    snprintf(sql, sizeof sql, "SELECT id FROM images WHERE url = '%s'", url3);
    CHECK(test_sql_int(e.db, sql) == 3);
    happy_path(&e, url3);
    in_place(&e);
    errors(&e);
    return test_finish(tmp, NULL);
}
