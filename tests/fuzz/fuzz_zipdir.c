/* libFuzzer target: the zip central directory / local header reader used to map torch.save
 * storages in place. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "store/pth_zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zip_span *spans;
    size_t n;
    if (zip_central_directory(data, size, &spans, &n) != 0)
        return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < spans[i].name_len; j++)
            sink ^= spans[i].name[j];
        int64_t at = zip_stored_data(data, size, &spans[i]);
        if (at >= 0 && spans[i].size > 0)
            sink ^= data[(size_t)at + spans[i].size - 1];
    }
    (void)sink;
    free(spans);
    return 0;
}
