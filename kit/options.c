/* Part 1 of kit/kit.h, commands: parsing a table of options, the --help text and the usage
 * errors. */
#include "kit/kit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options column of --help: wider option names push their help to the next line. */
#define HELP_COLUMN 22

static const char default_footer[] = "Exit status 0 on success, 1 on failure, 2 on bad usage.";

int lvd_kit_usage_error(const char *tool, const char *msg)
{
    fprintf(stderr, "%s: %s (see --help)\n", tool, msg);
    return 2;
}

int lvd_kit_fail(const char *tool, const lvd_error *err)
{
    fprintf(stderr, "%s: %s\n", tool, err->msg);
    return 1;
}

static double scale_of(const lvd_kit_opt *o)
{
    return o->scale != 0 ? o->scale : 1;
}

/* ---- values ---- */

/* The range checks made v fit the destination, signed or not: its low bytes are the value. */
static void store_int(void *dest, size_t size, int64_t v)
{
    uint64_t u = (uint64_t)v;
    if (size == 1) {
        uint8_t x = (uint8_t)u;
        memcpy(dest, &x, 1);
    } else if (size == 2) {
        uint16_t x = (uint16_t)u;
        memcpy(dest, &x, 2);
    } else if (size == 4) {
        uint32_t x = (uint32_t)u;
        memcpy(dest, &x, 4);
    } else {
        memcpy(dest, &u, 8);
    }
}

static int64_t load_int(const void *dest, size_t size)
{
    if (size == 1)
        return *(const int8_t *)dest;
    if (size == 2)
        return *(const int16_t *)dest;
    if (size == 4)
        return *(const int32_t *)dest;
    return *(const int64_t *)dest;
}

/* Integer with an optional K/M/G suffix (bytes); -1 on a malformed or overflowing value. */
static int parse_int(const char *s, int suffix, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int64_t mul = 1;
    if (suffix && end != s && *end && !end[1]) {
        const char *units = "KMG", *u = strchr(units, *end);
        if (u) {
            mul = (int64_t)1 << (10 * (u - units + 1));
            end++;
        }
    }
    if (errno || end == s || *end || (v > 0 && v > INT64_MAX / mul) ||
        (v < 0 && v < INT64_MIN / mul))
        return -1;
    *out = v * mul;
    return 0;
}

static int set_int(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    int64_t v;
    int ok = parse_int(value, o->kind == LVD_KIT_BYTES, &v) == 0 &&
             ((v >= o->min && v <= o->max) || (o->zero && v == 0));
    const char *what =
        o->kind == LVD_KIT_BYTES ? "an integer (K, M, G suffixes allowed)" : "an integer";
    if (!ok && o->max == INT64_MAX)
        return lvd_fail(err, "'%s' is not %s%s >= %lld", value, o->zero ? "0 or " : "", what,
                        (long long)o->min);
    if (!ok)
        return lvd_fail(err, "'%s' is not %s%s in [%lld, %lld]", value, o->zero ? "0 or " : "",
                        what, (long long)o->min, (long long)o->max);
    /* In integers: doubles lose the low bits of large values. The table's range keeps
     * max x scale within the destination. */
    store_int(o->dest, o->size, v * (int64_t)scale_of(o));
    return 0;
}

int lvd_kit_number(const lvd_kit_opt *o, const char *value, double *out, lvd_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    int ok = !errno && end != value && !*end && isfinite(v) &&
             ((v >= o->lo && v <= o->hi) || (o->zero && v == 0));
    if (!ok)
        return lvd_fail(err, "'%s' is not %sa number in [%g, %g]", value, o->zero ? "0 or " : "",
                        o->lo, o->hi);
    *out = v;
    return 0;
}

static int set_num(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    double v;
    if (lvd_kit_number(o, value, &v, err))
        return -1;
    v *= scale_of(o);
    if (o->size == sizeof(float))
        *(float *)o->dest = (float)v;
    else
        *(double *)o->dest = v;
    return 0;
}

/* Stores value (NULL for a flag) into o's destination. */
static int apply(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    switch (o->kind) {
    case LVD_KIT_STR:
        *(const char **)o->dest = value;
        return 0;
    case LVD_KIT_INT:
    case LVD_KIT_BYTES:
        return set_int(o, value, err);
    case LVD_KIT_NUM:
        return set_num(o, value, err);
    case LVD_KIT_FLAG:
        *(int *)o->dest = o->set;
        return 0;
    case LVD_KIT_FN:
        return o->fn(o, value, err);
    default:
        return lvd_fail(err, "bad option table");
    }
}

/* ---- parsing ---- */

static const lvd_kit_opt *find(const lvd_kit_cmd *c, const char *name, size_t len)
{
    for (const lvd_kit_opt *o = c->opts; o && o->kind != LVD_KIT_END; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const char *dashes(const lvd_kit_opt *o)
{
    return o->name[1] ? "--" : "-";
}

/* Handles argv[*i], an option: its value may be inline (--name=value) or the next argument. */
static int take_option(const lvd_kit_cmd *c, int argc, char **argv, int *i,
                       const lvd_kit_opt **taken, lvd_error *err)
{
    const char *a = argv[*i];
    int lng = a[1] == '-';
    const char *name = a + (lng ? 2 : 1);
    const char *eq = lng ? strchr(name, '=') : NULL;
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const lvd_kit_opt *o = find(c, name, len);
    if (!o || (!lng && len != 1) || (lng && len == 1))
        return lvd_fail(err, "%.*s: unknown option", (int)(eq ? eq - a : (int)strlen(a)), a);
    const char *value = eq ? eq + 1 : NULL;
    if (o->kind == LVD_KIT_FLAG) {
        if (value)
            return lvd_fail(err, "%s%s: takes no value", dashes(o), o->name);
    } else if (!value) {
        if (*i + 1 >= argc)
            return lvd_fail(err, "%s%s: missing value", dashes(o), o->name);
        value = argv[++*i];
    }
    if (lvd_kit_set(o, value, err))
        return -1;
    *taken = o;
    return 0;
}

int lvd_kit_set(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    if (apply(o, value, err))
        return lvd_error_prefix(err, "%s%s", dashes(o), o->name);
    return 0;
}

static int is_option(const char *a)
{
    return a[0] == '-' && a[1] != '\0';
}

/* 1 when --help stands among the options. */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

static int parse(const lvd_kit_cmd *c, int argc, char **argv, lvd_error *err)
{
    const lvd_kit_operands *ops = c->operands;
    int n = 0, only_operands = 0;
    size_t n_opts = 0;
    for (const lvd_kit_opt *o = c->opts; o && o->kind != LVD_KIT_END; o++)
        n_opts++;
    uint8_t *given = calloc(n_opts ? n_opts : 1, 1);
    if (!given)
        return lvd_fail(err, "out of memory");
    int rc = 0;
    for (int i = 1; rc == 0 && i < argc; i++) {
        if (!only_operands && strcmp(argv[i], "--") == 0) {
            only_operands = 1;
        } else if (!only_operands && is_option(argv[i])) {
            const lvd_kit_opt *o = NULL;
            rc = take_option(c, argc, argv, &i, &o, err);
            if (o)
                given[o - c->opts] = 1;
        } else if (!ops || (ops->max >= 0 && n >= ops->max)) {
            rc = lvd_fail(err, "unexpected argument '%s'", argv[i]);
        } else {
            argv[1 + n++] = argv[i]; /* operands gather at the front, in order */
        }
    }
    for (size_t k = 0; rc == 0 && k < n_opts; k++)
        if (c->opts[k].required && !given[k])
            rc = lvd_fail(err, "%s%s is required", dashes(&c->opts[k]), c->opts[k].name);
    if (rc == 0 && ops && n < ops->min)
        rc = lvd_fail(err, "expected %s", ops->name);
    free(given);
    if (rc == 0 && ops && ops->where)
        *ops->where = (const char *const *)(argv + 1);
    if (rc == 0 && ops && ops->n)
        *ops->n = n;
    return rc;
}

int lvd_kit_parse(const lvd_kit_cmd *c, int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        lvd_kit_help(c);
        return 1;
    }
    lvd_error err;
    lvd_error_clear(&err);
    if (parse(c, argc, argv, &err) != 0) {
        lvd_kit_usage_error(c->name, err.msg);
        return -1;
    }
    return 0;
}

/* ---- help ---- */

/* The default of o as --help shows it, into buf ("" for none). */
static void default_text(const lvd_kit_opt *o, char *buf, size_t size)
{
    buf[0] = '\0';
    if (o->def) {
        snprintf(buf, size, "%s", o->def);
        return;
    }
    if (o->required)
        return;
    double s = scale_of(o);
    if (o->kind == LVD_KIT_STR) {
        const char *v = *(const char *const *)o->dest;
        if (v)
            snprintf(buf, size, "%s", v);
    } else if (o->kind == LVD_KIT_INT) {
        snprintf(buf, size, "%lld", (long long)(load_int(o->dest, o->size) / (int64_t)s));
    } else if (o->kind == LVD_KIT_BYTES) {
        int64_t v = load_int(o->dest, o->size) / (int64_t)s;
        int u = 0;
        while (u < 3 && v != 0 && v % 1024 == 0) {
            v /= 1024;
            u++;
        }
        snprintf(buf, size, "%lld%s", (long long)v,
                 u ? (const char *[]){"", "K", "M", "G"}[u] : "");
    } else if (o->kind == LVD_KIT_NUM) {
        double v = o->size == sizeof(float) ? *(const float *)o->dest : *(const double *)o->dest;
        snprintf(buf, size, "%g", v / s);
    }
}

static void print_option(const char *name, const char *arg, const char *help, const char *def)
{
    char head[128];
    int n = snprintf(head, sizeof head, "  %s%s%s", name, arg ? " " : "", arg ? arg : "");
    fputs(head, stdout);
    if (n + 2 > HELP_COLUMN)
        printf("\n%*s", HELP_COLUMN, "");
    else
        printf("%*s", HELP_COLUMN - n, "");
    for (const char *p = help; *p; p++) {
        putchar(*p);
        if (*p == '\n')
            printf("%*s", HELP_COLUMN, "");
    }
    if (def && *def)
        printf(" (default %s)", def);
    putchar('\n');
}

void lvd_kit_help(const lvd_kit_cmd *c)
{
    const char *u = c->help ? c->help : "";
    for (int first = 1; first || (*u && *u != '\n'); first = 0) {
        size_t len = strcspn(u, "\n");
        printf("%s %s %.*s\n", first ? "usage:" : "      ", c->name, (int)len, u);
        u += len + (u[len] == '\n');
    }
    if (*u == '\n')
        printf("\n%s\n", u + 1);
    putchar('\n');
    for (const lvd_kit_opt *o = c->opts; o && o->kind != LVD_KIT_END; o++) {
        char name[72], def[128];
        snprintf(name, sizeof name, "%s%s", dashes(o), o->name);
        default_text(o, def, sizeof def);
        print_option(name, o->arg, o->help ? o->help : "", def);
    }
    print_option("--help", NULL, "this text", NULL);
    printf("\n%s\n", c->footer ? c->footer : default_footer);
}
