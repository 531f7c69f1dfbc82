/* A model's embeddings are made one way: the first rows record the settings (v_models
 * embed_settings), and a later lvd-embed run with another --resize, --crop or --no-normalize is
 * refused (exit 1, nothing embedded) with a message naming both settings and how to embed under
 * another model name; the same settings go on. Imports: rows with NaN, infinite values or all
 * zeros are refused naming the line and the image id; rows cannot join a model embedded by
 * lvd-embed, nor imported rows of another normalization. */
#include <math.h>

#include "tests/embed_stage/embed_stage_test.h"

#include "store/npy.h"

typedef struct env {
    tools tl;
    char tmp[512], db[1024], log[1024];
} env;

/* lvd-embed of model rnd with up to five more arguments (NULL ends them). */
static int embed(env *e, const char *a, const char *b, const char *c, const char *d, const char *f)
{
    return check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "rnd",
                     "--no-progress", "--threads", "2", a, b, c, d, f, NULL);
}

/* The tool must exit 1 with every one of want[] in its message. */
static void expect_refused(env *e, int rc, const char *const *want)
{
    CHECK_MSG(rc == 1, "exit %d, want 1", rc);
    for (int i = 0; want[i]; i++)
        CHECK_MSG(test_file_has(e->log, want[i]), "message lacks '%s'", want[i]);
    if (check_failures)
        test_print_file(e->log);
}

static void add_photos(env *e, const char *prefix, int n)
{
    char in[1024];
    snprintf(in, sizeof in, "%s/%s", e->tmp, prefix);
    CHECK(test_fetch_photos(e->tl.fetch, e->db, e->log, in, prefix, n, "s", NULL) == 0);
}

static void embed_settings(env *e)
{
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.model, e->log, "add", "--db", e->db, "--name", "rnd",
                    "--random", "vits14", "--seed", "3", NULL) == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_models WHERE embed_settings IS NULL") == 1);
    CHECK(embed(e, "--resize", "70", "--crop", "56", NULL) == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_models WHERE name = 'rnd' AND"
                              " json_extract(embed_settings, '$.resize') = 70 AND"
                              " json_extract(embed_settings, '$.crop') = 56 AND"
                              " json_extract(embed_settings, '$.normalize') = 1") == 1);
    long long rows = test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings");
    CHECK(rows == 3);

    add_photos(e, "b", 2);
    const char *resize[] = {"--resize 70 --crop 56;",
                            "--resize 84 --crop 56,",
                            "lvd-model add --db",
                            "--random vits14 --seed 3",
                            "--model NEW",
                            NULL};
    expect_refused(e, embed(e, "--resize", "84", "--crop", "56", NULL), resize);
    const char *crop[] = {"--resize 70 --crop 56;", "--resize 70 --crop 70,", NULL};
    expect_refused(e, embed(e, "--resize", "70", "--crop", "70", NULL), crop);
    const char *norm[] = {"--resize 70 --crop 56 --no-normalize", NULL};
    expect_refused(e, embed(e, "--resize", "70", "--crop", "56", "--no-normalize"), norm);
    const char *defaults[] = {"--resize 256 --crop 224,", NULL};
    expect_refused(e, embed(e, NULL, NULL, NULL, NULL, NULL), defaults);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings") == rows);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM runs WHERE stage = 'embed'") == 1);

    CHECK(embed(e, "--resize", "70", "--crop", "56", NULL) == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings") == rows + 2);
}

static void write_rows(const char *path, const float *x, int64_t rows, int64_t cols)
{
    int64_t shape[2] = {rows, cols};
    lvd_error err;
    if (lvd_npy_write(path, x, 2, shape, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static int import(env *e, const char *model, const char *npy, const char *ids)
{
    return check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", model,
                     "--import", npy, "--ids", ids, NULL);
}

static void import_checks(env *e)
{
    char npy[1024], ids[1024];
    snprintf(npy, sizeof npy, "%s/x.npy", e->tmp);
    snprintf(ids, sizeof ids, "%s/ids.txt", e->tmp);
    FILE *f = fopen(ids, "w");
    CHECK(f && fputs("1\n2\n3\n", f) >= 0 && fclose(f) == 0);
    long long files = test_sql_int(e->db, "SELECT COUNT(*) FROM embedding_files");

    float x[3 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    x[5] = NAN;
    write_rows(npy, x, 3, 4);
    const char *nan[] = {"row 1 (line 2 of", "image 2) holds NaN or infinite values", NULL};
    expect_refused(e, import(e, "ext", npy, ids), nan);
    x[5] = 1;
    x[11] = INFINITY;
    write_rows(npy, x, 3, 4);
    const char *inf[] = {"image 3) holds NaN or infinite values", NULL};
    expect_refused(e, import(e, "ext", npy, ids), inf);
    x[11] = 0;
    x[10] = 0;
    write_rows(npy, x, 3, 4);
    const char *zero[] = {"row 2 (line 3 of", "image 3) is all zeros", NULL};
    expect_refused(e, import(e, "ext", npy, ids), zero);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM models WHERE name = 'ext'") == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embedding_files") == files);

    /* Imported rows do not join rows made by lvd-embed. */
    add_photos(e, "c", 3);
    float wide[3 * 384];
    for (int i = 0; i < 3 * 384; i++)
        wide[i] = i % 385 == 0 ? 1.0f : 0.0f;
    write_rows(npy, wide, 3, 384);
    f = fopen(ids, "w");
    CHECK(f && fputs("6\n7\n8\n", f) >= 0 && fclose(f) == 0);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embeddings WHERE image_id IN (6, 7, 8)") == 0);
    const char *mixed[] = {"model 'rnd' has embeddings made with --resize 70 --crop 56",
                           "import them under another model name", NULL};
    expect_refused(e, import(e, "rnd", npy, ids), mixed);

    /* Normalized imported rows, then unnormalized ones under the same model. */
    x[10] = 1;
    write_rows(npy, x, 3, 4);
    f = fopen(ids, "w");
    CHECK(f && fputs("1\n2\n3\n", f) >= 0 && fclose(f) == 0);
    CHECK(import(e, "ext", npy, ids) == 0);
    for (int i = 0; i < 12; i++)
        x[i] *= 20;
    write_rows(npy, x, 3, 4);
    f = fopen(ids, "w");
    CHECK(f && fputs("4\n5\n6\n", f) >= 0 && fclose(f) == 0);
    const char *norms[] = {"import of L2-normalized rows",
                           "these are lvd-embed --import of "
                           "unnormalized rows",
                           NULL};
    expect_refused(e, import(e, "ext", npy, ids), norms);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM embedding_files") == files + 1);
}

int main(int argc, char **argv)
{
    env e = {.tl = test_tools(argc, argv)};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    add_photos(&e, "a", 3);
    embed_settings(&e);
    import_checks(&e);
    return test_finish(tmp, NULL);
}
