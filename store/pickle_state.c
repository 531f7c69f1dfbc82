/* Finding and flattening the state dict inside an unpickled torch.save object. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/pickle_internal.h"

/* Nested dicts deeper than this are not followed (a dict may even contain itself). */
#define MAX_DEPTH 16

typedef struct collector {
    pk_named_tensor *items;
    size_t n, cap;
} collector;

static bool holds_tensor(const pk_obj *dict)
{
    for (size_t i = 1; i < dict->u.seq.n; i += 2)
        if (dict->u.seq.items[i]->kind == PK_TENSOR)
            return true;
    return false;
}

static const pk_obj *dict_get(const pk_obj *dict, const char *key)
{
    for (size_t i = 0; i + 1 < dict->u.seq.n; i += 2) {
        const pk_obj *k = dict->u.seq.items[i];
        if (k->kind == PK_STR && strcmp(k->u.s, key) == 0)
            return dict->u.seq.items[i + 1];
    }
    return NULL;
}

static const pk_obj *find_state_dict(const pk_obj *root)
{
    if (holds_tensor(root))
        return root;
    static const char *const keys[] = {"model", "state_dict", "teacher"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const pk_obj *v = dict_get(root, keys[i]);
        if (v && v->kind == PK_DICT)
            return v;
    }
    return NULL;
}

static char *join_name(const char *prefix, const char *key)
{
    size_t a = prefix ? strlen(prefix) + 1 : 0, b = strlen(key);
    char *s = malloc(a + b + 1);
    if (!s)
        return NULL;
    if (prefix) {
        memcpy(s, prefix, a - 1);
        s[a - 1] = '.';
    }
    memcpy(s + a, key, b + 1);
    return s;
}

static int collect(collector *c, const pk_obj *dict, const char *prefix, int depth, lvd_error *err)
{
    for (size_t i = 0; i + 1 < dict->u.seq.n; i += 2) {
        const pk_obj *k = dict->u.seq.items[i], *v = dict->u.seq.items[i + 1];
        bool nested = v->kind == PK_DICT && depth < MAX_DEPTH;
        if (k->kind != PK_STR || (v->kind != PK_TENSOR && !nested))
            continue; /* step counters, hyper-parameters and such */
        char *name = join_name(prefix, k->u.s);
        if (!name)
            return lvd_fail(err, "out of memory");
        if (nested) {
            int rc = collect(c, v, name, depth + 1, err);
            free(name);
            if (rc != 0)
                return -1;
            continue;
        }
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 64;
            pk_named_tensor *items = realloc(c->items, cap * sizeof *items);
            if (!items) {
                free(name);
                return lvd_fail(err, "out of memory");
            }
            c->items = items;
            c->cap = cap;
        }
        c->items[c->n].name = name;
        c->items[c->n].tensor = v->u.tensor;
        c->n++;
    }
    return 0;
}

int pickle_state_dict(const pickle *p, pk_named_tensor **out, size_t *n, lvd_error *err)
{
    *out = NULL;
    *n = 0;
    if (p->root->kind != PK_DICT)
        return lvd_fail(err, "pickle: the saved object is not a dict");
    const pk_obj *state = find_state_dict(p->root);
    if (!state)
        return lvd_fail(err, "pickle: no state dict (no tensors at the top level and no "
                             "\"model\", \"state_dict\" or \"teacher\" dict)");
    collector c = {0};
    if (collect(&c, state, NULL, 0, err) != 0) {
        pickle_free_named(c.items, c.n);
        return -1;
    }
    *out = c.items;
    *n = c.n;
    return 0;
}

void pickle_free_named(pk_named_tensor *named, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(named[i].name);
    free(named);
}
