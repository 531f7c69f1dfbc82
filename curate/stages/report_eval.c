/* lvd_report_eval_match of curate/export_report_eval.h. */
#include "curate/stages/report_eval.h"

#include <stdlib.h>

#include "curate/stages/dedup_stage.h"
#include "curate/stages/embeddings_read.h"
#include "index/index.h"

/* The members of component ?2 that decontamination removed. */
static const lvd_kit_rows member_rows = {
    .join = "JOIN dedup d ON d.model_id = ?1 AND d.image_id = e.image_id",
    .where = "d.component = ?2 AND d.reason = 'eval'",
};

/* The best pair of one component; out->pool_id stays -1 when it has no embedded member. */
static int match_one(lvd_manifest *m, const lvd_index *ev, const lvd_embeddings *eval,
                     int64_t model_id, int dim, int64_t component, lvd_eval_match *out,
                     lvd_error *err)
{
    lvd_embeddings mem = {0};
    if (lvd_embeddings_read(m, model_id, &member_rows, &component, 1, dim, &mem, err))
        return -1;
    size_t cap = (size_t)(mem.n > 0 ? mem.n : 1);
    float *sims = malloc(cap * sizeof *sims);
    int64_t *rows = malloc(cap * sizeof *rows);
    int rc = sims && rows ? lvd_index_search(ev, mem.n, mem.x, 1, 1024, sims, rows, err)
                          : lvd_fail(err, "report: out of memory");
    /* Rows come by ascending pool id and FAISS breaks ties to the lower row (eval id). */
    for (int64_t i = 0; rc == 0 && i < mem.n; i++)
        if (rows[i] >= 0 && (out->pool_id < 0 || sims[i] > out->sim))
            *out = (lvd_eval_match){mem.image_id[i], eval->image_id[rows[i]], sims[i]};
    free(sims);
    free(rows);
    lvd_embeddings_free(&mem);
    return rc;
}

int lvd_report_eval_match(lvd_manifest *m, int64_t model_id, int dim, const int64_t *components,
                          int64_t n, lvd_eval_match *out, lvd_error *err)
{
    for (int64_t c = 0; c < n; c++)
        out[c] = (lvd_eval_match){-1, -1, 0};
    if (n == 0)
        return 0;
    lvd_embeddings eval = {0};
    if (lvd_embeddings_read(m, model_id, &lvd_dedup_eval_rows, NULL, 0, dim, &eval, err))
        return -1;
    if (eval.n == 0) {
        lvd_embeddings_free(&eval);
        return 0;
    }
    lvd_index *ev = NULL;
    int rc = lvd_index_create(&ev, dim, "Flat", err);
    if (rc == 0)
        rc = lvd_index_add(ev, eval.n, eval.x, err);
    for (int64_t c = 0; rc == 0 && c < n; c++)
        rc = match_one(m, ev, &eval, model_id, dim, components[c], &out[c], err);
    lvd_index_free(ev);
    lvd_embeddings_free(&eval);
    return rc;
}
