/* libFuzzer target: text URL lists (one URL a line, comments, NUL bytes, scheme-less paths). */
#include "tests/fuzz/fuzz_lists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_list("fuzz.txt", data, size);
    return 0;
}
