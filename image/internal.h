/* Internal helpers shared by the image module's decoders (not part of the public API). */
#ifndef LVD_IMAGE_INTERNAL_H
#define LVD_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* Fails "too_many_pixels" when width*height exceeds max_pixels (0: no limit), and "decode" when
 * the dimensions are not positive or an RGB buffer of that size cannot be addressed. `what` names
 * the format in the message. */
int lvd_image_check_size(const char *what, int64_t width, int64_t height, int64_t max_pixels,
                         lvd_error *err);

/* Converts n interleaved RGBA pixels to RGB in place (dst may equal src: it is written from the
 * front), dropping alpha or compositing over white. */
void lvd_image_rgba_to_rgb(uint8_t *dst, const uint8_t *src, size_t n, lvd_alpha_mode alpha);

/* Per-format decoders and header readers; buf starts with the format's signature. */
int lvd_jpeg_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err);
int lvd_jpeg_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                    lvd_error *err);
int lvd_png_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err);
int lvd_png_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                   lvd_error *err);
int lvd_webp_probe(const uint8_t *buf, size_t len, lvd_image_info *info, lvd_error *err);
int lvd_webp_decode(const uint8_t *buf, size_t len, const lvd_decode_opts *opts, lvd_image *out,
                    lvd_error *err);

/* Writes the cw x ch window at (x0, y0) of `in` resized to out_w x out_h (PIL's antialiased
 * bicubic) into dst (cw*ch*3 bytes, packed). Pixels outside the window are not computed; those
 * inside are exactly what the full resize gives. */
int lvd_image_resample_window(const lvd_image *in, int out_w, int out_h, int x0, int y0, int cw,
                              int ch, uint8_t *dst, lvd_error *err);

/* The EXIF orientation (1..8) stored in a JPEG APP1 payload (starting with "Exif\0\0"), or 1 when
 * absent or unreadable. */
int lvd_exif_orientation(const uint8_t *app1, size_t len);

/* Rewrites img so that it displays upright for EXIF orientation 1..8 (2..8 transpose or flip the
 * pixels; 5..8 swap width and height). */
int lvd_image_orient(lvd_image *img, int orientation, lvd_error *err);

#endif
