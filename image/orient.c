/* Applies an EXIF orientation to RGB pixels (what PIL's ImageOps.exif_transpose does). */
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"

int lvd_image_orient(lvd_image *img, int orientation, lvd_error *err)
{
    if (orientation <= 1 || orientation > 8)
        return 0;
    /* Orientations 5..8 transpose; then the output x and/or y axis is mirrored. */
    static const unsigned char flip_x[9] = {0, 0, 1, 1, 0, 0, 1, 1, 0};
    static const unsigned char flip_y[9] = {0, 0, 0, 1, 1, 0, 0, 1, 1};
    int swap = orientation >= 5;
    size_t w = (size_t)img->width, h = (size_t)img->height;
    size_t ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *dst = malloc(w * h * 3);
    if (!dst)
        return lvd_fail(err, "image: out of memory rotating %zux%zu pixels", w, h);
    for (size_t oy = 0; oy < oh; oy++) {
        size_t ty = flip_y[orientation] ? oh - 1 - oy : oy;
        uint8_t *row = dst + oy * ow * 3;
        for (size_t ox = 0; ox < ow; ox++) {
            size_t tx = flip_x[orientation] ? ow - 1 - ox : ox;
            size_t sx = swap ? ty : tx, sy = swap ? tx : ty;
            memcpy(row + ox * 3, img->rgb + (sy * w + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = (int)ow;
    img->height = (int)oh;
    return 0;
}
