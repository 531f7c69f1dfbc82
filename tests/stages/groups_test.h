/* The pool of known structure that the k-means tests (test_hkmeans, test_retrieve_mpi) retrieve
 * from: 48 pool images in three groups of 30, 12 and 6, each made of two subgroups, with
 * embeddings of dimension 64 recorded as model 'synth' and deduplicated (none is a duplicate).
 * Failures are counted by CHECK. */
#ifndef LVD_TESTS_STAGES_GROUPS_TEST_H
#define LVD_TESTS_STAGES_GROUPS_TEST_H

#include <math.h>

#include "tests/stages/stages_test.h"

#define GT_DIM    64
#define GT_N_POOL 48

static const int gt_group_size[3] = {30, 12, 6};

/* Group g on basis 8g, subgroup s adds 0.5 on basis 8g + 1 + s, noise in [-0.05, 0.05]. */
static inline void gt_vector(int g, int s, uint64_t seed, float *out)
{
    double v[GT_DIM] = {0}, n2 = 0;
    v[8 * g] = 1.0;
    v[8 * g + 1 + s] = 0.5;
    for (int j = 0; j < GT_DIM; j++)
        v[j] += st_noise(seed, j) * 0.1;
    for (int j = 0; j < GT_DIM; j++)
        n2 += v[j] * v[j];
    for (int j = 0; j < GT_DIM; j++)
        out[j] = (float)(v[j] / sqrt(n2));
}

/* Writes dir/pool/pNN.jpg (and makes dir/seed for the caller's seeds), the pool's vectors in rows
 * (GT_N_POOL x GT_DIM) and, when group_of is not NULL, each image's group. */
static inline void gt_write_pool(const char *dir, float *rows, int *group_of)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pool", dir);
    st_mkdir(path);
    snprintf(path, sizeof path, "%s/seed", dir);
    st_mkdir(path);
    int i = 0;
    for (int g = 0; g < 3; g++)
        for (int j = 0; j < gt_group_size[g]; j++, i++) {
            snprintf(path, sizeof path, "%s/pool/p%02d.jpg", dir, i);
            CHECK(st_write_jpeg(path, 40, 36, (uint32_t)i) == 0);
            gt_vector(g, j % 2, (uint64_t)i + 1, rows + i * GT_DIM);
            if (group_of)
                group_of[i] = g;
        }
}

/* The ids of the fetched pool images pNN.jpg into ids[0 .. GT_N_POOL). */
static inline void gt_pool_ids(sqlite3 *db, int64_t *ids)
{
    for (int i = 0; i < GT_N_POOL; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%02d.jpg", i);
        ids[i] = st_image_id(db, name);
        CHECK(ids[i] > 0);
    }
}

/* Records rows (n x GT_DIM) of the images ids as model 'synth' (dir/emb.npy) and runs lvd-dedup
 * at 0.99, which must keep the whole pool. */
static inline void gt_embed_dedup(sqlite3 *db, const char *dedup_exe, const char *dir,
                                  const char *db_path, const float *rows, const int64_t *ids, int n)
{
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, "
                       "'synth', 'external', 64, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/emb.npy", dir);
    CHECK(st_add_embeddings(db, 1, path, rows, ids, n, GT_DIM) == 0);
    char *argv[] = {(char *)dedup_exe, "--db",        (char *)db_path, "--model",
                    "synth",           "--threshold", "0.99",          NULL};
    CHECK(st_run(argv, NULL) == 0);
    CHECK(st_int(db, "SELECT COUNT(*) FROM v_duplicates WHERE kept = 1") == GT_N_POOL);
}

#endif
