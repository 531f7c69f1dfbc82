/* The union-find components of index/index.h. */
#include "index/internal.h"

#include <stdlib.h>

int lvd_components_grow(lvd_components *c, int64_t n, lvd_error *err)
{
    if (n < c->n)
        return lvd_fail(err, "components: cannot shrink from %lld to %lld ids", (long long)c->n,
                        (long long)n);
    if (n == c->n)
        return 0;
    int64_t *p = realloc(c->parent, (size_t)n * sizeof *p);
    if (!p)
        return lvd_fail(err, "out of memory growing components to %lld ids", (long long)n);
    for (int64_t i = c->n; i < n; i++)
        p[i] = i;
    c->parent = p;
    c->n = n;
    return 0;
}

int64_t lvd_components_find(lvd_components *c, int64_t i)
{
    int64_t *p = c->parent;
    while (p[i] != i) {
        p[i] = p[p[i]]; /* path halving */
        i = p[i];
    }
    return i;
}

void lvd_components_union(lvd_components *c, int64_t a, int64_t b)
{
    int64_t ra = lvd_components_find(c, a);
    int64_t rb = lvd_components_find(c, b);
    /* The smaller id becomes the root, which makes the kept row order-independent. */
    if (ra < rb)
        c->parent[rb] = ra;
    else if (rb < ra)
        c->parent[ra] = rb;
}

void lvd_components_roots(lvd_components *c, int64_t *root)
{
    for (int64_t i = 0; i < c->n; i++)
        root[i] = lvd_components_find(c, i);
}

void lvd_components_free(lvd_components *c)
{
    if (!c)
        return;
    free(c->parent);
    c->parent = NULL;
    c->n = 0;
}
