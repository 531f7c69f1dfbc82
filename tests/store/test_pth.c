/* torch.save (.pth) reading: the reference checkpoint against its safetensors twin, synthetic
 * archives covering views, dtypes, byte order and nesting, and hostile archives (forbidden
 * globals, unknown opcodes, truncation, zip bombs) that must be refused with a clear message. */
#include <stdint.h>

#include "store/tensors.h"
#include "tests/store/helpers.h"
#include "tests/store/pickle_builder.h"

static const float storage0[6] = {0, 1, 2, 3, 4, 5};

/* {"epoch": 3, "lr": 0.5, "model": OrderedDict(w, wt, row1, h, param, nested.x), "flag": True} */
static void build_checkpoint(pb *p)
{
    pb_begin(p);
    pb_op(p, '}');
    pb_op(p, '(');
    pb_str(p, "epoch");
    pb_int(p, 3);
    pb_str(p, "lr");
    pb_bytes(p, "G\x3f\xe0\0\0\0\0\0\0", 9);
    pb_str(p, "model");
    pb_global(p, "collections", "OrderedDict");
    pb_op(p, ')');
    pb_op(p, 'R');
    pb_op(p, '(');
    pb_str(p, "w");
    pb_tensor(p, "FloatStorage", "0", 6, 0, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1});
    pb_str(p, "wt");
    pb_tensor(p, "FloatStorage", "0", 6, 0, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3});
    pb_str(p, "row1");
    pb_tensor(p, "FloatStorage", "0", 6, 3, 1, (int64_t[]){3}, (int64_t[]){1});
    pb_str(p, "h");
    pb_tensor(p, "HalfStorage", "1", 2, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    pb_str(p, "param");
    pb_global(p, "torch._utils", "_rebuild_parameter");
    pb_op(p, '(');
    pb_tensor(p, "FloatStorage", "2", 1, 0, 0, NULL, NULL);
    pb_op(p, 0x88);
    pb_global(p, "collections", "OrderedDict");
    pb_op(p, ')');
    pb_op(p, 'R');
    pb_op(p, 't');
    pb_op(p, 'R');
    pb_str(p, "nested");
    pb_op(p, '}');
    pb_str(p, "x");
    pb_tensor(p, "LongStorage", "3", 2, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    pb_op(p, 's');
    pb_op(p, 'u');
    pb_str(p, "flag");
    pb_op(p, 0x88);
    pb_op(p, 'u');
    pb_op(p, '.');
}

static int write_checkpoint(const char *path, const pb *p, const char *byteorder)
{
    static const uint8_t half[4] = {0x00, 0x3c, 0x00, 0xc0};
    static const float seven = 7;
    static const int64_t longs[2] = {5, -1};
    zip_item items[] = {
        {"ckpt/data.pkl", p->buf, p->len, 0},
        {"ckpt/data/0", storage0, sizeof storage0, 0},
        {"ckpt/data/1", half, sizeof half, 1},
        {"ckpt/data/2", &seven, sizeof seven, 0},
        {"ckpt/data/3", longs, sizeof longs, 0},
        {"ckpt/byteorder", byteorder, byteorder ? strlen(byteorder) : 0, 0},
    };
    return write_zip(path, items, byteorder ? 6 : 5);
}

static const float *values(const lvd_tensors *ts, const char *name, int64_t numel)
{
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    CHECK_MSG(t && t->numel == numel && t->data, "tensor %s", name);
    return t && t->numel == numel ? t->data : NULL;
}

static void test_synthetic(void)
{
    pb p;
    build_checkpoint(&p);
    const char *path = temp_path("ckpt.pth");
    CHECK(write_checkpoint(path, &p, "little") == 0);
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    if (!ts)
        return;
    const char *names[] = {"w", "wt", "row1", "h", "param", "nested.x"};
    CHECK(lvd_tensors_count(ts) == 6);
    for (size_t i = 0; i < 6 && i < lvd_tensors_count(ts); i++)
        CHECK(strcmp(lvd_tensors_at(ts, i)->name, names[i]) == 0);
    const float *w = values(ts, "w", 6);
    const float *wt = values(ts, "wt", 6);
    const float *row1 = values(ts, "row1", 3);
    const float *h = values(ts, "h", 2);
    const float *param = values(ts, "param", 1);
    const float *x = values(ts, "nested.x", 2);
    if (w && wt && row1 && h && param && x) {
        CHECK(memcmp(w, storage0, sizeof storage0) == 0);
        const float transposed[6] = {0, 3, 1, 4, 2, 5};
        CHECK(memcmp(wt, transposed, sizeof transposed) == 0);
        CHECK(row1[0] == 3 && row1[1] == 4 && row1[2] == 5);
        CHECK(h[0] == 1 && h[1] == -2);
        CHECK(param[0] == 7);
        CHECK(x[0] == 5 && x[1] == -1);
    }
    const lvd_tensor *wtt = lvd_tensors_find(ts, "wt");
    CHECK(wtt && wtt->ndim == 2 && wtt->shape[0] == 3 && wtt->shape[1] == 2);
    CHECK(lvd_tensors_find(ts, "h")->dtype == LVD_F16);
    CHECK(lvd_tensors_find(ts, "param")->ndim == 0);
    CHECK(lvd_tensors_metadata(ts, "anything") == NULL);
    lvd_tensors_close(ts);

    /* No byteorder entry (older writers) means little-endian too. */
    CHECK(write_checkpoint(path, &p, NULL) == 0);
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    lvd_tensors_close(ts);
}

static void test_big_endian(void)
{
    pb p;
    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "a");
    pb_tensor(&p, "FloatStorage", "0", 2, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    static const uint8_t be[8] = {0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0}; /* 1.0, -2.0 */
    zip_item items[] = {
        {"a/data.pkl", p.buf, p.len, 0},
        {"a/data/0", be, sizeof be, 0},
        {"a/byteorder", "big", 3, 0},
    };
    const char *path = temp_path("big.pth");
    CHECK(write_zip(path, items, 3) == 0);
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    const float *a = ts ? values(ts, "a", 2) : NULL;
    CHECK(a && a[0] == 1 && a[1] == -2);
    lvd_tensors_close(ts);
}

/* DINOv2's teacher_checkpoint.pth: {"teacher": {...}, "iteration": n}. */
static void test_teacher_key(void)
{
    pb p;
    pb_begin(&p);
    pb_op(&p, '}');
    pb_op(&p, '(');
    pb_str(&p, "iteration");
    pb_int(&p, 12500);
    pb_str(&p, "teacher");
    pb_op(&p, '}');
    pb_str(&p, "backbone.cls_token");
    pb_tensor(&p, "FloatStorage", "0", 6, 1, 1, (int64_t[]){2}, (int64_t[]){2});
    pb_op(&p, 's');
    pb_op(&p, 'u');
    pb_op(&p, '.');
    zip_item items[] = {
        {"t/data.pkl", p.buf, p.len, 0},
        {"t/data/0", storage0, sizeof storage0, 0},
    };
    const char *path = temp_path("teacher.pth");
    CHECK(write_zip(path, items, 2) == 0);
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    const float *v = ts ? values(ts, "backbone.cls_token", 2) : NULL;
    CHECK(v && v[0] == 1 && v[1] == 3); /* offset 1, stride 2 */
    CHECK(ts && lvd_tensors_count(ts) == 1);
    lvd_tensors_close(ts);
}

/* Writes an archive whose data.pkl is p (and storage "0" of 6 floats) and expects failure. */
static void expect_pickle_refused(const char *name, const pb *p, const char *expect)
{
    zip_item items[] = {
        {"x/data.pkl", p->buf, p->len, 0},
        {"x/data/0", storage0, sizeof storage0, 0},
    };
    const char *path = temp_path(name);
    CHECK(write_zip(path, items, 2) == 0);
    EXPECT_OPEN_FAILS(path, expect);
}

static void test_hostile_pickles(void)
{
    pb p;
    /* The classic: os.system("...") via GLOBAL + REDUCE. */
    pb_begin(&p);
    pb_global(&p, "os", "system");
    pb_str(&p, "echo pwned");
    pb_op(&p, 0x85);
    pb_op(&p, 'R');
    pb_op(&p, '.');
    expect_pickle_refused("os_system.pth", &p, "global 'os.system', which is not allowed");

    pb_begin(&p);
    pb_global(&p, "posix", "system");
    pb_op(&p, '.');
    expect_pickle_refused("posix_system.pth", &p, "'posix.system'");

    /* builtins.eval through protocol 4's STACK_GLOBAL. */
    p.len = 0;
    pb_bytes(&p,
             "\x80\x04\x8c\x08"
             "builtins\x8c\x04"
             "eval\x93",
             19);
    pb_op(&p, '.');
    expect_pickle_refused("builtins_eval.pth", &p, "'builtins.eval'");

    pb_begin(&p);
    pb_op(&p, '}');
    pb_op(&p, 0x81); /* NEWOBJ: would instantiate a class */
    pb_op(&p, '.');
    expect_pickle_refused("newobj.pth", &p, "unsupported opcode 0x81");

    pb_begin(&p);
    pb_bytes(&p, "i__builtin__\nobject\n", 20); /* INST */
    expect_pickle_refused("inst.pth", &p, "unsupported opcode 0x69");

    build_checkpoint(&p);
    p.len -= 40;
    expect_pickle_refused("truncated.pth", &p, "truncated");

    pb_begin(&p);
    pb_op(&p, ']');
    pb_op(&p, '.');
    expect_pickle_refused("list.pth", &p, "not a dict");

    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "epoch");
    pb_int(&p, 3);
    pb_op(&p, 's');
    pb_op(&p, '.');
    expect_pickle_refused("no_state.pth", &p, "no state dict");

    pb_begin(&p);
    pb_op(&p, 's');
    expect_pickle_refused("underflow.pth", &p, "stack underflow");

    pb_begin(&p);
    pb_op(&p, 'h');
    pb_op(&p, 9);
    expect_pickle_refused("memo.pth", &p, "memo index not defined");

    /* Views and storages that do not fit. */
    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "FloatStorage", "0", 6, 2, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    expect_pickle_refused("outside.pth", &p, "outside its storage");

    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "FloatStorage", "0", 7, 0, 1, (int64_t[]){7}, (int64_t[]){1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    expect_pickle_refused("size_mismatch.pth", &p, "holds 24 bytes, the pickle says 28");

    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "FloatStorage", "9", 1, 0, 1, (int64_t[]){1}, (int64_t[]){1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    expect_pickle_refused("missing.pth", &p, "lacks entry x/data/9");

    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "ComplexFloatStorage", "0", 1, 0, 1, (int64_t[]){1}, (int64_t[]){1});
    expect_pickle_refused("complex.pth", &p, "'torch.ComplexFloatStorage'");
}

/* A storage of 64 MiB of zeros deflates to ~64 KiB: far beyond what the archive size allows. */
static void test_zip_bomb(void)
{
    const size_t n = (size_t)64 << 20;
    uint8_t *zeros = calloc(1, n);
    pb p;
    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "FloatStorage", "0", (int64_t)(n / 4), 0, 1, (int64_t[]){(int64_t)(n / 4)},
              (int64_t[]){1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    zip_item items[] = {
        {"b/data.pkl", p.buf, p.len, 0},
        {"b/data/0", zeros, n, 1},
    };
    const char *path = temp_path("bomb.pth");
    CHECK(zeros && write_zip(path, items, 2) == 0);
    free(zeros);
    EXPECT_OPEN_FAILS(path, "zip bomb");
}

/* An entry that inflates to fewer bytes than its headers declare is refused. */
static void test_short_entry(void)
{
    static const uint8_t zeros[64] = {0};
    pb p;
    pb_begin(&p);
    pb_op(&p, '}');
    pb_str(&p, "t");
    pb_tensor(&p, "FloatStorage", "0", 32, 0, 1, (int64_t[]){32}, (int64_t[]){1});
    pb_op(&p, 's');
    pb_op(&p, '.');
    zip_item items[] = {
        {"s/data/0", zeros, sizeof zeros, 1},
        {"s/data.pkl", p.buf, p.len, 0},
    };
    const char *path = temp_path("short.pth");
    CHECK(write_zip(path, items, 2) == 0);
    uint8_t buf[4096];
    FILE *fp = fopen(path, "rb");
    size_t len = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp)
        fclose(fp);
    /* Declare 128 uncompressed bytes in the local header (offset 0) and the central record. */
    CHECK(len > 30 && memcmp(buf, "PK\x03\x04", 4) == 0 && buf[22] == 64);
    buf[22] = 128;
    uint8_t *central = memmem(buf, len, "PK\x01\x02", 4);
    CHECK(central && central[24] == 64);
    if (central)
        central[24] = 128;
    write_bytes(path, buf, len);
    EXPECT_OPEN_FAILS(path, "does not decompress to its declared 128 bytes");
}

static void test_bad_archives(void)
{
    const char *path = temp_path("nopkl.pth");
    zip_item items[] = {{"readme.txt", "hello", 5, 0}};
    CHECK(write_zip(path, items, 1) == 0);
    EXPECT_OPEN_FAILS(path, "no <folder>/data.pkl");

    /* A valid archive cut in half: the central directory is gone. */
    pb p;
    build_checkpoint(&p);
    const char *whole = temp_path("whole.pth");
    CHECK(write_checkpoint(whole, &p, "little") == 0);
    FILE *fp = fopen(whole, "rb");
    uint8_t buf[1 << 16];
    size_t len = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp)
        fclose(fp);
    path = temp_path("cut.pth");
    write_bytes(path, buf, len / 2);
    EXPECT_OPEN_FAILS(path, "not a readable zip archive");

    path = temp_path("legacy.pth");
    write_bytes(path, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    EXPECT_OPEN_FAILS(path, "legacy (pre-zip) torch.save format");
    /* The same magic with pickle protocols 4 and 5 (a FRAME after PROTO) and 3. */
    write_bytes(path,
                "\x80\x04\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x8a\x0a\x6c\xfc\x9c\x46\xf9"
                "\x20\x6a\xa8\x50\x19.",
                24);
    EXPECT_OPEN_FAILS(path, "legacy (pre-zip) torch.save format");
    write_bytes(path,
                "\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x8a\x0a\x6c\xfc\x9c\x46\xf9"
                "\x20\x6a\xa8\x50\x19.",
                24);
    EXPECT_OPEN_FAILS(path, "legacy (pre-zip) torch.save format");
    write_bytes(path, "\x80\x03\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    EXPECT_OPEN_FAILS(path, "legacy (pre-zip) torch.save format");
    /* A bare pickle (a data.pkl taken out of its archive), and bytes of no known format. */
    write_bytes(path, "\x80\x02}q\x00.", 6);
    EXPECT_OPEN_FAILS(path, "a pickle file, not a torch.save archive");
    write_bytes(path, "\x10\x00\x00\x00\x00\x00\x00\x00<html>", 14);
    EXPECT_OPEN_FAILS(path, "unknown format");
}

/* The reference checkpoint gives the same 35 tensors as its safetensors twin. */
static void test_reference(void)
{
    const char *ref = check_reference_dir();
    char path[1024];
    lvd_tensors *pth = NULL, *st = NULL;
    lvd_error err;
    snprintf(path, sizeof path, "%s/vits14_d2.weights.pth", ref);
    CHECK_MSG(lvd_tensors_open(path, &pth, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/vits14_d2.weights.safetensors", ref);
    CHECK_MSG(lvd_tensors_open(path, &st, &err) == 0, "%s", err.msg);
    if (!pth || !st) {
        lvd_tensors_close(pth);
        lvd_tensors_close(st);
        return;
    }
    CHECK(lvd_tensors_count(pth) == 35 && lvd_tensors_count(st) == 35);
    /* torch.save stores storages uncompressed and 64-byte aligned: used from the mapping. */
    const lvd_tensor *pos = lvd_tensors_find(pth, "pos_embed");
    CHECK(pos && mapped_from(pos->data, "/vits14_d2.weights.pth"));
    for (size_t i = 0; i < lvd_tensors_count(st); i++) {
        const lvd_tensor *a = lvd_tensors_at(st, i);
        const lvd_tensor *b = lvd_tensors_find(pth, a->name);
        CHECK_MSG(b, "%s missing from the .pth", a->name);
        if (!b)
            continue;
        CHECK_MSG(b->ndim == a->ndim && memcmp(b->shape, a->shape, sizeof a->shape) == 0 &&
                      b->numel == a->numel && b->dtype == LVD_F32,
                  "%s shape", a->name);
        if (b->numel == a->numel)
            CHECK_MSG(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0, "%s data",
                      a->name);
    }
    lvd_tensors_close(pth);
    lvd_tensors_close(st);
}

int main(void)
{
    make_temp_dir();
    test_synthetic();
    test_big_endian();
    test_teacher_key();
    test_hostile_pickles();
    test_zip_bomb();
    test_short_entry();
    test_bad_archives();
    remove_temp_dir();
    if (check_failures) /* report them even where the reference folder is absent (skip) */
        return check_finish();
    test_reference();
    return check_finish();
}
