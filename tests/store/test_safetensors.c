/* safetensors: writer/reader round trip, in-place mapping of F32, dtype conversion, the reference
 * files, and malformed files that must be refused with a clear message. */
#include <math.h>
#include <stdint.h>

#include "store/tensors.h"
#include "tests/store/helpers.h"

/* Writes an 8-byte little-endian header length (`declared`), the header text and data. */
static void write_st(const char *path, uint64_t declared, const char *header, const void *data,
                     size_t data_len)
{
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + data_len);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (data_len)
        memcpy(buf + 8 + hlen, data, data_len);
    write_bytes(path, buf, 8 + hlen + data_len);
    free(buf);
}

static void write_st_plain(const char *path, const char *header, const void *data, size_t len)
{
    write_st(path, strlen(header), header, data, len);
}

static void test_round_trip(void)
{
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 65504};
    float b = 42;
    lvd_tensor in[3] = {
        {.name = "a.weight", .ndim = 2, .shape = {2, 3}, .numel = 6, .data = a},
        {.name = "scalar \"quoted\" \\ name", .ndim = 0, .numel = 1, .data = &b},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .numel = 0, .data = NULL},
    };
    const char *meta[] = {"config", "{\"dim\": 384}", "format", "pt"};
    const char *path = temp_path("rt.safetensors");
    lvd_error err;
    write_bytes(path, "old", 3); /* replaced atomically */
    CHECK_MSG(lvd_safetensors_write(path, in, 3, meta, 2, &err) == 0, "%s", err.msg);
    CHECK(count_temp_files() == 0);

    lvd_tensors *ts = NULL;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    if (!ts)
        return;
    CHECK(lvd_tensors_count(ts) == 3);
    for (size_t i = 0; i < 3; i++) {
        const lvd_tensor *t = lvd_tensors_at(ts, i);
        CHECK(strcmp(t->name, in[i].name) == 0);
        CHECK(lvd_tensors_find(ts, in[i].name) == t);
        CHECK(t->dtype == LVD_F32 && t->ndim == in[i].ndim && t->numel == in[i].numel);
        CHECK(memcmp(t->shape, in[i].shape, sizeof t->shape) == 0);
        if (t->numel)
            CHECK(memcmp(t->data, in[i].data, (size_t)t->numel * sizeof(float)) == 0);
    }
    CHECK(lvd_tensors_at(ts, 3) == NULL);
    CHECK(lvd_tensors_find(ts, "a.weigh") == NULL);
    CHECK(lvd_tensors_find(ts, "zzz") == NULL);
    CHECK(strcmp(lvd_tensors_metadata(ts, "config"), "{\"dim\": 384}") == 0);
    CHECK(strcmp(lvd_tensors_metadata(ts, "format"), "pt") == 0);
    CHECK(lvd_tensors_metadata(ts, "missing") == NULL);
    /* F32 data is used from the mapping, not copied. */
    CHECK(mapped_from(lvd_tensors_find(ts, "a.weight")->data, "/rt.safetensors"));
    lvd_tensors_close(ts);

    FILE *fp = fopen(path, "rb");
    unsigned char len_le[8];
    CHECK(fp && fread(len_le, 1, 8, fp) == 8);
    if (fp)
        fclose(fp);
    CHECK(len_le[0] % 8 == 0); /* header padded to 8 bytes: data area aligned */
}

static void test_writer_refuses(void)
{
    float x = 1;
    lvd_tensor dup[2] = {
        {.name = "x", .ndim = 1, .shape = {1}, .numel = 1, .data = &x},
        {.name = "x", .ndim = 1, .shape = {1}, .numel = 1, .data = &x},
    };
    lvd_tensor bad_shape = {.name = "y", .ndim = 2, .shape = {2, 2}, .numel = 3, .data = &x};
    const char *path = temp_path("refused.safetensors");
    lvd_error err;
    CHECK(lvd_safetensors_write(path, dup, 2, NULL, 0, &err) != 0);
    CHECK_MSG(strstr(err.msg, "appears twice") && strstr(err.msg, path), "%s", err.msg);
    CHECK(lvd_safetensors_write(path, &bad_shape, 1, NULL, 0, &err) != 0);
    CHECK_MSG(strstr(err.msg, "shape"), "%s", err.msg);
    CHECK(!file_exists(path));
    CHECK(lvd_safetensors_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, 0, &err) != 0);
    CHECK_MSG(strstr(err.msg, "/nonexistent-dir/x.safetensors"), "%s", err.msg);
}

/* Every stored dtype converts to the right float32 values; misaligned F32 is copied. */
static void test_dtypes(void)
{
    /* Leading 'x' byte makes the header length odd: F32 data at an odd address. */
    const char *header = "{\"f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                         "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                         "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[12,20]},"
                         "\"u8\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[20,22]},"
                         "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[22,24]},"
                         "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[24,25]},"
                         "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[25,29]},"
                         "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[29,37]},"
                         "\"f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[37,41]}} ";
    unsigned char data[41] = {
        0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c, /* f16: 1, -2, 2^-24, inf */
        0x80, 0x3f, 0x40, 0xc0,                         /* bf16: 1, -3 */
        0,    0,    0,    0,    0,    0,    0x04, 0x40, /* f64: 2.5 */
        200,  7,                                        /* u8 */
        0,    3,                                        /* bool */
        0xfe,                                           /* i8: -2 */
        0xff, 0xff, 0xff, 0xff,                         /* i32: -1 */
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* i64: 2^32 */
        0x00, 0x00, 0x80, 0x3f,                         /* f32: 1 */
    };
    const char *path = temp_path("dtypes.safetensors");
    write_st_plain(path, header, data, sizeof data);
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    if (!ts)
        return;
    const float *f16 = lvd_tensors_find(ts, "f16")->data;
    CHECK(f16[0] == 1 && f16[1] == -2 && f16[2] == ldexpf(1, -24) && isinf(f16[3]));
    CHECK(lvd_tensors_find(ts, "f16")->dtype == LVD_F16);
    const float *bf16 = lvd_tensors_find(ts, "bf16")->data;
    CHECK(bf16[0] == 1 && bf16[1] == -3);
    CHECK(lvd_tensors_find(ts, "f64")->data[0] == 2.5f);
    const float *u8 = lvd_tensors_find(ts, "u8")->data;
    CHECK(u8[0] == 200 && u8[1] == 7);
    const float *bl = lvd_tensors_find(ts, "bool")->data;
    CHECK(bl[0] == 0 && bl[1] == 1);
    CHECK(lvd_tensors_find(ts, "i8")->data[0] == -2);
    CHECK(lvd_tensors_find(ts, "i32")->data[0] == -1);
    CHECK(lvd_tensors_find(ts, "i64")->data[0] == 4294967296.0f);
    const lvd_tensor *f32 = lvd_tensors_find(ts, "f32");
    CHECK(f32->data[0] == 1 && ((uintptr_t)f32->data % 4) == 0);
    lvd_tensors_close(ts);
}

static void test_malformed(void)
{
    float four[4] = {1, 2, 3, 4};
    const char *ok_entry = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    struct {
        const char *name, *header, *expect;
        size_t data_len;
    } cases[] = {
        {"bad_json", "{\"t\":{\"dtype\":\"F32\",", "not valid JSON", 16},
        {"not_object", "[1,2]", "not a JSON object", 16},
        {"unknown_dtype", "{\"t\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}",
         "unknown dtype \"Q7\"", 16},
        {"no_dtype", "{\"t\":{\"shape\":[4],\"data_offsets\":[0,16]}}", "lacks \"dtype\"", 16},
        {"no_shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", "lacks \"shape\"", 16},
        {"no_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4]}}", "lacks \"data_offsets\"", 16},
        {"offsets_outside", "{\"t\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}",
         "outside the data area", 16},
        {"offsets_reversed", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}",
         "outside the data area", 16},
        {"wrong_size", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
         "does not match", 16},
        {"overflow",
         "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
         "\"data_offsets\":[0,16]}}",
         "overflows", 16},
        {"overflow_bytes",
         "{\"t\":{\"dtype\":\"I64\",\"shape\":[2147483648,2147483648],"
         "\"data_offsets\":[0,0]}}",
         "does not match", 16},
        {"negative_dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
         "not a size", 16},
        {"fraction", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0.5,16]}}",
         "data_offsets", 16},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         "overlap", 16},
        {"duplicate",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         "appears twice", 16},
        {"too_many_dims",
         "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],"
         "\"data_offsets\":[0,16]}}",
         "dimensions", 16},
        {"bad_metadata", "{\"__metadata__\":{\"k\":3}}", "metadata \"k\" is not a string", 0},
        {"trailing", "{} x", "not valid JSON", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = temp_path(cases[i].name);
        write_st_plain(path, cases[i].header, four, cases[i].data_len);
        EXPECT_OPEN_FAILS(path, cases[i].expect);
    }

    const char *path = temp_path("header_beyond");
    write_st(path, 1000, ok_entry, four, sizeof four);
    EXPECT_OPEN_FAILS(path, "exceeds the file");
    path = temp_path("header_huge");
    write_st(path, UINT64_MAX, ok_entry, four, sizeof four);
    EXPECT_OPEN_FAILS(path, "exceeds the file");
    path = temp_path("short");
    write_bytes(path, "\x10\0\0", 3);
    EXPECT_OPEN_FAILS(path, "too short");
    path = temp_path("empty");
    write_bytes(path, "", 0);
    EXPECT_OPEN_FAILS(path, "too short");
    EXPECT_OPEN_FAILS(temp_path("does_not_exist"), "cannot open");

    /* A valid file truncated anywhere inside its data is refused. */
    path = temp_path("truncated");
    write_st_plain(path, ok_entry, four, 12);
    EXPECT_OPEN_FAILS(path, "outside the data area");
    write_st_plain(path, ok_entry, four, sizeof four); /* and the complete one opens */
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    lvd_tensors_close(ts);
}

/* Every reference file opens; the two layouts of the ViT-S weights hold the same data. */
static void test_reference(void)
{
    const char *ref = check_reference_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/vits14_d2.weights.safetensors", ref);
    lvd_tensors *w = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &w, &err) == 0, "%s", err.msg);
    if (!w)
        return;
    CHECK(lvd_tensors_count(w) == 35);
    const lvd_tensor *pos = lvd_tensors_find(w, "pos_embed");
    CHECK(pos && pos->ndim == 3 && pos->shape[0] == 1 && pos->shape[1] == 1370 &&
          pos->shape[2] == 384 && pos->dtype == LVD_F32);
    CHECK(pos && mapped_from(pos->data, "/vits14_d2.weights.safetensors"));
    const lvd_tensor *qkv = lvd_tensors_find(w, "blocks.0.attn.qkv.weight");
    CHECK(qkv && qkv->ndim == 2 && qkv->shape[0] == 1152 && qkv->shape[1] == 384);

    snprintf(path, sizeof path, "%s/vits14_d2.hf.safetensors", ref);
    lvd_tensors *hf = NULL;
    CHECK_MSG(lvd_tensors_open(path, &hf, &err) == 0, "%s", err.msg);
    const lvd_tensor *q =
        hf ? lvd_tensors_find(hf, "encoder.layer.0.attention.attention.query.weight") : NULL;
    CHECK(q && q->numel == 384 * 384);
    if (q && qkv)
        CHECK(memcmp(q->data, qkv->data, (size_t)q->numel * sizeof(float)) == 0);
    lvd_tensors_close(hf);
    lvd_tensors_close(w);
}

int main(void)
{
    make_temp_dir();
    test_round_trip();
    test_writer_refuses();
    test_dtypes();
    test_malformed();
    remove_temp_dir();
    if (check_failures) /* report them even where the reference folder is absent (skip) */
        return check_finish();
    test_reference();
    return check_finish();
}
