/* Exports random square crops of photos as small grayscale PNG files: off-domain images for a
 * pool (the demo mixes crops of the MATE desktop photos with Fashion-MNIST).
 *
 * The photos are the files below a folder, walked as the fetch stage walks it (sorted, hidden
 * entries skipped; curate/fetch/inputs.h). Each photo gives `per_photo` crops written as
 * <out>/<relative folder>/<file name>-<NNN>.png, so the fetch stage labels a crop with its
 * photo's folder name. A crop is a square whose side is a uniform fraction in
 * [min_frac, max_frac] of the photo's short side, at a uniform position, resized to side x side
 * (PIL's antialiased bicubic) and converted to gray as PIL's convert("L") does.
 *
 * Deterministic: the crops of a photo are a pure function of seed, the photo's path relative to
 * the folder and its pixels (another photo added or removed changes no other photo's crops). A
 * file whose bytes are already those to write is left untouched (its mtime too, so fingerprints
 * of the folder stay stable). A photo that cannot be read or decoded is reported through
 * on_skip and skipped; the export fails only when no photo at all could be cropped. */
#ifndef LVD_CURATE_CROPS_CROP_EXPORT_H
#define LVD_CURATE_CROPS_CROP_EXPORT_H

#include <stdint.h>

#include "store/error.h"

typedef struct lvd_crop_export_opts {
    const char *photos; /* folder of photos (walked recursively) */
    const char *out;    /* output folder (created, parents too) */
    uint32_t per_photo; /* crops per photo, 1..999 */
    int side;           /* output side in pixels */
    double min_frac;    /* crop side range, fractions of the short side, 0 < min <= max <= 1 */
    double max_frac;
    uint64_t seed; /* the random stream's seed */
    /* Called for each photo skipped, with its path and why; may be NULL. */
    void (*on_skip)(void *ctx, const char *path, const char *why);
    void *ctx;
} lvd_crop_export_opts;

typedef struct lvd_crop_export_counts {
    uint32_t photos;  /* files found below the folder */
    uint32_t cropped; /* photos cropped */
    uint32_t skipped; /* photos that could not be read or decoded */
    uint32_t crops;   /* files of the export */
    uint32_t written; /* files written (new or changed) */
} lvd_crop_export_counts;

/* Writes the crops of every photo. Fails with one line naming the file and the problem on bad
 * options, an unwritable output, or when no photo could be cropped. */
int lvd_crop_export(const lvd_crop_export_opts *o, lvd_crop_export_counts *counts, lvd_error *err);

#endif
