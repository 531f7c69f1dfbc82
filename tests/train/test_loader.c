/* The loader (train/loader.h) on a manifest that lvd-fetch builds from grayscale 28x28 PNGs
 * (Fashion-MNIST's shape) and a few colour JPEGs, in small shards: selection by sources and by
 * curated set, a corrupted member skipped and counted, a missing member left out, batch layout
 * (crop-major rows recomputed from the original files with lvd_augment and the documented
 * streams), masks, epoch order, resuming, independence from the number of workers, and a clean
 * shutdown with workers blocked on a full ring. Usage: test_loader LVD-FETCH. */
#include <sqlite3.h>
#include <sys/stat.h>

#include "tests/check.h"
#include "tests/train/train_test.h"
#include "train/loader.h"

static char dir[512], db[600];

static void sh(const char *fmt, const char *arg)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, arg);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

/* dir/fm: 13 PNGs in each of two classes; dir/other: 5 colour JPEGs of different widths. */
static void make_inputs(void)
{
    char path[1024];
    lvd_error err;
    tt_write_stripes(dir, "fm", 13, 1);
    snprintf(path, sizeof path, "%s/other", dir);
    sh("mkdir -p '%s'", path);
    for (int i = 0; i < 5; i++) {
        lvd_image img = {60 + 8 * i, 45, malloc((size_t)(60 + 8 * i) * 45 * 3)};
        for (int p = 0; p < img.width * img.height * 3; p++)
            img.rgb[p] = (uint8_t)(p * (i + 1) % 251);
        uint8_t *jpg;
        size_t len;
        if (lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        snprintf(path, sizeof path, "%s/other/%d.jpg", dir, i);
        check_write_file(path, jpg, len);
        free(jpg);
        free(img.rgb);
    }
}

static int64_t sql_int(sqlite3 *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *sql_text(sqlite3 *s, const char *sql)
{
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* Overwrites the data of member `name` in the tar at path with 'x' bytes (same length, so the
 * archive stays valid and only the image is broken). */
static int corrupt_member(const char *path, const char *name)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return -1;
    unsigned char h[512];
    long off = 0;
    int done = -1;
    while (fseek(f, off, SEEK_SET) == 0 && fread(h, 1, 512, f) == 512 && h[0]) {
        char size_s[13] = {0};
        memcpy(size_s, h + 124, 12);
        long size = strtol(size_s, NULL, 8);
        if (strncmp((const char *)h, name, 100) == 0) {
            char *junk = malloc((size_t)size);
            memset(junk, 'x', (size_t)size);
            done = fseek(f, off + 512, SEEK_SET) == 0 &&
                           fwrite(junk, 1, (size_t)size, f) == (size_t)size
                       ? 0
                       : -1;
            free(junk);
            break;
        }
        off += 512 + (size + 511) / 512 * 512;
    }
    fclose(f);
    return done;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static lvd_loader_config base_config(void)
{
    lvd_loader_config c;
    lvd_loader_defaults(&c);
    c.db = db;
    c.aug.global_size = 28;
    c.aug.local_size = 12;
    c.aug.n_local = 6;
    c.patch_size = 4;
    c.batch_size = 4;
    c.seed = 1234;
    return c;
}

static const char *fm_only[] = {"fm"};
static const char *both[] = {"fm", "other"};

/* A copy of a batch, to compare loaders. */
typedef struct snap {
    float *g, *l;
    int64_t ids[16], n_masked;
    uint8_t masks[32 * 49];
    int replaced;
} snap;

static void take(snap *s, const lvd_batch *b)
{
    size_t gn = (size_t)2 * b->batch_size * 3 * 28 * 28, ln = (size_t)6 * b->batch_size * 3 * 144;
    s->g = malloc(gn * sizeof(float));
    s->l = malloc(ln * sizeof(float));
    memcpy(s->g, b->global_crops, gn * sizeof(float));
    memcpy(s->l, b->local_crops, ln * sizeof(float));
    memcpy(s->ids, b->image_ids, (size_t)b->batch_size * sizeof(int64_t));
    memcpy(s->masks, b->masks.masks, (size_t)2 * b->batch_size * 49);
    s->n_masked = b->masks.n_masked;
    s->replaced = b->replaced;
}

static int same(const snap *s, const lvd_batch *b)
{
    size_t gn = (size_t)2 * b->batch_size * 3 * 28 * 28, ln = (size_t)6 * b->batch_size * 3 * 144;
    return memcmp(s->g, b->global_crops, gn * sizeof(float)) == 0 &&
           memcmp(s->l, b->local_crops, ln * sizeof(float)) == 0 &&
           memcmp(s->ids, b->image_ids, (size_t)b->batch_size * sizeof(int64_t)) == 0 &&
           memcmp(s->masks, b->masks.masks, (size_t)2 * b->batch_size * 49) == 0 &&
           s->n_masked == b->masks.n_masked && s->replaced == b->replaced;
}

static void test_errors(void)
{
    lvd_loader *l;
    lvd_error err;
    lvd_loader_config c = base_config();
    c.sources = (const char *[]){"nosuch"};
    c.n_sources = 1;
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "unknown source 'nosuch'"));
    c = base_config();
    c.model = "nomodel";
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "unknown model"));
    c = base_config();
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "no model and no sources"));
    c = base_config();
    c.db = "/nonexistent/x.db";
    c.sources = fm_only;
    c.n_sources = 1;
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "cannot read manifest"));
    c = base_config();
    c.sources = fm_only;
    c.n_sources = 1;
    c.batch_size = 100;
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "fewer than one batch"));
    c.batch_size = 4;
    c.patch_size = 5; /* 28 is not a multiple of 5: still a 5x5 grid, as train.py's // gives */
    c.aug.local_size = 3;
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "blurred crop"));
}

/* Recomputes sample i of batch b from the original file and compares its rows. */
static int recompute_sample(sqlite3 *s, lvd_augmenter *a, const lvd_loader_config *c,
                            const lvd_batch *b, int i)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT url FROM images WHERE id = %lld", (long long)b->image_ids[i]);
    char *url = sql_text(s, sql);
    size_t len;
    uint8_t *bytes = url ? read_all(url + strlen("file://"), &len) : NULL;
    lvd_image img;
    lvd_error err;
    lvd_decode_opts opts = {.alpha = LVD_ALPHA_DROP};
    int ok = bytes && lvd_image_decode(bytes, len, &opts, &img, &err) == 0;
    free(bytes);
    free(url);
    if (!ok)
        return 0;
    int B = b->batch_size;
    int64_t p = b->index * B + i;
    lvd_rng r = lvd_rng_stream(c->seed, (uint64_t)b->epoch, (uint64_t)p, LVD_STREAM_CROPS);
    float g[2][3 * 28 * 28], l[6][3 * 144];
    float *gp[2] = {g[0], g[1]}, *lp[6] = {l[0], l[1], l[2], l[3], l[4], l[5]};
    ok = lvd_augment(a, &img, &r, gp, lp, NULL, &err) == 0;
    lvd_image_free(&img);
    for (int k = 0; ok && k < 2; k++)
        ok = memcmp(g[k], b->global_crops + ((size_t)k * B + i) * 3 * 28 * 28, sizeof g[k]) == 0;
    for (int k = 0; ok && k < 6; k++)
        ok = memcmp(l[k], b->local_crops + ((size_t)k * B + i) * 3 * 144, sizeof l[k]) == 0;
    return ok;
}

static void test_sources(sqlite3 *s, int64_t bad_id, int64_t missing_id)
{
    lvd_loader *l;
    lvd_error err;
    lvd_loader_config c = base_config();
    c.sources = fm_only;
    c.n_sources = 1;
    c.workers = 2;
    if (lvd_loader_open(&c, &l, &err)) {
        CHECK_MSG(0, "open: %s", err.msg);
        return;
    }
    lvd_loader_stats st;
    lvd_loader_stats_get(l, &st);
    CHECK_MSG(st.images == 25 && st.missing == 1 && st.steps_per_epoch == 6 && st.bytes > 0,
              "images %lld missing %lld spe %lld", (long long)st.images, (long long)st.missing,
              (long long)st.steps_per_epoch);
    const int64_t *ids = lvd_loader_image_ids(l);
    int sorted = 1, has_missing = 0;
    for (int64_t i = 0; i < st.images; i++) {
        sorted &= i == 0 || ids[i] > ids[i - 1];
        has_missing |= ids[i] == missing_id;
    }
    CHECK(sorted && !has_missing);

    lvd_aug_config ac = c.aug;
    lvd_augmenter *a;
    CHECK(lvd_augmenter_new(&ac, &a, &err) == 0);
    lvd_mask_gen gen;
    CHECK(lvd_mask_gen_for_crops(&gen, 28, 4, &err) == 0);
    lvd_masks mm;
    CHECK(lvd_masks_alloc(&mm, 8, 49, &err) == 0);
    int64_t seen[2][64];
    int n_seen[2] = {0, 0}, layout_ok = 1, masks_ok = 1, bad_seen = 0, replaced = 0;
    int replaced_in[2] = {0, 0};
    for (int64_t step = 0; step < 12; step++) {
        const lvd_batch *b;
        if (lvd_loader_next(l, &b, &err)) {
            CHECK_MSG(0, "next: %s", err.msg);
            break;
        }
        CHECK(b->step == step && b->epoch == step / 6 && b->index == step % 6 &&
              b->batch_size == 4 && b->masks.n_crops == 8 && b->masks.n_tokens == 49);
        for (int i = 0; i < 4; i++) {
            seen[b->epoch][n_seen[b->epoch]++] = b->image_ids[i];
            bad_seen |= b->image_ids[i] == bad_id;
            if (step % 3 == 0)
                layout_ok &= recompute_sample(s, a, &c, b, i);
        }
        replaced += b->replaced;
        replaced_in[b->epoch] += b->replaced;
        lvd_rng r =
            lvd_rng_stream(c.seed, (uint64_t)b->epoch, (uint64_t)b->index, LVD_STREAM_MASKS);
        masks_ok &= lvd_masks_collate(&gen, &c.mask, &r, &mm, &err) == 0 &&
                    memcmp(mm.masks, b->masks.masks, 8 * 49) == 0 &&
                    mm.n_masked == b->masks.n_masked &&
                    memcmp(mm.weights, b->masks.weights, (size_t)mm.n_masked * 4) == 0 &&
                    memcmp(mm.indices, b->masks.indices, (size_t)mm.n_masked * 8) == 0;
    }
    CHECK_MSG(layout_ok, "a batch row differs from lvd_augment on the original file");
    CHECK(masks_ok);
    CHECK(!bad_seen);
    /* An epoch visits distinct images (the corrupt one's place taken by a random other); the
     * two epochs' orders differ. */
    int distinct = 1, differ = 0;
    for (int e = 0; e < 2; e++) {
        int repeats = 0;
        for (int i = 0; i < 24; i++)
            for (int j = 0; j < i; j++)
                repeats += seen[e][i] == seen[e][j];
        distinct &= repeats <= replaced_in[e];
    }
    for (int i = 0; i < 24; i++)
        differ += seen[0][i] != seen[1][i];
    CHECK(distinct && differ > 10);
    lvd_loader_stats_get(l, &st);
    CHECK_MSG(st.bad <= 1 && st.replaced == replaced, "bad %lld replaced %lld (batches: %d)",
              (long long)st.bad, (long long)st.replaced, replaced);
    /* 24 of 25 images per epoch: the corrupt one is in the dropped tail at most once per epoch, so
     * over two epochs it was met at least once unless it was last both times. */
    CHECK(st.bad == 1 && replaced >= 1);
    lvd_masks_free(&mm);
    lvd_augmenter_free(a);
    lvd_loader_close(l);
}

/* The same batches for 1 worker with a ring of 1 and 4 workers with a ring of 5; resuming at a
 * step gives that step's batch. */
static void test_workers(void)
{
    lvd_loader *l;
    lvd_error err;
    lvd_loader_config c = base_config();
    c.sources = both;
    c.n_sources = 2;
    c.workers = 1;
    c.ring = 1;
    enum { STEPS = 15 };
    snap snaps[STEPS];
    if (lvd_loader_open(&c, &l, &err)) {
        CHECK_MSG(0, "open: %s", err.msg);
        return;
    }
    lvd_loader_stats st;
    lvd_loader_stats_get(l, &st);
    CHECK(st.images == 30 && st.steps_per_epoch == 7);
    for (int i = 0; i < STEPS; i++) {
        const lvd_batch *b;
        CHECK(lvd_loader_next(l, &b, &err) == 0);
        take(&snaps[i], b);
    }
    lvd_loader_close(l);
    c.workers = 4;
    c.ring = 5;
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    int same_all = 1;
    for (int i = 0; i < STEPS; i++) {
        const lvd_batch *b;
        CHECK(lvd_loader_next(l, &b, &err) == 0);
        same_all &= same(&snaps[i], b);
    }
    CHECK_MSG(same_all, "4 workers gave other batches than 1 worker");
    lvd_loader_close(l);
    c.workers = 3;
    c.ring = 2;
    c.start_step = 9;
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    const lvd_batch *b;
    CHECK(lvd_loader_next(l, &b, &err) == 0 && b->step == 9 && same(&snaps[9], b));
    CHECK(lvd_loader_next(l, &b, &err) == 0 && b->step == 10 && same(&snaps[10], b));
    lvd_loader_close(l);
    /* Another seed, another order. */
    c.start_step = 0;
    c.seed = 99;
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    CHECK(lvd_loader_next(l, &b, &err) == 0 && !same(&snaps[0], b));
    lvd_loader_close(l);
    for (int i = 0; i < STEPS; i++) {
        free(snaps[i].g);
        free(snaps[i].l);
    }
    /* Closing with the ring full and every worker waiting, and right after opening. */
    c.workers = 3;
    c.ring = 2;
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    CHECK(lvd_loader_next(l, &b, &err) == 0);
    usleep(200000);
    lvd_loader_close(l);
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    lvd_loader_close(l);
}

/* Shares (data-parallel training): the images [o, o + S) of every batch are bitwise the rows of
 * the whole batch, crops, ids, masks and their indices and weights, for a 2 + 2 and a 1 + 3
 * split; the shares' masked patches add up to the batch's. */
static int share_matches(const lvd_batch *w, const lvd_batch *b, int o)
{
    int W = w->batch_size, S = b->batch_size, N = 49, ok = 1;
    size_t gs = (size_t)3 * 28 * 28, ls = (size_t)3 * 144;
    for (int g = 0; g < 2; g++)
        ok &=
            memcmp(b->global_crops + (size_t)g * S * gs, w->global_crops + ((size_t)g * W + o) * gs,
                   (size_t)S * gs * sizeof(float)) == 0 &&
            memcmp(b->masks.masks + (size_t)g * S * N, w->masks.masks + ((size_t)g * W + o) * N,
                   (size_t)S * N) == 0;
    for (int k = 0; k < 6; k++)
        ok &= memcmp(b->local_crops + (size_t)k * S * ls, w->local_crops + ((size_t)k * W + o) * ls,
                     (size_t)S * ls * sizeof(float)) == 0;
    ok &= memcmp(b->image_ids, w->image_ids + o, (size_t)S * sizeof(int64_t)) == 0;
    int64_t q = 0;
    for (int64_t k = 0; k < w->masks.n_masked; k++) {
        int64_t row = w->masks.indices[k] / N, g = row / W, i = row % W - o;
        if (i < 0 || i >= S)
            continue;
        ok &= q < b->masks.n_masked &&
              b->masks.indices[q] == (g * S + i) * N + w->masks.indices[k] % N &&
              b->masks.weights[q] == w->masks.weights[k];
        q++;
    }
    return ok && q == b->masks.n_masked && b->masks.upperbound == w->masks.upperbound;
}

static void test_shares(void)
{
    lvd_loader_config c = base_config();
    c.sources = both;
    c.n_sources = 2;
    c.start_step = 5;
    lvd_loader *whole, *part[2];
    lvd_error err;
    const int split[2][2] = {{2, 2}, {1, 3}};
    for (int sp = 0; sp < 2; sp++) {
        CHECK(lvd_loader_open(&c, &whole, &err) == 0);
        lvd_loader_config pc = c;
        pc.workers = 3;
        for (int r = 0; r < 2; r++) {
            pc.share_offset = r ? split[sp][0] : 0;
            pc.share_size = split[sp][r];
            CHECK_MSG(lvd_loader_open(&pc, &part[r], &err) == 0, "share: %s", err.msg);
        }
        for (int step = 0; step < 4; step++) {
            const lvd_batch *w, *b0, *b1;
            CHECK(lvd_loader_next(whole, &w, &err) == 0 &&
                  lvd_loader_next(part[0], &b0, &err) == 0 &&
                  lvd_loader_next(part[1], &b1, &err) == 0);
            CHECK(b0->step == w->step && b1->step == w->step && b0->batch_size == split[sp][0] &&
                  b1->batch_size == split[sp][1] && b0->masks.n_crops == 2 * split[sp][0]);
            CHECK_MSG(share_matches(w, b0, 0) && share_matches(w, b1, split[sp][0]),
                      "split %d step %lld: a share differs from the whole batch", sp,
                      (long long)w->step);
            CHECK(b0->masks.n_masked + b1->masks.n_masked == w->masks.n_masked);
        }
        lvd_loader_close(part[0]);
        lvd_loader_close(part[1]);
        lvd_loader_close(whole);
    }
    lvd_loader *l;
    c.share_offset = 3;
    c.share_size = 2;
    CHECK(lvd_loader_open(&c, &l, &err) == -1 && strstr(err.msg, "share of 2 images at 3"));
}

static void test_curated(sqlite3 *s)
{
    /* A model and curated rows as lvd-retrieve records them: the 5 'other' images as knn picks,
     * and as seeds one of them plus the two newest fm images. */
    char *e = NULL;
    int rc = sqlite3_exec(s,
                          "INSERT INTO models (name, arch, dim) VALUES ('m1', 'external', 8);"
                          "INSERT INTO curated (model_id, image_id, source_id, method, rank)"
                          "  SELECT (SELECT id FROM models WHERE name = 'm1'), id, source_id,"
                          "         'knn', 1 FROM images WHERE url LIKE '%/other/%';"
                          "INSERT INTO curated (model_id, image_id, source_id, method)"
                          "  SELECT (SELECT id FROM models WHERE name = 'm1'), id, source_id,"
                          "         'seed' FROM images WHERE url LIKE '%/other/0.jpg' OR id IN"
                          "  (SELECT id FROM images WHERE url LIKE '%/fm/%' ORDER BY id DESC"
                          "   LIMIT 2);",
                          NULL, NULL, &e);
    CHECK_MSG(rc == SQLITE_OK, "%s", e ? e : "");
    sqlite3_free(e);
    int64_t distinct = sql_int(s, "SELECT COUNT(DISTINCT image_id) FROM v_curated WHERE model = "
                                  "'m1'");
    int64_t knn = sql_int(s, "SELECT COUNT(DISTINCT image_id) FROM v_curated WHERE model = 'm1' "
                             "AND method = 'knn'");
    CHECK(distinct == 7 && knn == 5);
    lvd_loader *l;
    lvd_error err;
    lvd_loader_config c = base_config();
    c.model = "m1";
    c.batch_size = 2;
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    lvd_loader_stats st;
    lvd_loader_stats_get(l, &st);
    CHECK_MSG(st.images == distinct && st.steps_per_epoch == 3, "curated images %lld",
              (long long)st.images);
    const lvd_batch *b;
    int in_set = 1;
    for (int i = 0; i < 6; i++) {
        CHECK(lvd_loader_next(l, &b, &err) == 0);
        for (int k = 0; k < 2; k++) {
            char sql[200];
            snprintf(sql, sizeof sql,
                     "SELECT COUNT(*) FROM v_curated WHERE model = 'm1' AND image_id = %lld",
                     (long long)b->image_ids[k]);
            in_set &= sql_int(s, sql) > 0;
        }
    }
    CHECK(in_set);
    lvd_loader_close(l);
    c.method = "knn";
    CHECK(lvd_loader_open(&c, &l, &err) == 0);
    lvd_loader_stats_get(l, &st);
    CHECK(st.images == knn);
    lvd_loader_close(l);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s LVD-FETCH\n", argv[0]);
        return 2;
    }
    tt_scratch("lvd-loader-test", dir, sizeof dir, db, sizeof db);
    make_inputs();
    tt_fetch(argv[1], db, "fm", dir, "fm", "--shard-size 6K");
    tt_fetch(argv[1], db, "other", dir, "other", "--shard-size 6K");
    sqlite3 *s;
    if (sqlite3_open(db, &s) != SQLITE_OK)
        return 1;
    sqlite3_busy_timeout(s, 60000);
    CHECK(sql_int(s, "SELECT COUNT(*) FROM v_images WHERE source = 'fm' AND status = 'ok'") == 26);
    CHECK(sql_int(s, "SELECT COUNT(DISTINCT shard) FROM v_images WHERE source = 'fm'") > 2);
    /* Break the stored bytes of one image and point another at a member that does not exist. */
    int64_t bad_id = sql_int(s, "SELECT MIN(id) FROM images");
    int64_t missing_id = bad_id + 1;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT shard FROM v_images WHERE id = %lld", (long long)bad_id);
    char *shard = sql_text(s, sql);
    snprintf(sql, sizeof sql, "SELECT member FROM v_images WHERE id = %lld", (long long)bad_id);
    char *member = sql_text(s, sql);
    CHECK(shard && member && corrupt_member(shard, member) == 0);
    free(shard);
    free(member);
    snprintf(sql, sizeof sql, "UPDATE images SET member = 'nope.png' WHERE id = %lld",
             (long long)missing_id);
    CHECK(sqlite3_exec(s, sql, NULL, NULL, NULL) == SQLITE_OK);

    test_errors();
    test_sources(s, bad_id, missing_id);
    test_workers();
    test_shares();
    test_curated(s);
    sqlite3_close(s);
    sh("rm -rf '%s'", dir);
    return check_finish();
}
