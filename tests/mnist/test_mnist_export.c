/* lvd-idx-export: the selection, names and pixels on the real Fashion-MNIST files (skipped when
 * /usr/share/datasets/fashion-mnist is absent), and one clear error per kind of broken IDX file
 * (generated here, plain and gzipped). Arg: the lvd-idx-export executable. */
#include <sys/stat.h>
#include <zlib.h>

#include "curate/mnist/mnist_idx.h"
#include "curate/mnist/mnist_export.h"
#include "image/image.h"
#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define SIDE   28

/* The decompressed file at path, read once with zlib (independent of curate/mnist/mnist_idx.c); the last
 * file read stays cached. A NULL path frees the cache. */
static const uint8_t *gz_whole(const char *path, size_t *len)
{
    static char *cached;
    static uint8_t *data;
    static size_t size;
    *len = 0;
    if (path && cached && strcmp(cached, path) == 0) {
        *len = size;
        return data;
    }
    free(cached);
    free(data);
    cached = NULL;
    data = NULL;
    size = 0;
    if (!path)
        return NULL;
    cached = strdup(path);
    gzFile f = gzopen(path, "rb");
    CHECK(f != NULL);
    size_t cap = 0;
    int n = 1;
    while (f && n > 0) {
        if (size + (1 << 20) > cap) {
            cap = 2 * cap + (1 << 20);
            data = realloc(data, cap);
        }
        n = gzread(f, data + size, 1 << 20);
        size += n > 0 ? (size_t)n : 0;
    }
    if (f)
        gzclose(f);
    *len = size;
    return data;
}

/* Copies len bytes at offset off of the decompressed file. */
static void gz_bytes(const char *path, size_t off, uint8_t *buf, size_t len)
{
    size_t size;
    const uint8_t *data = gz_whole(path, &size);
    CHECK(off + len <= size);
    if (off + len <= size)
        memcpy(buf, data + off, len);
}

static void check_file(const char *out, int label, uint32_t index, const char *images)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%05u.png", out, lvd_fashion_mnist_class(label), index);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "%s missing", path);
    if (!f)
        return;
    static uint8_t buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    lvd_image img;
    lvd_error err;
    CHECK_MSG(lvd_image_decode(buf, len, NULL, &img, &err) == 0, "%s: %s", path, err.msg);
    CHECK(img.width == SIDE && img.height == SIDE);
    uint8_t want[SIDE * SIDE];
    gz_bytes(images, 16 + (size_t)index * SIDE * SIDE, want, sizeof want);
    int same = img.rgb != NULL;
    for (int i = 0; same && i < SIDE * SIDE; i++)
        same = img.rgb[3 * i] == want[i] && img.rgb[3 * i + 1] == want[i] &&
               img.rgb[3 * i + 2] == want[i];
    CHECK_MSG(same, "%s: pixels differ from record %u", path, index);
    lvd_image_free(&img);
}

/* Exports with o and checks every kept file against a selection recomputed from the labels. */
static void check_selection(const lvd_idx_export_opts *o, uint32_t records)
{
    uint8_t *labels = malloc(records);
    gz_bytes(o->labels, 8, labels, records);
    lvd_idx_export_counts n;
    lvd_error err;
    CHECK_MSG(lvd_idx_export(o, &n, &err) == 0, "%s", err.msg);
    CHECK(n.records == records);
    uint32_t kept = 0, per[10] = {0};
    for (uint32_t i = o->offset; i < records && (!o->limit || kept < o->limit); i++) {
        int c = labels[i];
        if ((o->classes && !(o->classes & (1u << c))) || (o->per_class && per[c] >= o->per_class))
            continue;
        check_file(o->out, c, i, o->images);
        per[c]++;
        kept++;
    }
    CHECK_MSG(n.kept == kept, "kept %u, expected %u", n.kept, kept);
    for (int c = 0; c < 10; c++)
        CHECK(n.per_class[c] == per[c]);
    free(labels);
}

static void test_real(void)
{
    struct stat st;
    if (stat(FMNIST, &st) != 0) {
        printf("SKIP part: %s absent (package dataset-fashion-mnist)\n", FMNIST);
        return;
    }
    lvd_idx_export_opts o = {.images = FMNIST "/train-images-idx3-ubyte.gz",
                             .labels = FMNIST "/train-labels-idx1-ubyte.gz",
                             .out = "pool",
                             .offset = 100,
                             .limit = 40};
    check_selection(&o, 60000);
    /* A rerun leaves identical files untouched. */
    char first[64];
    snprintf(first, sizeof first, "pool/%s", "ankle-boot");
    struct stat before, after;
    CHECK(stat(first, &before) == 0);
    lvd_idx_export_counts n;
    lvd_error err;
    CHECK(lvd_idx_export(&o, &n, &err) == 0 && n.kept == 40 && n.written == 0);
    CHECK(stat(first, &after) == 0 && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);

    lvd_idx_export_opts seed = {.images = o.images,
                                .labels = o.labels,
                                .out = "seed",
                                .offset = 30000,
                                .per_class = 5,
                                .classes = 1u << 5 | 1u << 8};
    check_selection(&seed, 60000);
    lvd_idx_export_opts eval = {.images = FMNIST "/t10k-images-idx3-ubyte.gz",
                                .labels = FMNIST "/t10k-labels-idx1-ubyte.gz",
                                .out = "eval",
                                .limit = 25};
    check_selection(&eval, 10000);
    /* The first test labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser, shirt. */
    CHECK(access("eval/ankle-boot/00000.png", F_OK) == 0);
    CHECK(access("eval/pullover/00001.png", F_OK) == 0);
    CHECK(access("eval/trouser/00002.png", F_OK) == 0);
    CHECK(access("eval/shirt/00004.png", F_OK) == 0);
}

/* Writes an IDX file: header (magic type, dims) then body, gzipped when gz. */
static void write_idx(const char *path, int gz, int ndims, const uint32_t *dims,
                      const uint8_t *body, size_t len)
{
    uint8_t head[4 + 4 * LVD_IDX_MAX_DIMS] = {0, 0, 0x08, (uint8_t)ndims};
    for (int d = 0; d < ndims; d++)
        for (int b = 0; b < 4; b++)
            head[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    size_t head_len = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f && gzwrite(f, head, (unsigned)head_len) == (int)head_len);
        CHECK(len == 0 || gzwrite(f, body, (unsigned)len) == (int)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(head, 1, head_len, f) == head_len);
        CHECK(len == 0 || fwrite(body, 1, len, f) == len);
        fclose(f);
    }
}

static void truncate_file(const char *path, long keep)
{
    CHECK(truncate(path, keep) == 0);
}

/* Exports images/labels and checks that it fails with a message holding both want strings. */
static void expect_fail(const char *images, const char *labels, const char *want1,
                        const char *want2)
{
    lvd_idx_export_opts o = {.images = images, .labels = labels, .out = "broken"};
    lvd_idx_export_counts n;
    lvd_error err;
    lvd_error_clear(&err);
    CHECK_MSG(lvd_idx_export(&o, &n, &err) == -1, "%s %s: no error", images, labels);
    CHECK_MSG(strstr(err.msg, want1) && strstr(err.msg, want2), "wanted '%s' and '%s' in '%s'",
              want1, want2, err.msg);
}

static void test_broken(const char *cli)
{
    enum { N = 12 };
    uint8_t labels[N], pixels[N * 4 * 4];
    for (int i = 0; i < N; i++)
        labels[i] = (uint8_t)(i % 10);
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(i * 7);
    uint32_t ldims[1] = {N}, idims[3] = {N, 4, 4};
    for (int gz = 0; gz < 2; gz++) {
        const char *img = gz ? "img.gz" : "img.idx", *lab = gz ? "lab.gz" : "lab.idx";
        write_idx(lab, gz, 1, ldims, labels, N);
        write_idx(img, gz, 3, idims, pixels, sizeof pixels);
        lvd_idx_export_opts o = {.images = img, .labels = lab, .out = "deep/er/small"};
        lvd_idx_export_counts n;
        lvd_error err;
        CHECK_MSG(lvd_idx_export(&o, &n, &err) == 0, "%s", err.msg);
        CHECK(n.kept == N && n.per_class[0] == 2 && n.per_class[9] == 1);
        expect_fail(lab, lab, lab, "not an image file (1 dimensions, expected 3)");
        expect_fail(img, img, img, "not a label file (3 dimensions, expected 1)");
    }
    /* Plain file cut inside the pixels: record 11 (16 bytes each) is short. */
    truncate_file("img.idx", 16 + 11 * 16 + 5);
    expect_fail("img.idx", "lab.idx", "img.idx: truncated: record 11 ends after 5 of 16 bytes", "");
    truncate_file("img.idx", 10);
    expect_fail("img.idx", "lab.idx", "img.idx: truncated: the header ends after", "");
    /* Gzip stream cut short, and one with a damaged deflate body. */
    struct stat st;
    CHECK(stat("img.gz", &st) == 0);
    truncate_file("img.gz", st.st_size - 12);
    expect_fail("img.gz", "lab.gz", "img.gz: truncated", "record 11");
    write_idx("img.gz", 1, 3, idims, pixels, sizeof pixels);
    FILE *f = fopen("img.gz", "r+b");
    CHECK(f && fseek(f, 14, SEEK_SET) == 0 && fwrite("\xff\xff\xff\xff\xff\xff", 1, 6, f) == 6);
    fclose(f);
    expect_fail("img.gz", "lab.gz", "img.gz: truncated or corrupt data", "");
    /* Wrong magic, wrong type, count mismatch, bad label, trailing bytes. */
    pt_write("text.idx", "hello, this is not IDX data\n");
    expect_fail("img.idx", "text.idx", "text.idx: not an IDX file (bad magic 68656c6c)", "");
    uint8_t typed[8] = {0, 0, 0x0d, 1, 0, 0, 0, 0};
    f = fopen("float.idx", "wb");
    CHECK(f && fwrite(typed, 1, 8, f) == 8);
    fclose(f);
    expect_fail("img.idx", "float.idx", "float.idx: unsupported IDX element type 0x0d", "");
    write_idx("img.idx", 0, 3, idims, pixels, sizeof pixels);
    uint32_t fewer[1] = {N - 1};
    write_idx("lab11.idx", 0, 1, fewer, labels, N - 1);
    expect_fail("img.idx", "lab11.idx", "img.idx: 12 images but lab11.idx has 11 labels", "");
    labels[3] = 10;
    write_idx("lab10.idx", 0, 1, ldims, labels, N);
    expect_fail("img.idx", "lab10.idx", "lab10.idx: record 3 has label 10, outside 0..9", "");
    labels[3] = 3;
    uint8_t longer[N + 1] = {0};
    write_idx("lablong.idx", 0, 1, ldims, longer, N + 1);
    expect_fail("img.idx", "lablong.idx", "lablong.idx: unexpected data after the last of 12", "");

    /* The executable: one error line, exit 1; bad arguments exit 2. */
    char *bad[] = {(char *)cli, "--images", "img.idx", "--labels",
                   "lab10.idx", "--out",    "cli",     NULL};
    CHECK(pt_run(bad) == 1);
    CHECK(strcmp(pt_output, "lvd-idx-export: lab10.idx: record 3 has label 10, outside 0..9\n") ==
          0);
    char *ok[] = {(char *)cli, "--images",  "img.idx", "--labels", "lab.idx",    "--out",
                  "cli",       "--classes", "0,coat",  "--db",     "ignored.db", NULL};
    CHECK(pt_run(ok) == 0);
    CHECK(strstr(pt_output, "3 of 12 records kept into cli (3 written, 0 unchanged): "
                            "tshirt-top 2 coat 1\n") != NULL);
    char *bad_class[] = {(char *)cli, "--images", "x",         "--labels", "y",
                         "--out",     "z",        "--classes", "hat",      NULL};
    CHECK(pt_run(bad_class) == 2);
    CHECK(strstr(pt_output, "unknown class 'hat'") != NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_idx_export LVD-IDX-EXPORT\n");
        return 1;
    }
    char *cli = pt_abs(argv[1]);
    pt_scratch("idx");
    test_real();
    test_broken(cli);
    free(cli);
    size_t len;
    gz_whole(NULL, &len);
    return check_finish();
}
