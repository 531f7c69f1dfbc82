/* Shared by the URL-list fuzz targets: parses one input as a list called name and touches every
 * string of every item, so a sanitizer sees any read past what the parser handed out. */
#ifndef LVD_TESTS_FUZZ_LISTS_H
#define LVD_TESTS_FUZZ_LISTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "curate/fetch/inputs.h"

static int fuzz_list_item(void *ctx, const lvd_input_item *it, lvd_error *err)
{
    (void)err;
    size_t *total = ctx;
    const char *s[] = {it->url, it->key, it->label, it->caption};
    for (int i = 0; i < 4; i++)
        *total += s[i] ? strlen(s[i]) : 0;
    return 0;
}

static inline void fuzz_list(const char *name, const uint8_t *data, size_t size)
{
    size_t total = 0;
    lvd_error err;
    lvd_inputs_parse_list(name, data, size, fuzz_list_item, &total, &err);
    volatile size_t sink = total;
    (void)sink;
}

#endif
