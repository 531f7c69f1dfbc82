/* libFuzzer target: CSV (RFC 4180 quoting, multi-line fields) and TSV URL lists with a header;
 * the first byte picks the format (even: CSV, odd: TSV). */
#include "tests/fuzz/fuzz_lists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fuzz_list(data[0] & 1 ? "fuzz.tsv" : "fuzz.csv", data + 1, size - 1);
    return 0;
}
