/* Valid UTF-8 JSON text (store/json.h). */
#include "store/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t lvd_utf8_sequence(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

char *lvd_json_print(const cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    if (!text)
        return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), bad = 0;
    for (size_t i = 0; i < n;) {
        size_t k = lvd_utf8_sequence(s + i, n - i);
        bad += k == 0;
        i += k ? k : 1;
    }
    if (bad == 0)
        return text;
    char *out = malloc(n + 2 * bad + 1), *o = out;
    for (size_t i = 0; out && i < n;) {
        size_t k = lvd_utf8_sequence(s + i, n - i);
        if (k) {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD: only strings hold bytes >= 0x80 */
            o += 3;
            i++;
        }
    }
    if (out)
        *o = '\0';
    cJSON_free(text);
    return out;
}

cJSON *lvd_json_add_url(cJSON *obj, const char *name, const char *url)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)url;
    size_t n = strlen(url);
    char *clean = malloc(3 * n + 1), *o = clean;
    if (!clean)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t k = lvd_utf8_sequence(s + i, n - i);
        if (k) {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        } else {
            *o++ = '%';
            *o++ = hex[s[i] >> 4];
            *o++ = hex[s[i] & 15];
            i++;
        }
    }
    *o = '\0';
    cJSON *item = cJSON_AddStringToObject(obj, name, clean);
    free(clean);
    return item;
}
