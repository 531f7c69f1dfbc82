/* The zip central directory reader behind in-place .pth storages: a hand-made zip64 archive
 * (as torch.save writes beyond 4 GiB) and corruptions that must make it give up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/pth_zip.h"
#include "tests/check.h"

static void put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* One stored entry "x/data/0" of 8 bytes whose central record defers sizes and offset to a
 * zip64 extra field, with a zip64 end record and locator. Returns the image length. */
static size_t build_zip64(uint8_t *z)
{
    memset(z, 0, 256);
    const char *name = "x/data/0";
    put(z, 0x04034b50, 4); /* local header */
    put(z + 26, 8, 2);
    memcpy(z + 30, name, 8);
    memcpy(z + 38, "ABCDEFGH", 8);
    uint8_t *c = z + 46; /* central directory record */
    put(c, 0x02014b50, 4);
    put(c + 20, 0xffffffff, 4);
    put(c + 24, 0xffffffff, 4);
    put(c + 28, 8, 2);
    put(c + 30, 28, 2);
    put(c + 42, 0xffffffff, 4);
    memcpy(c + 46, name, 8);
    put(c + 54, 1, 2); /* zip64 extra: size, compressed size, offset */
    put(c + 56, 24, 2);
    put(c + 58, 8, 8);
    put(c + 66, 8, 8);
    put(c + 74, 0, 8);
    uint8_t *e64 = z + 128;
    put(e64, 0x06064b50, 4);
    put(e64 + 4, 44, 8);
    put(e64 + 24, 1, 8);
    put(e64 + 32, 1, 8);
    put(e64 + 40, 82, 8);
    put(e64 + 48, 46, 8);
    uint8_t *loc = z + 184;
    put(loc, 0x07064b50, 4);
    put(loc + 8, 128, 8);
    put(loc + 16, 1, 4);
    uint8_t *e = z + 204;
    put(e, 0x06054b50, 4);
    put(e + 8, 0xffff, 2);
    put(e + 10, 0xffff, 2);
    put(e + 12, 0xffffffff, 4);
    put(e + 16, 0xffffffff, 4);
    return 226;
}

static int64_t data_offset(const uint8_t *z, size_t len)
{
    zip_span *spans;
    size_t n;
    if (zip_central_directory(z, len, &spans, &n) != 0)
        return -1;
    int64_t at = n == 1 ? zip_stored_data(z, len, &spans[0]) : -2;
    free(spans);
    return at;
}

int main(void)
{
    uint8_t z[256];
    size_t len = build_zip64(z);
    zip_span *spans;
    size_t n;
    CHECK(zip_central_directory(z, len, &spans, &n) == 0 && n == 1);
    if (n == 1) {
        CHECK(spans[0].name_len == 8 && memcmp(spans[0].name, "x/data/0", 8) == 0);
        CHECK(spans[0].size == 8 && spans[0].comp_size == 8 && spans[0].local_offset == 0);
        CHECK(zip_stored_data(z, len, &spans[0]) == 38);
        free(spans);
    }

    CHECK(data_offset(z, len - 1) == -1); /* end record cut */
    build_zip64(z);
    z[31] = 'y'; /* local name differs from the directory's */
    CHECK(data_offset(z, len) == -1);
    build_zip64(z);
    put(z + 8, 8, 2); /* deflated */
    CHECK(data_offset(z, len) == -1);
    build_zip64(z);
    put(z + 46 + 58, 1000, 8); /* data runs past the image */
    put(z + 46 + 66, 1000, 8);
    CHECK(data_offset(z, len) == -1);
    build_zip64(z);
    put(z + 46 + 56, 16, 2); /* zip64 extra too short for the three fields */
    CHECK(data_offset(z, len) == -1);
    build_zip64(z);
    put(z + 184 + 8, 250, 8); /* locator points past the image */
    CHECK(data_offset(z, len) == -1);
    build_zip64(z);
    put(z + 128 + 32, 1000000, 8); /* more entries than could fit */
    CHECK(data_offset(z, len) == -1);
    CHECK(data_offset(z, 10) == -1);
    return check_finish();
}
