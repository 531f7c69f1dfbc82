/* lvd-crop-export on generated photos: count, names and sizes of the crops, gray output,
 * determinism for a seed (and another seed giving other crops), reruns writing nothing, a crop
 * equal to the resized window of its photo, a corrupt photo reported and skipped, and a folder
 * with no readable photo failing. Arg: the lvd-crop-export executable. */
#include <sys/stat.h>

#include "curate/crops/crop_export.h"
#include "curate/mnist/mnist_png.h"
#include "image/image.h"
#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

#define SIDE 12
#define PER  5

/* A gray photo with structure everywhere (so that crops at other places differ). */
static void make_gray(uint8_t *px, int w, int h, int salt)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            px[y * w + x] = (uint8_t)((x * 7 + y * 13 + ((x * y) ^ salt)) & 0xff);
}

static void write_bytes(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len);
    if (f)
        fclose(f);
}

static void write_png_photo(const char *path, int w, int h, int salt)
{
    uint8_t *px = malloc((size_t)w * h), *png;
    size_t len;
    lvd_error err;
    make_gray(px, w, h, salt);
    CHECK(lvd_png_encode_gray(px, w, h, &png, &len, &err) == 0);
    write_bytes(path, png, len);
    free(png);
    free(px);
}

static void write_jpeg_photo(const char *path, int w, int h)
{
    lvd_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int i = 0; i < w * h * 3; i++)
        img.rgb[i] = (uint8_t)(i * 31 % 251);
    uint8_t *jpg;
    size_t len;
    lvd_error err;
    CHECK(lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err) == 0);
    write_bytes(path, jpg, len);
    free(jpg);
    lvd_image_free(&img);
}

/* The decoded crop at path (NULL when missing or broken); *bytes its file. */
static int read_crop(const char *path, lvd_image *img, char *bytes, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(bytes, 1, cap, f);
    fclose(f);
    lvd_error err;
    return lvd_image_decode((const uint8_t *)bytes, *len, NULL, img, &err);
}

static const char *const photos[] = {"a/p1.png", "a/p2.jpg", "b/p3.png"};

/* Checks the PER crops of every good photo in out: present, SIDE x SIDE, gray; copies their
 * bytes into files[] (when files is set) or compares them (when compare is set). */
static void check_out(const char *out, char files[][4096], size_t *lens, int compare, int *differ)
{
    int k = 0;
    for (size_t p = 0; p < sizeof photos / sizeof *photos; p++)
        for (int i = 0; i < PER; i++, k++) {
            char path[512], bytes[4096];
            snprintf(path, sizeof path, "%s/%s-%03d.png", out, photos[p], i);
            lvd_image img = {0};
            size_t len = 0;
            CHECK_MSG(read_crop(path, &img, bytes, sizeof bytes, &len) == 0, "%s", path);
            CHECK_MSG(img.width == SIDE && img.height == SIDE, "%s: %dx%d", path, img.width,
                      img.height);
            int gray = img.rgb != NULL;
            for (int j = 0; gray && j < img.width * img.height; j++)
                gray = img.rgb[3 * j] == img.rgb[3 * j + 1] && img.rgb[3 * j] == img.rgb[3 * j + 2];
            CHECK_MSG(gray, "%s: not gray", path);
            lvd_image_free(&img);
            if (!compare) {
                memcpy(files[k], bytes, len);
                lens[k] = len;
            } else if (lens[k] != len || memcmp(files[k], bytes, len) != 0) {
                (*differ)++;
            }
        }
}

static int run_export(const char *exe, const char *photos_dir, const char *out, const char *seed,
                      const char *min, const char *max)
{
    char *argv[] = {(char *)exe,   "--photos",   (char *)photos_dir, "--out",      (char *)out,
                    "--per-photo", "5",          "--side",           "12",         "--seed",
                    (char *)seed,  "--min-frac", (char *)min,        "--max-frac", (char *)max,
                    NULL};
    return pt_run(argv);
}

/* With min = max = 1 a crop is a full-height window of the photo (200 high, 260 wide): it must
 * equal that window resized and converted to gray, for some x0 in 0..60. */
static void test_full_window(void)
{
    mkdir("w", 0755);
    write_png_photo("w/wide.png", 260, 200, 5);
    lvd_crop_export_opts o = {.photos = "w",
                              .out = "wout",
                              .per_photo = 3,
                              .side = SIDE,
                              .min_frac = 1,
                              .max_frac = 1,
                              .seed = 3};
    lvd_crop_export_counts n;
    lvd_error err;
    CHECK_MSG(lvd_crop_export(&o, &n, &err) == 0, "%s", err.msg);
    CHECK(n.photos == 1 && n.cropped == 1 && n.crops == 3 && n.skipped == 0);
    uint8_t *px = malloc(260 * 200);
    make_gray(px, 260, 200, 5);
    lvd_image photo = {260, 200, malloc(260 * 200 * 3)};
    for (int i = 0; i < 260 * 200; i++)
        memset(photo.rgb + 3 * i, px[i], 3);
    for (int i = 0; i < 3; i++) {
        char path[64], bytes[4096];
        snprintf(path, sizeof path, "wout/wide.png-%03d.png", i);
        lvd_image crop = {0};
        size_t len;
        CHECK(read_crop(path, &crop, bytes, sizeof bytes, &len) == 0);
        int found = 0;
        for (int x0 = 0; crop.rgb && x0 <= 60 && !found; x0++) {
            lvd_image win = {200, 200, malloc(200 * 200 * 3)}, small = {0};
            for (int y = 0; y < 200; y++)
                memcpy(win.rgb + y * 200 * 3, photo.rgb + (y * 260 + x0) * 3, 200 * 3);
            CHECK(lvd_image_resize(&win, SIDE, SIDE, &small, &err) == 0);
            found = small.rgb && memcmp(small.rgb, crop.rgb, SIDE * SIDE * 3) == 0;
            lvd_image_free(&win);
            lvd_image_free(&small);
        }
        CHECK_MSG(found, "%s: not a resized full-height window of the photo", path);
        lvd_image_free(&crop);
    }
    lvd_image_free(&photo);
    free(px);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_crop_export LVD-CROP-EXPORT\n");
        return 2;
    }
    char *exe = pt_abs(argv[1]);
    pt_scratch("crops");
    mkdir("photos", 0755);
    mkdir("photos/a", 0755);
    mkdir("photos/b", 0755);
    write_png_photo("photos/a/p1.png", 300, 200, 1);
    write_jpeg_photo("photos/a/p2.jpg", 180, 240);
    write_png_photo("photos/b/p3.png", 64, 64, 2);
    /* A JPEG signature followed by garbage: it sniffs as JPEG and fails to decode. */
    const uint8_t broken[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8};
    write_bytes("photos/b/broken.jpg", broken, sizeof broken);

    static char files[3 * PER][4096];
    size_t lens[3 * PER];
    int differ = 0;
    CHECK_MSG(run_export(exe, "photos", "out1", "7", "0.1", "0.5") == 0, "%s", pt_output);
    CHECK_MSG(strstr(pt_output, "photos/b/broken.jpg: skipped: ") != NULL, "%s", pt_output);
    CHECK_MSG(strstr(pt_output, "15 crops of 3 photos into out1 (15 written, 0 unchanged; 1 of 4 "
                                "files skipped)") != NULL,
              "%s", pt_output);
    struct stat st;
    CHECK(stat("out1/b/broken.jpg-000.png", &st) != 0);
    CHECK(stat("out1/a/p1.png-005.png", &st) != 0);
    check_out("out1", files, lens, 0, &differ);

    /* The same seed elsewhere: the same bytes; a rerun in place writes nothing. */
    CHECK(run_export(exe, "photos", "out2", "7", "0.1", "0.5") == 0);
    check_out("out2", files, lens, 1, &differ);
    CHECK_MSG(differ == 0, "%d crops differ for the same seed", differ);
    CHECK(run_export(exe, "photos", "out1", "7", "0.1", "0.5") == 0);
    CHECK_MSG(strstr(pt_output, "(0 written, 15 unchanged;") != NULL, "%s", pt_output);

    /* Another seed: other crops (all but a chance few). */
    CHECK(run_export(exe, "photos", "out3", "8", "0.1", "0.5") == 0);
    check_out("out3", files, lens, 1, &differ);
    CHECK_MSG(differ >= 3 * PER - 2, "only %d of %d crops differ for another seed", differ,
              3 * PER);

    test_full_window();

    /* Bad fractions; a folder of unreadable photos only. */
    CHECK(run_export(exe, "photos", "out4", "7", "0.6", "0.5") == 1);
    CHECK_MSG(strstr(pt_output, "need 0 < min <= max <= 1") != NULL, "%s", pt_output);
    mkdir("bad", 0755);
    write_bytes("bad/x.jpg", broken, sizeof broken);
    write_bytes("bad/y.png", (const uint8_t *)"not an image", 12);
    CHECK(run_export(exe, "bad", "out5", "7", "0.1", "0.5") == 1);
    CHECK_MSG(strstr(pt_output, "bad: no photo could be cropped (2 files, 2 skipped)") != NULL,
              "%s", pt_output);
    CHECK(run_export(exe, "missing", "out6", "7", "0.1", "0.5") == 1);
    CHECK_MSG(strstr(pt_output, "missing: not a folder") != NULL, "%s", pt_output);
    free(exe);
    return check_failures ? 1 : 0;
}
