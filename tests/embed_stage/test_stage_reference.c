/* The embed stage against the direct path: the four photos of the reference preprocess case go
 * through lvd-fetch (tar shards) and lvd-embed with the reference ViT-S/14 weights; each row must
 * equal lvd_vit_features on lvd_image_preprocess of the original file (1e-5), for cls (L2
 * normalized, norm 1, also checked against the reference's cls), raw cls (--no-normalize) and
 * cls+patchmean features, the last with --batch 3 so batches straddle images. */
#include "tests/embed_stage/embed_stage_test.h"

#include "embed/vit.h"

static const char *const photos[] = {
    MATE "/nature/FreshFlower.jpg", MATE "/nature/Aqua.jpg", MATE "/desktop/GreenTraditional.jpg",
    MATE "/abstract/Spring.png", /* RGBA: alpha is dropped, not composited */
};

/* Features of the original file computed without the stage. */
static int direct_features(lvd_vit *vit, const char *path, lvd_vit_pool pool, int normalize,
                           float *out)
{
    size_t len;
    uint8_t *buf = (uint8_t *)check_slurp(path, &len);
    if (!buf)
        return -1;
    lvd_decode_opts opts = {.alpha = LVD_ALPHA_DROP};
    lvd_image img;
    lvd_error err;
    float *x = malloc(3 * 224 * 224 * sizeof *x);
    int rc = lvd_image_decode(buf, len, &opts, &img, &err);
    if (rc == 0)
        rc = lvd_image_preprocess(&img, 256, 224, x, &err);
    if (rc == 0)
        rc = lvd_vit_features(vit, x, 1, 224, 224, pool, out, &err);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", path, err.msg);
    int dim = lvd_vit_feature_dim(vit, pool);
    double ss = 0;
    for (int j = 0; j < dim; j++)
        ss += (double)out[j] * out[j];
    for (int j = 0; normalize && j < dim; j++)
        out[j] = (float)(out[j] / sqrt(ss));
    lvd_image_free(&img);
    free(x);
    free(buf);
    return rc;
}

static double max_diff(const float *a, const float *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* The reference cls of the photo, L2-normalized into out (dim 384); -1 when not in the case. */
static int reference_cls(const lvd_tensors *cs, const char *photo, float *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(photos[i], photo) != 0)
            continue;
        char name[64];
        snprintf(name, sizeof name, "img%d.vits14_d2.cls", i);
        const lvd_tensor *t = lvd_tensors_find(cs, name);
        if (!t || t->numel != 384)
            return -1;
        double ss = 0;
        for (int j = 0; j < 384; j++)
            ss += (double)t->data[j] * t->data[j];
        for (int j = 0; j < 384; j++)
            out[j] = (float)(t->data[j] / sqrt(ss));
        return 0;
    }
    return -1;
}

/* Compares every row of model with the direct computation; returns the rows seen. */
static int compare_model(const char *db, const char *in_dir, const char *model, lvd_vit *vit,
                         lvd_vit_pool pool, int normalize, const lvd_tensors *cs)
{
    sqlite3 *h = check_db_open(db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(h,
                       "SELECT e.file, e.row, i.url FROM v_embeddings e JOIN images i ON "
                       "i.id = e.image_id WHERE e.model = ?1 ORDER BY i.id",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    int dim = lvd_vit_feature_dim(vit, pool), seen = 0;
    float *direct = malloc((size_t)dim * sizeof *direct), ref[384];
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *file = (const char *)sqlite3_column_text(st, 0);
        int row = sqlite3_column_int(st, 1);
        const char *url = (const char *)sqlite3_column_text(st, 2);
        const char *base = strrchr(url, '/') + 1;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", in_dir, base);
        lvd_tensors *ts;
        lvd_error err;
        CHECK_MSG(lvd_tensors_open(file, &ts, &err) == 0, "%s", err.msg);
        const lvd_tensor *t = lvd_tensors_find(ts, "array");
        CHECK(t && t->shape[1] == dim && row < t->shape[0]);
        CHECK(direct_features(vit, path, pool, normalize, direct) == 0);
        const float *got = t->data + (size_t)row * dim;
        double d = max_diff(got, direct, dim);
        CHECK_MSG(d <= 1e-5, "%s %s: stage and direct features differ by %g", model, base, d);
        char photo[1024];
        for (int i = 0; i < 4; i++) {
            if (strcmp(strrchr(photos[i], '/') + 1, base) == 0)
                snprintf(photo, sizeof photo, "%s", photos[i]);
        }
        if (normalize && pool == LVD_VIT_POOL_CLS && reference_cls(cs, photo, ref) == 0) {
            d = max_diff(got, ref, 384);
            CHECK_MSG(d <= 1e-4, "%s %s: differs from the reference cls by %g", model, base, d);
        }
        printf("%s %s: row %d, max |stage - direct| %.3g\n", model, base, row,
               max_diff(got, direct, dim));
        lvd_tensors_close(ts);
        seen++;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(direct);
    return seen;
}

int main(int argc, char **argv)
{
    tools tl = test_tools(argc, argv);
    const char *refdir = check_reference_dir();
    char weights[1024], casefile[1024];
    snprintf(weights, sizeof weights, "%s/vits14_d2.weights.safetensors", refdir);
    snprintf(casefile, sizeof casefile, "%s/preprocess.case.safetensors", refdir);
    char *tmp = check_tmpdir("lvd-stage-test");
    char in[1024], db[1024], log[1024], cmd[4096];
    snprintf(in, sizeof in, "%s/in", tmp);
    snprintf(db, sizeof db, "%s/m.db", tmp);
    snprintf(log, sizeof log, "%s/log", tmp);
    test_mkdir(in);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' '%s' '%s' '%s/'", photos[0], photos[1], photos[2],
             photos[3], in);
    CHECK(system(cmd) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, tl.fetch, log, "--db", db, "--source", "photos",
                    "--no-progress", in, NULL) == 0);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_images WHERE status = 'ok'") == 4);
    CHECK(check_run(CHECK_LOG_QUIET, tl.model, log, "add", "--db", db, "--name", "ref", weights,
                    NULL) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, tl.model, log, "add", "--db", db, "--name", "raw", weights,
                    NULL) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, tl.model, log, "add", "--db", db, "--name", "pm", "--features",
                    "cls+patchmean", weights, NULL) == 0);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_models WHERE dim = 384 AND params = 4304256 "
                           "AND arch = 'vit_s14 dim=384 depth=2 heads=6 reg=0 ffn=mlp grid=37' "
                           "AND length(sha256) = 64 AND path LIKE '/%'") == 2);
    CHECK(check_run(CHECK_LOG_QUIET, tl.embed, log, "--db", db, "--model", "ref", "--batch", "2",
                    "--no-progress", NULL) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, tl.embed, log, "--db", db, "--model", "raw", "--no-normalize",
                    "--no-progress", NULL) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, tl.embed, log, "--db", db, "--model", "pm", "--batch", "3",
                    "--no-progress", NULL) == 0);
    if (check_failures)
        test_print_file(log);
    lvd_vit *vit;
    lvd_tensors *cs;
    lvd_error err;
    if (lvd_vit_load(weights, &vit, &err) != 0 || lvd_tensors_open(casefile, &cs, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    CHECK(compare_model(db, in, "ref", vit, LVD_VIT_POOL_CLS, 1, cs) == 4);
    CHECK(compare_model(db, in, "raw", vit, LVD_VIT_POOL_CLS, 0, cs) == 4);
    CHECK(compare_model(db, in, "pm", vit, LVD_VIT_POOL_CLS_MEANPATCH, 1, cs) == 4);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/ref", tmp);
    CHECK(test_check_consistent(db, "ref", dir, 384, 1) == 4);
    snprintf(dir, sizeof dir, "%s/embeddings/pm", tmp);
    CHECK(test_check_consistent(db, "pm", dir, 768, 1) == 4);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM embedding_files f JOIN models m ON m.id = "
                           "f.model_id WHERE m.name = 'raw' AND f.normalized = 0") == 1);
    CHECK(test_sql_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'embed' AND status = 'ok' "
                           "AND json_extract(counts, '$.embedded') = 4") == 3);
    lvd_tensors_close(cs);
    lvd_vit_free(vit);
    return test_finish(tmp, NULL);
}
