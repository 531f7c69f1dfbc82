/* libFuzzer target: format sniffing, header probing, decoding (every format and option), then a
 * resize of whatever decoded, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lvd_image_info info;
    lvd_error err;
    (void)lvd_image_probe(data, size, &info, &err);
    /* The options vary with the input so that one corpus reaches every decoder path. */
    lvd_decode_opts opts = {
        .max_pixels = 1 << 22,
        .alpha = size % 2 ? LVD_ALPHA_ON_WHITE : LVD_ALPHA_DROP,
        .apply_orientation = 1,
        .min_side_hint = size % 3 == 0 ? 16 : 0,
    };
    lvd_image img;
    if (lvd_image_decode(data, size, &opts, &img, &err) != 0)
        return 0;
    lvd_image small;
    if (lvd_image_resize(&img, 1 + img.width / 3, 1 + img.height / 2, &small, &err) == 0)
        lvd_image_free(&small);
    lvd_image_free(&img);
    return 0;
}
