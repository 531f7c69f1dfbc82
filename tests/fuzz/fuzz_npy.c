/* libFuzzer target: the .npy header parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "store/tensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lvd_tensors *ts = tensors_new();
    lvd_error err;
    if (ts && npy_parse(ts, data, size, &err) == 0) {
        const lvd_tensor *t = lvd_tensors_at(ts, 0);
        volatile float sink = 0;
        for (int64_t j = 0; j < t->numel; j++)
            sink += t->data[j];
        (void)sink;
    }
    lvd_tensors_close(ts);
    return 0;
}
