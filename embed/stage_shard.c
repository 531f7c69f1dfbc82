/* Reading the wanted members of a WebDataset tar shard with libarchive. */
#include "embed/stage_internal.h"

#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

/* Members above this are not images fetch could have stored (its byte cap is far lower). */
#define MAX_MEMBER_BYTES ((int64_t)1 << 31)

static int cmp_member(const void *key, const void *item)
{
    return strcmp((const char *)key, ((const stage_item *)item)->member);
}

/* Reads the current entry's data (size bytes) into *buf, growing it as needed. */
static int read_entry(struct archive *a, int64_t size, uint8_t **buf, size_t *cap, const char *path,
                      const char *name, lvd_error *err)
{
    if (size < 0 || size > MAX_MEMBER_BYTES)
        return lvd_fail(err, "%s: member %s has size %lld", path, name, (long long)size);
    if ((size_t)size > *cap) {
        uint8_t *nb = realloc(*buf, (size_t)size);
        if (!nb)
            return lvd_fail(err, "%s: out of memory for member %s", path, name);
        *buf = nb;
        *cap = (size_t)size;
    }
    la_ssize_t got = size ? archive_read_data(a, *buf, (size_t)size) : 0;
    if (got != size)
        return lvd_fail(err, "%s: member %s: %s", path, name,
                        got < 0 ? archive_error_string(a) : "truncated");
    return 0;
}

static int scan(struct archive *a, const stage_job *job, stage_member_fn fn, void *ctx,
                uint8_t *seen, lvd_error *err)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    struct archive_entry *e;
    int rc = 0, r;
    while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        const stage_item *it =
            name ? bsearch(name, job->items, job->n, sizeof *job->items, cmp_member) : NULL;
        if (!it)
            continue;
        size_t i = (size_t)(it - job->items);
        if (seen[i])
            continue; /* a repeated member name: the first one is the one fetch recorded */
        rc = read_entry(a, archive_entry_size(e), &buf, &cap, job->shard_path, name, err);
        if (rc == 0) {
            seen[i] = 1;
            rc = fn(ctx, i, buf, (size_t)archive_entry_size(e), err);
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF)
        rc = lvd_fail(err, "%s: %s", job->shard_path, archive_error_string(a));
    free(buf);
    return rc;
}

int stage_shard_read(const stage_job *job, stage_member_fn fn, void *ctx, uint8_t *seen,
                     lvd_error *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return lvd_fail(err, "%s: out of memory", job->shard_path);
    archive_read_support_format_tar(a);
    int rc;
    if (archive_read_open_filename(a, job->shard_path, 1 << 20) != ARCHIVE_OK)
        rc = lvd_fail(err, "%s: cannot read shard: %s", job->shard_path, archive_error_string(a));
    else
        rc = scan(a, job, fn, ctx, seen, err);
    archive_read_free(a);
    return rc;
}
