/* The HTML helpers of curate/stages/report_html.h: files replaced atomically, escaping, the page
 * frame and tables from SQL. */
#include "curate/stages/report_html.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const style =
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:4px 0}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "nav a{margin-right:1em}section{border-top:1px solid #ccc;margin-top:1em}"
    "figure{display:inline-block;width:160px;margin:4px;vertical-align:top}"
    "figure img{display:block;max-width:160px}"
    "figure.kept{outline:3px solid #3a3}figure.removed{outline:1px solid #c33}"
    "figure.eval,figure.seed{outline:3px solid #36c}figure.pick{outline:1px solid #999}"
    "figcaption{font-size:12px;word-break:break-all}.none{height:64px;background:#eee}"
    "svg{display:inline-block;vertical-align:top;margin:8px 16px 8px 0}.note{color:#666}";

int lvd_html_open(lvd_html_file *h, const char *path, lvd_error *err)
{
    memset(h, 0, sizeof *h);
    size_t n = strlen(path) + 5;
    h->path = strdup(path);
    h->tmp = malloc(n);
    if (!h->path || !h->tmp) {
        lvd_html_close(h, 0, NULL);
        return lvd_fail(err, "report: out of memory");
    }
    snprintf(h->tmp, n, "%s.tmp", path);
    h->f = fopen(h->tmp, "wb");
    if (!h->f) {
        int rc = lvd_fail(err, "%s: cannot create: %s", h->tmp, strerror(errno));
        lvd_html_close(h, 0, NULL);
        return rc;
    }
    return 0;
}

int lvd_html_close(lvd_html_file *h, int ok, lvd_error *err)
{
    int rc = ok ? 0 : -1;
    if (h->f) {
        if (rc == 0 && (ferror(h->f) || fflush(h->f) != 0 || fsync(fileno(h->f)) != 0))
            rc = lvd_fail(err, "%s: cannot write: %s", h->tmp, strerror(errno));
        if (fclose(h->f) != 0 && rc == 0)
            rc = lvd_fail(err, "%s: cannot write: %s", h->tmp, strerror(errno));
        if (rc == 0 && rename(h->tmp, h->path) != 0)
            rc = lvd_fail(err, "%s: cannot rename: %s", h->tmp, strerror(errno));
        if (rc)
            unlink(h->tmp);
    }
    free(h->path);
    free(h->tmp);
    memset(h, 0, sizeof *h);
    return rc;
}

void lvd_html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

void lvd_html_begin(FILE *f, const char *title)
{
    fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    lvd_html_escape(f, title);
    fprintf(f, "</title><style>%s</style></head><body>\n", style);
    fputs("<nav><a href=\"index.html\">summary</a><a href=\"duplicates.html\">duplicates</a>"
          "<a href=\"decontaminated.html\">decontaminated</a>"
          "<a href=\"neighbours.html\">neighbours</a><a href=\"clusters.html\">clusters</a>"
          "<a href=\"training.html\">training</a><a href=\"similarities.html\">similarities</a>"
          "</nav>\n<h1>",
          f);
    lvd_html_escape(f, title);
    fputs("</h1>\n", f);
}

void lvd_html_end(FILE *f)
{
    fputs("</body></html>\n", f);
}

int lvd_html_table(lvd_manifest *m, FILE *f, const char *sql, int64_t bind1,
                   const char *const *heads, int ncol, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, sql, &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, bind1);
    fputs("<table><tr>", f);
    for (int c = 0; c < ncol; c++) {
        fputs("<th>", f);
        lvd_html_escape(f, heads[c]);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        fputs("<tr>", f);
        for (int c = 0; c < ncol; c++) {
            fputs("<td>", f);
            lvd_html_escape(f, (const char *)sqlite3_column_text(st, c));
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "report tables");
}

int lvd_html_tables(lvd_manifest *m, FILE *f, const lvd_html_spec *specs, size_t n, int level,
                    int64_t bind1, lvd_error *err)
{
    for (size_t t = 0; t < n; t++) {
        fprintf(f, "<h%d>", level);
        lvd_html_escape(f, specs[t].title);
        fprintf(f, "</h%d>\n", level);
        if (lvd_html_table(m, f, specs[t].sql, bind1, specs[t].heads, specs[t].ncol, err))
            return -1;
    }
    return 0;
}

int lvd_html_has_object(lvd_manifest *m, const char *name, int *yes, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m, "SELECT 1 FROM sqlite_master WHERE name = ?1", &st, err))
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    *yes = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                                 : lvd_manifest_fail(m, err, "reading the schema");
}
