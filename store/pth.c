/* The .pth reader of store/tensors.h. torch.save archives (PyTorch >= 1.6): a zip holding
 * <prefix>/data.pkl (the pickled object, tensors referring to storages by key), <prefix>/data/<key>
 * (raw storage bytes) and optionally <prefix>/byteorder ("little" or "big"). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "store/pickle.h"
#include "store/pth_zip.h"
#include "store/tensors_internal.h"

/* Zip-bomb guard: the entries that must be decompressed may together expand to at most RATIO x
 * the archive size plus a fixed allowance (checked on their declared sizes before inflating).
 * torch.save stores entries uncompressed (used in place), so real archives never get near it. */
#define RATIO      4
#define ALLOWANCE  ((uint64_t)16 << 20)
#define PICKLE_MAX ((uint64_t)256 << 20)

typedef struct archive {
    zip_t *zip;
    const uint8_t *image; /* the memory-mapped archive */
    size_t image_len;
    zip_span *spans; /* its central directory; NULL when unreadable (then nothing is in place) */
    size_t n_spans;
    char *prefix;    /* "<prefix>/" */
    uint64_t budget; /* bytes that decompression may still produce */
    bool big_endian;
} archive;

/* An entry's bytes: inside the mapped image (owned NULL), or a decompressed copy (owned). */
typedef struct entry_bytes {
    const uint8_t *data;
    size_t len;
    uint8_t *owned;
} entry_bytes;

typedef struct ref {
    const pk_named_tensor *named;
    const float *data;
    float *owned; /* data, when it is not inside the mapped image */
} ref;

static int zip_problem(zip_t *z, const char *what, const char *name, lvd_error *err)
{
    return lvd_fail(err, "%s %s: %s", what, name, zip_strerror(z));
}

/* A stored, unencrypted entry that the central directory and its local header agree on can be
 * used from the mapping directly (torch.save stores everything this way). */
static const uint8_t *stored_in_place(const archive *a, zip_uint64_t idx, const zip_stat_t *st)
{
    if (!a->spans || idx >= a->n_spans || !(st->valid & ZIP_STAT_COMP_METHOD) ||
        st->comp_method != ZIP_CM_STORE ||
        ((st->valid & ZIP_STAT_ENCRYPTION_METHOD) && st->encryption_method != ZIP_EM_NONE))
        return NULL;
    const zip_span *s = &a->spans[idx];
    if (s->size != st->size || s->name_len != strlen(st->name) ||
        memcmp(s->name, st->name, s->name_len) != 0)
        return NULL;
    int64_t at = zip_stored_data(a->image, a->image_len, s);
    return at < 0 ? NULL : a->image + at;
}

/* Decompresses entry idx (size bytes, already checked against the budget) into a new buffer,
 * insisting that it yields exactly the declared size. */
static int decompress(archive *a, zip_uint64_t idx, const char *name, uint64_t size, uint8_t **out,
                      lvd_error *err)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return lvd_fail(err, "out of memory for entry %s", name);
    zip_file_t *f = zip_fopen_index(a->zip, idx, 0);
    if (!f) {
        free(buf);
        return zip_problem(a->zip, "cannot open entry", name, err);
    }
    uint64_t got = 0;
    zip_int64_t n = 1;
    while (got < size && (n = zip_fread(f, buf + got, size - got)) > 0)
        got += (uint64_t)n;
    uint8_t extra;
    bool exact = got == size && n >= 0 && zip_fread(f, &extra, 1) == 0;
    int closed = zip_fclose(f);
    if (!exact || closed != 0) {
        free(buf);
        return lvd_fail(err, "entry %s does not decompress to its declared %" PRIu64 " bytes", name,
                        size);
    }
    *out = buf;
    return 0;
}

/* Entry `name` whole; when expect != UINT64_MAX its size must be exactly that. */
static int read_entry(archive *a, const char *name, uint64_t expect, uint64_t cap, entry_bytes *out,
                      lvd_error *err)
{
    memset(out, 0, sizeof *out);
    zip_stat_t st;
    zip_int64_t idx = zip_name_locate(a->zip, name, 0);
    if (idx < 0)
        return lvd_fail(err, "archive lacks entry %s", name);
    if (zip_stat_index(a->zip, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        return zip_problem(a->zip, "cannot stat", name, err);
    if (expect != UINT64_MAX && st.size != expect)
        return lvd_fail(err, "entry %s holds %" PRIu64 " bytes, the pickle says %" PRIu64, name,
                        (uint64_t)st.size, expect);
    if (st.size > cap)
        return lvd_fail(err, "entry %s declares %" PRIu64 " bytes, above the %" PRIu64 " limit",
                        name, (uint64_t)st.size, cap);
    out->len = (size_t)st.size;
    out->data = stored_in_place(a, (zip_uint64_t)idx, &st);
    if (out->data)
        return 0;
    if (st.size > a->budget)
        return lvd_fail(err,
                        "entry %s declares %" PRIu64 " uncompressed bytes, above the limit for "
                        "this archive (%" PRIu64 "): refusing a possible zip bomb",
                        name, (uint64_t)st.size, a->budget);
    a->budget -= st.size;
    if (decompress(a, (zip_uint64_t)idx, name, st.size, &out->owned, err) != 0)
        return -1;
    out->data = out->owned;
    return 0;
}

/* The archive's folder: the one holding data.pkl at the top level. */
static int find_prefix(archive *a, lvd_error *err)
{
    zip_int64_t n = zip_get_num_entries(a->zip, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(a->zip, (zip_uint64_t)i, 0);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || slash == name || strcmp(slash, "/data.pkl") != 0)
            continue;
        size_t len = (size_t)(slash - name) + 1;
        a->prefix = malloc(len + 1);
        if (!a->prefix)
            return lvd_fail(err, "out of memory");
        memcpy(a->prefix, name, len);
        a->prefix[len] = '\0';
        return 0;
    }
    return lvd_fail(err, "zip archive holds no <folder>/data.pkl: not a torch.save file");
}

static char *entry_name(const archive *a, const char *rest)
{
    size_t p = strlen(a->prefix), r = strlen(rest);
    char *s = malloc(p + r + 1);
    if (s) {
        memcpy(s, a->prefix, p);
        memcpy(s + p, rest, r + 1);
    }
    return s;
}

static int read_named(archive *a, const char *rest, uint64_t expect, uint64_t cap, entry_bytes *out,
                      lvd_error *err)
{
    char *name = entry_name(a, rest);
    if (!name)
        return lvd_fail(err, "out of memory");
    int rc = read_entry(a, name, expect, cap, out, err);
    free(name);
    return rc;
}

static int read_byteorder(archive *a, lvd_error *err)
{
    char *name = entry_name(a, "byteorder");
    if (!name)
        return lvd_fail(err, "out of memory");
    bool present = zip_name_locate(a->zip, name, 0) >= 0;
    free(name);
    a->big_endian = false;
    if (!present)
        return 0; /* older writers: always little-endian */
    entry_bytes text;
    if (read_named(a, "byteorder", UINT64_MAX, 16, &text, err) != 0)
        return -1;
    bool little = text.len == 6 && memcmp(text.data, "little", 6) == 0;
    a->big_endian = text.len == 3 && memcmp(text.data, "big", 3) == 0;
    free(text.owned);
    return little || a->big_endian ? 0 : lvd_fail(err, "byteorder entry is neither little nor big");
}

/* Copies the (possibly strided) view into dst, row by row along the last dimension. */
static void gather(const pk_tensor *t, const uint8_t *storage, bool big_endian, float *dst)
{
    lvd_dtype dtype = t->storage->dtype;
    size_t esize = dtype_size(dtype);
    if (t->ndim == 0) {
        dtype_convert(dtype, storage + (size_t)t->offset * esize, 1, 1, big_endian, dst);
        return;
    }
    int inner = t->ndim - 1;
    int64_t width = t->shape[inner];
    int64_t rows = t->numel / width;
    int64_t idx[LVD_MAX_DIMS] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t at = t->offset;
        for (int d = 0; d < inner; d++)
            at += idx[d] * t->stride[d];
        dtype_convert(dtype, storage + (size_t)at * esize, t->stride[inner], width, big_endian,
                      dst + r * width);
        for (int d = inner - 1; d >= 0 && ++idx[d] == t->shape[d]; d--)
            idx[d] = 0;
    }
}

static bool is_contiguous(const pk_tensor *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

static const char *key_of(const ref *r)
{
    return r->named->tensor->storage->key;
}

static int compare_ref_key(const void *a, const void *b)
{
    return strcmp(key_of(*(ref *const *)a), key_of(*(ref *const *)b));
}

/* A whole F32 little-endian storage viewed by exactly one contiguous tensor needs no copy. */
static bool usable_as_is(const archive *a, const pk_tensor *t, size_t viewers)
{
    return viewers == 1 && t->offset == 0 && t->numel == t->storage->numel && is_contiguous(t) &&
           t->storage->dtype == LVD_F32 && !a->big_endian;
}

/* Fills r from the storage bytes: in place, by adopting the decompressed buffer, or by a
 * converting copy. Takes *adoptable (sets it NULL) when adopting it. */
static int fill_ref(const archive *a, ref *r, const uint8_t *bytes, uint8_t **adoptable,
                    size_t viewers, lvd_error *err)
{
    const pk_tensor *t = r->named->tensor;
    if (usable_as_is(a, t, viewers) && *adoptable) {
        r->owned = (float *)(void *)*adoptable; /* malloc'd: suitably aligned */
        *adoptable = NULL;
        r->data = r->owned;
        return 0;
    }
    if (usable_as_is(a, t, viewers) && (uintptr_t)bytes % sizeof(float) == 0) {
        r->data = (const float *)(const void *)bytes; /* inside the mapped archive */
        return 0;
    }
    r->owned = malloc((size_t)t->numel * sizeof(float));
    if (!r->owned)
        return lvd_fail(err, "out of memory for tensor %s", r->named->name);
    gather(t, bytes, a->big_endian, r->owned);
    r->data = r->owned;
    return 0;
}

/* Reads one storage and fills the tensors group[0..n) that view it. */
static int load_storage(archive *a, ref **group, size_t n, lvd_error *err)
{
    const pk_storage *s = group[0]->named->tensor->storage;
    for (size_t i = 1; i < n; i++) {
        const pk_storage *o = group[i]->named->tensor->storage;
        if (o->dtype != s->dtype || o->numel != s->numel)
            return lvd_fail(err, "storage %s is described twice with different types", s->key);
    }
    uint64_t esize = dtype_size(s->dtype);
    if ((uint64_t)s->numel > UINT64_MAX / esize)
        return lvd_fail(err, "storage %s is too large", s->key);
    size_t key_len = strlen(s->key);
    char *rest = malloc(key_len + sizeof "data/");
    if (!rest)
        return lvd_fail(err, "out of memory");
    memcpy(rest, "data/", 5);
    memcpy(rest + 5, s->key, key_len + 1);
    entry_bytes bytes;
    int rc = read_named(a, rest, (uint64_t)s->numel * esize, UINT64_MAX, &bytes, err);
    free(rest);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (group[i]->named->tensor->numel > 0)
            rc = fill_ref(a, group[i], bytes.data, &bytes.owned, n, err);
    free(bytes.owned);
    return rc;
}

static int load_tensors(archive *a, ref *refs, size_t n, lvd_error *err)
{
    ref **order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return lvd_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = &refs[i];
    qsort(order, n, sizeof *order, compare_ref_key);
    int rc = 0;
    for (size_t i = 0, j; i < n && rc == 0; i = j) {
        for (j = i + 1; j < n && strcmp(key_of(order[i]), key_of(order[j])) == 0; j++)
            ;
        rc = load_storage(a, order + i, j - i, err);
    }
    free(order);
    return rc;
}

static int publish(lvd_tensors *ts, ref *refs, size_t n, lvd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const pk_tensor *pt = refs[i].named->tensor;
        float *owned = refs[i].owned;
        refs[i].owned = NULL; /* owned by ts from here, even on failure */
        lvd_tensor *t = tensors_add(ts, refs[i].named->name, owned);
        if (!t)
            return lvd_fail(err, "out of memory");
        t->dtype = pt->storage->dtype;
        t->ndim = pt->ndim;
        memcpy(t->shape, pt->shape, sizeof t->shape);
        t->numel = pt->numel;
        t->data = refs[i].data;
    }
    return 0;
}

static int read_state(lvd_tensors *ts, archive *a, const pickle *p, lvd_error *err)
{
    pk_named_tensor *named;
    size_t n;
    if (pickle_state_dict(p, &named, &n, err) != 0)
        return -1;
    ref *refs = calloc(n ? n : 1, sizeof *refs);
    int rc = refs ? 0 : lvd_fail(err, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++)
        refs[i].named = &named[i];
    if (rc == 0)
        rc = load_tensors(a, refs, n, err);
    if (rc == 0)
        rc = publish(ts, refs, n, err);
    for (size_t i = 0; refs && i < n; i++)
        free(refs[i].owned);
    free(refs);
    pickle_free_named(named, n);
    return rc;
}

static int read_archive(lvd_tensors *ts, archive *a, lvd_error *err)
{
    if (find_prefix(a, err) != 0 || read_byteorder(a, err) != 0)
        return -1;
    entry_bytes pkl;
    if (read_named(a, "data.pkl", UINT64_MAX, PICKLE_MAX, &pkl, err) != 0)
        return -1;
    pickle *p;
    int rc = pickle_load(pkl.data, pkl.len, &p, err);
    free(pkl.owned);
    if (rc != 0)
        return -1;
    rc = read_state(ts, a, p, err);
    pickle_free(p);
    return rc;
}

/* Opens the mapped image with libzip (which validates it) and reads the central directory for
 * in-place access. */
static int open_archive(archive *a, lvd_error *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(a->image, a->image_len, 0, &ze);
    a->zip = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    if (!a->zip) {
        zip_source_free(src);
        lvd_fail(err, "not a readable zip archive: %s", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    zip_error_fini(&ze);
    if (zip_central_directory(a->image, a->image_len, &a->spans, &a->n_spans) != 0)
        a->spans = NULL; /* everything goes through libzip instead */
    return 0;
}

int pth_read(lvd_tensors *ts, const char *path, lvd_error *err)
{
    void *map;
    size_t len;
    if (map_file(path, &map, &len, err) != 0)
        return -1;
    tensors_attach_map(ts, map, len); /* tensors may point into it */
    archive a = {.image = map, .image_len = len, .budget = RATIO * (uint64_t)len + ALLOWANCE};
    if (open_archive(&a, err) != 0)
        return -1;
    int rc = read_archive(ts, &a, err);
    zip_discard(a.zip);
    free(a.spans);
    free(a.prefix);
    return rc;
}
