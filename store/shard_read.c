/* lvd_shard_read of store/shard.h: libarchive's tar reader, the wanted names sorted once so each
 * member is matched by binary search. */
#include "store/shard.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

/* One wanted name: its key (or whole name) and its index; sorted by key, then index. */
typedef struct wanted {
    const char *key;
    size_t len, i;
} wanted;

static int cmp_key(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int cmp_wanted(const void *pa, const void *pb)
{
    const wanted *a = pa, *b = pb;
    int c = cmp_key(a->key, a->len, b->key, b->len);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

static size_t key_len(const char *name, lvd_shard_match match)
{
    const char *dot = match == LVD_SHARD_BY_KEY ? strchr(name, '.') : NULL;
    return dot ? (size_t)(dot - name) : strlen(name);
}

/* The first entry of w (n sorted) whose key is not below key, or n. */
static size_t lower_bound(const wanted *w, size_t n, const char *key, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(w[mid].key, w[mid].len, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct reader {
    const char *path;
    struct archive *a;
    uint8_t *buf;
    size_t cap;
    wanted *w;
    size_t n;
    lvd_shard_match match;
    uint8_t *seen; /* BY_NAME: the entries of w already delivered */
} reader;

static int read_data(reader *r, struct archive_entry *e, size_t *len, lvd_error *err)
{
    const char *name = archive_entry_pathname(e);
    int64_t size = archive_entry_size(e);
    if (size < 0 || size > LVD_SHARD_MAX_MEMBER)
        return lvd_fail(err, "%s: member %s has size %lld", r->path, name, (long long)size);
    if ((size_t)size + 1 > r->cap) {
        uint8_t *b = realloc(r->buf, (size_t)size + 1);
        if (!b)
            return lvd_fail(err, "%s: out of memory for member %s", r->path, name);
        r->buf = b;
        r->cap = (size_t)size + 1;
    }
    la_ssize_t got = size ? archive_read_data(r->a, r->buf, (size_t)size) : 0;
    if (got != size)
        return lvd_fail(err, "%s: member %s: %s", r->path, name,
                        got < 0 ? archive_error_string(r->a) : "truncated");
    r->buf[size] = 0;
    *len = (size_t)size;
    return 0;
}

static int visit(reader *r, struct archive_entry *e, lvd_shard_member_fn fn, void *ctx,
                 lvd_error *err)
{
    const char *name = archive_entry_pathname(e);
    if (!name)
        return 0;
    size_t klen = key_len(name, r->match);
    int have = 0;
    size_t len = 0;
    for (size_t k = lower_bound(r->w, r->n, name, klen); k < r->n; k++) {
        if (cmp_key(r->w[k].key, r->w[k].len, name, klen) != 0)
            break;
        if (r->match == LVD_SHARD_BY_NAME && r->seen[k])
            continue; /* a repeated name: the first member is the one recorded */
        if (!have && read_data(r, e, &len, err) != 0)
            return -1;
        have = 1;
        if (r->match == LVD_SHARD_BY_NAME)
            r->seen[k] = 1;
        if (fn(ctx, r->w[k].i, name, r->buf, len, err) != 0)
            return -1;
    }
    return 0;
}

int lvd_shard_read(const char *path, const char *const *names, size_t n, lvd_shard_match match,
                   lvd_shard_member_fn fn, void *ctx, lvd_error *err)
{
    reader r = {.path = path,
                .a = archive_read_new(),
                .w = malloc((n ? n : 1) * sizeof *r.w),
                .n = n,
                .match = match,
                .seen = calloc(n ? n : 1, 1)};
    int rc = 0;
    if (!r.w || !r.a || !r.seen) {
        rc = lvd_fail(err, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        r.w[i] = (wanted){names[i], key_len(names[i], match), i};
    qsort(r.w, n, sizeof *r.w, cmp_wanted);
    archive_read_support_format_tar(r.a);
    if (archive_read_open_filename(r.a, path, 1 << 20) != ARCHIVE_OK) {
        rc = lvd_fail(err, "%s: cannot read shard: %s", path, archive_error_string(r.a));
        goto done;
    }
    struct archive_entry *e;
    int st;
    while (rc == 0 && (st = archive_read_next_header(r.a, &e)) == ARCHIVE_OK)
        rc = visit(&r, e, fn, ctx, err);
    if (rc == 0 && st != ARCHIVE_EOF)
        rc = lvd_fail(err, "%s: not a readable tar: %s", path, archive_error_string(r.a));
done:
    if (r.a)
        archive_read_free(r.a);
    free(r.buf);
    free(r.seen);
    free(r.w);
    return rc;
}
