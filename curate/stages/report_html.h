/* HTML writing for lvd-report: escaping, page frame, SQL result tables and atomic file
 * writes. Every text that comes from the manifest goes through lvd_html_escape. */
#ifndef LVD_CURATE_STAGES_REPORT_HTML_H
#define LVD_CURATE_STAGES_REPORT_HTML_H

#include <stdint.h>
#include <stdio.h>

#include "store/error.h"
#include "store/manifest.h"

/* A file being written: data goes to path + ".tmp" until lvd_html_close renames it. */
typedef struct lvd_html_file {
    FILE *f;
    char *path, *tmp;
} lvd_html_file;

/* Opens path + ".tmp" for writing. Fails naming the file when it cannot be created. */
int lvd_html_open(lvd_html_file *h, const char *path, lvd_error *err);

/* Flushes, syncs and renames the temp file onto its path when ok is nonzero and every write
 * succeeded; otherwise removes it. Returns 0 when the file is in place, -1 (err filled unless
 * ok was 0 and err already holds the cause). Frees h in every case. */
int lvd_html_close(lvd_html_file *h, int ok, lvd_error *err);

/* Writes s with & < > " ' escaped (NULL writes nothing). */
void lvd_html_escape(FILE *f, const char *s);

/* Writes the doctype, head (title, style) and the navigation bar of the report's pages. */
void lvd_html_begin(FILE *f, const char *title);

/* Closes the body and the document. */
void lvd_html_end(FILE *f);

/* Writes every row of sql (with ?1 bound to bind1) as a table under the given column heads;
 * NULL cells are empty. Fails on an SQL error. */
int lvd_html_table(lvd_manifest *m, FILE *f, const char *sql, int64_t bind1,
                   const char *const *heads, int ncol, lvd_error *err);

/* An index table: a heading, the SQL giving its rows and the column heads. */
typedef struct lvd_html_spec {
    const char *title, *sql;
    const char *heads[9];
    int ncol;
} lvd_html_spec;

/* For each of the n specs, writes its title (escaped) as a heading of level 2..6 and its table
 * (lvd_html_table with ?1 bound to bind1). Fails on an SQL error. */
int lvd_html_tables(lvd_manifest *m, FILE *f, const lvd_html_spec *specs, size_t n, int level,
                    int64_t bind1, lvd_error *err);

/* Sets *yes to 1 when the manifest has a table or view called name (an older or newer schema may
 * lack one), else 0. Fails on an SQL error. */
int lvd_html_has_object(lvd_manifest *m, const char *name, int *yes, lvd_error *err);

#endif
