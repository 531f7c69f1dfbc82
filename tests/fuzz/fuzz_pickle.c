/* libFuzzer target: the restricted unpickler and the state-dict walk on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "store/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pickle *p;
    lvd_error err;
    if (pickle_load(data, size, &p, &err) != 0)
        return 0;
    pk_named_tensor *named;
    size_t n;
    if (pickle_state_dict(p, &named, &n, &err) == 0) {
        /* Every view was validated against its storage: re-check the invariant. */
        for (size_t i = 0; i < n; i++) {
            const pk_tensor *t = named[i].tensor;
            if (t->numel > 0 && t->offset >= t->storage->numel)
                __builtin_trap();
        }
        pickle_free_named(named, n);
    }
    pickle_free(p);
    return 0;
}
