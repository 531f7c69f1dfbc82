/* lvd-eval end to end on a small manifest: labelled JPEGs in class folders fetched as sources
 * 'tr' (3 classes x 10) and 'te' (3 x 4), a flat unlabeled folder as 'nolab'.
 * - k-NN with embeddings imported by lvd-embed --import (external model 'ext', 16 values, three
 *   noisy class directions plus confusers): the printed table and the v_evals rows must hold
 *   the top-1 / top-5 a double-precision re-implementation of knn.py computes here, k = 100
 *   clamped to the 30 train images; the run is recorded.
 * - The ViT path with the built-in random ViT-S/14 at 28 x 28: features computed from the
 *   shards (several per source) match a direct lvd_vit_forward of the decoded files (cls of the
 *   last 4 blocks and the mean patch token); lvd-eval knn embeds the missing images through the
 *   embed stage, and its stored cls embeddings equal the computed ones; more images are
 *   embedded with the stored embeddings' transform and refused with another; --pool cls+mean
 *   and lvd-eval linear (transform as stored) run and record their rows.
 * - Errors: unknown source or model, unlabeled images (with their count), a model without
 *   embeddings (external, or --no-embed), linear on an external model, bad usage.
 * Usage: test_eval_cli LVD-FETCH LVD-MODEL LVD-EMBED LVD-EVAL */
#include <math.h>

#include "curate/stages/embeddings_read.h"
#include "curate/stages/embeddings_vit.h"
#include "embed/model_registry.h"
#include "index/index.h"
#include "tests/check_run.h"
#include "tests/stages/stages_test.h"
#include "train/eval/eval.h"
#include "train/eval/eval_data.h"

enum { T_FETCH, T_MODEL, T_EMBED, T_EVAL, T_COUNT };
static const char *tool[T_COUNT];
static char dir[256], db_path[320];

#define DIM    16
#define NCLS   3
#define PER_TR 10
#define PER_TE 4
#define N_TR   (NCLS * PER_TR)
#define N_TE   (NCLS * PER_TE)

static const char *const cls_name[NCLS] = {"a", "b", "c"};

/* Runs argv with stdout and stderr into files; returns the exit status. */
static int run2(char *const argv[], const char *out_path, const char *err_path)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo >= 0)
            dup2(fo, 1);
        if (fe >= 0)
            dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return check_wait(pid);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

/* Runs lvd-eval with the given arguments after "--db DB"; out / err get its output. */
static int eval(char **out, char **err, const char *sub, ...)
{
    char *argv[64] = {(char *)tool[T_EVAL], (char *)sub, "--db", db_path};
    int n = 4;
    va_list ap;
    va_start(ap, sub);
    for (char *a; (a = va_arg(ap, char *)) && n < 63;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char op[400], ep[400];
    snprintf(op, sizeof op, "%s/out.txt", dir);
    snprintf(ep, sizeof ep, "%s/err.txt", dir);
    int rc = run2(argv, op, ep);
    char *o = slurp(op), *e = slurp(ep);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

static int fetch(const char *source, const char *role, const char *folder)
{
    return st_fetch(tool[T_FETCH], dir, db_path, source, role, folder, "--shard-size", "20K");
}

/* Train image i of class c has file tr/<c>/tr<c><i>.jpg; test te/<c>/te<c><i>.jpg. */
static void write_images(void)
{
    char path[512];
    const char *parts[2] = {"tr", "te"};
    for (int p = 0; p < 2; p++) {
        snprintf(path, sizeof path, "%s/%s", dir, parts[p]);
        st_mkdir(path);
        for (int c = 0; c < NCLS; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", dir, parts[p], cls_name[c]);
            st_mkdir(path);
            for (int i = 0; i < (p ? PER_TE : PER_TR); i++) {
                snprintf(path, sizeof path, "%s/%s/%s/%s%s%02d.jpg", dir, parts[p], cls_name[c],
                         parts[p], cls_name[c], i);
                CHECK(st_write_jpeg(path, 40 + i, 36 + c, (uint32_t)(p * 1000 + c * 100 + i)) == 0);
            }
        }
    }
    snprintf(path, sizeof path, "%s/te2", dir);
    st_mkdir(path);
    for (int c = 0; c < NCLS; c++) {
        snprintf(path, sizeof path, "%s/te2/%s", dir, cls_name[c]);
        st_mkdir(path);
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/te2/%s/te2%s%02d.jpg", dir, cls_name[c], cls_name[c],
                     i);
            CHECK(st_write_jpeg(path, 44, 40 + i, (uint32_t)(7000 + c * 10 + i)) == 0);
        }
    }
    snprintf(path, sizeof path, "%s/nolab", dir);
    st_mkdir(path);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/nolab/n%d.jpg", dir, i);
        CHECK(st_write_jpeg(path, 48, 48, (uint32_t)(5000 + i)) == 0);
    }
    CHECK(fetch("tr", "seed", "tr") == 0);
    CHECK(fetch("te", "eval", "te") == 0);
    CHECK(fetch("nolab", "pool", "nolab") == 0);
    CHECK(fetch("te2", "eval", "te2") == 0);
}

/* ---- k-NN on imported embeddings ----------------------------------------------------------- */

static float emb_tr[N_TR * DIM], emb_te[N_TE * DIM];
static int32_t lab_tr[N_TR], lab_te[N_TE];
static int64_t id_tr[N_TR], id_te[N_TE];

/* Class c points along basis c with noise; train images 8 and 9 of each class point to the next
 * class instead (confusers), test image 3 of each class halfway to the next. */
static void make_vector(int c, int i, int test, float *out)
{
    double v[DIM], n2 = 0;
    int dir1 = !test && i >= 8 ? (c + 1) % NCLS : c;
    for (int j = 0; j < DIM; j++)
        v[j] = st_noise((uint64_t)(test * 1000 + c * 100 + i + 1), j) * 1.2;
    v[dir1] += 1.0;
    if (test && i == 3)
        v[(c + 1) % NCLS] += 0.8;
    for (int j = 0; j < DIM; j++)
        n2 += v[j] * v[j];
    for (int j = 0; j < DIM; j++)
        out[j] = (float)(v[j] / sqrt(n2));
}

static int import(const char *model, const float *rows, const int64_t *ids, int n, const char *name)
{
    char npy[512], txt[512];
    snprintf(npy, sizeof npy, "%s/%s.npy", dir, name);
    snprintf(txt, sizeof txt, "%s/%s.txt", dir, name);
    lvd_error err;
    int64_t shape[2] = {n, DIM};
    if (lvd_npy_write(npy, rows, 2, shape, &err))
        return -1;
    FILE *f = fopen(txt, "w");
    for (int i = 0; f && i < n; i++)
        fprintf(f, "%lld\n", (long long)ids[i]);
    if (!f || fclose(f) != 0)
        return -1;
    char *argv[] = {(char *)tool[T_EMBED],
                    "--db",
                    db_path,
                    "--model",
                    (char *)model,
                    "--import",
                    npy,
                    "--ids",
                    txt,
                    NULL};
    return st_run(argv, NULL);
}

/* knn.py in double: softmax(sims / T) over the largest k, class sums, sorted classes (ties
 * to the lower class). Writes correct top-1 / top-5 counts per k; returns the smallest gap
 * between consecutive neighbour similarities or class scores that decides something. */
static double reference(const int *ks, int n_ks, double T, int64_t *c1, int64_t *c5)
{
    double min_gap = 1.0;
    for (int t = 0; t < n_ks; t++)
        c1[t] = c5[t] = 0;
    for (int q = 0; q < N_TE; q++) {
        double s[N_TR];
        int order[N_TR];
        for (int b = 0; b < N_TR; b++) {
            s[b] = 0;
            for (int j = 0; j < DIM; j++)
                s[b] += (double)emb_tr[b * DIM + j] * emb_te[q * DIM + j];
            order[b] = b;
        }
        for (int a = 1; a < N_TR; a++)
            for (int b = a; b > 0 && s[order[b]] > s[order[b - 1]]; b--) {
                int tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        for (int a = 0; a + 1 < N_TR; a++)
            min_gap = fmin(min_gap, s[order[a]] - s[order[a + 1]]);
        int K = 0;
        for (int t = 0; t < n_ks; t++)
            K = (ks[t] < N_TR ? ks[t] : N_TR) > K ? (ks[t] < N_TR ? ks[t] : N_TR) : K;
        double Z = 0;
        for (int j = 0; j < K; j++)
            Z += exp(s[order[j]] / T);
        for (int t = 0; t < n_ks; t++) {
            int k = ks[t] < N_TR ? ks[t] : N_TR;
            double sc[NCLS] = {0};
            for (int j = 0; j < k; j++)
                sc[lab_tr[order[j]]] += exp(s[order[j]] / T) / Z;
            int best = 0;
            for (int c = 1; c < NCLS; c++)
                best = sc[c] > sc[best] ? c : best;
            for (int c = 0; c < NCLS; c++)
                if (c != best && sc[c] > 0)
                    min_gap = fmin(min_gap, fabs(sc[best] - sc[c]) / sc[best]);
            c1[t] += best == lab_te[q];
            c5[t] += 1; /* 3 classes: every class is in the top 5 */
        }
    }
    return min_gap;
}

static void test_knn_imported(sqlite3 *db)
{
    for (int c = 0; c < NCLS; c++) {
        char name[32];
        for (int i = 0; i < PER_TR; i++) {
            int r = c * PER_TR + i;
            snprintf(name, sizeof name, "tr%s%02d.jpg", cls_name[c], i);
            id_tr[r] = st_image_id(db, name);
            lab_tr[r] = c;
            make_vector(c, i, 0, emb_tr + r * DIM);
        }
        for (int i = 0; i < PER_TE; i++) {
            int r = c * PER_TE + i;
            snprintf(name, sizeof name, "te%s%02d.jpg", cls_name[c], i);
            id_te[r] = st_image_id(db, name);
            lab_te[r] = c;
            make_vector(c, i, 1, emb_te + r * DIM);
        }
    }
    CHECK(id_tr[0] > 0 && id_te[N_TE - 1] > 0);
    CHECK(import("ext", emb_tr, id_tr, N_TR, "ext-tr") == 0);
    CHECK(import("ext", emb_te, id_te, N_TE, "ext-te") == 0);

    static const int ks[4] = {1, 3, 5, 100};
    int64_t c1[4], c5[4];
    double gap = reference(ks, 4, (double)0.07f, c1, c5);
    CHECK_MSG(gap > 1e-5, "the planted embeddings have a near-tie (%g)", gap);
    printf("reference top-1 counts: %lld %lld %lld %lld of %d\n", (long long)c1[0],
           (long long)c1[1], (long long)c1[2], (long long)c1[3], N_TE);
    CHECK(c1[0] < N_TE && c1[0] > N_TE / 2); /* neither trivial nor hopeless */

    char *out, *err;
    int rc = eval(&out, &err, "knn", "--model", "ext", "--train", "tr", "--test", "te", "-k",
                  "1,3,5,100", NULL);
    CHECK_MSG(rc == 0, "lvd-eval knn: %s", err);
    fputs(out, stdout);
    for (int t = 0; t < 4; t++) {
        int k_used = ks[t] < N_TR ? ks[t] : N_TR;
        double top1 = 100.0 * (double)c1[t] / N_TE, top5 = 100.0 * (double)c5[t] / N_TE;
        char line[128];
        snprintf(line, sizeof line, "%6d  %7.2f  %7.2f", k_used, top1, top5);
        CHECK_MSG(strstr(out, line), "no line '%s'", line);
        CHECK(st_int(db,
                     "SELECT COUNT(*) FROM v_evals WHERE model = 'ext' AND protocol = 'knn' AND "
                     "setting = 'external' AND split = 'test' AND k = %d AND abs(top1 - %.12f) "
                     "< 1e-9 AND abs(top5 - %.12f) < 1e-9 AND n_train = %d AND n_test = %d AND "
                     "train = 'tr' AND test = 'te' AND lr IS NULL",
                     k_used, top1, top5, N_TR, N_TE) == 1);
    }
    CHECK(strstr(out, "(k = 100 clamped to the bank)"));
    CHECK(strstr(out, "3 classes"));
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_evals") == 4);
    CHECK(st_int(db, "SELECT COUNT(DISTINCT run) FROM v_evals") == 1);
    CHECK(st_int(db,
                 "SELECT COUNT(*) FROM v_runs r JOIN v_evals e ON e.run = r.id WHERE r.stage = "
                 "'eval-knn' AND r.status = 'ok' AND json_extract(r.counts, '$.test') = %d",
                 N_TE) == 4);
    free(out);
    free(err);
}

/* ---- The ViT path -------------------------------------------------------------------------- */

/* eval_vit_features (blocks 4, mean patch, batch 4 over several shards) against a forward pass
 * of each decoded file; then the cls features against the embed stage's stored rows. */
static void test_vit_features(sqlite3 *db)
{
    lvd_manifest *m;
    lvd_error err;
    CHECK(lvd_manifest_open(db_path, &m, &err) == 0);
    lvd_model_record rec;
    int found;
    CHECK(lvd_model_find(m, "rnd", &rec, &found, &err) == 0 && found);
    lvd_vit *vit;
    CHECK(lvd_model_open(&rec, &vit, &err) == 0);
    lvd_vit_set_threads(vit, 1); /* a loaded machine: no spinning threads */
    int64_t src;
    eval_labels labels;
    eval_images im;
    CHECK(eval_source(m, "tr", &src, &err) == 0);
    CHECK(eval_labels_read(m, src, src, &labels, &err) == 0 && labels.n == NCLS);
    CHECK(eval_images_read(m, src, "tr", &labels, &im, &err) == 0 && im.n == N_TR);
    CHECK(st_int(db, "SELECT COUNT(DISTINCT shard) FROM v_images WHERE source = 'tr'") > 2);
    eval_vit_spec spec = {4, 1, 28, 28, 4};
    int D = lvd_vit_get_info(vit)->dim, dim = eval_vit_dim(vit, &spec), N = 4;
    CHECK(dim == 5 * D);
    float *x = malloc((size_t)N_TR * dim * sizeof *x);
    uint8_t have[N_TR];
    int64_t failed;
    CHECK_MSG(eval_vit_features(vit, &im, &spec, x, have, &failed, NULL, &err) == 0, "%s", err.msg);
    CHECK(failed == 0);
    float chw[3 * 28 * 28], inter[4 * 384], patch[4 * 384], cls[384];
    double worst = 0;
    for (int64_t i = 0; i < im.n; i++) {
        CHECK(have[i] && im.label[i] == lab_tr[i]);
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT url FROM images WHERE id = ?1", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, im.id[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        lvd_image img;
        CHECK(sqlite3_step(st) == SQLITE_ROW &&
              (buf = (uint8_t *)check_slurp(
                   (const char *)sqlite3_column_text(st, 0) + strlen("file://"), &len)));
        sqlite3_finalize(st);
        CHECK(lvd_image_decode_rgb(buf, len, &img, &err) == 0);
        CHECK(lvd_image_preprocess(&img, 28, 28, chw, &err) == 0);
        lvd_vit_outputs out = {.cls = cls, .patch = patch, .n_inter = 4, .inter_cls = inter};
        CHECK(lvd_vit_forward(vit, chw, 1, 28, 28, NULL, &out, &err) == 0);
        for (int j = 0; j < 4; j++)
            for (int c = 0; c < D; c++)
                worst = fmax(worst, fabs(x[i * dim + j * D + c] - inter[j * D + c]));
        for (int c = 0; c < D; c++) {
            double mean = (patch[c] + patch[D + c] + patch[2 * D + c] + patch[3 * D + c]) / N;
            worst = fmax(worst, fabs(x[i * dim + 4 * D + c] - mean));
            worst = fmax(worst, fabs(x[i * dim + 3 * D + c] - cls[c])); /* last block = cls */
        }
        free(buf);
        lvd_image_free(&img);
    }
    CHECK_MSG(worst < 1e-4, "features differ from the direct forward by %g", worst);

    /* The embed stage's cls rows (lvd-eval knn embedded them) against computed cls rows. */
    eval_vit_spec one = {1, 0, 28, 28, 8};
    CHECK(eval_vit_features(vit, &im, &one, x, have, &failed, NULL, &err) == 0);
    CHECK(lvd_normalize_rows(x, im.n, D, &err) == 0);
    float *stored = malloc((size_t)N_TR * D * sizeof *stored);
    int64_t missing, nf;
    CHECK(eval_stored_read(m, rec.id, src, D, &im, stored, have, &missing, &nf, &err) == 0);
    CHECK(missing == 0 && nf == 0);
    worst = 0;
    for (int64_t i = 0; i < (int64_t)N_TR * D; i++)
        worst = fmax(worst, fabs(stored[i] - x[i]));
    CHECK_MSG(worst < 1e-5, "stored and computed cls features differ by %g", worst);
    free(stored);
    free(x);
    eval_images_free(&im);
    eval_labels_free(&labels);
    lvd_vit_free(vit);
    lvd_manifest_close(m);
}

static void test_vit(sqlite3 *db)
{
    char *argv[] = {
        (char *)tool[T_MODEL], "add", "--db", db_path, "--name", "rnd", "--random", "vits14", NULL};
    CHECK(st_run(argv, NULL) == 0);
    char *out, *err;
    /* --no-embed: the missing embeddings are named, with how to make them. */
    CHECK(eval(&out, &err, "knn", "--model", "rnd", "--train", "tr", "--test", "te", "--no-embed",
               NULL) == 1);
    CHECK_MSG(strstr(err, "30 images of source 'tr' have no embedding of model 'rnd': run "
                          "lvd-embed --db DB --model rnd --source tr"),
              "%s", err);
    free(out);
    free(err);
    /* Default: the embed stage embeds them, then the stored rows are used. */
    int rc = eval(&out, &err, "knn", "--model", "rnd", "--train", "tr", "--test", "te", "--resize",
                  "28", "--crop", "28", "--vit-batch", "8", "--threads", "1", NULL);
    CHECK_MSG(rc == 0, "%s", err);
    fputs(out, stdout);
    CHECK(strstr(out, "cls features (stored embeddings, resize 28, crop 28)"));
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'rnd'") == N_TR + N_TE);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_evals WHERE model = 'rnd' AND setting = 'cls'") == 4);
    CHECK(st_int(db,
                 "SELECT json_extract(counts, '$.embedded') FROM v_runs WHERE stage = 'eval-knn' "
                 "AND status = 'ok' ORDER BY id DESC LIMIT 1") == N_TR + N_TE);
    free(out);
    free(err);
    test_vit_features(db);

    /* More images to embed: at the stored embeddings' transform (28 / 28), not another one. */
    CHECK(eval(&out, &err, "knn", "--model", "rnd", "--train", "tr", "--test", "te2", "--resize",
               "56", "--crop", "56", "--threads", "1", NULL) == 1);
    CHECK_MSG(strstr(err, "model 'rnd' embedded its images at resize 28, crop 28 (run ") &&
                  strstr(err, "embedding 6 more at resize 56, crop 56 would mix transforms"),
              "%s", err);
    free(out);
    free(err);
    rc = eval(&out, &err, "knn", "--model", "rnd", "--train", "tr", "--test", "te2", "--threads",
              "1", NULL);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(strstr(out, "cls features (stored embeddings, resize 28, crop 28)"));
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'rnd'") == N_TR + N_TE + 6);
    free(out);
    free(err);

    /* Another pooling: computed from the shards, nothing stored. */
    rc = eval(&out, &err, "knn", "--model", "rnd", "--train", "tr", "--test", "te", "--pool",
              "cls+mean", "--resize", "28", "--crop", "28", "--threads", "1", NULL);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(strstr(out, "cls+mean features (computed, resize 28, crop 28)"));
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_evals WHERE model = 'rnd' AND setting = "
                     "'cls+mean' AND n_train = 30 AND n_test = 12") == 4);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'rnd'") == N_TR + N_TE + 6);
    free(out);
    free(err);

    /* The linear probe: 2 learning rates, 6 of the 30 train images for validation. */
    rc = eval(&out, &err, "linear", "--model", "rnd", "--train", "tr", "--test", "te", "--blocks",
              "4", "--meanpatch", "--lrs", "0.01,0.1", "--epochs", "3", "--batch-size", "8",
              "--val-share", "0.2", "--threads", "1", NULL);
    CHECK_MSG(rc == 0, "%s", err);
    fputs(out, stdout);
    CHECK(strstr(out, "blocks=4+mean (1920 features, resize 28, crop 28)") &&
          strstr(out, "<- best"));
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_evals WHERE protocol = 'linear' AND split = 'val' "
                     "AND setting = 'blocks=4+mean' AND n_train = 24 AND n_test = 6 AND test = "
                     "'tr' AND k IS NULL") == 2);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_evals WHERE protocol = 'linear' AND split = 'test' "
                     "AND n_test = 12 AND test = 'te' AND lr IN (SELECT lr FROM v_evals WHERE "
                     "split = 'val' AND protocol = 'linear')") == 1);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'eval-linear' AND status = 'ok' "
                     "AND json_extract(counts, '$.steps') = 9") == 1);
    free(out);
    free(err);
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs lvd-eval expecting status rc and a message containing want on stderr. */
#define EXPECT_FAIL(rc, want, ...)                                                                 \
    do {                                                                                           \
        char *e_;                                                                                  \
        int r_ = eval(NULL, &e_, __VA_ARGS__, NULL);                                               \
        CHECK_MSG(r_ == (rc) && strstr(e_, want) && lines(e_) == 1, "status %d, stderr: %s", r_,   \
                  e_);                                                                             \
        free(e_);                                                                                  \
    } while (0)

static void test_errors(sqlite3 *db)
{
    int64_t runs = st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage LIKE 'eval%%'");
    EXPECT_FAIL(1, "unknown source 'nosuch'", "knn", "--model", "ext", "--train", "tr", "--test",
                "nosuch");
    EXPECT_FAIL(1, "unknown model 'nosuch'", "knn", "--model", "nosuch", "--train", "tr", "--test",
                "te");
    EXPECT_FAIL(1,
                "source 'nolab': 3 of 3 stored images have no label (v_images.label); "
                "evaluation needs a label on every image",
                "knn", "--model", "ext", "--train", "tr", "--test", "nolab");
    EXPECT_FAIL(1, "have no label", "linear", "--model", "rnd", "--train", "nolab", "--test", "te");
    /* Refused before any run starts. */
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage LIKE 'eval%%'") == runs);

    /* An external model with embeddings of the train images only. */
    CHECK(import("ext2", emb_tr, id_tr, N_TR, "ext2-tr") == 0);
    int64_t failed = st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'eval-knn' AND "
                                "status = 'failed'");
    EXPECT_FAIL(1,
                "12 images of source 'te' have no embedding of model 'ext2', which is "
                "external: attach them with lvd-embed --import",
                "knn", "--model", "ext2", "--train", "tr", "--test", "te");
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_runs WHERE stage = 'eval-knn' AND status = "
                     "'failed'") == failed + 1);
    EXPECT_FAIL(1, "only its stored embeddings", "knn", "--model", "ext", "--train", "tr", "--test",
                "te", "--pool", "cls");
    EXPECT_FAIL(1,
                "model 'ext' has no weights (external embeddings): the linear probe needs a "
                "ViT model",
                "linear", "--model", "ext", "--train", "tr", "--test", "te");
    EXPECT_FAIL(1, "the model has 12 blocks, 13 asked for", "linear", "--model", "rnd", "--train",
                "tr", "--test", "te", "--blocks", "13", "--crop", "28", "--resize", "28");
    EXPECT_FAIL(2, "--test is required", "knn", "--model", "ext", "--train", "tr");
    EXPECT_FAIL(2, "--pool: cls or cls+mean", "knn", "--model", "ext", "--train", "tr", "--test",
                "te", "--pool", "avg");
    EXPECT_FAIL(2, "-k: ", "knn", "--model", "ext", "--train", "tr", "--test", "te", "-k", "10,0");
    EXPECT_FAIL(2, "unknown subcommand 'nn'", "nn");
    char *out;
    CHECK(eval(&out, NULL, "knn", "--help", NULL) == 0 && strstr(out, "--temperature"));
    free(out);
    CHECK(eval(&out, NULL, "linear", "--help", NULL) == 0 && strstr(out, "--meanpatch"));
    free(out);
}

int main(int argc, char **argv)
{
    if (argc != 1 + T_COUNT) {
        fprintf(stderr, "usage: test_eval_cli LVD-FETCH LVD-MODEL LVD-EMBED LVD-EVAL\n");
        return 2;
    }
    for (int t = 0; t < T_COUNT; t++)
        tool[t] = argv[1 + t];
    snprintf(dir, sizeof dir, "/tmp/lvd-eval-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    write_images();
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    test_knn_imported(db);
    test_vit(db);
    test_errors(db);
    sqlite3_close(db);
    if (!check_failures && !getenv("LVD_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    } else {
        printf("work folder kept: %s\n", dir);
    }
    return check_finish();
}
