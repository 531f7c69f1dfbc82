/* Tar shard writer (WebDataset layout: members <key>.<ext> grouped by key), crash safe: the
 * archive is written to "<path>.tmp", flushed to disk and renamed to <path> only when complete,
 * so a reader never sees a partial shard under its final name. Members carry no timestamp (mtime
 * 0, owner 0): the file is a function of the members added, in their order. */
#ifndef LVD_STORE_SHARD_H
#define LVD_STORE_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

typedef struct lvd_shard_writer lvd_shard_writer;

/* Creates "<path>.tmp" (replacing a leftover one) and starts a tar archive in it. */
int lvd_shard_open(const char *path, lvd_shard_writer **out, lvd_error *err);

/* Appends a regular file member called name with len bytes of data. */
int lvd_shard_add(lvd_shard_writer *w, const char *name, const void *data, size_t len,
                  lvd_error *err);

/* The size the file would have if finished now (headers, padding and end-of-archive marker). */
uint64_t lvd_shard_bytes(const lvd_shard_writer *w);

/* What adding a member of len bytes adds to lvd_shard_bytes (names up to 100 bytes). */
uint64_t lvd_shard_member_bytes(size_t len);

/* Number of members added so far. */
int lvd_shard_members(const lvd_shard_writer *w);

/* Ends the archive, syncs it, renames it to its final path and syncs the folder. Frees w, also
 * on failure (then the temporary file is removed). */
int lvd_shard_finish(lvd_shard_writer *w, lvd_error *err);

/* Abandons the archive: removes the temporary file and frees w (NULL allowed). */
void lvd_shard_abort(lvd_shard_writer *w);

#endif
