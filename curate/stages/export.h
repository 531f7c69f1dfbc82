/* The export stage (lvd-export): the curated set (v_curated) as WebDataset shards.
 *
 * Every curated image is copied from its fetch shard (read with libarchive) into
 * "<out>/curated-NNNNNN.tar" (written with store/shard.h: temporary name, sync, rename) under the
 * key "<image id, zero-padded to 10 digits>": its image member and the fetch stage's .json member
 * of the same key (for an item the fetch stage found to be a byte duplicate, those of the item
 * it duplicates). A shard is closed at the first key that finds it past shard_bytes, so a key's
 * members stay in one shard. "<out>/manifest.jsonl" (written atomically) has one line per
 * curated row: key, image_id, url, dataset, method, similarity, seed_image_id, rank, cluster,
 * model. Shards of an earlier export beyond the new count are removed. One export writes into a
 * folder at a time (lvd_kit_lock_dir); the manifest is only read. */
#ifndef LVD_CURATE_STAGES_EXPORT_H
#define LVD_CURATE_STAGES_EXPORT_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_export_options {
    const char *out_dir;  /* created when absent */
    const char *model;    /* NULL: the curated rows of every model */
    uint64_t shard_bytes; /* shard size bound (256 MiB) */
} lvd_export_options;

typedef struct lvd_export_counts {
    int64_t images;  /* distinct curated images exported */
    int64_t rows;    /* manifest lines */
    int64_t shards;  /* shards written */
    int64_t members; /* tar members written */
} lvd_export_counts;

/* Writes the shards and the manifest file. Fails when another export writes into the folder,
 * nothing is curated, an image has no stored shard member, or a fetch shard cannot be read. */
int lvd_export_run(lvd_manifest *m, const lvd_export_options *o, lvd_export_counts *counts,
                   lvd_error *err);

#endif
