/* Content validation of one fetched item: sniffs and probes the bytes, rejects bombs from the
 * header alone, decodes fully (so truncated or corrupt data is caught), checks the size limits and
 * decides the bytes to store: the original ones, or a JPEG re-encoding of the image resized to fit
 * max_side (alpha composited on white, EXIF orientation applied).
 *
 * Failure classes: not_image, decode, too_many_pixels, too_small, bad_aspect. */
#ifndef LVD_CURATE_FETCH_VALIDATE_H
#define LVD_CURATE_FETCH_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "store/error.h"

typedef struct lvd_validate_opts {
    int64_t max_pixels; /* 0: no limit */
    int min_side;       /* 0: no limit; else the short side must be at least this */
    double max_aspect;  /* 0: no limit; else long / short must be at most this */
    int max_side;       /* 0: keep every original; else larger images are resized to fit */
    int quality;        /* JPEG quality of re-encoded images */
} lvd_validate_opts;

typedef struct lvd_stored {
    uint8_t *data; /* the bytes to store: malloc'd, owned by this struct */
    size_t len;
    lvd_image_format format;
    int width, height;  /* of the stored image, orientation applied */
    uint8_t sha256[32]; /* of data */
    char sha256_hex[65];
} lvd_stored;

/* Validates body (len bytes, malloc'd). On success takes ownership of body (it becomes out->data
 * or is freed) and fills out; on failure body still belongs to the caller and err has a class. */
int lvd_validate(uint8_t *body, size_t len, const lvd_validate_opts *opts, lvd_stored *out,
                 lvd_error *err);

/* Frees out->data and zeroes out. */
void lvd_stored_free(lvd_stored *out);

#endif
