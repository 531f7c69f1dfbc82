/* The model registry: named embedding models recorded in the manifest's `models` table (view
 * v_models(name, path, sha256, arch, dim, params), see store/MANIFEST.md).
 *
 * Three kinds of model:
 * - a checkpoint file: its absolute path and the sha256 of its bytes are recorded; the
 *   architecture string ("vit_s14 dim=384 depth=12 heads=6 reg=0 ffn=mlp grid=37") is inferred
 *   by loading it. Opening it for embedding re-hashes the file and refuses a file that changed.
 * - a built-in random ViT ("vits14", "vitb14", "vitl14", "vitg14"; DINOv2 init with a fixed seed):
 *   no path, no sha256, the arch string ends with "init=random seed=S" and config holds
 *   {"random": SPEC, "seed": S}, so the same weights are rebuilt on every open.
 * - an external model (embeddings computed elsewhere and imported): no weights, features
 *   'external', dim taken from the imported file.
 *
 * `dim` is the number of values of each embedding row: the model width for 'cls' features, twice
 * it for 'cls+patchmean'. Model names are 1-64 characters of [A-Za-z0-9._-] (they name a folder).
 */
#ifndef LVD_EMBED_MODEL_REGISTRY_H
#define LVD_EMBED_MODEL_REGISTRY_H

#include <limits.h>
#include <stdint.h>

#include "embed/vit.h"
#include "kit/kit.h"
#include "store/error.h"
#include "store/manifest.h"

/* lvd_model_features, lvd_model_record, the features names and the lookup lvd_model_find are
 * the stage kit's (kit/kit.h): every stage finds models the same way. */

/* Checks a model name (1-64 characters of [A-Za-z0-9._-], not "." or ".."). */
int lvd_model_name_check(const char *name, lvd_error *err);

/* Writes the lowercase hex sha256 of the file's bytes (read in a streaming fashion). */
int lvd_file_sha256(const char *path, char hex[65], lvd_error *err);

/* Describes an architecture: "vit_s14 dim=384 depth=12 heads=6 reg=0 ffn=mlp grid=37". */
void lvd_model_arch_string(const lvd_vit_info *info, char *buf, size_t size);

/* Registers the checkpoint at weights under name: loads it (to infer the architecture), hashes
 * it and inserts the row. Fails when the name is taken or the file is not a ViT checkpoint. */
int lvd_model_add_weights(lvd_manifest *m, const char *name, const char *weights,
                          lvd_model_features features, lvd_model_record *out, lvd_error *err);

/* Registers the built-in random model spec ("vits14", "vitb14", "vitl14" or "vitg14") with seed. */
int lvd_model_add_random(lvd_manifest *m, const char *name, const char *spec, uint64_t seed,
                         lvd_model_features features, lvd_model_record *out, lvd_error *err);

/* Registers an external model (no weights) whose rows have dim values. */
int lvd_model_add_external(lvd_manifest *m, const char *name, int dim, lvd_model_record *out,
                           lvd_error *err);

/* Changes a registered ViT model's feature mode (and dim); refused once it has embeddings. */
int lvd_model_set_features(lvd_manifest *m, lvd_model_record *rec, lvd_model_features features,
                           lvd_error *err);

/* Builds the ViT of a registered model: re-hashes its weights file and refuses it when the sha256
 * differs from the registered one, or rebuilds the random model. External models fail. */
int lvd_model_open(const lvd_model_record *rec, lvd_vit **out, lvd_error *err);

#endif
