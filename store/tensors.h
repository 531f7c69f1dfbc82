/* Named tensor files: safetensors (read + write), torch.save state dicts (.pth, read only) and
 * NumPy .npy float32 arrays (read + write).
 *
 * Every tensor is exposed to callers as float32, whatever the stored dtype: F32 data of a
 * safetensors file is used in place from the memory-mapped file (no copy); F16, BF16, F64, U8,
 * BOOL, I8, I32 and I64 are converted once at open into buffers owned by the collection.
 *
 * torch.save files: the zip format of torch >= 1.6 (the legacy bare-pickle format is refused).
 * The pickle is read by a restricted unpickler that executes nothing and accepts only the
 * globals a state dict needs (store/pickle.h); any other global is refused by name. The state
 * dict is the saved dict itself when it holds tensors, else its "model", "state_dict" or
 * "teacher" entry (training checkpoints); nested dicts are flattened with '.' ("a.b.weight"),
 * non-tensor entries are skipped. A whole F32 storage viewed by one contiguous tensor is used in
 * place from the memory-mapped archive (torch.save stores entries uncompressed and aligned; the
 * zip CRC of such entries is not verified, as safetensors has none either); other views are
 * made contiguous float32 copies. Compressed entries are refused when their declared size
 * exceeds a limit relative to the archive size (zip bombs) or they do not inflate to it.
 *
 * An opened collection is read-only: it may be shared by threads. Tensors with numel 0 have
 * data NULL. .npy writing lives in store/npy.h. */
#ifndef LVD_STORE_TENSORS_H
#define LVD_STORE_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

#define LVD_MAX_DIMS 8

typedef enum lvd_dtype {
    LVD_F32,
    LVD_F16,
    LVD_BF16,
    LVD_F64,
    LVD_U8,
    LVD_BOOL,
    LVD_I8,
    LVD_I32,
    LVD_I64,
} lvd_dtype;

typedef struct lvd_tensor {
    const char *name;
    lvd_dtype dtype; /* dtype as stored in the file (data below is always float32) */
    int ndim;
    int64_t shape[LVD_MAX_DIMS];
    int64_t numel;
    const float *data;
} lvd_tensor;

typedef struct lvd_tensors lvd_tensors; /* an opened file: a read-only collection of tensors */

/* Opens a tensor file, choosing the format by content (zip magic: torch.save; "\x93NUMPY": .npy,
 * exposed as one tensor named "array"; otherwise safetensors). Validates everything before
 * exposing anything: on failure *out is NULL and err names the file and the problem. */
int lvd_tensors_open(const char *path, lvd_tensors **out, lvd_error *err);

/* Releases the collection; every lvd_tensor pointer taken from it becomes invalid. NULL is ok. */
void lvd_tensors_close(lvd_tensors *ts);

/* Number of tensors, and the i-th in file order (0 <= i < count; NULL beyond): the order of the
 * safetensors header, or the state dict's insertion order for torch.save files. */
size_t lvd_tensors_count(const lvd_tensors *ts);
const lvd_tensor *lvd_tensors_at(const lvd_tensors *ts, size_t i);

/* The tensor with exactly this name, or NULL. */
const lvd_tensor *lvd_tensors_find(const lvd_tensors *ts, const char *name);

/* A string from the safetensors "__metadata__" object, or NULL (always NULL for other formats). */
const char *lvd_tensors_metadata(const lvd_tensors *ts, const char *key);

/* Writes tensors (their float32 data, stored as F32) and optional metadata key/value string pairs
 * (n_meta pairs: meta[2*i] is the key, meta[2*i+1] the value) as a safetensors file, atomically:
 * a temporary file in the same folder is written, flushed and renamed over path. */
int lvd_safetensors_write(const char *path, const lvd_tensor *tensors, size_t n,
                          const char *const *meta, size_t n_meta, lvd_error *err);

#endif
