/* For image/internal.h: Reads the Orientation tag (0x0112) of IFD0 from a JPEG APP1 Exif payload.
 * Every offset is bounds-checked: a malformed payload means "no orientation". */
#include <stdint.h>
#include <string.h>

#include "image/internal.h"

typedef struct tiff_view {
    const uint8_t *p;
    size_t len;
    int big_endian;
} tiff_view;

static unsigned read_u16(const tiff_view *t, size_t off)
{
    const uint8_t *b = t->p + off;
    return t->big_endian ? (unsigned)(b[0] << 8 | b[1]) : (unsigned)(b[1] << 8 | b[0]);
}

static uint32_t read_u32(const tiff_view *t, size_t off)
{
    const uint8_t *b = t->p + off;
    if (t->big_endian)
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

int lvd_exif_orientation(const uint8_t *app1, size_t len)
{
    enum { EXIF_HEADER = 6, TIFF_HEADER = 8, IFD_ENTRY = 12, TAG_ORIENTATION = 0x0112 };
    enum { TYPE_SHORT = 3 };
    if (len < EXIF_HEADER + TIFF_HEADER || memcmp(app1, "Exif\0\0", EXIF_HEADER) != 0)
        return 1;
    tiff_view t = {app1 + EXIF_HEADER, len - EXIF_HEADER, 0};
    if (memcmp(t.p, "MM\0*", 4) == 0)
        t.big_endian = 1;
    else if (memcmp(t.p, "II*\0", 4) != 0)
        return 1;
    uint32_t ifd = read_u32(&t, 4);
    if (ifd > t.len || t.len - ifd < 2)
        return 1;
    unsigned count = read_u16(&t, ifd);
    size_t entries = ifd + 2;
    for (unsigned i = 0; i < count; i++) {
        size_t e = entries + (size_t)i * IFD_ENTRY;
        if (e + IFD_ENTRY > t.len)
            return 1;
        if (read_u16(&t, e) != TAG_ORIENTATION)
            continue;
        if (read_u16(&t, e + 2) != TYPE_SHORT || read_u32(&t, e + 4) < 1)
            return 1;
        unsigned v = read_u16(&t, e + 8);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}
