/* Image decoding, resizing and encoding, shared by the fetch stage (curate/fetch/) and every path
 * that embeds images (curate/stages/, train/). Decoding sniffs the format from the bytes, never
 * from a file name.
 *
 * Failure classes set in lvd_error.cls: "not_image" (no known signature), "decode" (corrupt or
 * truncated data, including data the decoder would only warn about; also unsupported variants:
 * animated WebP, 12-bit or lossless JPEG, JPEGs of more than 500 scans), "too_many_pixels" (header
 * dimensions above the limit: rejected before any pixel is decoded). Out-of-memory failures carry
 * no class.
 *
 * PIL parity (Image.open(...).convert("RGB")): JPEG at full size is bit-exact (libjpeg-turbo
 * defaults; grayscale replicated; every 4-component JPEG read as Adobe-inverted CMYK and converted
 * with PIL's formula), and so is resizing (checked against the reference tensors). PNG follows
 * PIL's rules (palette, 1/2/4-bit gray scaled by 255/max, 16-bit RGB(A) and gray+alpha keep the
 * high byte, alpha dropped) except 16-bit grayscale, where PIL clips the value at 255 (a nearly
 * white image) and we keep the high byte. WebP uses libwebp's default decoding, as PIL does.
 * All functions are thread-safe (no global state). */
#ifndef LVD_IMAGE_IMAGE_H
#define LVD_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

typedef enum lvd_image_format {
    LVD_IMG_UNKNOWN = 0,
    LVD_IMG_JPEG,
    LVD_IMG_PNG,
    LVD_IMG_WEBP,
} lvd_image_format;

/* 8-bit RGB, interleaved, row-major, stride = 3 * width. Owned by whoever filled it. */
typedef struct lvd_image {
    int width, height;
    uint8_t *rgb;
} lvd_image;

typedef enum lvd_alpha_mode {
    LVD_ALPHA_DROP = 0, /* discard alpha without compositing (PIL convert("RGB")): the embed path */
    LVD_ALPHA_ON_WHITE, /* composite over white: the fetch stage */
} lvd_alpha_mode;

typedef struct lvd_decode_opts {
    int64_t max_pixels;    /* 0: no limit; else width*height above it fails "too_many_pixels" */
    lvd_alpha_mode alpha;  /* what to do with an alpha channel */
    int apply_orientation; /* 1: apply EXIF orientation (JPEG), 0: keep stored orientation */
    int min_side_hint;     /* >0: JPEG may use DCT scaling (1/2, 1/4, 1/8) as long as both sides
                              stay >= this; 0: decode at full size (bit-exact with PIL) */
} lvd_decode_opts;

typedef struct lvd_image_info {
    lvd_image_format format;
    int width, height; /* as stored (before orientation) */
} lvd_image_info;

/* The format named by the leading bytes, or LVD_IMG_UNKNOWN. */
lvd_image_format lvd_image_sniff(const uint8_t *buf, size_t len);

/* "jpg", "png", "webp" (the file extension used in shards), or NULL for unknown. */
const char *lvd_image_format_ext(lvd_image_format fmt);

/* Reads format and dimensions from the header only (cheap; used to reject bombs). */
int lvd_image_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err);

/* Decodes buf into out->rgb (malloc'd; free with lvd_image_free). opts may be NULL (defaults:
 * no pixel limit, alpha dropped, orientation kept, full size). Grayscale, CMYK, palette, 16-bit and
 * progressive inputs all give RGB. The pixel limit applies to the stored size, before DCT scaling.
 * A JPEG must be complete up to its EOI marker. On failure *out is zeroed. */
int lvd_image_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                     lvd_error *err);

/* PIL's decompression-bomb threshold (Image.MAX_IMAGE_PIXELS): the default pixel cap of lvd. */
#define LVD_IMAGE_MAX_PIXELS 89478485

/* Decodes an image for embedding as the DINOv2 reference reads it, PIL
 * Image.open(...).convert("RGB"): full size, alpha dropped, EXIF orientation not applied, and at
 * most LVD_IMAGE_MAX_PIXELS pixels ("too_many_pixels" above). The one decoding of every path that
 * embeds images (the embed stage, calibration copies, query images). */
int lvd_image_decode_rgb(const uint8_t *buf, size_t len, lvd_image *out, lvd_error *err);

/* Resizes with PIL's antialiased bicubic (Image.resize(..., BICUBIC) in Pillow >= 7, fixed-point
 * like PIL so results match it within one level). out->rgb is malloc'd. */
int lvd_image_resize(const lvd_image *in, int width, int height, lvd_image *out, lvd_error *err);

/* Encodes as baseline JPEG at quality (1..100) into a malloc'd buffer. */
int lvd_image_encode_jpeg(const lvd_image *in, int quality, uint8_t **buf, size_t *len,
                          lvd_error *err);

/* Frees out->rgb and zeroes the struct. */
void lvd_image_free(lvd_image *img);

/* The reference evaluation transform: resize the short side to `resize` (PIL antialiased
 * bicubic; the long side is int(resize * long / short) as torchvision computes it), center crop
 * `crop` x `crop` (torchvision's rounding), ToTensor, Normalize(ImageNet mean, std). Writes
 * 3*crop*crop floats, channel-major, into chw. */
int lvd_image_preprocess(const lvd_image *img, int resize, int crop, float *chw, lvd_error *err);

/* The uint8 half of lvd_image_preprocess: the same resize and center crop, written as
 * crop*crop*3 bytes, row-major RGB (HWC), into hwc. Only the cropped pixels are computed. */
int lvd_image_resize_center_crop(const lvd_image *img, int resize, int crop, uint8_t *hwc,
                                 lvd_error *err);

#endif
