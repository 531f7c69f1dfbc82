/* The restricted unpickler (see pickle.h). Opcode semantics follow CPython's Lib/pickle.py. */
#include "store/pickle.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/pickle_internal.h"
#include "store/tensors_internal.h"

typedef struct unpickler {
    pickle *p;
    const uint8_t *buf;
    size_t len, pos, op_at;
    pk_obj **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    pk_obj **memo;
    size_t memo_cap, memo_n; /* memo_n: defined entries, the index MEMOIZE uses next */
    lvd_error *err;
} unpickler;

static int fail(unpickler *u, const char *what)
{
    return lvd_fail(u->err, "pickle: %s at byte %zu", what, u->op_at);
}

/* Grows *items (of elem_size bytes each) so index `need - 1` fits. */
static int grow(void **items, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*items, cap2 * elem_size);
    if (!p)
        return -1;
    memset((char *)p + *cap * elem_size, 0, (cap2 - *cap) * elem_size);
    *items = p;
    *cap = cap2;
    return 0;
}

static pk_obj *new_obj(unpickler *u, pk_kind kind)
{
    pickle *p = u->p;
    pk_obj *o = calloc(1, sizeof *o);
    if (!o || grow((void **)&p->objs, &p->cap_objs, p->n_objs + 1, sizeof *p->objs) != 0) {
        free(o);
        fail(u, "out of memory");
        return NULL;
    }
    o->kind = kind;
    p->objs[p->n_objs++] = o;
    return o;
}

static int push(unpickler *u, pk_obj *o)
{
    if (!o)
        return -1;
    if (grow((void **)&u->stack, &u->stack_cap, u->sp + 1, sizeof *u->stack) != 0)
        return fail(u, "out of memory");
    u->stack[u->sp++] = o;
    return 0;
}

static size_t mark_base(const unpickler *u)
{
    return u->n_marks ? u->marks[u->n_marks - 1] : 0;
}

static pk_obj *pop(unpickler *u)
{
    if (u->sp <= mark_base(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static pk_obj *top(unpickler *u)
{
    if (u->sp <= mark_base(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

/* Ends the innermost MARK: the objects pushed since are stack[*base .. u->sp). */
static int pop_mark(unpickler *u, size_t *base)
{
    if (!u->n_marks)
        return fail(u, "no MARK to close");
    *base = u->marks[--u->n_marks];
    return 0;
}

static const uint8_t *take(unpickler *u, size_t n)
{
    if (n > u->len - u->pos) {
        fail(u, "truncated argument");
        return NULL;
    }
    const uint8_t *p = u->buf + u->pos;
    u->pos += n;
    return p;
}

/* An unsigned little-endian argument of n bytes. */
static int take_uint(unpickler *u, size_t n, uint64_t *v)
{
    const uint8_t *p = take(u, n);
    if (!p)
        return -1;
    *v = load_uint(p, n, false);
    return 0;
}

static int push_int(unpickler *u, int64_t v)
{
    pk_obj *o = new_obj(u, PK_INT);
    if (o)
        o->u.i = v;
    return push(u, o);
}

/* LONG1: n bytes of little-endian two's complement. */
static int load_long1(unpickler *u)
{
    uint64_t n;
    if (take_uint(u, 1, &n) != 0)
        return -1;
    if (n > 8)
        return fail(u, "integer wider than 64 bits");
    const uint8_t *p = take(u, (size_t)n);
    if (!p)
        return -1;
    uint64_t v = load_uint(p, (size_t)n, false);
    if (n > 0 && n < 8 && (p[n - 1] & 0x80))
        v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    return push_int(u, (int64_t)v);
}

static int load_float(unpickler *u)
{
    const uint8_t *p = take(u, 8);
    if (!p)
        return -1;
    uint64_t bits = load_uint(p, 8, true); /* BINFLOAT is big-endian */
    pk_obj *o = new_obj(u, PK_FLOAT);
    if (o)
        memcpy(&o->u.f, &bits, sizeof bits);
    return push(u, o);
}

static char *copy_text(unpickler *u, const uint8_t *p, size_t n)
{
    if (memchr(p, 0, n)) {
        fail(u, "string holds a NUL byte");
        return NULL;
    }
    char *s = malloc(n + 1);
    if (!s) {
        fail(u, "out of memory");
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* BINUNICODE and friends: a length of len_bytes bytes, then UTF-8 text. */
static int load_string(unpickler *u, size_t len_bytes)
{
    uint64_t n;
    if (take_uint(u, len_bytes, &n) != 0)
        return -1;
    if (n > u->len - u->pos)
        return fail(u, "truncated string");
    const uint8_t *p = take(u, (size_t)n);
    pk_obj *o = new_obj(u, PK_STR);
    if (!o || !(o->u.s = copy_text(u, p, (size_t)n)))
        return -1;
    return push(u, o);
}

static int seq_append(unpickler *u, pk_obj *seq, pk_obj *item)
{
    if (grow((void **)&seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.n + 1,
             sizeof *seq->u.seq.items) != 0)
        return fail(u, "out of memory");
    seq->u.seq.items[seq->u.seq.n++] = item;
    return 0;
}

/* A tuple of stack[base .. sp), which is popped. */
static int build_tuple(unpickler *u, size_t base)
{
    pk_obj *t = new_obj(u, PK_TUPLE);
    if (!t)
        return -1;
    for (size_t i = base; i < u->sp; i++)
        if (seq_append(u, t, u->stack[i]) != 0)
            return -1;
    u->sp = base;
    return push(u, t);
}

static int load_tuple_n(unpickler *u, size_t n)
{
    if (u->sp < mark_base(u) + n)
        return fail(u, "stack underflow");
    return build_tuple(u, u->sp - n);
}

static int load_tuple(unpickler *u)
{
    size_t base = 0;
    return pop_mark(u, &base) != 0 ? -1 : build_tuple(u, base);
}

/* Adds stack[base .. sp) to the list or dict just below base (pairs for a dict), popping them. */
static int add_items(unpickler *u, size_t base)
{
    if (base == 0 || base <= mark_base(u))
        return fail(u, "stack underflow");
    pk_obj *target = u->stack[base - 1];
    bool dict = target->kind == PK_DICT;
    if (!dict && target->kind != PK_LIST)
        return fail(u, "adding items to something that is neither a list nor a dict");
    if (dict && (u->sp - base) % 2 != 0)
        return fail(u, "odd number of dict items");
    for (size_t i = base; i < u->sp; i++)
        if (seq_append(u, target, u->stack[i]) != 0)
            return -1;
    u->sp = base;
    return 0;
}

static int load_add_items(unpickler *u)
{
    size_t base = 0;
    return pop_mark(u, &base) != 0 ? -1 : add_items(u, base);
}

static int load_add_n(unpickler *u, size_t n)
{
    if (u->sp < mark_base(u) + n)
        return fail(u, "stack underflow");
    return add_items(u, u->sp - n);
}

static int load_empty(unpickler *u, pk_kind kind)
{
    return push(u, new_obj(u, kind));
}

static int memo_put(unpickler *u, uint64_t idx)
{
    /* Indexes are dense in practice; bounding them by the input size bounds the memo. */
    if (idx > u->len)
        return fail(u, "memo index out of range");
    pk_obj *o = top(u);
    if (!o)
        return -1;
    if (grow((void **)&u->memo, &u->memo_cap, (size_t)idx + 1, sizeof *u->memo) != 0)
        return fail(u, "out of memory");
    u->memo_n += u->memo[idx] == NULL;
    u->memo[idx] = o;
    return 0;
}

static int memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return fail(u, "memo index not defined");
    return push(u, u->memo[idx]);
}

static int memoize(unpickler *u)
{
    return memo_put(u, u->memo_n);
}

static int load_arg_op(unpickler *u, int (*op)(unpickler *, uint64_t), size_t n)
{
    uint64_t v;
    return take_uint(u, n, &v) != 0 ? -1 : op(u, v);
}

static const struct {
    const char *module, *name;
    pk_global global;
    lvd_dtype dtype;
} allowed_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, LVD_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, LVD_F32},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, LVD_F32},
    {"torch", "Size", G_SIZE, LVD_F32},
    {"torch", "FloatStorage", G_STORAGE, LVD_F32},
    {"torch", "HalfStorage", G_STORAGE, LVD_F16},
    {"torch", "BFloat16Storage", G_STORAGE, LVD_BF16},
    {"torch", "DoubleStorage", G_STORAGE, LVD_F64},
    {"torch", "ByteStorage", G_STORAGE, LVD_U8},
    {"torch", "BoolStorage", G_STORAGE, LVD_BOOL},
    {"torch", "CharStorage", G_STORAGE, LVD_I8},
    {"torch", "IntStorage", G_STORAGE, LVD_I32},
    {"torch", "LongStorage", G_STORAGE, LVD_I64},
};

static int push_global(unpickler *u, const char *module, const char *name)
{
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        if (strcmp(allowed_globals[i].module, module) != 0 ||
            strcmp(allowed_globals[i].name, name) != 0)
            continue;
        pk_obj *o = new_obj(u, PK_GLOBAL);
        if (o) {
            o->u.global.which = allowed_globals[i].global;
            o->u.global.dtype = allowed_globals[i].dtype;
        }
        return push(u, o);
    }
    return lvd_fail(u->err,
                    "pickle: refers to global '%.200s.%.200s', which is not allowed (only "
                    "torch tensor rebuilding is) at byte %zu",
                    module, name, u->op_at);
}

/* GLOBAL: "module\nname\n". */
static int take_line(unpickler *u, char *out, size_t cap)
{
    const uint8_t *start = u->buf + u->pos;
    const uint8_t *nl = memchr(start, '\n', u->len - u->pos);
    if (!nl)
        return fail(u, "truncated GLOBAL");
    size_t n = (size_t)(nl - start);
    if (n >= cap || memchr(start, 0, n))
        return fail(u, "malformed GLOBAL name");
    memcpy(out, start, n);
    out[n] = '\0';
    u->pos += n + 1;
    return 0;
}

static int load_global(unpickler *u)
{
    char module[256], name[256];
    if (take_line(u, module, sizeof module) != 0 || take_line(u, name, sizeof name) != 0)
        return -1;
    return push_global(u, module, name);
}

static int load_stack_global(unpickler *u)
{
    pk_obj *name = pop(u);
    pk_obj *module = name ? pop(u) : NULL;
    if (!module)
        return -1;
    if (name->kind != PK_STR || module->kind != PK_STR)
        return fail(u, "STACK_GLOBAL needs two strings");
    return push_global(u, module->u.s, name->u.s);
}

/* ('storage', torch.<T>Storage, key, location, numel) */
static int load_persid(unpickler *u)
{
    pk_obj *pid = pop(u);
    if (!pid)
        return -1;
    pk_obj **it = pid->u.seq.items;
    if (pid->kind != PK_TUPLE || pid->u.seq.n != 5 || it[0]->kind != PK_STR ||
        strcmp(it[0]->u.s, "storage") != 0 || it[1]->kind != PK_GLOBAL ||
        it[1]->u.global.which != G_STORAGE || it[2]->kind != PK_STR || it[3]->kind != PK_STR ||
        it[4]->kind != PK_INT || it[4]->u.i < 0)
        return fail(u, "persistent id is not ('storage', type, key, location, numel)");
    pk_obj *o = new_obj(u, PK_STORAGE);
    if (!o)
        return -1;
    o->u.storage = calloc(1, sizeof *o->u.storage);
    char *key = o->u.storage ? strdup(it[2]->u.s) : NULL;
    if (!key)
        return fail(u, "out of memory");
    o->u.storage->dtype = it[1]->u.global.dtype;
    o->u.storage->key = key;
    o->u.storage->numel = it[4]->u.i;
    return push(u, o);
}

/* A tuple of non-negative ints into dims[]; returns the count or -1. */
static int int_tuple(const pk_obj *t, int64_t *dims)
{
    if (t->kind != PK_TUPLE || t->u.seq.n > LVD_MAX_DIMS)
        return -1;
    for (size_t i = 0; i < t->u.seq.n; i++) {
        const pk_obj *d = t->u.seq.items[i];
        if (d->kind != PK_INT || d->u.i < 0)
            return -1;
        dims[i] = d->u.i;
    }
    return (int)t->u.seq.n;
}

/* Largest element index a view touches: offset + sum((shape_i - 1) * stride_i), or -1 on
 * overflow. Only called for views with at least one element. */
static int64_t view_extent(const pk_tensor *t)
{
    int64_t last = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        int64_t span = t->shape[i] - 1;
        if (t->stride[i] != 0 && span > (INT64_MAX - last) / t->stride[i])
            return -1;
        last += span * t->stride[i];
    }
    return last;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(unpickler *u, const pk_obj *args)
{
    size_t n = args->u.seq.n;
    pk_obj **a = args->u.seq.items;
    if ((n != 6 && n != 7) || a[0]->kind != PK_STORAGE || a[1]->kind != PK_INT || a[1]->u.i < 0)
        return fail(u, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)");
    pk_tensor t = {.storage = a[0]->u.storage, .offset = a[1]->u.i};
    int ndim = int_tuple(a[2], t.shape);
    if (ndim < 0 || int_tuple(a[3], t.stride) != ndim)
        return fail(u, "tensor size or stride is not a tuple of sizes of the same length");
    t.ndim = ndim;
    if (shape_numel(t.shape, ndim, &t.numel) != 0)
        return fail(u, "tensor element count overflows");
    if (t.numel > 0) {
        int64_t last = view_extent(&t);
        if (last < 0 || last >= t.storage->numel)
            return fail(u, "tensor view reaches outside its storage");
    }
    pk_obj *o = new_obj(u, PK_TENSOR);
    if (!o)
        return -1;
    o->u.tensor = malloc(sizeof *o->u.tensor);
    if (!o->u.tensor)
        return fail(u, "out of memory");
    *o->u.tensor = t;
    return push(u, o);
}

static int load_reduce(unpickler *u)
{
    pk_obj *args = pop(u);
    pk_obj *fn = args ? pop(u) : NULL;
    if (!fn)
        return -1;
    if (fn->kind != PK_GLOBAL || args->kind != PK_TUPLE)
        return fail(u, "REDUCE needs an allowed global and an argument tuple");
    size_t n = args->u.seq.n;
    pk_obj **a = args->u.seq.items;
    switch (fn->u.global.which) {
    case G_ORDERED_DICT:
        if (n != 0)
            return fail(u, "OrderedDict called with arguments");
        return load_empty(u, PK_DICT);
    case G_REBUILD_TENSOR:
        return rebuild_tensor(u, args);
    case G_REBUILD_PARAMETER:
        if (n < 1 || a[0]->kind != PK_TENSOR)
            return fail(u, "_rebuild_parameter needs a tensor");
        return push(u, a[0]);
    case G_SIZE:
        if (n != 1 || a[0]->kind != PK_TUPLE)
            return fail(u, "torch.Size needs one tuple");
        return push(u, a[0]);
    case G_STORAGE:
        break;
    }
    return fail(u, "calling a storage type is not allowed");
}

/* BUILD sets object state: accepted (and ignored) for dicts (OrderedDict's _metadata) and
 * tensors, refused elsewhere. */
static int load_build(unpickler *u)
{
    pk_obj *state = pop(u);
    pk_obj *target = state ? top(u) : NULL;
    if (!target)
        return -1;
    if (target->kind != PK_DICT && target->kind != PK_TENSOR)
        return fail(u, "BUILD on something that is neither a dict nor a tensor");
    return 0;
}

static int load_mark(unpickler *u)
{
    if (grow((void **)&u->marks, &u->marks_cap, u->n_marks + 1, sizeof *u->marks) != 0)
        return fail(u, "out of memory");
    u->marks[u->n_marks++] = u->sp;
    return 0;
}

static int load_pop_mark(unpickler *u)
{
    size_t base = 0;
    if (pop_mark(u, &base) != 0)
        return -1;
    u->sp = base;
    return 0;
}

static int load_proto(unpickler *u)
{
    uint64_t v;
    if (take_uint(u, 1, &v) != 0)
        return -1;
    return v >= 2 && v <= 5 ? 0 : fail(u, "unsupported pickle protocol");
}

static int load_frame(unpickler *u)
{
    return take(u, 8) ? 0 : -1; /* frames only group opcodes; nothing to do */
}

static int load_bool(unpickler *u, bool v)
{
    pk_obj *o = new_obj(u, PK_BOOL);
    if (o)
        o->u.i = v;
    return push(u, o);
}

static int load_int(unpickler *u, size_t n, bool is_signed)
{
    uint64_t v;
    if (take_uint(u, n, &v) != 0)
        return -1;
    return push_int(u, is_signed ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v);
}

static int load_dup(unpickler *u)
{
    pk_obj *o = top(u);
    return o ? push(u, o) : -1;
}

static int load_pop(unpickler *u)
{
    return pop(u) ? 0 : -1;
}

/* One opcode; 1 at STOP, 0 to go on, -1 on error. */
static int step(unpickler *u, uint8_t op)
{
    switch (op) {
    case 0x80:
        return load_proto(u);
    case 0x95:
        return load_frame(u);
    case '}':
        return load_empty(u, PK_DICT);
    case ']':
        return load_empty(u, PK_LIST);
    case ')':
        return load_empty(u, PK_TUPLE);
    case 'N':
        return load_empty(u, PK_NONE);
    case 0x88:
        return load_bool(u, true);
    case 0x89:
        return load_bool(u, false);
    case '(':
        return load_mark(u);
    case '1':
        return load_pop_mark(u);
    case '0':
        return load_pop(u);
    case '2':
        return load_dup(u);
    case 'X':
        return load_string(u, 4);
    case 0x8c:
        return load_string(u, 1);
    case 0x8d:
        return load_string(u, 8);
    case 'q':
        return load_arg_op(u, memo_put, 1);
    case 'r':
        return load_arg_op(u, memo_put, 4);
    case 'h':
        return load_arg_op(u, memo_get, 1);
    case 'j':
        return load_arg_op(u, memo_get, 4);
    case 0x94:
        return memoize(u);
    case 'J':
        return load_int(u, 4, true);
    case 'K':
        return load_int(u, 1, false);
    case 'M':
        return load_int(u, 2, false);
    case 0x8a:
        return load_long1(u);
    case 'G':
        return load_float(u);
    case 't':
        return load_tuple(u);
    case 0x85:
        return load_tuple_n(u, 1);
    case 0x86:
        return load_tuple_n(u, 2);
    case 0x87:
        return load_tuple_n(u, 3);
    case 's':
        return load_add_n(u, 2);
    case 'u':
        return load_add_items(u);
    case 'a':
        return load_add_n(u, 1);
    case 'e':
        return load_add_items(u);
    case 'c':
        return load_global(u);
    case 0x93:
        return load_stack_global(u);
    case 'R':
        return load_reduce(u);
    case 'b':
        return load_build(u);
    case 'Q':
        return load_persid(u);
    case '.':
        return 1;
    }
    return lvd_fail(u->err, "pickle: unsupported opcode 0x%02x at byte %zu", op, u->op_at);
}

int pickle_load(const uint8_t *buf, size_t len, pickle **out, lvd_error *err)
{
    *out = NULL;
    unpickler u = {.buf = buf, .len = len, .err = err};
    u.p = calloc(1, sizeof *u.p);
    if (!u.p)
        return lvd_fail(err, "pickle: out of memory");
    int rc = 0;
    while (rc == 0) {
        if (u.pos == u.len) {
            rc = lvd_fail(err, "pickle: truncated (no STOP opcode in %zu bytes)", len);
            break;
        }
        u.op_at = u.pos;
        rc = step(&u, buf[u.pos++]);
    }
    if (rc == 1) {
        u.p->root = pop(&u);
        rc = u.p->root ? 0 : -1;
    }
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (rc != 0) {
        pickle_free(u.p);
        return -1;
    }
    *out = u.p;
    return 0;
}

static void free_obj(pk_obj *o)
{
    switch (o->kind) {
    case PK_STR:
        free(o->u.s);
        break;
    case PK_TUPLE:
    case PK_LIST:
    case PK_DICT:
        free(o->u.seq.items);
        break;
    case PK_STORAGE:
        if (o->u.storage)
            free((char *)o->u.storage->key);
        free(o->u.storage);
        break;
    case PK_TENSOR:
        free(o->u.tensor);
        break;
    default:
        break;
    }
    free(o);
}

void pickle_free(pickle *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_objs; i++)
        free_obj(p->objs[i]);
    free(p->objs);
    free(p);
}
