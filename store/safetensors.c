/* The safetensors reader and writer of store/tensors.h. safetensors: 8-byte little-endian header
 * length N, N bytes of JSON header, then the data area.
 * https://github.com/huggingface/safetensors#format */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/tensor_file.h"
#include "store/tensors_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the in-place F32 path and the writer assume a little-endian host"
#endif

/* The reference implementation refuses headers above 100 MB; so do we. */
#define HEADER_MAX ((uint64_t)100 << 20)
/* Integers in the header are JSON numbers (doubles): exact up to 2^53. */
#define JSON_INT_MAX ((double)(1ULL << 53))

typedef struct span {
    int64_t begin, end;
    const char *name;
} span;

typedef struct entry_info {
    const char *name;
    lvd_dtype dtype;
    int ndim;
    int64_t shape[LVD_MAX_DIMS];
    int64_t numel;
    span where;
} entry_info;

static int json_int(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= JSON_INT_MAX) || floor(d) != d)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_shape(const cJSON *shape, entry_info *e, lvd_error *err)
{
    if (!cJSON_IsArray(shape))
        return lvd_fail(err, "tensor \"%s\": \"shape\" is not an array", e->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > LVD_MAX_DIMS)
        return lvd_fail(err, "tensor \"%s\": %d dimensions (at most %d supported)", e->name, ndim,
                        LVD_MAX_DIMS);
    e->ndim = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (json_int(d, &e->shape[e->ndim]) != 0)
            return lvd_fail(err, "tensor \"%s\": shape holds a value that is not a size", e->name);
        e->ndim++;
    }
    if (shape_numel(e->shape, e->ndim, &e->numel) != 0)
        return lvd_fail(err, "tensor \"%s\": element count overflows", e->name);
    return 0;
}

static int parse_offsets(const cJSON *offsets, entry_info *e, uint64_t data_len, lvd_error *err)
{
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_int(offsets->child, &e->where.begin) != 0 ||
        json_int(offsets->child->next, &e->where.end) != 0)
        return lvd_fail(err, "tensor \"%s\": \"data_offsets\" is not a pair of byte offsets",
                        e->name);
    if (e->where.begin > e->where.end || (uint64_t)e->where.end > data_len)
        return lvd_fail(err,
                        "tensor \"%s\": data_offsets [%" PRId64 ", %" PRId64
                        "] lie outside the data area (%" PRIu64 " bytes)",
                        e->name, e->where.begin, e->where.end, data_len);
    uint64_t want = (uint64_t)e->numel;
    size_t esize = dtype_size(e->dtype);
    if (want > UINT64_MAX / esize || want * esize != (uint64_t)(e->where.end - e->where.begin))
        return lvd_fail(
            err, "tensor \"%s\": byte size %" PRId64 " does not match %s x %" PRId64 " elements",
            e->name, e->where.end - e->where.begin, dtype_name(e->dtype), e->numel);
    return 0;
}

static int parse_entry(const cJSON *item, entry_info *e, uint64_t data_len, lvd_error *err)
{
    e->name = item->string;
    if (!cJSON_IsObject(item))
        return lvd_fail(err, "tensor \"%s\": entry is not an object", e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!dtype || !shape || !offsets)
        return lvd_fail(err, "tensor \"%s\": entry lacks %s", e->name,
                        !dtype   ? "\"dtype\""
                        : !shape ? "\"shape\""
                                 : "\"data_offsets\"");
    if (!cJSON_IsString(dtype))
        return lvd_fail(err, "tensor \"%s\": \"dtype\" is not a string", e->name);
    if (dtype_from_name(dtype->valuestring, &e->dtype) != 0)
        return lvd_fail(err, "tensor \"%s\": unknown dtype \"%s\"", e->name, dtype->valuestring);
    if (parse_shape(shape, e, err) != 0)
        return -1;
    return parse_offsets(offsets, e, data_len, err);
}

static int parse_metadata(lvd_tensors *ts, const cJSON *meta, lvd_error *err)
{
    if (!cJSON_IsObject(meta))
        return lvd_fail(err, "\"__metadata__\" is not an object");
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return lvd_fail(err, "metadata \"%s\" is not a string", m->string);
        if (tensors_add_metadata(ts, m->string, m->valuestring) != 0)
            return lvd_fail(err, "out of memory");
    }
    return 0;
}

static int compare_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Sorted by start, each non-empty span must begin at or after the end of the previous ones. */
static int check_overlaps(span *spans, size_t n, lvd_error *err)
{
    qsort(spans, n, sizeof *spans, compare_span);
    const span *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (last && spans[i].begin < last->end)
            return lvd_fail(err, "tensors \"%s\" and \"%s\" overlap in the data area", last->name,
                            spans[i].name);
        last = &spans[i];
    }
    return 0;
}

static int add_tensor(lvd_tensors *ts, const entry_info *e, const uint8_t *data, lvd_error *err)
{
    const uint8_t *src = data + e->where.begin;
    bool in_place = e->dtype == LVD_F32 && (uintptr_t)src % sizeof(float) == 0;
    float *owned = NULL;
    if (!in_place && e->numel > 0) {
        owned = malloc((size_t)e->numel * sizeof *owned);
        if (!owned)
            return lvd_fail(err, "tensor \"%s\": out of memory for %" PRId64 " floats", e->name,
                            e->numel);
        dtype_convert(e->dtype, src, 1, e->numel, false, owned);
    }
    lvd_tensor *t = tensors_add(ts, e->name, owned);
    if (!t)
        return lvd_fail(err, "out of memory");
    t->dtype = e->dtype;
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof t->shape);
    t->numel = e->numel;
    t->data = e->numel == 0 ? NULL : in_place ? (const float *)(const void *)src : owned;
    return 0;
}

static int parse_entries(lvd_tensors *ts, const cJSON *root, const uint8_t *data, uint64_t data_len,
                         lvd_error *err)
{
    size_t n = (size_t)cJSON_GetArraySize(root);
    entry_info *infos = calloc(n ? n : 1, sizeof *infos);
    span *spans = calloc(n ? n : 1, sizeof *spans);
    if (!infos || !spans) {
        free(infos);
        free(spans);
        return lvd_fail(err, "out of memory");
    }
    size_t count = 0;
    int rc = 0;
    for (const cJSON *item = root->child; item && rc == 0; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            rc = parse_metadata(ts, item, err);
            continue;
        }
        rc = parse_entry(item, &infos[count], data_len, err);
        infos[count].where.name = infos[count].name;
        spans[count] = infos[count].where;
        count++;
    }
    if (rc == 0)
        rc = check_overlaps(spans, count, err);
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = add_tensor(ts, &infos[i], data, err);
    free(infos);
    free(spans);
    return rc;
}

static bool only_spaces(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

int safetensors_parse(lvd_tensors *ts, const uint8_t *buf, size_t len, lvd_error *err)
{
    if (len < 8)
        return lvd_fail(err, "too short for a safetensors file (%zu bytes)", len);
    uint64_t header_len = load_uint(buf, 8, false);
    if (header_len > len - 8)
        return lvd_fail(err, "header length %" PRIu64 " exceeds the file (%zu bytes)", header_len,
                        len);
    if (header_len > HEADER_MAX)
        return lvd_fail(err, "header length %" PRIu64 " above the 100 MB limit", header_len);
    const char *json = (const char *)buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)header_len, &end, 0);
    if (!root || !only_spaces(end, json + header_len)) {
        long at = (long)((end ? end : json) - json);
        cJSON_Delete(root);
        return lvd_fail(err, "header is not valid JSON (at byte %ld of %" PRIu64 ")", at,
                        header_len);
    }
    int rc = cJSON_IsObject(root)
                 ? parse_entries(ts, root, buf + 8 + header_len, len - 8 - header_len, err)
                 : lvd_fail(err, "header is not a JSON object");
    cJSON_Delete(root);
    return rc;
}

/* A growable text buffer for the header. */
typedef struct text {
    char *s;
    size_t len, cap;
    bool failed;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_str(text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_int(text *t, int64_t v)
{
    char num[24];
    text_add(t, num, (size_t)snprintf(num, sizeof num, "%" PRId64, v));
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void text_json_string(text *t, const char *s)
{
    text_add(t, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            text_add(t, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            text_add(t, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
        } else {
            text_add(t, s, 1);
        }
    }
    text_add(t, "\"", 1);
}

static int compare_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_tensors(const lvd_tensor *tensors, size_t n, lvd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const lvd_tensor *t = &tensors[i];
        int64_t numel;
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
            return lvd_fail(err, "tensor %zu has no usable name", i);
        if (t->ndim < 0 || t->ndim > LVD_MAX_DIMS || shape_numel(t->shape, t->ndim, &numel) != 0 ||
            numel != t->numel)
            return lvd_fail(err, "tensor \"%s\": shape does not match numel %" PRId64, t->name,
                            t->numel);
        if (numel > 0 && !t->data)
            return lvd_fail(err, "tensor \"%s\": no data", t->name);
    }
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return lvd_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        names[i] = tensors[i].name;
    qsort(names, n, sizeof *names, compare_name);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = lvd_fail(err, "tensor name \"%s\" appears twice", names[i]);
    free(names);
    return rc;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes so the data area stays aligned. */
static int build_header(text *h, const lvd_tensor *tensors, size_t n, const char *const *meta,
                        size_t n_meta, lvd_error *err)
{
    text_str(h, "{");
    if (n_meta) {
        text_str(h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (!meta[2 * i] || !meta[2 * i + 1])
                return lvd_fail(err, "metadata pair %zu is incomplete", i);
            text_str(h, i ? "," : "");
            text_json_string(h, meta[2 * i]);
            text_str(h, ":");
            text_json_string(h, meta[2 * i + 1]);
        }
        text_str(h, n ? "}," : "}");
    }
    int64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const lvd_tensor *t = &tensors[i];
        if (t->numel > (INT64_MAX - offset) / 4)
            return lvd_fail(err, "total size overflows");
        text_str(h, i ? "," : "");
        text_json_string(h, t->name);
        text_str(h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            text_str(h, d ? "," : "");
            text_int(h, t->shape[d]);
        }
        text_str(h, "],\"data_offsets\":[");
        text_int(h, offset);
        text_str(h, ",");
        offset += t->numel * 4;
        text_int(h, offset);
        text_str(h, "]}");
    }
    text_str(h, "}");
    while (!h->failed && h->len % 8)
        text_str(h, " ");
    return h->failed ? lvd_fail(err, "out of memory") : 0;
}

static int write_all(tensor_file *f, const text *h, const lvd_tensor *tensors, size_t n,
                     lvd_error *err)
{
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)h->len >> (8 * i));
    if (tensor_file_write(f, len_le, sizeof len_le, err) != 0 ||
        tensor_file_write(f, h->s, h->len, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (tensor_file_write(f, tensors[i].data, (size_t)tensors[i].numel * sizeof(float), err))
            return -1;
    return 0;
}

int lvd_safetensors_write(const char *path, const lvd_tensor *tensors, size_t n,
                          const char *const *meta, size_t n_meta, lvd_error *err)
{
    text h = {0};
    if (check_tensors(tensors, n, err) != 0 || build_header(&h, tensors, n, meta, n_meta, err)) {
        free(h.s);
        return lvd_error_prefix(err, "%s", path);
    }
    tensor_file f;
    int rc = tensor_file_create(&f, path, err);
    if (rc == 0 && write_all(&f, &h, tensors, n, err) != 0) {
        tensor_file_abort(&f);
        rc = -1;
    } else if (rc == 0) {
        rc = tensor_file_commit(&f, err);
    }
    free(h.s);
    return rc;
}
