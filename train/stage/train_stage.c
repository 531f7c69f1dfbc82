/* lvd_train_run of train/stage/train_stage.h: the output folder, resumption, the training loop with
 * its checkpoints, metrics and progress, the stops (steps, budget, signal, divergence) and the
 * export and registration of the teacher (of pretraining; of distillation: the EMA student). */
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/model_registry.h"
#include "train/eval/eval.h"
#include "train/stage/train_stage_internal.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* The first SIGINT or SIGTERM asks for a stop after the current step; the handler is reset, so
 * a second one ends the process at once. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Everything one run holds; freed by finish. */
typedef struct train_run {
    const lvd_train_options *o;
    lvd_manifest *m;
    train_files f;
    train_plan p;
    lvd_schedules sched;
    cJSON *plan;
    lvd_loader *loader;
    train_model tm;
    train_log log;
    train_dist dist; /* data-parallel runs: the lead (rank 0) alone writes */
    int lock_fd;
    int64_t run_id, train_id, start, step;
    int64_t saved, exported; /* the steps of the checkpoint and the export on disk (-1: none) */
    double t0;
    lvd_knn_probe *probe; /* --eval-train / --eval-test; NULL: none */
    int64_t evaluated;    /* the step of the last evaluation (-1: none in this run) */
    double train_seconds; /* the training's wall time up to r->step, evaluations excluded */
    double eval_seconds;  /* this run's time spent evaluating */
} train_run;

/* The hash of the selected image ids (FNV-1a): a resumption must see the same images. */
static void ids_hash(lvd_loader *l, char hex[17])
{
    lvd_loader_stats s;
    lvd_loader_stats_get(l, &s);
    const int64_t *ids = lvd_loader_image_ids(l);
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < s.images; i++)
        for (int b = 0; b < 8; b++) {
            h ^= (uint64_t)ids[i] >> (8 * b) & 0xff;
            h *= 1099511628211ull;
        }
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

/* Distillation: the teacher of --teacher and a new student of the plan's architecture. */
static int make_distiller(train_run *r, lvd_error *err)
{
    const lvd_train_options *o = r->o;
    const train_plan *p = &r->p;
    if (lvd_distill_teacher_load(o->teacher, o->teacher_heads, &r->tm.teacher, err))
        return lvd_error_prefix(err, "--teacher");
    lvd_distill_config c = {
        .ssl = p->ssl, .cls_weight = o->cls_weight, .patch_weight = o->patch_weight};
    c.mode = strcmp(o->distill_mode, "heads") == 0      ? LVD_DISTILL_HEADS
             : strcmp(o->distill_mode, "features") == 0 ? LVD_DISTILL_FEATURES
                                                        : LVD_DISTILL_AUTO;
    lvd_distill_spec s = {.arch = p->arch, .layerscale = p->layerscale, .seed = o->seed};
    r->tm.keep_masks = o->ibot_masks;
    return lvd_distill_create(&c, &r->tm.teacher, &s, &r->tm.distill, err);
}

/* The trainer: distillation's, or pretraining's from --init's backbone (heads new, seeded as
 * lvd_ssl_create_new seeds them) or from scratch; init is the already loaded --init model
 * (consumed). */
static int make_trainer(train_run *r, lvd_vit_train *init, lvd_error *err)
{
    const train_plan *p = &r->p;
    if (r->o->distill)
        return make_distiller(r, err);
    if (!init)
        return lvd_ssl_create_new(&p->ssl, &p->arch, p->layerscale, &p->dino,
                                  p->ibot_separate ? &p->ibot : NULL, r->o->seed, &r->tm.ssl, err);
    lvd_ssl_models mm = {0};
    mm.student = init;
    mm.ibot_separate = p->ibot_separate;
    uint64_t seed = r->o->seed;
    if (lvd_vit_train_load(r->o->init, r->o->heads, &mm.teacher, err) ||
        lvd_head_init(&mm.student_dino, &p->dino, seed + 1, err) ||
        lvd_head_init(&mm.teacher_dino, &p->dino, seed + 1, err) ||
        (p->ibot_separate && (lvd_head_init(&mm.student_ibot, &p->ibot, seed + 2, err) ||
                              lvd_head_init(&mm.teacher_ibot, &p->ibot, seed + 2, err)))) {
        lvd_ssl_models_free(&mm);
        return -1;
    }
    return lvd_ssl_create(&p->ssl, &mm, &r->tm.ssl, err);
}

/* The training that checkpoint's train_id names, when it is a train run of this folder in this
 * manifest; else this run starts the record anew. */
static int64_t known_training(train_run *r, int64_t id)
{
    sqlite3_stmt *st;
    lvd_error ignored;
    int64_t found = 0;
    if (lvd_manifest_prepare(r->m,
                             "SELECT 1 FROM runs WHERE id = ?1 AND stage = ?3"
                             " AND json_extract(params, '$.out') = ?2",
                             &st, &ignored))
        return 0;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, r->f.dir, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, train_stage_name(r->o), -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        found = id;
    sqlite3_finalize(st);
    return found;
}

/* --register NAME: refused before training when the name belongs to another file. */
static int register_check(train_run *r, lvd_error *err)
{
    const char *name = r->o->register_name;
    if (!name)
        return 0;
    lvd_model_record rec;
    int found;
    if (lvd_model_name_check(name, err) || lvd_model_find(r->m, name, &rec, &found, err))
        return -1;
    if (found && strcmp(rec.path, r->f.backbone) != 0)
        return lvd_fail(err, "--register: model '%s' is already registered (%s)", name,
                        rec.path[0] ? rec.path : rec.arch);
    return 0;
}

static int register_model(train_run *r, lvd_error *err)
{
    const char *name = r->o->register_name;
    lvd_model_record rec;
    int found;
    if (!name || lvd_model_find(r->m, name, &rec, &found, err))
        return name ? -1 : 0;
    if (!found)
        return lvd_model_add_weights(r->m, name, r->f.backbone, LVD_FEATURES_CLS, &rec, err);
    char sha[65];
    if (lvd_file_sha256(r->f.backbone, sha, err))
        return -1;
    if (strcmp(sha, rec.sha256) != 0)
        return lvd_fail(err, "--register: model '%s' is registered with an earlier %s", name,
                        r->f.backbone);
    return 0;
}

/* Deletes the training's k-NN rows past the checkpoint (a resumption replaces them). */
static int evals_truncate(train_run *r, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(r->m, "DELETE FROM train_evals WHERE train_id = ?1 AND step > ?2", &st,
                             err))
        return -1;
    sqlite3_bind_int64(st, 1, r->train_id);
    sqlite3_bind_int64(st, 2, r->start);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : lvd_manifest_fail(r->m, err, "train_evals");
    sqlite3_finalize(st);
    return rc;
}

/* The training's wall time up to the checkpoint: the sum of its steps' seconds. */
static int train_seconds_before(train_run *r, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(r->m,
                             "SELECT TOTAL(seconds) FROM train_steps WHERE train_id = ?1 AND "
                             "step <= ?2",
                             &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, r->train_id);
    sqlite3_bind_int64(st, 2, r->start);
    int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : lvd_manifest_fail(r->m, err, "train_steps");
    if (rc == 0)
        r->train_seconds = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* The k-NN images of --eval-train and --eval-test, scored at the training's global crop size
 * (resize = crop = --global-size, as the model sees whole images in training). */
static int open_probe(train_run *r, lvd_error *err)
{
    const lvd_train_options *o = r->o;
    lvd_knn_probe_options po = {
        .train = o->eval_train,
        .test = o->eval_test,
        .train_limit = o->eval_limit,
        .test_limit = o->eval_test_limit,
        .pool = strcmp(o->eval_pool, "cls+mean") == 0 ? LVD_EVAL_POOL_CLS_MEAN : LVD_EVAL_POOL_CLS,
        .resize = r->p.loader.aug.global_size,
        .crop = r->p.loader.aug.global_size,
        .batch = 256,
    };
    lvd_knn_opts_default(&po.knn);
    po.knn.n_ks = 1;
    po.knn.ks[0] = o->eval_k;
    if (lvd_knn_probe_open(r->m, &po, &r->probe, err))
        return lvd_error_prefix(err, "--eval-train / --eval-test");
    return 0;
}

/* k-NN of the output model (the EMA teacher) at r->step, recorded in train_evals: the model
 * goes through a file in the output folder to the inference ViT of embed/vit.h. */
static int evaluate(train_run *r, lvd_error *err)
{
    double t0 = lvd_kit_now();
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/eval_teacher.safetensors.tmp", r->f.dir);
    lvd_vit *vit = NULL;
    int rc =
        lvd_vit_train_save(train_model_output(&r->tm), path, err) || lvd_vit_load(path, &vit, err);
    unlink(path); /* the loaded model keeps its mapping */
    lvd_knn_result res;
    int64_t n_train = 0, n_test = 0;
    if (rc == 0) {
        lvd_vit_set_threads(vit, r->o->threads);
        rc = lvd_knn_probe_run(r->probe, vit, &res, &n_train, &n_test, err);
    }
    lvd_vit_free(vit);
    sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = lvd_manifest_prepare(r->m,
                                  "INSERT INTO train_evals (train_id, run_id, step, seconds, "
                                  "setting, k, top1, top5, n_train, n_test) VALUES (?1, ?2, ?3, "
                                  "?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                  &st, err);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, r->train_id);
        sqlite3_bind_int64(st, 2, r->run_id);
        sqlite3_bind_int64(st, 3, r->step);
        sqlite3_bind_double(st, 4, r->train_seconds);
        sqlite3_bind_text(st, 5, lvd_knn_probe_setting(r->probe), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, res.k_used);
        sqlite3_bind_double(st, 7, res.top1);
        sqlite3_bind_double(st, 8, res.top5);
        sqlite3_bind_int64(st, 9, n_train);
        sqlite3_bind_int64(st, 10, n_test);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : lvd_manifest_fail(r->m, err, "train_evals");
        sqlite3_finalize(st);
    }
    double dt = lvd_kit_now() - t0;
    r->eval_seconds += dt;
    if (rc)
        return lvd_error_prefix(err, "k-NN at step %lld", (long long)r->step);
    r->evaluated = r->step;
    if (!r->o->no_progress)
        fprintf(stderr,
                "%s: step %lld k-NN (k %d, %s, bank %lld, test %lld) top-1 %.2f %% top-5 %.2f %% "
                "after %.0f s of training (%.1f s to evaluate)\n",
                train_program(r->o), (long long)r->step, res.k_used,
                lvd_knn_probe_setting(r->probe), (long long)n_train, (long long)n_test, res.top1,
                res.top5, r->train_seconds, dt);
    return 0;
}

/* Opens everything up to the first step: folder, plan, loader, checkpoint check, trainer, run
 * record and metrics log. In a data-parallel run the lead alone locks the folder, reads the
 * checkpoint (its state then broadcast), checks the options and writes the manifest; each phase
 * ends in a verdict of all ranks (train_dist_agree), so that a failure stops every rank. */
static int prepare(train_run *r, lvd_error *err)
{
    const lvd_train_options *o = r->o;
    int lead = r->dist.d.rank == 0;
    if (train_files_init(&r->f, o->out, err) ||
        (lead && lvd_kit_lock_dir(r->f.dir, train_program(o), &r->lock_fd, err)))
        return train_dist_agree(&r->dist, -1, err);
    lvd_vit_train *init = NULL;
    if (o->init && lvd_vit_train_load(o->init, o->heads, &init, err))
        return train_dist_agree(&r->dist, lvd_error_prefix(err, "--init"), err);
    if (train_plan_resolve(o, init ? lvd_vit_train_info(init) : NULL, &r->p, err) ||
        lvd_schedules_init(&r->sched, &r->p.sched, err)) {
        lvd_vit_train_free(init);
        return train_dist_agree(&r->dist, -1, err);
    }
    train_ckpt_info info = {0};
    int found = 0;
    int rc = lead ? train_ckpt_info_read(r->f.ckpt, &info, &found, err) : 0;
    if (rc == 0 && o->resume && lead && !found)
        rc = lvd_fail(err, "--resume: %s holds no checkpoint", r->f.dir);
    rc = train_dist_agree(&r->dist, rc, err);
    int64_t at[2] = {found, found ? info.step : 0};
    if (rc == 0)
        rc = train_dist_agree(&r->dist, train_dist_bcast(&r->dist, at, sizeof at, err), err);
    found = (int)at[0];
    r->start = at[1];
    r->p.loader.db = o->db;
    r->p.loader.start_step = r->start;
    r->plan = train_plan_json(o, &r->p);
    if (rc == 0)
        rc = train_dist_agree(&r->dist,
                              train_dist_plan(&r->dist, &r->p, err) ||
                                  lvd_loader_open(&r->p.loader, &r->loader, err),
                              err);
    if (rc == 0) {
        lvd_loader_stats s;
        lvd_loader_stats_get(r->loader, &s);
        char hex[17], lead_hex[17];
        ids_hash(r->loader, hex);
        memcpy(lead_hex, hex, sizeof hex);
        rc = train_dist_bcast(&r->dist, lead_hex, sizeof lead_hex, err);
        if (rc == 0 && strcmp(hex, lead_hex) != 0)
            rc = lvd_fail(err, "rank %d selected other images than rank 0", r->dist.d.rank);
        rc = train_dist_agree(&r->dist, rc, err);
        cJSON *data = cJSON_GetObjectItemCaseSensitive(r->plan, "data");
        cJSON_AddNumberToObject(data, "images", (double)s.images);
        cJSON_AddStringToObject(data, "ids", hex);
    }
    /* rc is every rank's here; the lead's checks, then a verdict. */
    int agreed = rc;
    if (rc == 0 && lead && found && train_plan_compare(info.plan, r->plan, err))
        rc = lvd_error_prefix(err,
                              "%s holds a checkpoint of other options (use another --out, or "
                              "remove the checkpoint to start over)",
                              r->f.ckpt);
    if (rc == 0 && lead)
        rc = register_check(r, err);
    if (agreed == 0)
        agreed = rc = train_dist_agree(&r->dist, rc, err);
    if (rc == 0) {
        agreed = rc = train_dist_agree(&r->dist, make_trainer(r, init, err), err);
        init = NULL;
    }
    lvd_vit_train_free(init);
    if (rc == 0 && found && lead) {
        int64_t step;
        rc = train_ckpt_load(&r->f, &r->tm, &step, err);
        if (rc == 0 && step != r->start)
            rc = lvd_fail(err, "%s: step %lld, its metadata said %lld", r->f.ckpt, (long long)step,
                          (long long)r->start);
    }
    if (r->dist.d.size > 1 && agreed == 0 && (rc = train_dist_agree(&r->dist, rc, err)) == 0) {
        r->tm.dist = &r->dist;
        rc = train_dist_sync(&r->dist, &r->tm, err);
    }
    int64_t old_id = found ? info.train_id : 0;
    train_ckpt_info_free(&info);
    if (rc)
        return -1;
    r->step = r->start;
    r->saved = found ? r->start : -1;
    if (!lead)
        return train_dist_agree(&r->dist, 0, err);

    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "plan", cJSON_Duplicate(r->plan, 1));
    cJSON_AddStringToObject(params, "out", r->f.dir);
    cJSON_AddNumberToObject(params, "resumed_from", (double)r->start);
    cJSON_AddNumberToObject(params, "ranks", r->dist.d.size);
    if (o->eval_train) {
        cJSON *e = cJSON_AddObjectToObject(params, "eval");
        cJSON_AddStringToObject(e, "train", o->eval_train);
        cJSON_AddStringToObject(e, "test", o->eval_test);
        cJSON_AddNumberToObject(e, "every", (double)o->eval_every);
        cJSON_AddNumberToObject(e, "k", o->eval_k);
        cJSON_AddNumberToObject(e, "limit", (double)o->eval_limit);
        cJSON_AddNumberToObject(e, "test_limit", (double)o->eval_test_limit);
        cJSON_AddStringToObject(e, "pool", o->eval_pool);
    }
    if (lvd_kit_run_start(r->m, train_stage_name(o), params, &r->run_id, err))
        return train_dist_agree(&r->dist, -1, err);
    r->train_id = old_id ? known_training(r, old_id) : 0;
    if (!r->train_id)
        r->train_id = r->run_id;
    if (train_log_init(&r->log, r->m, r->train_id, r->run_id, train_model_n_parts(&r->tm),
                       o->log_every, err))
        return train_dist_agree(&r->dist, -1, err);
    r->log.features = train_model_features(&r->tm);
    int rc_log = train_log_truncate(&r->log, r->start, err) || evals_truncate(r, err) ||
                         train_seconds_before(r, err) || (o->eval_train && open_probe(r, err))
                     ? -1
                     : 0;
    return train_dist_agree(&r->dist, rc_log, err);
}

static void progress(const train_run *r, const train_row *row, double rate)
{
    if (r->o->no_progress || r->dist.d.rank != 0)
        return;
    double done = (double)(r->step - r->start), left = (double)(r->o->steps - r->step);
    double eta = done > 0 ? (lvd_kit_now() - r->t0) / done * left : 0;
    if (r->o->minutes > 0 && eta > r->o->minutes * 60 - (lvd_kit_now() - r->t0))
        eta = r->o->minutes * 60 - (lvd_kit_now() - r->t0);
    char e[32];
    train_format_seconds(eta, e, sizeof e);
    if (train_model_features(&r->tm))
        fprintf(stderr,
                "%s: step %lld/%lld loss %.4f (cls %.4f, patch %.4f) lr %.3g  %.1f img/s  "
                "eta %s\n",
                train_program(r->o), (long long)r->step, (long long)r->o->steps, row->st.loss_total,
                row->loss_cls, row->loss_patch, row->sv.lr, rate, e);
    else
        fprintf(stderr,
                "%s: step %lld/%lld loss %.4f (dino %.4f + %.4f, koleo %.4f, ibot %.4f) "
                "lr %.3g temp %.4f  %.1f img/s  eta %s\n",
                train_program(r->o), (long long)r->step, (long long)r->o->steps, row->st.loss_total,
                row->st.loss_dino_local, row->st.loss_dino_global, row->st.loss_koleo,
                row->st.loss_ibot, row->sv.lr, row->sv.teacher_temp, rate, e);
}

/* Writes the queued rows, then the checkpoint (rows first: a crash between the two leaves rows
 * past the checkpoint, which the resumption replaces, never a checkpoint without its rows). In a
 * data-parallel run every rank comes here at the same step: the ranks' states are compared, the
 * lead writes, and the verdict is everyone's. */
static int checkpoint(train_run *r, lvd_error *err)
{
    int rc = train_dist_same(&r->dist, &r->tm, err);
    if (rc == 0 && r->dist.d.rank == 0) {
        if (train_log_flush(&r->log, err) ||
            train_ckpt_save(&r->f, &r->tm, r->plan, r->train_id, r->o->seed, err))
            rc = -1;
        else
            r->saved = r->step;
        if (rc == 0 && !r->o->no_progress)
            fprintf(stderr, "%s: checkpoint step %lld: %s\n", train_program(r->o),
                    (long long)r->step, r->f.ckpt);
        if (rc == 0 && r->o->export_every && train_export(&r->f, &r->tm, r->plan, err))
            rc = -1;
    }
    if (train_dist_agree(&r->dist, rc, err))
        return -1;
    r->saved = r->step;
    if (r->o->export_every)
        r->exported = r->step;
    return 0;
}

typedef enum stop { STOP_STEPS, STOP_AT, STOP_BUDGET, STOP_SIGNAL, STOP_ERROR } stop;

/* The loop from r->step to --steps or the first stop. */
static stop train_loop(train_run *r, double *last_loss, lvd_error *err)
{
    const lvd_train_options *o = r->o;
    int B = r->p.loader.batch_size; /* the global batch (each rank trains on its share) */
    double last = lvd_kit_now(), window = last;
    int64_t window_start = r->step;
    int64_t end = o->stop_at && o->stop_at < o->steps ? o->stop_at : o->steps;
    while (r->step < o->steps) {
        if (r->step >= end)
            return STOP_AT;
        /* The ranks stop together, at the first step where any of them has a signal or the
         * lead's clock has spent the budget. */
        int why = stop_signal ? STOP_SIGNAL
                  : r->dist.d.rank == 0 && o->minutes > 0 &&
                          lvd_kit_now() - r->t0 - r->eval_seconds >= o->minutes * 60
                      ? STOP_BUDGET
                      : 0;
        const lvd_batch *b = NULL;
        int loader_rc = why ? 0 : lvd_loader_next(r->loader, &b, err);
        if (train_dist_gate(&r->dist, why, loader_rc != 0, &why, err))
            return STOP_ERROR;
        if (why)
            return (stop)why;
        train_row row = {.step = r->step + 1};
        lvd_schedules_at(&r->sched, r->step, &row.sv);
        lvd_ssl_batch sb = {b->global_crops, b->local_crops, b->masks.masks, NULL, NULL, 0};
        if (train_model_step(&r->tm, &sb, &row.sv, &row.st, &row.loss_cls, &row.loss_patch, err)) {
            lvd_error_prefix(err, "step %lld/%lld", (long long)row.step, (long long)o->steps);
            return STOP_ERROR;
        }
        r->step++;
        double t = lvd_kit_now();
        row.seconds = t - last;
        row.images_per_s = row.seconds > 0 ? B / row.seconds : 0;
        last = t;
        r->train_seconds += row.seconds;
        *last_loss = row.st.loss_total;
        if (train_dist_agree(&r->dist, r->dist.d.rank == 0 ? train_log_add(&r->log, &row, err) : 0,
                             err))
            return STOP_ERROR;
        if (r->step % o->log_every == 0 || r->step == o->steps) {
            progress(r, &row, (double)(r->step - window_start) * B / (t - window));
            window = t;
            window_start = r->step;
        }
        if (o->eval_train && o->eval_every && r->step % o->eval_every == 0) {
            /* The lead evaluates (it alone holds the probe and the manifest); every rank takes
             * its verdict. */
            int rc_eval = r->probe && (train_log_flush(&r->log, err) || evaluate(r, err)) ? -1 : 0;
            if (train_dist_agree(&r->dist, rc_eval, err))
                return STOP_ERROR;
            double t_eval = lvd_kit_now() - t; /* not training time */
            last += t_eval;
            window += t_eval;
        }
        if (r->step % o->ckpt_every == 0 && r->step < o->steps && checkpoint(r, err))
            return STOP_ERROR;
    }
    return STOP_STEPS;
}

static void release(train_run *r)
{
    train_log_free(&r->log);
    lvd_knn_probe_free(r->probe);
    lvd_loader_close(r->loader);
    train_model_free(&r->tm);
    cJSON_Delete(r->plan);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
}

int lvd_train_run(lvd_manifest *m, void *ctx, lvd_error *err)
{
    train_run r = {.o = ctx, .m = m, .lock_fd = -1, .run_id = -1, .exported = -1, .evaluated = -1};
    const lvd_train_options *o = r.o;
    if (o->threads > 0)
        omp_set_num_threads(o->threads); /* the loss functions use the default team */
    r.t0 = lvd_kit_now();
    if (train_dist_init(&r.dist, err))
        return -1;
    if (prepare(&r, err)) {
        int rc = r.run_id >= 0 ? lvd_kit_run_finish(m, r.run_id, -1, NULL, NULL, err) : -1;
        release(&r);
        return rc;
    }
    catch_signals();
    double loss = 0;
    stop why = train_loop(&r, &loss, err);
    int rc = why == STOP_ERROR ? -1 : 0;
    /* A failed step leaves the last checkpoint as it is: it is the last good state. */
    if (rc == 0 && r.step != r.saved)
        rc = checkpoint(&r, err);
    else if (rc && r.dist.d.rank == 0)
        train_log_flush(&r.log, &(lvd_error){0});
    if (r.dist.d.rank != 0) {
        /* The lead exports, registers and records the run; the others are done. */
        release(&r);
        return rc == 0 && why == STOP_SIGNAL ? 130 : rc;
    }
    if (rc == 0 && why != STOP_SIGNAL && r.exported != r.step)
        rc = train_export(&r.f, &r.tm, r.plan, err);
    if (rc == 0 && why != STOP_SIGNAL && r.probe && r.step > r.start && r.evaluated != r.step)
        rc = evaluate(&r, err);
    if (rc == 0 && why == STOP_STEPS)
        rc = register_model(&r, err);
    if (rc && r.saved >= 0) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, "; the last checkpoint (step %lld) is kept: %s",
                 (long long)r.saved, r.f.ckpt);
    }
    lvd_loader_stats ls;
    lvd_loader_stats_get(r.loader, &ls);
    static const char *const names[] = {"steps", "stop-at", "minutes", "signal", "error"};
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "start_step", (double)r.start);
    cJSON_AddNumberToObject(counts, "end_step", (double)r.step);
    cJSON_AddNumberToObject(counts, "steps", (double)o->steps);
    cJSON_AddNumberToObject(counts, "images", (double)ls.images);
    cJSON_AddNumberToObject(counts, "missing", (double)ls.missing);
    cJSON_AddNumberToObject(counts, "bad", (double)ls.bad);
    cJSON_AddNumberToObject(counts, "seconds", lvd_kit_now() - r.t0);
    if (r.probe)
        cJSON_AddNumberToObject(counts, "eval_seconds", r.eval_seconds);
    if (r.step > r.start)
        cJSON_AddNumberToObject(counts, "loss", loss);
    cJSON_AddStringToObject(counts, "stopped", names[why]);
    rc = lvd_kit_run_finish(m, r.run_id, rc, rc == 0 && why == STOP_SIGNAL ? "interrupted" : NULL,
                            counts, err);
    if (rc == 0 && why == STOP_SIGNAL) {
        fprintf(stderr,
                "%s: stopped by signal %d after step %lld/%lld; checkpoint saved in %s "
                "(run the same command to resume)\n",
                train_program(o), (int)stop_signal, (long long)r.step, (long long)o->steps,
                r.f.ckpt);
        rc = 130;
    } else if (rc == 0) {
        const char *reg = why == STOP_STEPS && o->register_name ? o->register_name : NULL;
        if (r.step == r.start)
            printf("%s: nothing to do at step %lld of %lld", train_program(o), (long long)r.step,
                   (long long)o->steps);
        else
            printf("%s: steps %lld..%lld of %lld%s, loss %.4f", train_program(o),
                   (long long)r.start, (long long)r.step, (long long)o->steps,
                   why == STOP_STEPS ? "" : " (stopped early: run it again to continue)", loss);
        printf("; %s %s%s%s\n", o->distill ? "model" : "teacher", r.f.backbone,
               reg ? ", registered as " : "", reg ? reg : "");
    }
    release(&r);
    return rc;
}
