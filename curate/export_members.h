/* Reading wanted members out of a WebDataset tar shard (libarchive), for lvd-export and
 * lvd-report: one pass over the shard, each wanted member's data read once. */
#ifndef LVD_CURATE_EXPORT_MEMBERS_H
#define LVD_CURATE_EXPORT_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

/* Members larger than this are refused (a fetch shard never holds one). */
#define LVD_SHARD_MAX_MEMBER ((int64_t)1 << 30)

/* Called with wanted index i, the member's name and its len bytes of data. Returns 0 or -1. */
typedef int (*lvd_member_fn)(void *ctx, int64_t i, const char *name, const unsigned char *data,
                             size_t len, lvd_error *err);

/* Reads the tar at path and, for every member whose key (its name up to the first '.') is the
 * key of members[i], calls fn(ctx, i, ...), once per such i, in archive order: a key's image and
 * .json members both come. Fails on an unreadable shard or member, or when fn fails. */
int lvd_shard_scan(const char *path, const char *const *members, int64_t n, lvd_member_fn fn,
                   void *ctx, lvd_error *err);

#endif
