/* lvd_pipeline_load of curate/pipeline.h. Loading a pipeline file: libinih does the syntax; a
 * line-counting reader gives every section (empty ones included) and the line of every key for
 * error messages. */
#include "curate/pipeline/pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "curate/pipeline/pipeline_fp.h"

typedef struct parse_ctx {
    FILE *file;
    const char *path;
    int line;          /* line being parsed (1-based) */
    int at_line_start; /* the next chunk the reader returns starts a line */
    int in_pipeline;   /* inside the [pipeline] section */
    int in_section;
    lvd_pipeline *p;
    int err_line; /* first problem found, 0: none */
    lvd_error err;
} parse_ctx;

/* Records a problem at line unless an earlier one was found. Returns 0 (inih's "error"). */
static int __attribute__((format(printf, 3, 4)))
problem(parse_ctx *c, int line, const char *fmt, ...)
{
    if (c->err_line && c->err_line <= line)
        return 0;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->err_line = line;
    lvd_fail(&c->err, "%s:%d: %s", c->path, line, msg);
    return 0;
}

static int push(void **arr, size_t *n, size_t size)
{
    void *p = realloc(*arr, (*n + 1) * size);
    if (!p)
        return -1;
    *arr = p;
    memset((char *)p + *n * size, 0, size);
    (*n)++;
    return 0;
}

static void add_section(parse_ctx *c, const char *s)
{
    const char *end = strchr(s, ']');
    if (!end)
        return; /* inih reports the syntax error */
    size_t len = (size_t)(end - s);
    c->in_section = 1;
    c->in_pipeline = len == 8 && memcmp(s, "pipeline", 8) == 0;
    if (c->in_pipeline)
        return;
    lvd_pipeline *p = c->p;
    char *id = strndup(s, len);
    if (!id || push((void **)&p->steps, &p->n_steps, sizeof *p->steps) != 0) {
        free(id);
        problem(c, c->line, "out of memory");
        return;
    }
    p->steps[p->n_steps - 1].id = id;
    p->steps[p->n_steps - 1].line = c->line;
    p->steps[p->n_steps - 1].n_reads = (size_t)-1; /* not given: stage default */
}

/* fgets that counts lines and notes section headers as they pass. */
static char *reader(char *buf, int size, void *stream)
{
    parse_ctx *c = stream;
    if (!fgets(buf, size, c->file))
        return NULL;
    if (c->at_line_start) {
        c->line++;
        const char *s = buf;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '[')
            add_section(c, s + 1);
    }
    size_t len = strlen(buf);
    c->at_line_start = len > 0 && buf[len - 1] == '\n';
    return buf;
}

/* Expands ${VAR} from the environment into a malloc'd string. */
static char *expand(parse_ctx *c, const char *v)
{
    size_t cap = strlen(v) + 1, len = 0;
    char *out = malloc(cap);
    while (out && *v) {
        const char *add = v, *close = NULL;
        size_t n = 1;
        if (v[0] == '$' && v[1] == '{' && (close = strchr(v + 2, '}'))) {
            char name[256];
            size_t nl = (size_t)(close - v - 2);
            snprintf(name, sizeof name, "%.*s", (int)nl, v + 2);
            add = getenv(name);
            if (nl == 0 || nl >= sizeof name || !add) {
                problem(c, c->line, "${%s} is not set in the environment", name);
                free(out);
                return NULL;
            }
            n = strlen(add);
            v = close + 1;
        } else {
            v++;
        }
        if (len + n + 1 > cap) {
            cap = 2 * (len + n + 1);
            char *q = realloc(out, cap);
            if (!q)
                free(out);
            out = q;
        }
        if (out) {
            memcpy(out + len, add, n);
            len += n;
        }
    }
    if (out)
        out[len] = '\0';
    else if (!c->err_line)
        problem(c, c->line, "out of memory");
    return out;
}

static int valid_key(const char *k)
{
    if (!isalnum((unsigned char)k[0]))
        return 0;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '-' && *k != '_' && *k != '.')
            return 0;
    return 1;
}

static int set_reads(parse_ctx *c, lvd_pipeline_step *s, char *value)
{
    if (s->n_reads == (size_t)-1)
        s->n_reads = 0;
    for (char *save = NULL, *tok = strtok_r(value, " \t,", &save); tok;
         tok = strtok_r(NULL, " \t,", &save)) {
        if (strcmp(tok, "none") == 0)
            continue;
        if (!lvd_fp_fact_valid(tok))
            return problem(c, c->line,
                           "unknown manifest fact '%s' in reads (images[:SOURCE], "
                           "embeddings[:MODEL], models[:NAME], dedup[:MODEL], "
                           "curated[:MODEL] or none)",
                           tok);
        char *copy = strdup(tok);
        if (!copy || push((void **)&s->reads, &s->n_reads, sizeof *s->reads) != 0) {
            free(copy);
            return problem(c, c->line, "out of memory");
        }
        s->reads[s->n_reads - 1] = copy;
    }
    return 1;
}

/* Adds one key of a step; takes value (malloc'd or NULL). */
static int step_key(parse_ctx *c, lvd_pipeline_step *s, const char *key, char *value)
{
    int is_reads = strcmp(key, "reads") == 0, is_args = strcmp(key, "args") == 0;
    if (value && !*value) {
        free(value);
        value = NULL;
    }
    if ((is_reads || is_args) && !value)
        return problem(c, c->line, "'%s' needs a value", key);
    if (is_reads) {
        int ok = set_reads(c, s, value);
        free(value);
        return ok;
    }
    if (!is_args && !valid_key(key)) {
        free(value);
        return problem(c, c->line,
                       "bad line: '%s' is not an option name (expected key = value or a flag key; "
                       "names start with a letter or digit, then letters, digits, - _ .)",
                       key);
    }
    char *k = NULL;
    if (!is_args && asprintf(&k, strlen(key) == 1 ? "-%s" : "--%s", key) < 0)
        k = NULL;
    int oom = is_args ? push((void **)&s->args, &s->n_args, sizeof *s->args) != 0
                      : !k || push((void **)&s->opts, &s->n_opts, sizeof *s->opts) != 0;
    if (oom) {
        free(k);
        free(value);
        return problem(c, c->line, "out of memory");
    }
    if (is_args) {
        s->args[s->n_args - 1] = value;
    } else {
        s->opts[s->n_opts - 1].key = k;
        s->opts[s->n_opts - 1].value = value;
    }
    return 1;
}

static int handler(void *user, const char *section, const char *key, const char *raw)
{
    (void)section; /* the reader tracks sections, empty ones included */
    parse_ctx *c = user;
    if (!c->in_section)
        return problem(c, c->line, "'%s' is outside a section ([pipeline] or [STAGE])", key);
    char *value = raw ? expand(c, raw) : NULL;
    if (raw && !value)
        return 0;
    lvd_pipeline *p = c->p;
    if (!c->in_pipeline) {
        if (p->n_steps == 0) {
            free(value);
            return 0;
        }
        return step_key(c, p->steps + p->n_steps - 1, key, value);
    }
    if (strcmp(key, "db") != 0 || !value) {
        free(value);
        return problem(c, c->line, "unknown key '%s' in [pipeline] (only db = PATH)", key);
    }
    free(p->db);
    p->db = value;
    return 1;
}

static int valid_id_part(const char *s, size_t len, int allow_upper)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)s[i];
        int ok = islower(ch) || isdigit(ch) || ch == '-' ||
                 (allow_upper && (isupper(ch) || ch == '_' || ch == '.'));
        if (!ok)
            return 0;
    }
    return 1;
}

/* The stage's default manifest facts (see pipeline.h). */
static int default_reads(lvd_pipeline_step *s)
{
    static const struct {
        const char *stage, *reads;
    } defaults[] = {
        {"fetch", ""},
        {"model", ""},
        {"idx-export", ""},
        {"embed", "images models"},
        {"dedup", "images models embeddings"},
        {"retrieve", "images models embeddings dedup"},
        {"export", "curated"},
    };
    const char *reads = "images models embeddings dedup curated";
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (strcmp(s->stage, defaults[i].stage) == 0)
            reads = defaults[i].reads;
    s->n_reads = 0;
    while (*reads) {
        size_t len = strcspn(reads, " ");
        char *copy = strndup(reads, len);
        if (!copy || push((void **)&s->reads, &s->n_reads, sizeof *s->reads) != 0) {
            free(copy);
            return -1;
        }
        s->reads[s->n_reads - 1] = copy;
        reads += len + (reads[len] == ' ');
    }
    return 0;
}

/* Checks ids, finds executables and fills default reads, in file order. */
static void finish_steps(parse_ctx *c)
{
    lvd_pipeline *p = c->p;
    for (size_t i = 0; i < p->n_steps; i++) {
        lvd_pipeline_step *s = p->steps + i;
        const char *colon = strchr(s->id, ':');
        size_t stage_len = colon ? (size_t)(colon - s->id) : strlen(s->id);
        if (!valid_id_part(s->id, stage_len, 0) ||
            (colon && !valid_id_part(colon + 1, strlen(colon + 1), 1))) {
            problem(c, s->line,
                    "invalid step name [%s] (STAGE or STAGE:NAME; STAGE in a-z 0-9 -, NAME "
                    "in A-Z a-z 0-9 - _ .)",
                    s->id);
            return;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->steps[j].id, s->id) == 0) {
                problem(c, s->line, "duplicate step [%s] (first at line %d)", s->id,
                        p->steps[j].line);
                return;
            }
        s->stage = strndup(s->id, stage_len);
        if (!s->stage || (s->n_reads == (size_t)-1 && default_reads(s) != 0)) {
            problem(c, s->line, "out of memory");
            return;
        }
        lvd_error e;
        if (lvd_pipeline_find_exe(s->stage, &s->exe, &e) != 0) {
            problem(c, s->line, "unknown stage '%s': %s", s->stage, e.msg);
            return;
        }
    }
}

int lvd_pipeline_parse(FILE *file, const char *path, lvd_pipeline **out, lvd_error *err)
{
    *out = NULL;
    parse_ctx c = {.path = path, .at_line_start = 1, .file = file};
    c.p = calloc(1, sizeof *c.p);
    if (!c.p || !(c.p->path = strdup(path))) {
        lvd_pipeline_free(c.p);
        return lvd_fail(err, "%s: out of memory", path);
    }
    /* Long lines (paths) and flags without a value are allowed; no continuation lines (an
     * indented line is an ordinary one, as the reader assumes); stop at the first error. */
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_allow_no_value = true;
    ini_allow_multiline = false;
    ini_stop_on_first_error = true;
    int rc = ini_parse_stream(reader, &c, handler, &c);
    if (rc > 0 && (!c.err_line || rc < c.err_line))
        problem(&c, rc, "syntax error (expected [section], key = value, key or a comment)");
    else if (rc < 0)
        problem(&c, c.line, "out of memory");
    if (!c.err_line && c.p->n_steps == 0)
        problem(&c, c.line, "no steps (sections [STAGE] or [STAGE:NAME])");
    if (!c.err_line)
        finish_steps(&c);
    if (c.err_line) {
        *err = c.err;
        lvd_pipeline_free(c.p);
        return -1;
    }
    *out = c.p;
    return 0;
}

int lvd_pipeline_load(const char *path, lvd_pipeline **out, lvd_error *err)
{
    *out = NULL;
    FILE *file = fopen(path, "r");
    if (!file)
        return lvd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int rc = lvd_pipeline_parse(file, path, out, err);
    fclose(file);
    return rc;
}

void lvd_pipeline_free(lvd_pipeline *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_steps; i++) {
        lvd_pipeline_step *s = p->steps + i;
        for (size_t j = 0; j < s->n_opts; j++) {
            free(s->opts[j].key);
            free(s->opts[j].value);
        }
        for (size_t j = 0; j < s->n_args; j++)
            free(s->args[j]);
        for (size_t j = 0; s->n_reads != (size_t)-1 && j < s->n_reads; j++)
            free(s->reads[j]);
        free(s->opts);
        free(s->args);
        free(s->reads);
        free(s->id);
        free(s->stage);
        free(s->exe);
    }
    free(p->steps);
    free(p->db);
    free(p->path);
    free(p);
}

/* Looks for name in each folder of the colon-separated list; *found is malloc'd. */
static int search_dirs(const char *list, const char *name, char **found)
{
    const char *d = list;
    while (d && *d) {
        const char *end = strchr(d, ':');
        size_t len = end ? (size_t)(end - d) : strlen(d);
        char path[PATH_MAX];
        struct stat st;
        if (len > 0 &&
            snprintf(path, sizeof path, "%.*s/%s", (int)len, d, name) < (int)sizeof path &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
            *found = strdup(path);
            return *found ? 1 : -1;
        }
        d = end ? end + 1 : NULL;
    }
    return 0;
}

int lvd_pipeline_find_exe(const char *stage, char **exe, lvd_error *err)
{
    *exe = NULL;
    char name[256], self[PATH_MAX];
    if (snprintf(name, sizeof name, "lvd-%s", stage) >= (int)sizeof name)
        return lvd_fail(err, "stage name too long");
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    const char *lists[] = {getenv("LVD_STAGE_PATH"), slash ? self : NULL, getenv("PATH")};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        int r = search_dirs(lists[i], name, exe);
        if (r < 0)
            return lvd_fail(err, "out of memory");
        if (r > 0)
            return 0;
    }
    return lvd_fail(err, "no executable %s in $LVD_STAGE_PATH, beside lvd-run (%s) or on $PATH",
                    name, slash ? self : "?");
}

char **lvd_pipeline_argv(const lvd_pipeline_step *s, const char *db)
{
    char **argv = calloc(s->n_args + 2 * s->n_opts + 4, sizeof *argv);
    if (!argv)
        return NULL;
    size_t n = 0;
    argv[n++] = s->exe;
    for (size_t i = 0; i < s->n_args; i++)
        argv[n++] = s->args[i];
    argv[n++] = "--db";
    argv[n++] = (char *)db;
    for (size_t i = 0; i < s->n_opts; i++) {
        argv[n++] = s->opts[i].key;
        if (s->opts[i].value)
            argv[n++] = s->opts[i].value;
    }
    return argv;
}
