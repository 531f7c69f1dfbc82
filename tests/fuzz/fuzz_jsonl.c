/* libFuzzer target: JSON Lines URL lists (one object a line, string or number fields). */
#include "tests/fuzz/fuzz_lists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_list("fuzz.jsonl", data, size);
    return 0;
}
