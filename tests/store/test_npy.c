/* .npy: writer and reader round trip (1-D and 2-D), NumPy-written headers, the streaming
 * appender (finish, abort, and a process that dies before finishing) and malformed files. */
#include <stdint.h>
#include <sys/wait.h>

#include "store/npy.h"
#include "store/tensors.h"
#include "tests/store/helpers.h"

/* Opens path and checks it holds one float32 tensor "array" of this shape and data. */
static void expect_array(const char *path, int ndim, const int64_t *shape, const float *data)
{
    lvd_tensors *ts = NULL;
    lvd_error err;
    CHECK_MSG(lvd_tensors_open(path, &ts, &err) == 0, "%s", err.msg);
    if (!ts)
        return;
    const lvd_tensor *t = lvd_tensors_find(ts, "array");
    CHECK(lvd_tensors_count(ts) == 1 && t && t->ndim == ndim && t->dtype == LVD_F32);
    int64_t numel = 1;
    for (int i = 0; t && i < ndim; i++) {
        CHECK_MSG(t->shape[i] == shape[i], "%s: dim %d is %lld", path, i, (long long)t->shape[i]);
        numel *= shape[i];
    }
    CHECK(t && t->numel == numel);
    if (t && t->numel == numel && numel > 0)
        CHECK(memcmp(t->data, data, (size_t)numel * sizeof *data) == 0);
    lvd_tensors_close(ts);
}

static void test_write_read(void)
{
    float m[12];
    for (int i = 0; i < 12; i++)
        m[i] = (float)i * 0.25f - 1;
    lvd_error err;
    const char *path = temp_path("m.npy");
    CHECK_MSG(lvd_npy_write(path, m, 2, (int64_t[]){3, 4}, &err) == 0, "%s", err.msg);
    expect_array(path, 2, (int64_t[]){3, 4}, m);
    lvd_tensors *ts = NULL;
    CHECK(lvd_tensors_open(path, &ts, &err) == 0);
    CHECK(ts && mapped_from(lvd_tensors_at(ts, 0)->data, "/m.npy")); /* read in place */
    CHECK(ts && lvd_tensors_metadata(ts, "descr") == NULL);
    lvd_tensors_close(ts);

    FILE *fp = fopen(path, "rb");
    char head[129] = {0};
    CHECK(fp && fread(head, 1, 128, fp) == 128);
    if (fp)
        fclose(fp);
    CHECK(strstr(head + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"));
    CHECK(head[8] + 10 == 128 && head[127] == '\n'); /* header padded to 64-byte multiple */

    path = temp_path("v.npy");
    CHECK_MSG(lvd_npy_write(path, m, 1, (int64_t[]){5}, &err) == 0, "%s", err.msg);
    expect_array(path, 1, (int64_t[]){5}, m);
    path = temp_path("empty.npy");
    CHECK_MSG(lvd_npy_write(path, NULL, 2, (int64_t[]){0, 7}, &err) == 0, "%s", err.msg);
    expect_array(path, 2, (int64_t[]){0, 7}, NULL);
    CHECK(count_temp_files() == 0);

    CHECK(lvd_npy_write(temp_path("bad.npy"), m, 0, NULL, &err) != 0);
    CHECK(!file_exists(temp_path("bad.npy")));
}

/* Writes magic, version, a header dict (padded as NumPy does) and data. */
static void write_npy(const char *path, int major, const char *dict, const void *data, size_t n)
{
    size_t prefix = major == 1 ? 10 : 12;
    size_t total = (prefix + strlen(dict) + 1 + 63) / 64 * 64;
    unsigned char *buf = calloc(1, total + n);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    size_t hlen = total - prefix;
    buf[8] = (unsigned char)hlen;
    buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + prefix, ' ', hlen);
    memcpy(buf + prefix, dict, strlen(dict));
    buf[total - 1] = '\n';
    if (n)
        memcpy(buf + total, data, n);
    write_bytes(path, buf, total + n);
    free(buf);
}

static void test_numpy_headers(void)
{
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const char *path = temp_path("np1.npy");
    write_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", v, 24);
    expect_array(path, 1, (int64_t[]){6}, v);
    path = temp_path("np2.npy");
    write_npy(path, 2, "{\"descr\": \"<f4\", \"shape\": (2, 3), \"fortran_order\": False}", v, 24);
    expect_array(path, 2, (int64_t[]){2, 3}, v);
    path = temp_path("np0.npy");
    write_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", v, 4);
    expect_array(path, 0, NULL, v);

    struct {
        const char *name, *dict, *expect;
        size_t n;
    } bad[] = {
        {"f8", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
         "'<f8' is not supported", 24},
        {"be", "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", "'>f4'", 24},
        {"fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "Fortran", 24},
        {"short", "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }", "shape needs", 24},
        {"long", "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", "shape needs", 24},
        {"no_shape", "{'descr': '<f4', 'fortran_order': False, }", "lacks", 24},
        {"extra_key", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}",
         "unknown entry 'x'", 24},
        {"syntax", "{'descr': '<f4' 'fortran_order': False}", "malformed", 24},
        {"not_dict", "['<f4']", "not a dict", 24},
        {"neg", "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", "'shape'", 24},
        {"huge", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
         "'shape'", 24},
        {"overflow",
         "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
         "overflows", 24},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = temp_path(bad[i].name);
        write_npy(path, 1, bad[i].dict, v, bad[i].n);
        EXPECT_OPEN_FAILS(path, bad[i].expect);
    }
    path = temp_path("version");
    write_npy(path, 9, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", v, 24);
    EXPECT_OPEN_FAILS(path, "unsupported .npy version 9");
    path = temp_path("cut");
    write_bytes(path, "\x93NUMPY\x01\x00\x76\x00{'descr'", 17);
    EXPECT_OPEN_FAILS(path, "exceeds the file");
    path = temp_path("tiny");
    write_bytes(path, "\x93NUMPY\x02\x00\x01\x00", 10);
    EXPECT_OPEN_FAILS(path, "truncated .npy header");
}

static void test_appender(void)
{
    char path[512]; /* temp_path's buffer is reused below */
    snprintf(path, sizeof path, "%s", temp_path("emb.npy"));
    enum { COLS = 3, ROWS = 10000 };
    float *all = malloc(sizeof(float) * COLS * ROWS);
    for (int i = 0; i < COLS * ROWS; i++)
        all[i] = (float)i;
    lvd_npy_appender *a = NULL;
    lvd_error err;
    CHECK_MSG(lvd_npy_appender_open(path, COLS, &a, &err) == 0, "%s", err.msg);
    if (!a) {
        free(all);
        return;
    }
    int64_t done = 0;
    for (int64_t chunk = 0; done < ROWS; chunk = (chunk * 7 + 3) % 500) {
        int64_t n = chunk < ROWS - done ? chunk : ROWS - done;
        CHECK_MSG(lvd_npy_append(a, all + done * COLS, n, &err) == 0, "%s", err.msg);
        done += n;
        CHECK(lvd_npy_appender_rows(a) == done);
    }
    CHECK(!file_exists(path)); /* nothing published before finish */
    CHECK(count_temp_files() == 1);
    CHECK(lvd_npy_append(a, all, -1, &err) != 0);
    CHECK_MSG(lvd_npy_appender_finish(a, &err) == 0, "%s", err.msg);
    CHECK(count_temp_files() == 0);
    expect_array(path, 2, (int64_t[]){ROWS, COLS}, all);

    /* Zero rows is a valid (0, cols) array. */
    const char *none = temp_path("none.npy");
    CHECK(lvd_npy_appender_open(none, 5, &a, &err) == 0);
    CHECK(a && lvd_npy_appender_finish(a, &err) == 0);
    expect_array(none, 2, (int64_t[]){0, 5}, NULL);

    /* Abandoned: no file, no temporary file; an existing file is left untouched. */
    CHECK(lvd_npy_appender_open(path, COLS, &a, &err) == 0);
    CHECK(a && lvd_npy_append(a, all, 4, &err) == 0);
    lvd_npy_appender_abort(a);
    lvd_npy_appender_abort(NULL);
    CHECK(count_temp_files() == 0);
    expect_array(path, 2, (int64_t[]){ROWS, COLS}, all);

    CHECK(lvd_npy_appender_open(temp_path("zero.npy"), 0, &a, &err) != 0 && a == NULL);
    CHECK(strstr(err.msg, "row width"));
    free(all);
}

/* A process that dies between appends leaves no file at the final path. */
static void test_appender_crash(void)
{
    const char *path = temp_path("crash.npy");
    pid_t pid = fork();
    if (pid == 0) {
        lvd_npy_appender *a = NULL;
        lvd_error err;
        float row[4] = {1, 2, 3, 4};
        if (lvd_npy_appender_open(path, 4, &a, &err) != 0 || lvd_npy_append(a, row, 1, &err))
            _exit(2);
        _exit(0); /* dies without finish */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!file_exists(path));
    CHECK(count_temp_files() == 1); /* only the temporary file remains */
}

int main(void)
{
    make_temp_dir();
    test_write_read();
    test_numpy_headers();
    test_appender();
    test_appender_crash();
    remove_temp_dir();
    return check_finish();
}
