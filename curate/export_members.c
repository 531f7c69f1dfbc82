#include "curate/export_members.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

static size_t key_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static int read_data(struct archive *a, struct archive_entry *e, const char *path,
                     unsigned char **data, size_t *len, lvd_error *err)
{
    int64_t size = archive_entry_size(e);
    if (size < 0 || size > LVD_SHARD_MAX_MEMBER)
        return lvd_fail(err, "%s: member %s has a bad size", path, archive_entry_pathname(e));
    *data = malloc((size_t)size + 1);
    if (!*data)
        return lvd_fail(err, "%s: out of memory for %lld bytes", path, (long long)size);
    la_ssize_t got = archive_read_data(a, *data, (size_t)size);
    if (got != size) {
        free(*data);
        *data = NULL;
        return lvd_fail(err, "%s: cannot read member %s: %s", path, archive_entry_pathname(e),
                        got < 0 ? archive_error_string(a) : "short read");
    }
    *len = (size_t)size;
    return 0;
}

/* A wanted member's key and index; sorted by key, then index, so each archive entry finds its
 * indices by binary search instead of a pass over all of them (a fetch shard can hold 10^5
 * members). */
typedef struct wanted {
    const char *key;
    size_t len;
    int64_t i;
} wanted;

static int cmp_key(const char *a, size_t ka, const char *b, size_t kb)
{
    int c = strncmp(a, b, ka < kb ? ka : kb);
    return c ? c : (ka > kb) - (ka < kb);
}

static int cmp_wanted(const void *x, const void *y)
{
    const wanted *a = x, *b = y;
    int c = cmp_key(a->key, a->len, b->key, b->len);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* The first position in w whose key is not below the key name[0..k). */
static int64_t lower_bound(const wanted *w, int64_t n, const char *name, size_t k)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cmp_key(w[mid].key, w[mid].len, name, k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Hands one archive member to every wanted index with its key, in increasing index order. */
static int visit(struct archive *a, struct archive_entry *e, const char *path, const wanted *w,
                 int64_t n, lvd_member_fn fn, void *ctx, lvd_error *err)
{
    const char *name = archive_entry_pathname(e);
    if (!name)
        return 0;
    size_t k = key_len(name);
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = 0;
    for (int64_t p = lower_bound(w, n, name, k); p < n && rc == 0; p++) {
        if (cmp_key(w[p].key, w[p].len, name, k) != 0)
            break;
        if (!data && read_data(a, e, path, &data, &len, err))
            return -1;
        rc = fn(ctx, w[p].i, name, data, len, err);
    }
    free(data);
    return rc;
}

int lvd_shard_scan(const char *path, const char *const *members, int64_t n, lvd_member_fn fn,
                   void *ctx, lvd_error *err)
{
    if (n < 0)
        n = 0;
    wanted *w = malloc((size_t)(n > 0 ? n : 1) * sizeof *w);
    if (!w)
        return lvd_fail(err, "%s: out of memory for %lld members", path, (long long)n);
    for (int64_t i = 0; i < n; i++)
        w[i] = (wanted){members[i], key_len(members[i]), i};
    qsort(w, (size_t)n, sizeof *w, cmp_wanted);
    struct archive *a = archive_read_new();
    if (!a) {
        free(w);
        return lvd_fail(err, "%s: out of memory", path);
    }
    archive_read_support_format_tar(a);
    int rc = 0;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = lvd_fail(err, "%s: cannot open: %s", path, archive_error_string(a));
    } else {
        struct archive_entry *e;
        int r;
        while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
            rc = visit(a, e, path, w, n, fn, ctx, err);
        if (rc == 0 && r != ARCHIVE_EOF)
            rc = lvd_fail(err, "%s: bad tar: %s", path, archive_error_string(a));
    }
    archive_read_free(a);
    free(w);
    return rc;
}
