/* The index stage (lvd-index, lvd-query) and the index building the curation stages share.
 *
 * lvd-index builds an inner-product index over a model's L2-normalized embeddings (all sources,
 * or one), saves it beside the manifest as "<DB>.index-m<model id>[-s<source id>]-r<run id>.faiss"
 * (written atomically) and records it in `indexes` with its id-map in `index_rows` (index row ->
 * image id); view v_indexes. A newer index of the same model and source replaces the older one
 * (its rows and file are removed after the new one is committed, so a crash leaves one valid
 * index recorded). */
#ifndef LVD_CURATE_STAGES_INDEX_STAGE_H
#define LVD_CURATE_STAGES_INDEX_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "index/index.h"
#include "kit/kit.h"
#include "store/error.h"
#include "store/manifest.h"

/* Default memory budget for automatically chosen indexes. */
#define LVD_STAGE_MEMORY_BUDGET ((size_t)4 << 30)

/* Default number of inverted lists an IVF search visits. */
#define LVD_STAGE_NPROBE 16

/* The options of a stage that searches an index it builds (lvd-dedup, lvd-retrieve) as entries
 * of a kit table (kit/kit.h): --factory, --memory-budget MB, --nprobe. */
#define LVD_OPT_SEARCH_INDEX(factory_, memory_budget_, nprobe_)                                    \
    LVD_OPT_STR("factory", "STRING", factory_, "FAISS index factory string",                       \
                .def = "chosen from the count"),                                                   \
        LVD_OPT_INT("memory-budget", "MB", memory_budget_, 1, (int64_t)1 << 30,                    \
                    "index memory budget when no factory is given", .scale = 1 << 20),             \
        LVD_OPT_INT("nprobe", "N", nprobe_, 1, 1 << 20, "lists searched by IVF indexes")

/* Builds an index over the n unit rows x (row i gets id i): from factory, or when it is NULL from
 * lvd_index_choose(n, d, memory_budget); trains it on a sample (lvd_index_train_sample), adds the
 * rows and, for an index with inverted lists, sets nprobe (capped at the list count). Writes the
 * factory string used into used (used_size bytes) when used is not NULL. */
int lvd_stage_build_index(const float *x, int64_t n, int d, const char *factory,
                          size_t memory_budget, size_t nprobe, lvd_index **out, char *used,
                          size_t used_size, lvd_error *err);

typedef struct lvd_index_stage_options {
    const char *db; /* manifest path: the index file goes beside it */
    const char *model;
    const char *source;   /* NULL: every source */
    const char *factory;  /* NULL: lvd_index_choose */
    size_t memory_budget; /* LVD_STAGE_MEMORY_BUDGET */
    size_t nprobe;        /* saved with an IVF index: lists a query visits (LVD_STAGE_NPROBE) */
} lvd_index_stage_options;

typedef struct lvd_index_stage_result {
    int64_t index_id;
    int64_t rows;
    char factory[128];
    char path[4096];
} lvd_index_stage_result;

/* Builds, saves and records the index (a run of stage 'index'). Fails on an unknown model or
 * source, no embeddings, or a factory string FAISS refuses. */
int lvd_index_stage_run(lvd_manifest *m, const lvd_index_stage_options *o,
                        lvd_index_stage_result *res, lvd_error *err);

/* A recorded index opened for queries. */
typedef struct lvd_stage_index {
    lvd_index *index;
    int64_t *image_id; /* one per index row */
    int64_t rows;
    char path[4096];
} lvd_stage_index;

/* Opens the newest index of model over source (NULL: the one over every source) and its id-map.
 * Fails when none is recorded ("run lvd-index first") or the file does not match the record. */
int lvd_stage_index_open(lvd_manifest *m, int64_t model_id, const char *source,
                         lvd_stage_index *out, lvd_error *err);

void lvd_stage_index_close(lvd_stage_index *si);

#endif
