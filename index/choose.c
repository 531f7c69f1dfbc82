/* lvd_index_choose of index/index.h: the index factory from the count and the memory budget. */
#include "index/internal.h"

#include <math.h>
#include <stdio.h>

#define MIN_ROWS_PER_LIST 39
#define MAX_PQ_BYTES      64
#define PQ_CENTROIDS      256

int64_t index_choose_nlist(int64_t n, double per_sqrt)
{
    double target = per_sqrt * sqrt((double)n);
    int64_t c = 1;
    while ((double)(c * 2) <= target)
        c *= 2;
    if ((double)(c * 2) - target < target - (double)c)
        c *= 2;
    while (c > 1 && c * MIN_ROWS_PER_LIST > n)
        c /= 2;
    return c;
}

static int fits(double bytes, size_t budget)
{
    return bytes <= (double)budget;
}

int lvd_index_choose(int64_t n, int d, size_t memory_budget, char *out, size_t out_size,
                     lvd_error *err)
{
    if (n < 1 || d < 1)
        return lvd_fail(err, "index choice: bad shape %lld x %d", (long long)n, d);
    double row_bytes = 4.0 * d;
    if (n <= LVD_INDEX_FLAT_MAX && fits((double)n * row_bytes, memory_budget)) {
        snprintf(out, out_size, "Flat");
        return 0;
    }
    int64_t nlist = index_choose_nlist(n, 4.0);
    double centroid_bytes = (double)nlist * row_bytes;
    /* Each IVF entry stores its code and an 8-byte id. */
    if (fits((double)n * (row_bytes + 8) + centroid_bytes, memory_budget)) {
        snprintf(out, out_size, "IVF%lld,Flat", (long long)nlist);
        return 0;
    }
    for (int m = d < MAX_PQ_BYTES ? d : MAX_PQ_BYTES; m >= 1; m--) {
        if (d % m)
            continue;
        double tables = (double)PQ_CENTROIDS * row_bytes;
        if (fits((double)n * (m + 8) + centroid_bytes + tables, memory_budget)) {
            snprintf(out, out_size, "IVF%lld,PQ%d", (long long)nlist, m);
            return 0;
        }
    }
    return lvd_fail(err, "index choice: %lld rows of dimension %d do not fit in %zu bytes",
                    (long long)n, d, memory_budget);
}
