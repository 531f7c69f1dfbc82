/* Parameter layouts (train/params.h): appending, lookup, release. */
#include "train/params.h"

#include <stdlib.h>
#include <string.h>

int lvd_param_layout_add(lvd_param_layout *l, const char *name, int ndim, const int64_t *shape,
                         lvd_error *err)
{
    if (strlen(name) >= LVD_PARAM_NAME_MAX)
        return lvd_fail(err, "parameter name too long: %s", name);
    if (ndim < 1 || ndim > LVD_PARAM_MAX_DIMS)
        return lvd_fail(err, "parameter %s: %d dimensions (1 to %d allowed)", name, ndim,
                        LVD_PARAM_MAX_DIMS);
    if (lvd_param_layout_find(l, name))
        return lvd_fail(err, "parameter %s added twice", name);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || (size_t)shape[d] > SIZE_MAX / 4 / numel)
            return lvd_fail(err, "parameter %s: bad size %lld in dimension %d", name,
                            (long long)shape[d], d);
        numel *= (size_t)shape[d];
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        lvd_param_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t)
            return lvd_fail(err, "out of memory for parameter %s", name);
        l->t = t;
        l->cap = cap;
    }
    lvd_param_tensor *p = &l->t[l->n++];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    p->offset = l->total;
    p->numel = numel;
    l->total += numel;
    return 0;
}

const lvd_param_tensor *lvd_param_layout_find(const lvd_param_layout *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0)
            return &l->t[i];
    return NULL;
}

void lvd_param_layout_free(lvd_param_layout *l)
{
    free(l->t);
    memset(l, 0, sizeof *l);
}
