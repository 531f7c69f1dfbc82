/* The unpickled object graph, shared by pickle.c (which builds it) and pickle_state.c (which
 * walks it). Internal to store/. */
#ifndef LVD_STORE_PICKLE_INTERNAL_H
#define LVD_STORE_PICKLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/pickle.h"

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_TUPLE,
    PK_LIST,
    PK_DICT, /* items hold key, value, key, value, ... in insertion order */
    PK_GLOBAL,
    PK_STORAGE,
    PK_TENSOR,
} pk_kind;

typedef enum pk_global {
    G_ORDERED_DICT,
    G_REBUILD_TENSOR,
    G_REBUILD_PARAMETER,
    G_SIZE,
    G_STORAGE,
} pk_global;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_kind kind;
    union {
        int64_t i; /* PK_INT, PK_BOOL */
        double f;
        char *s;
        struct {
            pk_obj **items;
            size_t n, cap;
        } seq; /* PK_TUPLE, PK_LIST, PK_DICT */
        struct {
            pk_global which;
            lvd_dtype dtype; /* for G_STORAGE */
        } global;
        pk_storage *storage;
        pk_tensor *tensor;
    } u;
};

/* Every object is owned by the pickle (objects may be shared through the memo, or even form
 * cycles), and freed together. */
struct pickle {
    pk_obj **objs;
    size_t n_objs, cap_objs;
    pk_obj *root;
};

#endif
