/* The loader's workers and ring (train/loader.h): work items handed out in step order, one per
 * sample plus one for the masks of each batch; lvd_loader_next and lvd_loader_close. */
#include <stdlib.h>
#include <string.h>

#include "train/loader_internal.h"

#define MAX_ATTEMPTS 64

static int batch_alloc(lvd_loader *l, lvd_batch *b, lvd_error *err)
{
    const lvd_aug_config *a = &l->c.aug;
    int B = l->share;
    b->batch_size = B;
    b->n_local = a->n_local;
    b->global_size = a->global_size;
    b->local_size = a->local_size;
    size_t g = (size_t)2 * B * 3 * a->global_size * a->global_size;
    size_t lc = (size_t)a->n_local * B * 3 * a->local_size * a->local_size;
    b->global_crops = malloc(g * sizeof *b->global_crops);
    b->local_crops = malloc((lc ? lc : 1) * sizeof *b->local_crops);
    b->image_ids = malloc((size_t)B * sizeof *b->image_ids);
    if (!b->global_crops || !b->local_crops || !b->image_ids)
        return lvd_fail(err, "loader: out of memory for a batch of %d", B);
    return lvd_masks_alloc(&b->masks, 2 * B, l->gen.height * l->gen.width, err);
}

/* The share's rows of whole (crop-major over batch_size images) into m, with their indices and
 * weights in row-major order. */
static void share_masks(const lvd_loader *l, const lvd_masks *whole, lvd_masks *m)
{
    int Bw = l->c.batch_size, B = l->share, o = l->c.share_offset, N = whole->n_tokens;
    int64_t q = 0, crops = 0;
    for (int64_t k = 0; k < whole->n_masked; k++) {
        int64_t row = whole->indices[k] / N, patch = whole->indices[k] % N;
        int64_t g = row / Bw, i = row % Bw - o;
        if (i < 0 || i >= B)
            continue;
        m->indices[q] = (g * B + i) * N + patch;
        m->weights[q++] = whole->weights[k];
    }
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < B; i++) {
            const uint8_t *src = whole->masks + ((size_t)g * Bw + o + i) * N;
            memcpy(m->masks + ((size_t)g * B + i) * N, src, (size_t)N);
            crops += memchr(src, 1, (size_t)N) != NULL;
        }
    m->n_masked = q;
    m->n_masked_crops = (int)crops;
    m->upperbound = whole->upperbound;
}

static void batch_free(lvd_batch *b)
{
    free(b->global_crops);
    free(b->local_crops);
    free(b->image_ids);
    lvd_masks_free(&b->masks);
}

/* The permutation of epoch e (Fisher-Yates). */
static void make_perm(const lvd_loader *l, int64_t e, uint32_t *perm)
{
    lvd_rng r = lvd_rng_stream(l->c.seed, (uint64_t)e, 0, LVD_STREAM_ORDER);
    for (int64_t i = 0; i < l->n; i++)
        perm[i] = (uint32_t)i;
    for (int64_t i = l->n - 1; i > 0; i--) {
        int64_t j = (int64_t)lvd_rng_below(&r, (uint64_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int is_bad(lvd_loader *l, int64_t idx)
{
    pthread_mutex_lock(&l->mu);
    int bad = l->bad[idx];
    pthread_mutex_unlock(&l->mu);
    return bad;
}

static void mark_bad(lvd_loader *l, int64_t idx)
{
    pthread_mutex_lock(&l->mu);
    if (!l->bad[idx]) {
        l->bad[idx] = 1;
        l->bad_count++;
    }
    pthread_mutex_unlock(&l->mu);
}

/* Sample j of batch b (step `step`); sets *replaced when it stands in for a bad image. */
static int fill_sample(loader_worker *w, lvd_batch *b, int64_t step, int j, int *replaced,
                       lvd_error *err)
{
    lvd_loader *l = w->l;
    const lvd_aug_config *a = &l->c.aug;
    int B = l->share;
    int64_t e = step / l->spe, p = (step % l->spe) * l->c.batch_size + l->c.share_offset + j;
    if (w->perm_epoch != e) {
        make_perm(l, e, w->perm);
        w->perm_epoch = e;
    }
    float *global[2], *local[64];
    size_t gs = (size_t)3 * a->global_size * a->global_size;
    size_t ls = (size_t)3 * a->local_size * a->local_size;
    for (int g = 0; g < 2; g++)
        global[g] = b->global_crops + ((size_t)g * B + j) * gs;
    for (int k = 0; k < a->n_local; k++)
        local[k] = b->local_crops + ((size_t)k * B + j) * ls;
    lvd_rng crops = lvd_rng_stream(l->c.seed, (uint64_t)e, (uint64_t)p, LVD_STREAM_CROPS);
    lvd_decode_opts opts = {.max_pixels = l->c.max_pixels, .alpha = LVD_ALPHA_DROP};
    int64_t idx = w->perm[p];
    *replaced = 0;
    for (int k = 0;; k++) {
        lvd_image img;
        lvd_error derr;
        if (!is_bad(l, idx)) {
            if (lvd_image_decode(l->bytes + l->off[idx], l->len[idx], &opts, &img, &derr) == 0) {
                int rc = lvd_augment(w->aug, &img, &crops, global, local, NULL, err);
                lvd_image_free(&img);
                if (rc)
                    return -1;
                b->image_ids[j] = l->ids[idx];
                return 0;
            }
            mark_bad(l, idx);
        }
        *replaced = 1;
        if (k == MAX_ATTEMPTS)
            return lvd_fail(err,
                            "loader: no decodable image for step %lld sample %d after %d tries",
                            (long long)step, j, MAX_ATTEMPTS);
        lvd_rng s =
            lvd_rng_stream(l->c.seed, (uint64_t)e, (uint64_t)p, LVD_STREAM_SUBST + (uint64_t)k);
        idx = (int64_t)lvd_rng_below(&s, (uint64_t)l->n);
    }
}

static int fill_masks(lvd_loader *l, loader_slot *s, int64_t step, lvd_error *err)
{
    int64_t e = step / l->spe;
    lvd_rng r = lvd_rng_stream(l->c.seed, (uint64_t)e, (uint64_t)(step % l->spe), LVD_STREAM_MASKS);
    if (l->share == l->c.batch_size)
        return lvd_masks_collate(&l->gen, &l->c.mask, &r, &s->b.masks, err);
    if (lvd_masks_collate(&l->gen, &l->c.mask, &r, &s->whole, err))
        return -1;
    share_masks(l, &s->whole, &s->b.masks);
    return 0;
}

static void *worker_main(void *arg)
{
    loader_worker *w = arg;
    lvd_loader *l = w->l;
    int per_step = l->share + 1;
    pthread_mutex_lock(&l->mu);
    while (!l->stop && !l->failed) {
        int64_t item = l->next_item;
        int64_t step = l->c.start_step + item / per_step;
        int j = (int)(item % per_step);
        if (step >= l->released + l->n_slots) {
            pthread_cond_wait(&l->work_cv, &l->mu);
            continue;
        }
        loader_slot *s = &l->slots[(step - l->c.start_step) % l->n_slots];
        if (j == 0) {
            s->step = step;
            s->done = 0;
            s->ready = 0;
            s->b.replaced = 0;
        }
        l->next_item++;
        pthread_mutex_unlock(&l->mu);
        lvd_error err;
        int replaced = 0;
        int rc = j < l->share ? fill_sample(w, &s->b, step, j, &replaced, &err)
                              : fill_masks(l, s, step, &err);
        pthread_mutex_lock(&l->mu);
        if (rc) {
            if (!l->failed) {
                l->failed = 1;
                l->fail_err = err;
            }
            pthread_cond_broadcast(&l->ready_cv);
            pthread_cond_broadcast(&l->work_cv);
            break;
        }
        s->b.replaced += replaced;
        l->replaced_count += replaced;
        if (++s->done == per_step) {
            s->ready = 1;
            pthread_cond_broadcast(&l->ready_cv);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int loader_start(lvd_loader *l, lvd_error *err)
{
    l->n_slots = l->c.ring;
    l->n_workers = l->c.workers;
    l->released = l->c.start_step;
    l->held = -1;
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    l->workers = calloc((size_t)l->n_workers, sizeof *l->workers);
    if (!l->slots || !l->workers)
        return lvd_fail(err, "loader: out of memory");
    for (int i = 0; i < l->n_slots; i++) {
        l->slots[i].step = -1;
        if (batch_alloc(l, &l->slots[i].b, err))
            return -1;
        if (l->share < l->c.batch_size && lvd_masks_alloc(&l->slots[i].whole, 2 * l->c.batch_size,
                                                          l->gen.height * l->gen.width, err))
            return -1;
    }
    for (int i = 0; i < l->n_workers; i++) {
        loader_worker *w = &l->workers[i];
        w->l = l;
        w->perm_epoch = -1;
        w->perm = malloc((size_t)l->n * sizeof *w->perm);
        if (!w->perm)
            return lvd_fail(err, "loader: out of memory for the epoch order");
        if (lvd_augmenter_new(&l->c.aug, &w->aug, err))
            return -1;
    }
    for (int i = 0; i < l->n_workers; i++) {
        if (pthread_create(&l->workers[i].thread, NULL, worker_main, &l->workers[i]) != 0)
            return lvd_fail(err, "loader: cannot start worker thread %d", i);
        l->workers[i].started = 1;
    }
    return 0;
}

int lvd_loader_next(lvd_loader *l, const lvd_batch **batch, lvd_error *err)
{
    *batch = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->released = l->held + 1;
        pthread_cond_broadcast(&l->work_cv);
    }
    int64_t step = l->held >= 0 ? l->held + 1 : l->c.start_step;
    loader_slot *s = &l->slots[(step - l->c.start_step) % l->n_slots];
    while (!l->failed && !(s->ready && s->step == step))
        pthread_cond_wait(&l->ready_cv, &l->mu);
    if (l->failed) {
        *err = l->fail_err;
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    l->held = step;
    s->b.step = step;
    s->b.epoch = step / l->spe;
    s->b.index = step % l->spe;
    pthread_mutex_unlock(&l->mu);
    *batch = &s->b;
    return 0;
}

void lvd_loader_close(lvd_loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; l->workers && i < l->n_workers; i++) {
        if (l->workers[i].started)
            pthread_join(l->workers[i].thread, NULL);
        lvd_augmenter_free(l->workers[i].aug);
        free(l->workers[i].perm);
    }
    for (int i = 0; l->slots && i < l->n_slots; i++) {
        batch_free(&l->slots[i].b);
        lvd_masks_free(&l->slots[i].whole);
    }
    free(l->workers);
    free(l->slots);
    free(l->ids);
    free(l->off);
    free(l->len);
    free(l->bad);
    free(l->bytes);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
