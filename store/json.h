/* JSON text that every parser accepts. cJSON prints strings byte for byte, so a URL, path,
 * label or caption holding bytes that are not UTF-8 (file names and URL lists may hold any
 * bytes) would give text that strict parsers (Python's json, serde_json, jq) refuse. Every JSON
 * lvd writes goes through lvd_json_print, which writes each byte of an invalid UTF-8 sequence as
 * U+FFFD; URLs are kept lossless by lvd_json_add_url, which percent-encodes such bytes instead
 * (the URL a browser would send for them). The manifest's columns keep the exact bytes. */
#ifndef LVD_STORE_JSON_H
#define LVD_STORE_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* json printed without formatting, as valid UTF-8 (see above); malloc'd, NULL when out of
 * memory. */
char *lvd_json_print(const cJSON *json);

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 when s does not start
 * one (an ASCII byte, NUL included, is a sequence of 1). */
size_t lvd_utf8_sequence(const unsigned char *s, size_t n);

/* Adds url to obj under name, each byte of an invalid UTF-8 sequence percent-encoded. Returns
 * the new item, NULL when out of memory. */
cJSON *lvd_json_add_url(cJSON *obj, const char *name, const char *url);

#endif
