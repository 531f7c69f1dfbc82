/* Tar shards (WebDataset layout: members <key>.<ext> grouped by key, the key being a member's name
 * up to its first '.').
 *
 * Writing is crash safe: the archive is written to "<path>.tmp", flushed to disk and renamed to
 * <path> only when complete, so a reader never sees a partial shard under its final name.
 * Members carry no timestamp (mtime 0, owner 0): the file is a function of the members added, in
 * their order. Reading (lvd_shard_read) is one pass over the archive that hands the wanted
 * members to a callback; every stage that reads shards (embed, calibrate, export, report) goes
 * through it. */
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

/* Members larger than this are refused when read (far above any image fetch stores). */
#define LVD_SHARD_MAX_MEMBER ((int64_t)1 << 31)

/* How wanted names select members. */
typedef enum lvd_shard_match {
    LVD_SHARD_BY_NAME, /* the member of that name; of repeated names, the first one */
    LVD_SHARD_BY_KEY,  /* every member with that name's key (an image and its .json) */
} lvd_shard_match;

/* Called with the index i of a wanted name, the member's name and its len bytes of data (valid
 * during the call). Returns 0 or -1 (err filled) to stop the reading. */
typedef int (*lvd_shard_member_fn)(void *ctx, size_t i, const char *name, const uint8_t *data,
                                   size_t len, lvd_error *err);

/* Reads the tar at path once and calls fn for every member that wanted[i] (i < n) selects, in
 * archive order, once per such i (several may select one member). A member's data is read only
 * when selected. Fails when the shard cannot be opened or read, a selected member is larger than
 * LVD_SHARD_MAX_MEMBER or truncated, or fn fails. */
int lvd_shard_read(const char *path, const char *const *wanted, size_t n, lvd_shard_match match,
                   lvd_shard_member_fn fn, void *ctx, lvd_error *err);

#endif
