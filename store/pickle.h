/* A restricted unpickler for torch.save state dicts (internal to store/).
 *
 * It understands the opcodes that torch.save's pickles use (protocols 2 to 5) and builds plain
 * values: None, bools, ints, floats, strings, tuples, lists, dicts, storages (from persistent ids
 * ('storage', torch.<T>Storage, key, location, numel)) and tensors (from
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter). It never imports or calls anything: the
 * only globals accepted are collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, torch.Size and the torch.<T>Storage types; any other global
 * (os.system, builtins.eval, ...) and any other opcode is refused with an error naming it. */
#ifndef LVD_STORE_PICKLE_H
#define LVD_STORE_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "store/tensors.h"

typedef struct pk_storage {
    lvd_dtype dtype;
    const char *key; /* archive entry "<prefix>/data/<key>" */
    int64_t numel;
} pk_storage;

/* A view of a storage; validated so every element lies inside the storage. */
typedef struct pk_tensor {
    const pk_storage *storage;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[LVD_MAX_DIMS];
    int64_t stride[LVD_MAX_DIMS]; /* in elements */
    int64_t numel;
} pk_tensor;

typedef struct pk_named_tensor {
    char *name; /* dotted path inside the state dict, owned by the array */
    const pk_tensor *tensor;
} pk_named_tensor;

typedef struct pickle pickle;

/* Unpickles buf[0..len). On failure *out is NULL and err says what and at which byte. */
int pickle_load(const uint8_t *buf, size_t len, pickle **out, lvd_error *err);

void pickle_free(pickle *p);

/* The state dict's tensors in pickle order, names joined with '.' through nested dicts. The state
 * dict is the top-level dict when it holds tensors, else its "model", "state_dict" or "teacher"
 * entry (training checkpoints). The tensors point into p. Free with pickle_free_named. */
int pickle_state_dict(const pickle *p, pk_named_tensor **out, size_t *n, lvd_error *err);

void pickle_free_named(pk_named_tensor *named, size_t n);

#endif
