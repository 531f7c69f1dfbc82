/* Thumbnail files of lvd-report: each shown image decoded from its fetch shard, shrunk to fit
 * a box and written as DIR/thumbs/<image id>.jpg (atomically), so the pages link to them. */
#ifndef LVD_CURATE_STAGES_REPORT_THUMBS_H
#define LVD_CURATE_STAGES_REPORT_THUMBS_H

#include <stdint.h>

#include "store/error.h"
#include "store/manifest.h"

/* Writes the thumbnails of the n images ids (distinct) into thumbs_dir, which must exist, each
 * fitting a box x box square, and sets made[i] to 1 for each one written, 0 for an image
 * without a shard member, in an unreadable shard or that does not decode. Each shard is read
 * once. Fails on an SQL error, out of memory or a thumbnail that cannot be written. */
int lvd_report_thumbs(lvd_manifest *m, const int64_t *ids, int64_t n, const char *thumbs_dir,
                      int box, unsigned char *made, lvd_error *err);

#endif
