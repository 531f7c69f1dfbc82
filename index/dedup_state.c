/* lvd_dedup_state_save, lvd_dedup_state_load and _free of index/index.h: the dedup state file.
 *
 * Layout, native byte order (a file from a machine of the other byte order fails the version
 * check), every section right after the previous one:
 *   header (64 bytes): "LVDDEDUP", u32 version (1), u32 d, i64 nlist, i32 nprobe, i32 k,
 *                      f32 threshold, u32 0, i64 trained_rows, i64 n, i64 edges
 *   f32 centroids[nlist * d], i64 key[n], u64 hash[n], i32 probe[n * nprobe],
 *   i64 edge_start[n + 1], i64 edge_key[edges], f32 edge_sim[edges]
 * The loader checks the sizes against the file length before reading and every value that
 * indexes something before the state is used. */
#include "index/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAGIC   "LVDDEDUP"
#define STATE_VERSION 1u

typedef struct header {
    char magic[8];
    uint32_t version, d;
    int64_t nlist;
    int32_t nprobe, k;
    float threshold;
    uint32_t zero;
    int64_t trained_rows, n, edges;
} header;

_Static_assert(sizeof(header) == 64, "the state header is 64 bytes");

void lvd_dedup_state_free(lvd_dedup_state *s)
{
    if (!s)
        return;
    free(s->centroids);
    free(s->key);
    free(s->hash);
    free(s->probe);
    free(s->edge_start);
    free(s->edge_key);
    free(s->edge_sim);
    memset(s, 0, sizeof *s);
}

typedef struct section {
    void *data;
    size_t size, count;
} section;

/* The sections of s in file order (data pointers into s). */
static void sections(const lvd_dedup_state *s, section out[7])
{
    int64_t edges = s->edge_start ? s->edge_start[s->n] : 0;
    out[0] = (section){s->centroids, sizeof(float), (size_t)(s->nlist * s->d)};
    out[1] = (section){s->key, sizeof(int64_t), (size_t)s->n};
    out[2] = (section){s->hash, sizeof(uint64_t), (size_t)s->n};
    out[3] = (section){s->probe, sizeof(int32_t), (size_t)s->n * (size_t)s->nprobe};
    out[4] = (section){s->edge_start, sizeof(int64_t), (size_t)s->n + 1};
    out[5] = (section){s->edge_key, sizeof(int64_t), (size_t)edges};
    out[6] = (section){s->edge_sim, sizeof(float), (size_t)edges};
}

/* An index_write_fn of the state ctx. */
static int write_all(const void *ctx, FILE *f, const char *tmp, lvd_error *err)
{
    const lvd_dedup_state *s = ctx;
    header h = {.version = STATE_VERSION,
                .d = (uint32_t)s->d,
                .nlist = s->nlist,
                .nprobe = s->nprobe,
                .k = s->k,
                .threshold = s->threshold,
                .trained_rows = s->trained_rows,
                .n = s->n,
                .edges = s->edge_start[s->n]};
    memcpy(h.magic, STATE_MAGIC, sizeof h.magic);
    section sec[7];
    sections(s, sec);
    int ok = fwrite(&h, sizeof h, 1, f) == 1;
    for (int i = 0; ok && i < 7; i++)
        ok = sec[i].count == 0 || fwrite(sec[i].data, sec[i].size, sec[i].count, f) == sec[i].count;
    if (!ok || fflush(f) || fsync(fileno(f)))
        return lvd_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    return 0;
}

int lvd_dedup_state_save(const lvd_dedup_state *s, const char *path, lvd_error *err)
{
    if (!s->edge_start || s->n < 1)
        return lvd_fail(err, "%s: no dedup state to save", path);
    return index_save_atomic(path, write_all, s, err);
}

/* The header's sizes, checked against each other and the file length. */
static int check_header(const header *h, int64_t file_size, const char *path, lvd_error *err)
{
    if (memcmp(h->magic, STATE_MAGIC, sizeof h->magic) != 0)
        return lvd_fail(err, "%s: not an lvd dedup state file", path);
    if (h->version != STATE_VERSION)
        return lvd_fail(err, "%s: dedup state version %u, this lvd reads %u", path, h->version,
                        STATE_VERSION);
    if (h->d < 1 || h->d > 65536 || h->nlist < 1 || h->nlist > INT32_MAX || h->nprobe < 1 ||
        h->nprobe > h->nlist || h->k < 1 || h->n < 1 || h->edges < 0 || h->trained_rows < 1 ||
        !isfinite(h->threshold))
        return lvd_fail(err, "%s: bad dedup state header", path);
    /* Each count is bounded by the file length before any product is formed. */
    int64_t limit = file_size / 4;
    if (h->nlist > limit / h->d || h->n > limit / 8 || h->n > limit / h->nprobe ||
        h->edges > limit / 8)
        return lvd_fail(err, "%s: dedup state sizes exceed the file", path);
    int64_t want = (int64_t)sizeof *h + h->nlist * h->d * 4 + h->n * (8 + 8 + 4 * h->nprobe) +
                   (h->n + 1) * 8 + h->edges * 12;
    if (want != file_size)
        return lvd_fail(err, "%s: %lld bytes, the header says %lld", path, (long long)file_size,
                        (long long)want);
    return 0;
}

/* Every value that indexes something: lists in range, keys ascending, edge offsets monotonic and
 * at most k per row, edges naming known keys with a sim above the threshold. */
static int check_values(const lvd_dedup_state *s, const char *path, lvd_error *err)
{
    for (size_t e = 0; e < (size_t)s->n * s->nprobe; e++)
        if (s->probe[e] < 0 || s->probe[e] >= s->nlist)
            return lvd_fail(err, "%s: list %d out of range", path, s->probe[e]);
    for (int64_t i = 1; i < s->n; i++)
        if (s->key[i] <= s->key[i - 1])
            return lvd_fail(err, "%s: keys not ascending at row %lld", path, (long long)i);
    if (s->edge_start[0] != 0)
        return lvd_fail(err, "%s: edge offsets do not start at 0", path);
    for (int64_t i = 0; i < s->n; i++) {
        int64_t a = s->edge_start[i], b = s->edge_start[i + 1];
        if (b < a || b - a > s->k)
            return lvd_fail(err, "%s: bad edge offsets at row %lld", path, (long long)i);
    }
    for (int64_t e = 0; e < s->edge_start[s->n]; e++) {
        int64_t lo = 0, hi = s->n;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (s->key[mid] < s->edge_key[e])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == s->n || s->key[lo] != s->edge_key[e] || !(s->edge_sim[e] > s->threshold))
            return lvd_fail(err, "%s: edge %lld names no row or is below the threshold", path,
                            (long long)e);
    }
    return 0;
}

static int read_sections(lvd_dedup_state *s, FILE *f, const char *path, lvd_error *err)
{
    s->centroids = malloc((size_t)(s->nlist * s->d) * sizeof *s->centroids);
    s->key = malloc((size_t)s->n * sizeof *s->key);
    s->hash = malloc((size_t)s->n * sizeof *s->hash);
    s->probe = malloc((size_t)s->n * s->nprobe * sizeof *s->probe);
    s->edge_start = malloc(((size_t)s->n + 1) * sizeof *s->edge_start);
    if (!s->centroids || !s->key || !s->hash || !s->probe || !s->edge_start)
        return lvd_fail(err, "%s: out of memory for the dedup state", path);
    section sec[7];
    sections(s, sec);
    for (int i = 0; i < 5; i++)
        if (fread(sec[i].data, sec[i].size, sec[i].count, f) != sec[i].count)
            return lvd_fail(err, "%s: short read", path);
    return 0;
}

int lvd_dedup_state_load(const char *path, lvd_dedup_state *out, lvd_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return lvd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    header h;
    int rc = 0;
    int64_t size = fseek(f, 0, SEEK_END) == 0 ? (int64_t)ftell(f) : -1;
    if (size < (int64_t)sizeof h || fseek(f, 0, SEEK_SET) != 0 || fread(&h, sizeof h, 1, f) != 1)
        rc = lvd_fail(err, "%s: not an lvd dedup state file (too short)", path);
    if (rc == 0)
        rc = check_header(&h, size, path, err);
    if (rc == 0) {
        *out = (lvd_dedup_state){.d = (int)h.d,
                                 .nprobe = h.nprobe,
                                 .k = h.k,
                                 .threshold = h.threshold,
                                 .nlist = h.nlist,
                                 .trained_rows = h.trained_rows,
                                 .n = h.n};
        rc = read_sections(out, f, path, err);
    }
    if (rc == 0 && out->edge_start[out->n] != h.edges)
        rc = lvd_fail(err, "%s: the edge offsets end at %lld, the header says %lld edges", path,
                      (long long)out->edge_start[out->n], (long long)h.edges);
    if (rc == 0) {
        out->edge_key = malloc((size_t)(h.edges ? h.edges : 1) * sizeof *out->edge_key);
        out->edge_sim = malloc((size_t)(h.edges ? h.edges : 1) * sizeof *out->edge_sim);
        if (!out->edge_key || !out->edge_sim)
            rc = lvd_fail(err, "%s: out of memory for %lld edges", path, (long long)h.edges);
        else if (fread(out->edge_key, 8, (size_t)h.edges, f) != (size_t)h.edges ||
                 fread(out->edge_sim, 4, (size_t)h.edges, f) != (size_t)h.edges)
            rc = lvd_fail(err, "%s: short read", path);
    }
    if (rc == 0)
        rc = check_values(out, path, err);
    fclose(f);
    if (rc)
        lvd_dedup_state_free(out);
    return rc;
}
