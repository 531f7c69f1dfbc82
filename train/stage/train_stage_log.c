/* The metrics log of train/stage/train_stage_internal.h: rows of train_steps queued and written in
 * one transaction each time, and the replacement of rows past a checkpoint. */
#include <stdio.h>
#include <stdlib.h>

#include "train/stage/train_stage_internal.h"

int train_log_init(train_log *l, lvd_manifest *m, int64_t train_id, int64_t run_id, int n_parts,
                   int64_t cap, lvd_error *err)
{
    *l = (train_log){.m = m, .train_id = train_id, .run_id = run_id, .n_parts = n_parts};
    l->cap = cap < 1 ? 1 : cap > 4096 ? 4096 : cap;
    l->rows = malloc((size_t)l->cap * sizeof *l->rows);
    if (!l->rows)
        return lvd_fail(err, "out of memory");
    return 0;
}

void train_log_free(train_log *l)
{
    free(l->rows);
    l->rows = NULL;
}

int train_log_truncate(train_log *l, int64_t step, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(l->m, "DELETE FROM train_steps WHERE train_id = ?1 AND step > ?2", &st,
                             err))
        return -1;
    sqlite3_bind_int64(st, 1, l->train_id);
    sqlite3_bind_int64(st, 2, step);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : lvd_manifest_fail(l->m, err, "train_steps");
    sqlite3_finalize(st);
    return rc;
}

int train_log_add(train_log *l, const train_row *r, lvd_error *err)
{
    l->rows[l->n++] = *r;
    return l->n == l->cap ? train_log_flush(l, err) : 0;
}

static void bind_norm(sqlite3_stmt *st, int col, const train_row *r, int part, int n_parts)
{
    if (part < n_parts)
        sqlite3_bind_double(st, col, r->st.grad_norm[part]);
    else
        sqlite3_bind_null(st, col);
}

int train_log_flush(train_log *l, lvd_error *err)
{
    if (l->n == 0)
        return 0;
    static const char sql[] =
        "INSERT OR REPLACE INTO train_steps (train_id, step, run_id, loss_total, loss_dino_local,"
        " loss_dino_global, loss_koleo, loss_ibot, lr, last_layer_lr, wd, momentum, teacher_temp,"
        " grad_norm_backbone, grad_norm_dino_head, grad_norm_ibot_head, n_masked, images_per_s,"
        " seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
        " ?17, ?18, ?19)";
    sqlite3_stmt *st;
    if (lvd_manifest_begin(l->m, err))
        return -1;
    if (lvd_manifest_prepare(l->m, sql, &st, err)) {
        lvd_manifest_rollback(l->m);
        return -1;
    }
    int rc = 0;
    for (int64_t i = 0; i < l->n && rc == 0; i++) {
        const train_row *r = &l->rows[i];
        sqlite3_bind_int64(st, 1, l->train_id);
        sqlite3_bind_int64(st, 2, r->step);
        sqlite3_bind_int64(st, 3, l->run_id);
        double v[] = {r->st.loss_total,       r->st.loss_dino_local,
                      r->st.loss_dino_global, r->st.loss_koleo,
                      r->st.loss_ibot,        r->sv.lr,
                      r->sv.last_layer_lr,    r->sv.wd,
                      r->sv.momentum,         r->sv.teacher_temp};
        for (int k = 0; k < (int)(sizeof v / sizeof v[0]); k++)
            sqlite3_bind_double(st, 4 + k, v[k]);
        for (int p = 0; p < 3; p++)
            bind_norm(st, 14 + p, r, p, l->features ? 1 : l->n_parts);
        sqlite3_bind_int(st, 17, r->st.n_masked);
        /* Feature distillation: no head loss terms, no masked patches. */
        for (int k = 5; l->features && k <= 8; k++)
            sqlite3_bind_null(st, k);
        if (l->features)
            sqlite3_bind_null(st, 17);
        sqlite3_bind_double(st, 18, r->images_per_s);
        sqlite3_bind_double(st, 19, r->seconds);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = lvd_manifest_fail(l->m, err, "train_steps");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == 0 && lvd_manifest_commit(l->m, err) == 0) {
        l->n = 0;
        return 0;
    }
    lvd_manifest_rollback(l->m);
    return -1;
}

void train_format_seconds(double s, char *buf, size_t size)
{
    long t = s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, size, "%lds", t);
}
