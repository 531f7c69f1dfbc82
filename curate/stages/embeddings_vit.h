/* Embedding images with a registered model the way lvd-embed does, for the stages that need
 * fresh embeddings (lvd-query --image, lvd-calibrate): images decoded with lvd_image_decode_rgb
 * (image/image.h, the embed stage's decoding), the eval transform (lvd_image_preprocess) and the
 * model's feature mode, rows L2-normalized. */
#ifndef LVD_CURATE_STAGES_EMBEDDINGS_VIT_H
#define LVD_CURATE_STAGES_EMBEDDINGS_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "embed/vit.h"
#include "image/image.h"
#include "store/error.h"
#include "store/manifest.h"

typedef struct lvd_stage_vit {
    lvd_vit *vit;
    lvd_vit_pool pool;
    int dim;          /* values per embedding row */
    int resize, crop; /* the eval transform of the model's stored rows (embed_settings); 0: none */
    char model[65];
} lvd_stage_vit;

/* Opens the ViT of the registered model (lvd_model_open: the weights' sha256 is checked). Fails
 * for an unknown model, for an external one ("model M has no weights (external embeddings):
 * <what> needs a ViT model"), for one whose stored rows were imported (fresh rows would not be
 * comparable with them), or when its rows would not have dim values. */
int lvd_stage_vit_open(lvd_manifest *m, const char *model, int dim, const char *what,
                       lvd_stage_vit *out, lvd_error *err);

void lvd_stage_vit_close(lvd_stage_vit *v);

/* Embeds n images (one forward pass): preprocess with resize / crop, features, unit rows into
 * out (n x dim). Fails when the model's stored rows were made with another resize or crop. */
int lvd_stage_vit_embed(lvd_stage_vit *v, const lvd_image *imgs, int n, int resize, int crop,
                        float *out, lvd_error *err);

#endif
