/* The tensor collection shared by every reader, and the format dispatch of lvd_tensors_open. */
#include "store/tensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/tensors_internal.h"

typedef struct entry {
    lvd_tensor t; /* first member: lvd_tensors_at hands out &entry.t */
    char *name;
    float *owned;
} entry;

struct lvd_tensors {
    void *map;
    size_t map_len;
    entry *items;
    size_t n, cap;
    size_t *by_name; /* indexes of items sorted by name, built by tensors_finish */
    char **meta;     /* key, value, key, value, ... */
    size_t n_meta;
};

lvd_tensors *tensors_new(void)
{
    return calloc(1, sizeof(lvd_tensors));
}

void tensors_attach_map(lvd_tensors *ts, void *map, size_t len)
{
    ts->map = map;
    ts->map_len = len;
}

lvd_tensor *tensors_add(lvd_tensors *ts, const char *name, float *owned)
{
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? 2 * ts->cap : 16;
        entry *items = realloc(ts->items, cap * sizeof *items);
        if (!items) {
            free(owned);
            return NULL;
        }
        ts->items = items;
        ts->cap = cap;
    }
    entry *e = &ts->items[ts->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) {
        free(owned);
        return NULL;
    }
    e->owned = owned;
    e->t.name = e->name;
    ts->n++;
    return &e->t;
}

int tensors_add_metadata(lvd_tensors *ts, const char *key, const char *value)
{
    char **meta = realloc(ts->meta, (ts->n_meta + 1) * 2 * sizeof *meta);
    if (!meta)
        return -1;
    ts->meta = meta;
    char *k = strdup(key);
    char *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    meta[2 * ts->n_meta] = k;
    meta[2 * ts->n_meta + 1] = v;
    ts->n_meta++;
    return 0;
}

static int compare_index(const void *a, const void *b, void *items)
{
    const entry *e = items;
    return strcmp(e[*(const size_t *)a].name, e[*(const size_t *)b].name);
}

int tensors_finish(lvd_tensors *ts, lvd_error *err)
{
    if (ts->n == 0)
        return 0;
    ts->by_name = malloc(ts->n * sizeof *ts->by_name);
    if (!ts->by_name)
        return lvd_fail(err, "out of memory indexing %zu tensors", ts->n);
    for (size_t i = 0; i < ts->n; i++)
        ts->by_name[i] = i;
    qsort_r(ts->by_name, ts->n, sizeof *ts->by_name, compare_index, ts->items);
    for (size_t i = 1; i < ts->n; i++) {
        const char *name = ts->items[ts->by_name[i]].name;
        if (strcmp(ts->items[ts->by_name[i - 1]].name, name) == 0)
            return lvd_fail(err, "tensor name \"%s\" appears twice", name);
    }
    return 0;
}

void lvd_tensors_close(lvd_tensors *ts)
{
    if (!ts)
        return;
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->items[i].name);
        free(ts->items[i].owned);
    }
    for (size_t i = 0; i < 2 * ts->n_meta; i++)
        free(ts->meta[i]);
    if (ts->map)
        munmap(ts->map, ts->map_len);
    free(ts->meta);
    free(ts->items);
    free(ts->by_name);
    free(ts);
}

size_t lvd_tensors_count(const lvd_tensors *ts)
{
    return ts->n;
}

const lvd_tensor *lvd_tensors_at(const lvd_tensors *ts, size_t i)
{
    return i < ts->n ? &ts->items[i].t : NULL;
}

const lvd_tensor *lvd_tensors_find(const lvd_tensors *ts, const char *name)
{
    size_t lo = 0, hi = ts->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const entry *e = &ts->items[ts->by_name[mid]];
        int c = strcmp(e->name, name);
        if (c == 0)
            return &e->t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *lvd_tensors_metadata(const lvd_tensors *ts, const char *key)
{
    for (size_t i = 0; i < ts->n_meta; i++)
        if (strcmp(ts->meta[2 * i], key) == 0)
            return ts->meta[2 * i + 1];
    return NULL;
}

int map_file(const char *path, void **map, size_t *len, lvd_error *err)
{
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lvd_fail(err, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lvd_fail(err, "not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (m == MAP_FAILED)
        return lvd_fail(err, "cannot map %lld bytes: %s", (long long)st.st_size, strerror(saved));
    *map = m;
    *len = (size_t)st.st_size;
    return 0;
}

/* A pickle stream of protocol 2 or later: PROTO, its version, and for 4 and later usually a
 * FRAME. torch.save before 1.6 (or with _use_new_zipfile_serialization=False) wrote such a
 * stream whose first value is a magic number (LONG1 of 10 bytes), whatever the protocol. Writes
 * 1 into *torch for that case. */
static int is_pickle(const uint8_t *p, size_t len, int *torch)
{
    static const uint8_t magic[12] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                      0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    *torch = 0;
    if (len < 3 || p[0] != 0x80 || p[1] < 2 || p[1] > 5)
        return 0;
    size_t at = 2;
    if (len >= at + 9 && p[at] == 0x95) /* FRAME and its 8-byte length */
        at += 9;
    *torch = len >= at + sizeof magic && memcmp(p + at, magic, sizeof magic) == 0;
    return 1;
}

/* A safetensors file: an 8-byte header length, then JSON (an object, or some JSON the parser
 * then names as wrong). */
static int looks_like_safetensors(const uint8_t *p, size_t len)
{
    size_t at = 8;
    while (at < len && at < 64 && (p[at] == ' ' || p[at] == '\n' || p[at] == '\r' || p[at] == '\t'))
        at++;
    return at < len && (p[at] == '{' || p[at] == '[');
}

static int open_mapped(lvd_tensors *ts, const char *path, lvd_error *err)
{
    void *map;
    size_t len;
    if (map_file(path, &map, &len, err) != 0)
        return -1;
    tensors_attach_map(ts, map, len);
    const uint8_t *p = map;
    static const char npy_magic[6] = "\x93NUMPY";
    if (len >= sizeof npy_magic && memcmp(map, npy_magic, sizeof npy_magic) == 0)
        return npy_parse(ts, map, len, err);
    int torch;
    if (is_pickle(p, len, &torch))
        return lvd_fail(err,
                        torch ? "legacy (pre-zip) torch.save format is not supported: re-save it "
                                "with torch >= 1.6 (torch.save(torch.load(f), g)) or convert it "
                                "to safetensors"
                              : "a pickle file, not a torch.save archive: lvd reads torch.save zip "
                                "archives (torch >= 1.6), safetensors and .npy files");
    if (len >= 262 && memcmp(p + 257, "ustar", 5) == 0)
        return lvd_fail(err, "a tar archive (torch.save before 0.4 wrote those): not supported; "
                             "re-save it with torch >= 1.6 or convert it to safetensors");
    if (len >= 9 && !looks_like_safetensors(p, len))
        return lvd_fail(err, "unknown format: not a safetensors file (no JSON header), an .npy "
                             "file or a torch.save zip archive");
    return safetensors_parse(ts, map, len, err);
}

/* Zip local file header signature: torch.save archives start with one. */
static int is_zip(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned char magic[4];
    ssize_t got = read(fd, magic, sizeof magic);
    close(fd);
    return got == 4 && memcmp(magic, "PK\x03\x04", 4) == 0;
}

int lvd_tensors_open(const char *path, lvd_tensors **out, lvd_error *err)
{
    *out = NULL;
    lvd_tensors *ts = tensors_new();
    if (!ts)
        return lvd_fail(err, "%s: out of memory", path);
    int rc = is_zip(path) ? pth_read(ts, path, err) : open_mapped(ts, path, err);
    if (rc == 0)
        rc = tensors_finish(ts, err);
    if (rc != 0) {
        lvd_tensors_close(ts);
        return lvd_error_prefix(err, "%s", path);
    }
    *out = ts;
    return 0;
}
