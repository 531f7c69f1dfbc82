/* store/json.h: printed JSON is valid UTF-8 whatever bytes its strings hold; valid sequences
 * are kept as they are, each byte of an invalid one becomes U+FFFD; URLs are percent-encoded. */
#include <stdlib.h>
#include <string.h>

#include "store/json.h"
#include "tests/check.h"

static void check_print(const char *value, const char *expected)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "k\xff", value);
    char *text = lvd_json_print(o);
    char want[256];
    snprintf(want, sizeof want, "{\"k\xef\xbf\xbd\":\"%s\"}", expected);
    CHECK_MSG(text && strcmp(text, want) == 0, "%s instead of %s", text ? text : "NULL", want);
    cJSON *back = text ? cJSON_Parse(text) : NULL;
    CHECK(back != NULL);
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(o);
}

int main(void)
{
    check_print("plain", "plain");
    check_print("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    check_print("caf\xe9", "caf\xef\xbf\xbd");                           /* Latin-1 byte */
    check_print("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");                 /* overlong '/' */
    check_print("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* a surrogate */
    check_print("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    check_print("\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd"); /* cut short */
    check_print("tab\tquote\"", "tab\\tquote\\\"");

    cJSON *o = cJSON_CreateObject();
    CHECK(lvd_json_add_url(o, "url", "http://a/caf\xe9/\xc3\xa9.jpg") != NULL);
    char *text = lvd_json_print(o);
    CHECK_MSG(text && strcmp(text, "{\"url\":\"http://a/caf%E9/\xc3\xa9.jpg\"}") == 0, "%s", text);
    free(text);
    cJSON_Delete(o);
    return check_finish();
}
