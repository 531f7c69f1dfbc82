/* dist/dist.h: run alone, every process is a group of one whose collectives leave buffers as they
 * are; run by `mpirun -np 2`, the collectives combine both ranks and the shares split items in
 * rank order. A build without MPI refuses a launcher that asks for several processes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "tests/check.h"

static void check_shares(const lvd_dist *d)
{
    /* Shares of every rank tile [0, n) in order with sizes differing by at most one. */
    for (int64_t n = 0; n < 20; n++) {
        int64_t next = 0, small = n, large = 0;
        for (int r = 0; r < d->size + 3; r++) {
            lvd_dist g = {r, d->size + 3};
            int64_t b, e;
            lvd_dist_share(&g, n, &b, &e);
            CHECK(b == next && e >= b);
            next = e;
            small = e - b < small ? e - b : small;
            large = e - b > large ? e - b : large;
        }
        CHECK(next == n && large - small <= 1);
    }
}

static void check_group(const lvd_dist *d)
{
    lvd_error err;
    float f[3] = {1.5f, (float)d->rank, -2.0f};
    double x[2] = {0.25, (double)d->rank};
    int64_t i[2] = {((int64_t)1 << 40) + d->rank, 7};
    double m[1] = {(double)(10 - d->rank)};
    CHECK(lvd_dist_sum_f32(d, f, 3, &err) == 0);
    CHECK(lvd_dist_sum_f64(d, x, 2, &err) == 0);
    CHECK(lvd_dist_sum_i64(d, i, 2, &err) == 0);
    CHECK(lvd_dist_max_f64(d, m, 1, &err) == 0);
    int64_t n = d->size, ranks = n * (n - 1) / 2; /* 0 + 1 + ... + (size - 1) */
    CHECK(f[0] == 1.5f * (float)n && f[1] == (float)ranks && f[2] == -2.0f * (float)n);
    CHECK(x[0] == 0.25 * (double)n && x[1] == (double)ranks);
    CHECK(i[0] == (((int64_t)1 << 40) * n + ranks) && i[1] == 7 * n);
    CHECK(m[0] == 10.0);

    char text[16] = "from rank ?";
    if (d->rank == d->size - 1)
        text[10] = (char)('0' + d->rank);
    CHECK(lvd_dist_bcast(d, text, sizeof text, d->size - 1, &err) == 0);
    CHECK(text[10] == (char)('0' + d->size - 1));
    CHECK(lvd_dist_barrier(d, &err) == 0);

    int64_t b, e;
    lvd_dist_share(d, 11, &b, &e);
    int64_t got[1] = {e - b};
    CHECK(lvd_dist_sum_i64(d, got, 1, &err) == 0 && got[0] == 11);
}

/* lvd_dist_allgather: rank r gives r + 1 bytes of value r (rank 0 also an empty round); every
 * rank gets them all in rank order. */
static void check_allgather(const lvd_dist *d)
{
    lvd_error err;
    char mine[64];
    memset(mine, 'a' + d->rank, sizeof mine);
    size_t *sizes = malloc((size_t)d->size * sizeof *sizes);
    void *all = NULL;
    CHECK(lvd_dist_allgather(d, mine, (size_t)d->rank + 1, &all, sizes, &err) == 0);
    size_t at = 0;
    for (int r = 0; all && r < d->size; r++) {
        CHECK(sizes[r] == (size_t)r + 1);
        for (size_t i = 0; i < sizes[r]; i++)
            CHECK(((const char *)all)[at + i] == 'a' + r);
        at += sizes[r];
    }
    free(all);
    CHECK(lvd_dist_allgather(d, mine, 0, &all, sizes, &err) == 0 && all && sizes[0] == 0);
    free(all);
    free(sizes);
}

int main(void)
{
    lvd_error err;
    lvd_dist d, again;
    const char *expect = getenv("OMPI_COMM_WORLD_SIZE");
    CHECK(lvd_dist_init(&d, &err) == 0);
    CHECK(lvd_dist_init(&again, &err) == 0 && again.rank == d.rank && again.size == d.size);
    CHECK(d.size == (expect ? atoi(expect) : 1) && d.rank >= 0 && d.rank < d.size);
    check_shares(&d);
    check_group(&d);
    check_allgather(&d);
    if (!lvd_dist_built() && !expect) {
        /* Without MPI, a launcher's request for two processes is refused, one is a group of one. */
        setenv("PMI_SIZE", "2", 1);
        CHECK(lvd_dist_init(&again, &err) == -1 && strstr(err.msg, "without MPI"));
        setenv("PMI_SIZE", "1", 1);
        CHECK(lvd_dist_init(&again, &err) == 0 && again.size == 1);
        unsetenv("PMI_SIZE");
    }
    printf("rank %d of %d (MPI %s)\n", d.rank, d.size, lvd_dist_built() ? "built" : "not built");
    return check_finish();
}
