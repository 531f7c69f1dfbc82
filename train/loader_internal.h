/* Internals of the loader (train/loader.h): the state shared by loader.c (selection, bytes) and
 * loader_ring.c (workers, ring, next, close). */
#ifndef LVD_TRAIN_LOADER_INTERNAL_H
#define LVD_TRAIN_LOADER_INTERNAL_H

#include <pthread.h>

#include "train/loader.h"

/* One batch of the ring and its progress. */
typedef struct loader_slot {
    lvd_batch b;
    int64_t step; /* the step it holds or is being filled for (-1: none yet) */
    int done;     /* work items finished: B samples and the masks */
    int ready;
    lvd_masks whole; /* with a share: the whole batch's masks, of which b.masks holds the share */
} loader_slot;

typedef struct loader_worker {
    struct lvd_loader *l;
    pthread_t thread;
    int started;
    lvd_augmenter *aug;
    uint32_t *perm; /* the permutation of perm_epoch */
    int64_t perm_epoch;
} loader_worker;

struct lvd_loader {
    lvd_loader_config c; /* selection strings are not kept */
    /* The usable images in id order and their encoded bytes. */
    int64_t n;
    int64_t *ids;
    size_t *off, *len;
    uint8_t *bytes;
    size_t n_bytes;
    uint8_t *bad; /* per image, under mu */
    int64_t missing;
    lvd_mask_gen gen;
    int64_t spe; /* steps per epoch */
    int share;   /* images of this process per batch (c.share_size, or c.batch_size) */

    int n_slots;
    loader_slot *slots;
    int n_workers;
    loader_worker *workers;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    int64_t next_item; /* next work item: (step - start) * (B + 1) + j, j == B: the masks */
    int64_t released;  /* steps below this were handed back by the consumer */
    int64_t held;      /* step the consumer holds, -1: none */
    int stop, failed;
    lvd_error fail_err;
    int64_t bad_count, replaced_count;
};

/* Reads the selection and the bytes into l (c, n, ids, off, len, bytes, bad, missing). */
int loader_read_images(lvd_loader *l, const lvd_loader_config *c, lvd_error *err);

/* Allocates the ring and the workers and starts the threads (after loader_read_images). */
int loader_start(lvd_loader *l, lvd_error *err);

#endif
