/* lvd_hkmeans_sample of index/index.h: balanced sampling down the hierarchy. */
#include "index/internal.h"

#include <stdlib.h>
#include <string.h>

/* Per level, the rows under each cluster and each cluster's children in ascending order:
 * children of cluster c at level l are child[l][start[l][c] .. start[l][c + 1]) (level 0: rows,
 * sorted most similar to the centroid first). */
typedef struct tree {
    const lvd_hkmeans *h;
    int64_t **size;
    int64_t **start;
    int64_t **child;
    index_member *rows;
    int64_t **share; /* share[l][c]: rows cluster c of level l gives to the sample */
    uint8_t *selected;
} tree;

/* Number of items a level groups: the rows, or the clusters of the level below. */
static int64_t items_of(const lvd_hkmeans *h, int l)
{
    return l == 0 ? h->n : h->k[l - 1];
}

/* Counting sort of the items of level l by parent: ascending ids within each cluster. */
static void group_children(const lvd_hkmeans *h, int l, int64_t *start, int64_t *child)
{
    int64_t m = items_of(h, l);
    const int32_t *p = h->parent[l];
    for (int64_t i = 0; i < m; i++)
        start[p[i] + 1]++;
    for (int c = 0; c < h->k[l]; c++)
        start[c + 1] += start[c];
    int64_t *fill = start + h->k[l] + 1; /* scratch after the offsets */
    memcpy(fill, start, (size_t)h->k[l] * sizeof *fill);
    for (int64_t i = 0; i < m; i++)
        child[fill[p[i]]++] = i;
}

static int tree_build(tree *t, const lvd_hkmeans *h, lvd_error *err)
{
    int L = h->levels;
    t->h = h;
    t->size = index_alloc((size_t)L, sizeof *t->size, "sampling tree", err);
    t->start = index_alloc((size_t)L, sizeof *t->start, "sampling tree", err);
    t->child = index_alloc((size_t)L, sizeof *t->child, "sampling tree", err);
    t->share = index_alloc((size_t)L, sizeof *t->share, "sampling tree", err);
    t->rows = index_alloc((size_t)h->n, sizeof *t->rows, "sampling tree", err);
    if (!t->size || !t->start || !t->child || !t->share || !t->rows)
        return -1;
    for (int l = 0; l < L; l++) {
        t->size[l] = index_alloc((size_t)h->k[l], sizeof **t->size, "sampling tree", err);
        t->start[l] = index_alloc(2 * (size_t)h->k[l] + 1, sizeof **t->start, "sampling tree", err);
        t->child[l] = index_alloc((size_t)items_of(h, l), sizeof **t->child, "sampling tree", err);
        t->share[l] = index_alloc((size_t)h->k[l], sizeof **t->share, "sampling tree", err);
        if (!t->size[l] || !t->start[l] || !t->child[l] || !t->share[l])
            return -1;
        group_children(h, l, t->start[l], t->child[l]);
        for (int64_t i = 0; i < items_of(h, l); i++)
            t->size[l][h->parent[l][i]] += l == 0 ? 1 : t->size[l - 1][i];
    }
    for (int64_t i = 0; i < h->n; i++)
        t->rows[i] = (index_member){h->sim[t->child[0][i]], t->child[0][i]};
    for (int c = 0; c < h->k[0]; c++)
        index_sort_members(t->rows + t->start[0][c], (size_t)(t->size[0][c]));
    return 0;
}

static void tree_free(tree *t)
{
    for (int l = 0; l < t->h->levels; l++) {
        free(t->size ? t->size[l] : NULL);
        free(t->start ? t->start[l] : NULL);
        free(t->child ? t->child[l] : NULL);
        free(t->share ? t->share[l] : NULL);
    }
    free(t->size);
    free(t->start);
    free(t->child);
    free(t->share);
    free(t->rows);
}

static int64_t capped_sum(const int64_t *size, const int64_t *ids, int64_t count, int64_t cap)
{
    int64_t s = 0;
    for (int64_t i = 0; i < count; i++)
        s += size[ids[i]] < cap ? size[ids[i]] : cap;
    return s;
}

/* Splits budget over the clusters ids[0 .. count) of one level (share[id] = min(size, cap) with
 * the largest cap whose sum fits, then one more each, in id order, while budget remains). */
static void distribute(const int64_t *size, const int64_t *ids, int64_t count, int64_t budget,
                       int64_t *share)
{
    int64_t lo = 0, hi = 0;
    for (int64_t i = 0; i < count; i++)
        hi = size[ids[i]] > hi ? size[ids[i]] : hi;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (capped_sum(size, ids, count, mid) <= budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t rest = budget - capped_sum(size, ids, count, lo);
    for (int64_t i = 0; i < count; i++) {
        int64_t s = size[ids[i]];
        share[ids[i]] = s < lo ? s : lo;
        if (s > lo && rest > 0) {
            share[ids[i]]++;
            rest--;
        }
    }
}

/* Gives cluster c of level l its share: split over its children, or (level 0) its best rows. */
static void descend(tree *t, int l, int64_t c)
{
    int64_t budget = t->share[l][c], from = t->start[l][c], count = t->start[l][c + 1] - from;
    if (budget == 0)
        return;
    if (l == 0) {
        for (int64_t j = 0; j < budget; j++)
            t->selected[t->rows[from + j].id] = 1;
        return;
    }
    const int64_t *kids = t->child[l] + from;
    distribute(t->size[l - 1], kids, count, budget, t->share[l - 1]);
    for (int64_t j = 0; j < count; j++)
        descend(t, l - 1, kids[j]);
}

int lvd_hkmeans_sample(const lvd_hkmeans *h, int64_t target, uint8_t *selected, int64_t *n_selected,
                       lvd_error *err)
{
    *n_selected = 0;
    if (h->levels < 1 || target < 0)
        return lvd_fail(err, "balanced sampling: empty clustering or negative target");
    tree t = {.selected = selected};
    int rc = tree_build(&t, h, err);
    if (rc == 0) {
        int top = h->levels - 1;
        int64_t *all = index_alloc((size_t)h->k[top], sizeof *all, "sampling tree", err);
        rc = all ? 0 : -1;
        for (int64_t c = 0; all && c < h->k[top]; c++)
            all[c] = c;
        if (all) {
            memset(selected, 0, (size_t)h->n);
            *n_selected = target < h->n ? target : h->n;
            distribute(t.size[top], all, h->k[top], *n_selected, t.share[top]);
            for (int64_t c = 0; c < h->k[top]; c++)
                descend(&t, top, c);
        }
        free(all);
    }
    tree_free(&t);
    return rc;
}
