/* Input enumeration for the fetch stage. An input is either a folder (walked recursively in
 * sorted order; hidden entries skipped; the parent folder's name of a file below the root is its
 * label) or a URL list: plain text (one URL a line, blank lines and '#' comments skipped), CSV,
 * TSV or JSON Lines with a "url" column and optional "label", "caption" and "key" columns. The
 * list format comes from the extension (.csv, .tsv, .jsonl; anything else is text) after an
 * optional .gz, and gzipped lists are read transparently. A list line without a scheme is a
 * local path, made absolute and turned into a file:// URL.
 *
 * Every entry of a folder that is not walked into is an item, whatever it is: a dangling
 * symlink, a self-link or symlink loop, a FIFO or device, a folder that leads back to one of its
 * parents, is nested more than 64 deep or cannot be listed. The fetch stage then records it as
 * a failure of its own (http_4xx, with the reason) and fetches the rest.
 *
 * In a list, only '\n' ends a line (a lone '\r' before it is dropped), so each line is one record
 * whatever bytes it holds; a NUL byte is read as "%00" (its percent-encoding). A record longer
 * than 64 MiB is an error naming its line. */
#ifndef LVD_CURATE_FETCH_INPUTS_H
#define LVD_CURATE_FETCH_INPUTS_H

#include <signal.h>
#include <stddef.h>

#include "store/error.h"

typedef struct lvd_input_item {
    const char *url;
    const char *key;     /* NULL when absent */
    const char *label;   /* NULL when absent */
    const char *caption; /* NULL when absent */
} lvd_input_item;

/* Called once per item; the strings live until the call returns. A non-zero return stops the
 * enumeration and is passed back. */
typedef int (*lvd_input_fn)(void *ctx, const lvd_input_item *item, lvd_error *err);

/* Enumerates the items of input (a folder or a list file), calling fn for each. stop (NULL:
 * none) is a stop request a signal handler sets: a list that is a FIFO with no writer yet is
 * waited for until data comes or *stop is set (then the call fails), never in a blocking open. */
int lvd_inputs_read(const char *input, lvd_input_fn fn, void *ctx,
                    const volatile sig_atomic_t *stop, lvd_error *err);

/* Reads a URL list (see above) from path; stop as for lvd_inputs_read. */
int lvd_inputs_read_list(const char *path, lvd_input_fn fn, void *ctx,
                         const volatile sig_atomic_t *stop, lvd_error *err);

/* Reads a URL list held in memory (len bytes, not gzipped) as lvd_inputs_read_list reads a file
 * called name (its extension gives the format; messages name it). For the fuzz targets. */
int lvd_inputs_parse_list(const char *name, const void *data, size_t len, lvd_input_fn fn,
                          void *ctx, lvd_error *err);

/* Writes into out (size cap) a file:// URL for the absolute path, percent-encoding bytes
 * outside the unreserved set and '/'. Fails when it does not fit. */
int lvd_file_url(const char *abs_path, char *out, size_t cap, lvd_error *err);

/* Decodes a file:// URL into a local path (malloc'd into *path); fails on other schemes, a host
 * other than empty or "localhost", or %00 (which would cut the path short). */
int lvd_file_url_path(const char *url, char **path, lvd_error *err);

/* 1 when url starts with a scheme ("name://"), else 0. */
int lvd_url_has_scheme(const char *url);

#endif
