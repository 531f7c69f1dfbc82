/* libFuzzer target: the safetensors parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "store/tensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lvd_tensors *ts = tensors_new();
    lvd_error err;
    if (ts && safetensors_parse(ts, data, size, &err) == 0 && tensors_finish(ts, &err) == 0) {
        /* Touch every element so a view past the input shows up under ASan. */
        volatile float sink = 0;
        for (size_t i = 0; i < lvd_tensors_count(ts); i++) {
            const lvd_tensor *t = lvd_tensors_at(ts, i);
            for (int64_t j = 0; j < t->numel; j++)
                sink += t->data[j];
            (void)lvd_tensors_find(ts, t->name);
        }
        (void)sink;
    }
    lvd_tensors_close(ts);
    return 0;
}
