/* URL lists of curate/fetch/inputs.h: text, CSV, TSV and JSON Lines, each optionally gzipped. */
#include "curate/fetch/inputs.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef enum list_format { LIST_TEXT, LIST_CSV, LIST_TSV, LIST_JSONL } list_format;

enum { COL_URL, COL_LABEL, COL_CAPTION, COL_KEY, N_COLS };
static const char *const column_names[N_COLS] = {"url", "label", "caption", "key"};

/* The longest record read (a URL list line, or a quoted CSV record over several lines). */
#define MAX_RECORD (64 << 20)

typedef struct list_reader {
    const char *path;
    gzFile gz;
    long line;
    char *buf; /* the current record (one line, or several for a quoted CSV field) */
    size_t len, cap;
    const unsigned char *in; /* bytes read, not yet consumed: buffer, or the whole list in memory */
    size_t in_pos, in_len;
    unsigned char buffer[65536];
    int eof;
    int col[N_COLS]; /* column index of each known column, -1 when absent */
    lvd_input_fn fn;
    void *ctx;
} list_reader;

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

static list_format format_of(const char *path)
{
    size_t n = strlen(path);
    if (ends_with(path, n, ".gz"))
        n -= 3;
    if (ends_with(path, n, ".csv"))
        return LIST_CSV;
    if (ends_with(path, n, ".tsv"))
        return LIST_TSV;
    if (ends_with(path, n, ".jsonl") || ends_with(path, n, ".ndjson"))
        return LIST_JSONL;
    return LIST_TEXT;
}

/* Makes room for need more bytes and the terminating NUL in r->buf. */
static int reserve(list_reader *r, size_t need, lvd_error *err)
{
    if (r->len + need + 1 <= r->cap)
        return 0;
    if (r->len + need > MAX_RECORD)
        return lvd_fail(err, "%s:%ld: line longer than %d bytes", r->path, r->line + 1, MAX_RECORD);
    size_t cap = r->cap ? r->cap : 8192;
    while (cap < r->len + need + 1)
        cap *= 2;
    char *buf = realloc(r->buf, cap);
    if (!buf)
        return lvd_fail(err, "%s: out of memory", r->path);
    r->buf = buf;
    r->cap = cap;
    return 0;
}

/* Refills r->in; 0 at the end of the file (or of a list in memory: no gz). */
static int refill(list_reader *r, lvd_error *err)
{
    if (r->eof || !r->gz)
        return 0;
    int n = gzread(r->gz, r->buffer, sizeof r->buffer);
    if (n < 0) {
        int code;
        const char *msg = gzerror(r->gz, &code);
        return lvd_fail(err, "%s:%ld: read error: %s", r->path, r->line + 1, msg);
    }
    r->in = r->buffer;
    r->in_pos = 0;
    r->in_len = (size_t)n;
    r->eof = n == 0;
    return n > 0;
}

/* Appends the next physical line (without its newline) to r->buf. Only '\n' ends a line, so
 * every line is one record whatever bytes it holds; a NUL byte, which a C string cannot hold,
 * becomes the three characters "%00" (in a URL, the same byte percent-encoded). Returns 1 when
 * a line was read, 0 at the end of the file, -1 on error. */
static int append_line(list_reader *r, lvd_error *err)
{
    size_t start = r->len;
    if (start > 0) { /* a quoted CSV field goes on: keep its line break */
        if (reserve(r, 1, err) != 0)
            return -1;
        r->buf[r->len++] = '\n';
    }
    int any = 0;
    for (;;) {
        if (r->in_pos == r->in_len) {
            int got = refill(r, err);
            if (got < 0)
                return -1;
            if (got == 0)
                break;
        }
        any = 1;
        const unsigned char *from = r->in + r->in_pos;
        size_t avail = r->in_len - r->in_pos;
        const unsigned char *nl = memchr(from, '\n', avail);
        size_t take = nl ? (size_t)(nl - from) : avail;
        for (size_t i = 0; i < take; i++) {
            if (reserve(r, 3, err) != 0)
                return -1;
            if (from[i])
                r->buf[r->len++] = (char)from[i];
            else
                r->len += (size_t)sprintf(r->buf + r->len, "%%00");
        }
        r->in_pos += take + (nl != NULL);
        if (nl)
            break;
    }
    if (!any) {
        r->len = start;
        if (r->buf)
            r->buf[r->len] = '\0';
        return 0;
    }
    if (reserve(r, 0, err) != 0)
        return -1;
    r->line++;
    while (r->len > start && r->buf[r->len - 1] == '\r')
        r->len--;
    r->buf[r->len] = '\0';
    return 1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Hands one row to the callback, resolving scheme-less URLs as local paths. */
static int emit(list_reader *r, char *url, char *key, char *label, char *caption, lvd_error *err)
{
    url = trim(url);
    if (!*url)
        return lvd_fail(err, "%s:%ld: empty url", r->path, r->line);
    char file_url[PATH_MAX * 3 + 16];
    if (!lvd_url_has_scheme(url)) {
        char abs[PATH_MAX];
        char cwd[PATH_MAX];
        if (realpath(url, abs) == NULL) {
            if (url[0] == '/' || !getcwd(cwd, sizeof cwd))
                snprintf(abs, sizeof abs, "%s", url);
            else if (snprintf(abs, sizeof abs, "%s/%s", cwd, url) >= (int)sizeof abs)
                return lvd_fail(err, "%s:%ld: path too long", r->path, r->line);
        }
        if (lvd_file_url(abs, file_url, sizeof file_url, err) != 0)
            return lvd_error_prefix(err, "%s:%ld", r->path, r->line);
        url = file_url;
    }
    lvd_input_item item = {
        .url = url,
        .key = key && *key ? key : NULL,
        .label = label && *label ? label : NULL,
        .caption = caption && *caption ? caption : NULL,
    };
    return r->fn(r->ctx, &item, err);
}

/* Splits r->buf at sep in place (no quoting). Writes at most max fields. */
static int split_plain(char *s, char sep, char **fields, int max)
{
    int n = 0;
    for (;;) {
        if (n < max)
            fields[n++] = s;
        char *e = strchr(s, sep);
        if (!e)
            return n;
        *e = '\0';
        s = e + 1;
    }
}

/* 1 when the CSV record in s ends inside a quoted field. */
static int csv_open_quote(const char *s)
{
    int open = 0;
    for (; *s; s++)
        if (*s == '"')
            open = !open;
    return open;
}

/* Splits a CSV record in place (RFC 4180 quoting: "" is a quote inside a quoted field). */
static int split_csv(char *s, char **fields, int max)
{
    int n = 0;
    char *out = s;
    for (;;) {
        char *field = out;
        if (*s == '"') {
            s++;
            for (; *s; s++) {
                if (*s == '"' && s[1] == '"')
                    *out++ = *s++;
                else if (*s == '"')
                    break;
                else
                    *out++ = *s;
            }
            if (*s == '"')
                s++;
        }
        while (*s && *s != ',')
            *out++ = *s++;
        int more = *s == ',';
        *out++ = '\0';
        if (n < max)
            fields[n++] = field;
        if (!more)
            return n;
        s++;
    }
}

#define MAX_FIELDS 256

static int split_record(list_reader *r, list_format fmt, char **fields, lvd_error *err)
{
    if (fmt == LIST_TSV)
        return split_plain(r->buf, '\t', fields, MAX_FIELDS);
    while (csv_open_quote(r->buf)) {
        int got = append_line(r, err);
        if (got < 0)
            return -1;
        if (got == 0)
            return lvd_fail(err, "%s:%ld: unterminated quoted field", r->path, r->line);
    }
    return split_csv(r->buf, fields, MAX_FIELDS);
}

static int read_header(list_reader *r, list_format fmt, lvd_error *err)
{
    char *fields[MAX_FIELDS];
    int got = append_line(r, err);
    if (got <= 0)
        return got < 0 ? -1 : lvd_fail(err, "%s: empty list (a header line is expected)", r->path);
    if (strncmp(r->buf, "\xef\xbb\xbf", 3) == 0) /* spreadsheets often start with a BOM */
        memmove(r->buf, r->buf + 3, (r->len -= 3) + 1);
    int n = split_record(r, fmt, fields, err);
    if (n < 0)
        return -1;
    for (int c = 0; c < N_COLS; c++) {
        r->col[c] = -1;
        for (int i = 0; i < n; i++)
            if (strcasecmp(trim(fields[i]), column_names[c]) == 0)
                r->col[c] = i;
    }
    if (r->col[COL_URL] < 0)
        return lvd_fail(err, "%s:1: no 'url' column in the header", r->path);
    return 0;
}

static int read_table(list_reader *r, list_format fmt, lvd_error *err)
{
    if (read_header(r, fmt, err) != 0)
        return -1;
    char *fields[MAX_FIELDS];
    for (;;) {
        r->len = 0;
        int got = append_line(r, err);
        if (got <= 0)
            return got;
        if (!*trim(r->buf))
            continue;
        int n = split_record(r, fmt, fields, err);
        if (n < 0)
            return -1;
        char *v[N_COLS];
        for (int c = 0; c < N_COLS; c++)
            v[c] = r->col[c] >= 0 && r->col[c] < n ? trim(fields[r->col[c]]) : NULL;
        if (!v[COL_URL])
            return lvd_fail(err, "%s:%ld: missing url field", r->path, r->line);
        if (emit(r, v[COL_URL], v[COL_KEY], v[COL_LABEL], v[COL_CAPTION], err) != 0)
            return -1;
    }
}

/* A JSON field as text: strings as they are, numbers printed; NULL when absent. */
static char *json_field(const cJSON *obj, const char *name, char *num, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(num, cap, "%.17g", v->valuedouble);
        return num;
    }
    return NULL;
}

static int read_jsonl(list_reader *r, lvd_error *err)
{
    for (;;) {
        r->len = 0;
        int got = append_line(r, err);
        if (got <= 0)
            return got;
        if (!*trim(r->buf))
            continue;
        cJSON *obj = cJSON_Parse(r->buf);
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            return lvd_fail(err, "%s:%ld: not a JSON object", r->path, r->line);
        }
        char nums[4][32];
        char *url = json_field(obj, "url", nums[0], sizeof nums[0]);
        int rc = url ? emit(r, url, json_field(obj, "key", nums[1], sizeof nums[1]),
                            json_field(obj, "label", nums[2], sizeof nums[2]),
                            json_field(obj, "caption", nums[3], sizeof nums[3]), err)
                     : lvd_fail(err, "%s:%ld: no string 'url' field", r->path, r->line);
        cJSON_Delete(obj);
        if (rc != 0)
            return rc;
    }
}

static int read_text(list_reader *r, lvd_error *err)
{
    for (;;) {
        r->len = 0;
        int got = append_line(r, err);
        if (got <= 0)
            return got;
        char *url = trim(r->buf);
        if (!*url || *url == '#')
            continue;
        if (emit(r, url, NULL, NULL, NULL, err) != 0)
            return -1;
    }
}

static int read_list(list_reader *r, lvd_error *err)
{
    list_format fmt = format_of(r->path);
    if (fmt == LIST_JSONL)
        return read_jsonl(r, err);
    if (fmt == LIST_TEXT)
        return read_text(r, err);
    return read_table(r, fmt, err);
}

/* Opens path for reading without blocking: a blocking open of a FIFO with no writer would wait
 * for one forever, deaf to a stop request that came just before it. A FIFO is polled until it has
 * data or a writer came and left, checking *stop every 100 ms; then the descriptor blocks again. */
static int open_list(const char *path, const volatile sig_atomic_t *stop, lvd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return lvd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : lvd_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    while (rc == 0 && S_ISFIFO(st.st_mode)) {
        if (stop && *stop) {
            rc = lvd_fail(err, "%s: stopped while waiting for a writer", path);
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 100);
        if (n > 0)
            break;
        if (n < 0 && errno != EINTR)
            rc = lvd_fail(err, "%s: cannot wait for data: %s", path, strerror(errno));
    }
    if (rc == 0) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
            rc = lvd_fail(err, "%s: cannot read: %s", path, strerror(errno));
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int lvd_inputs_read_list(const char *path, lvd_input_fn fn, void *ctx,
                         const volatile sig_atomic_t *stop, lvd_error *err)
{
    list_reader *r = calloc(1, sizeof *r);
    if (!r)
        return lvd_fail(err, "%s: out of memory", path);
    *r = (list_reader){.path = path, .fn = fn, .ctx = ctx};
    int fd = open_list(path, stop, err), rc = -1;
    if (fd >= 0 && !(r->gz = gzdopen(fd, "rb"))) {
        lvd_fail(err, "%s: cannot open: out of memory", path);
        close(fd);
    }
    if (r->gz) {
        rc = read_list(r, err);
        gzclose(r->gz);
    }
    free(r->buf);
    free(r);
    return rc;
}

int lvd_inputs_parse_list(const char *name, const void *data, size_t len, lvd_input_fn fn,
                          void *ctx, lvd_error *err)
{
    list_reader *r = calloc(1, sizeof *r);
    if (!r)
        return lvd_fail(err, "%s: out of memory", name);
    *r = (list_reader){.path = name, .in = data, .in_len = len, .fn = fn, .ctx = ctx};
    int rc = read_list(r, err);
    free(r->buf);
    free(r);
    return rc;
}
