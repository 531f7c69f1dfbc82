/* Real images through the whole chain: the Debian MATE nature photos (/usr/share/backgrounds)
 * plus planted copies (a horizontal flip and a JPEG re-encode at quality 40 of three of them)
 * are fetched, embedded by lvd-embed with the reference ViT-S/14 (2 blocks, reference weights),
 * indexed and deduplicated. Each copy's nearest neighbour must be its original or the other
 * copy of it, and dedup must remove both copies as duplicates of the original while keeping
 * every original photo. These 2-block weights are not trained: distinct photos reach cosine
 * 0.99 (the paper's 0.6 merges them all), copies 0.997 and more, so the test deduplicates at
 * 0.995. Skips when the reference folder or the photos are absent.
 * lvd-calibrate, sampling every pool image, must see each copy kind of every photo above 0.99
 * (flip and JPEG) or 0.95 (the others); its precision / recall table must be monotone, recall 1 at
 * its lowest threshold, its (sampled image, other pool image) false positives equal to a
 * brute-force recount over the stored embeddings, and its precision TP / (TP + FP); lvd-dedup
 * --calibrate must print the same table. Usage: test_stages_real LVD-FETCH LVD-MODEL LVD-EMBED
 * LVD-INDEX LVD-QUERY LVD-DEDUP LVD-CALIBRATE */
#include <dirent.h>
#include <math.h>

#include "store/tensors.h"
#include "tests/check_run.h"
#include "tests/stages/stages_test.h"

#define PHOTOS     "/usr/share/backgrounds/mate/nature"
#define MAX_PHOTOS 32

enum { T_FETCH, T_MODEL, T_EMBED, T_INDEX, T_QUERY, T_DEDUP, T_CALIBRATE, T_COUNT };
static const char *tool[T_COUNT];
static char dir[256], db_path[320];
static const char *const planted[] = {"Aqua.jpg", "Garden.jpg", "TwoWings.jpg"};
#define N_PLANTED 3

#define N_KINDS      5
#define N_THRESHOLDS 15
static const char *const kinds[N_KINDS] = {"flip", "jpeg40", "crop80", "half", "color"};

/* The model's pool embeddings (unit rows), read as lvd-embed stored them. */
static float *read_embeddings(sqlite3 *db, int64_t *n, int *dim)
{
    sqlite3_stmt *st;
    float *x = NULL;
    *n = 0;
    *dim = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT file, row FROM v_embeddings WHERE model = 's14' ORDER BY "
                           "image_id",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        lvd_tensors *ts;
        lvd_error err;
        if (lvd_tensors_open((const char *)sqlite3_column_text(st, 0), &ts, &err))
            break;
        const lvd_tensor *t = lvd_tensors_at(ts, 0);
        *dim = (int)t->shape[1];
        x = realloc(x, (size_t)(*n + 1) * (size_t)*dim * sizeof *x);
        const float *r = t->data + sqlite3_column_int64(st, 1) * *dim;
        double norm = 0;
        for (int j = 0; j < *dim; j++)
            norm += (double)r[j] * r[j];
        for (int j = 0; j < *dim; j++)
            x[*n * *dim + j] = (float)(r[j] / sqrt(norm));
        (*n)++;
        lvd_tensors_close(ts);
    }
    sqlite3_finalize(st);
    return x;
}

/* Ordered pairs of distinct pool rows with similarity above t + margin. */
static int64_t pairs_above(const float *x, int64_t n, int dim, double t)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) {
            double d = 0;
            for (int j = 0; j < dim && k != i; j++)
                d += (double)x[i * dim + j] * x[k * dim + j];
            count += k != i && d > t;
        }
    return count;
}

static double point(sqlite3 *db, int i, const char *field)
{
    return st_double(db,
                     "SELECT json_extract(counts, '$.points[%d].%s') FROM v_runs WHERE stage = "
                     "'calibrate' ORDER BY id DESC LIMIT 1",
                     i, field);
}

/* The detection table of the last calibrate run against the rules and a recount. */
static void check_table(sqlite3 *db, int64_t n_pool)
{
    int64_t n;
    int dim;
    float *x = read_embeddings(db, &n, &dim);
    CHECK(x && n == n_pool && dim > 0);
    CHECK(point(db, 0, "recall") == 1.0);
    for (int i = 0; i < N_THRESHOLDS; i++) {
        double t = point(db, i, "threshold"), tp = point(db, i, "tp");
        double fp = point(db, i, "fp_pool") + point(db, i, "fp_copy");
        CHECK(t > 0.29 && t < 1.0);
        CHECK(fabs(tp - point(db, i, "recall") * N_KINDS * (double)n_pool) < 1e-6);
        if (tp + fp > 0)
            CHECK(fabs(point(db, i, "precision") - tp / (tp + fp)) < 1e-12);
        else /* NaN is recorded as JSON null */
            CHECK(point(db, i, "precision") == -9.0);
        /* The stage counts in float32: allow pairs within 1e-5 of the threshold either way. */
        double fp_pool = point(db, i, "fp_pool");
        CHECK_MSG(x && fp_pool >= (double)pairs_above(x, n, dim, t + 1e-5) &&
                      fp_pool <= (double)pairs_above(x, n, dim, t - 1e-5),
                  "threshold %.2f: fp_pool %.0f", t, fp_pool);
        for (int k = 0; k < N_KINDS; k++) {
            char field[64];
            snprintf(field, sizeof field, "recall_by_kind.%s", kinds[k]);
            if (i == 0)
                CHECK(point(db, i, field) == 1.0);
            if (i > 0)
                CHECK(point(db, i, field) <= point(db, i - 1, field));
        }
        if (i > 0) {
            CHECK(t > point(db, i - 1, "threshold"));
            CHECK(tp <= point(db, i - 1, "tp"));
            CHECK(point(db, i, "fp_pool") <= point(db, i - 1, "fp_pool"));
            CHECK(point(db, i, "fp_copy") <= point(db, i - 1, "fp_copy"));
        }
    }
    free(x);
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(buf, 1, len, f) == len ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    return rc;
}

/* Writes "flip-<name>" (mirrored, quality 90) and "q40-<name>" (re-encoded at quality 40). */
static int plant(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", PHOTOS, name);
    uint8_t *out = NULL;
    size_t len, out_len;
    uint8_t *buf = (uint8_t *)check_slurp(path, &len);
    if (!buf)
        return -1;
    lvd_decode_opts o;
    memset(&o, 0, sizeof o);
    lvd_image img;
    lvd_error err;
    int rc = lvd_image_decode(buf, len, &o, &img, &err);
    free(buf);
    if (rc)
        return -1;
    if (lvd_image_encode_jpeg(&img, 40, &out, &out_len, &err) == 0) {
        snprintf(path, sizeof path, "%s/pool/q40-%s", dir, name);
        rc |= write_file(path, out, out_len);
        free(out);
    } else {
        rc = -1;
    }
    for (int y = 0; y < img.height; y++) {
        uint8_t *row = img.rgb + (size_t)y * img.width * 3;
        for (int a = 0, b = img.width - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
    }
    if (lvd_image_encode_jpeg(&img, 90, &out, &out_len, &err) == 0) {
        snprintf(path, sizeof path, "%s/pool/flip-%s", dir, name);
        rc |= write_file(path, out, out_len);
        free(out);
    } else {
        rc = -1;
    }
    lvd_image_free(&img);
    return rc;
}

static int copy_photos(void)
{
    DIR *d = opendir(PHOTOS);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) && n < MAX_PHOTOS) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".jpg") != 0)
            continue;
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s", PHOTOS, e->d_name);
        snprintf(dst, sizeof dst, "%s/pool/%s", dir, e->d_name);
        size_t len;
        uint8_t *buf = (uint8_t *)check_slurp(src, &len);
        if (buf && write_file(dst, buf, len) == 0)
            n++;
        free(buf);
    }
    if (d)
        closedir(d);
    return n;
}

/* The nearest other image of image id (lvd-query -k 1); -1 on failure. */
static int64_t nearest(int64_t id, double *sim)
{
    char out[400], ids[32], line[1024];
    snprintf(out, sizeof out, "%s/q.tsv", dir);
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    char *argv[] = {
        (char *)tool[T_QUERY], "--db", db_path, "--model", "s14", "--id", ids, "-k", "1", NULL};
    if (st_run(argv, out) != 0)
        return -1;
    FILE *f = fopen(out, "r");
    int64_t got = -1;
    if (f && fgets(line, sizeof line, f) && fgets(line, sizeof line, f)) {
        got = strtoll(line, NULL, 10);
        char *tab = strrchr(line, '\t');
        *sim = tab ? strtod(tab + 1, NULL) : -9;
    }
    if (f)
        fclose(f);
    return got;
}

int main(int argc, char **argv)
{
    const char *ref = check_reference_dir();
    if (argc != 1 + T_COUNT) {
        fprintf(stderr, "usage: test_stages_real LVD-FETCH LVD-MODEL LVD-EMBED LVD-INDEX "
                        "LVD-QUERY LVD-DEDUP LVD-CALIBRATE\n");
        return 2;
    }
    if (access(PHOTOS, R_OK) != 0) {
        printf("SKIP: %s not found (Debian package mate-backgrounds)\n", PHOTOS);
        return 77;
    }
    for (int t = 0; t < T_COUNT; t++)
        tool[t] = argv[1 + t];
    char weights[512];
    snprintf(weights, sizeof weights, "%s/vits14_d2.weights.safetensors", ref);
    snprintf(dir, sizeof dir, "/tmp/lvd-stages-real-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    char pool[400];
    snprintf(pool, sizeof pool, "%s/pool", dir);
    st_mkdir(pool);
    int n_photos = copy_photos();
    CHECK(n_photos >= 4);
    for (int i = 0; i < N_PLANTED; i++)
        CHECK(plant(planted[i]) == 0);

    char *fetch[] = {(char *)tool[T_FETCH], "--db", db_path, "--source", "photos",
                     "--no-progress",       pool,   NULL};
    CHECK(st_run(fetch, NULL) == 0);
    char *model[] = {(char *)tool[T_MODEL], "add", "--db", db_path, "--name", "s14", weights, NULL};
    CHECK(st_run(model, NULL) == 0);
    char *embed[] = {(char *)tool[T_EMBED], "--db", db_path, "--model", "s14",
                     "--no-progress",       NULL};
    CHECK(st_run(embed, NULL) == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 's14'") ==
          n_photos + 2 * N_PLANTED);
    char *index[] = {(char *)tool[T_INDEX], "--db", db_path, "--model", "s14", NULL};
    CHECK(st_run(index, NULL) == 0);
    for (int i = 0; i < N_PLANTED; i++) {
        int64_t group[3] = {st_image_id(db, planted[i])};
        char name[2][128];
        for (int c = 0; c < 2; c++) {
            snprintf(name[c], sizeof name[c], "%s%s", c ? "q40-" : "flip-", planted[i]);
            group[1 + c] = st_image_id(db, name[c]);
        }
        for (int c = 0; c < 2; c++) {
            double sim = -9;
            int64_t got = nearest(group[1 + c], &sim);
            printf("%s: nearest %lld at %.4f\n", name[c], (long long)got, sim);
            CHECK_MSG(got == group[0] || got == group[2 - c], "%s: nearest %lld, want %lld or %lld",
                      name[c], (long long)got, (long long)group[0], (long long)group[2 - c]);
        }
    }
    /* A photo file embedded by lvd-query finds its own stored embedding. */
    char photo[512], out[400], line[1024] = "";
    snprintf(photo, sizeof photo, "%s/pool/%s", dir, planted[0]);
    snprintf(out, sizeof out, "%s/image.tsv", dir);
    char *by_image[] = {(char *)tool[T_QUERY],
                        "--db",
                        db_path,
                        "--model",
                        "s14",
                        "--image",
                        photo,
                        "-k",
                        "1",
                        NULL};
    CHECK(st_run(by_image, out) == 0);
    FILE *f = fopen(out, "r");
    CHECK(f && fgets(line, sizeof line, f) && fgets(line, sizeof line, f));
    if (f)
        fclose(f);
    char *tab = strrchr(line, '\t');
    CHECK_MSG(strtoll(line, NULL, 10) == st_image_id(db, planted[0]) && tab &&
                  strtod(tab + 1, NULL) > 0.9999,
              "--image %s: %s", planted[0], line);
    char *dedup[] = {(char *)tool[T_DEDUP], "--db",  db_path, "--model", "s14",
                     "--threshold",         "0.995", NULL};
    CHECK(st_run(dedup, NULL) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE kept = 1") == n_photos);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE reason = 'duplicate'") ==
          2 * N_PLANTED);
    for (int i = 0; i < N_PLANTED; i++) {
        int64_t original = st_image_id(db, planted[i]);
        CHECK(st_int(db, "SELECT kept FROM v_duplicates WHERE image_id = %lld",
                     (long long)original) == 1);
        CHECK_MSG(st_int(db,
                         "SELECT COUNT(*) FROM v_duplicates d JOIN images i ON i.id = "
                         "d.image_id WHERE d.component = %lld AND d.reason = 'duplicate' AND "
                         "i.url LIKE '%%-%s'",
                         (long long)original, planted[i]) == 2,
                  "copies of %s", planted[i]);
    }
    char *calibrate[] = {
        (char *)tool[T_CALIBRATE], "--db", db_path, "--model", "s14", "--sample", "100", NULL};
    CHECK(st_run(calibrate, NULL) == 0);
    const char *last = "FROM v_runs WHERE stage = 'calibrate' ORDER BY id DESC LIMIT 1";
    int64_t n_pool = n_photos + 2 * N_PLANTED;
    CHECK(st_int(db, "SELECT json_extract(counts, '$.copies.n') %s", last) == N_KINDS * n_pool);
    CHECK(st_int(db, "SELECT json_extract(counts, '$.nearest_other.n') %s", last) == n_pool);
    CHECK(st_double(db, "SELECT json_extract(counts, '$.flip.min') %s", last) > 0.99);
    CHECK(st_double(db, "SELECT json_extract(counts, '$.jpeg40.min') %s", last) > 0.99);
    for (int k = 2; k < N_KINDS; k++)
        CHECK_MSG(st_double(db, "SELECT json_extract(counts, '$.%s.min') %s", kinds[k], last) >
                      0.95,
                  "%s", kinds[k]);
    check_table(db, n_pool);
    char table[400];
    snprintf(table, sizeof table, "%s/calibrate.txt", dir);
    char *via_dedup[] = {(char *)tool[T_DEDUP],
                         "--calibrate",
                         "--db",
                         db_path,
                         "--model",
                         "s14",
                         "--sample",
                         "4",
                         NULL};
    CHECK(st_run(via_dedup, table) == 0);
    char *text = check_slurp(table, NULL);
    CHECK(text && strstr(text, "precision") && strstr(text, "    0.99 ") && strstr(text, "color"));
    free(text);
    CHECK(st_int(db, "SELECT json_extract(counts, '$.copies.n') %s", last) == N_KINDS * 4);
    double t = st_double(db, "SELECT json_extract(counts, '$.threshold') %s", last);
    CHECK(t > 0.5 && t < 1.0);
    sqlite3_close(db);
    if (!check_failures) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    } else {
        fprintf(stderr, "files kept in %s\n", dir);
    }
    return check_finish();
}
