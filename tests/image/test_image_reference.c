/* Parity with the reference preprocessing (PIL + torchvision) on the real photos named in
 * preprocess.case.safetensors: decoded RGB bit-exact (sha256 and the 64x64 center crop), the
 * resized and cropped uint8 image within one level (mean abs diff <= 0.05), the normalized
 * tensor within 1e-6 wherever the uint8 pixel matches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "image/image.h"
#include "store/tensors.h"
#include "tests/check.h"

enum { RESIZE = 256, CROP = 224, CENTER = 64 };

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
            fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static void sha256_hex(const uint8_t *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static const lvd_tensor *need(const lvd_tensors *ts, const char *img, const char *suffix)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", img, suffix);
    const lvd_tensor *t = lvd_tensors_find(ts, name);
    CHECK_MSG(t != NULL, "tensor %s missing", name);
    return t;
}

static void check_center(const char *id, const lvd_image *img, const lvd_tensor *ref)
{
    int top = (img->height - CENTER) / 2, left = (img->width - CENTER) / 2;
    int bad = 0;
    for (int y = 0; y < CENTER; y++)
        for (int x = 0; x < CENTER * 3; x++) {
            uint8_t v = img->rgb[((size_t)(top + y) * img->width + left) * 3 + x];
            bad += v != (uint8_t)ref->data[y * CENTER * 3 + x];
        }
    CHECK_MSG(bad == 0, "%s: %d center-crop bytes differ from PIL", id, bad);
}

static void check_resized(const char *id, const uint8_t *mine, const lvd_tensor *ref)
{
    int maxd = 0;
    double sum = 0;
    for (int i = 0; i < CROP * CROP * 3; i++) {
        int d = abs((int)mine[i] - (int)ref->data[i]);
        maxd = d > maxd ? d : maxd;
        sum += d;
    }
    double mean = sum / (CROP * CROP * 3);
    printf("%s: resized+cropped max |diff| %d, mean %.5f\n", id, maxd, mean);
    CHECK_MSG(maxd <= 1 && mean <= 0.05, "%s: resized max diff %d mean %.4f", id, maxd, mean);
}

static void check_normalized(const char *id, const float *chw, const uint8_t *mine,
                             const lvd_tensor *resized, const lvd_tensor *ref)
{
    static const float std[3] = {0.229f, 0.224f, 0.225f};
    int bad = 0;
    double maxd = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < CROP * CROP; i++) {
            size_t k = (size_t)c * CROP * CROP + i;
            double d = fabs((double)chw[k] - ref->data[k]);
            int level = abs((int)mine[i * 3 + c] - (int)resized->data[i * 3 + c]);
            double tol = 1e-6 + level / (255.0 * std[c]);
            maxd = d > maxd ? d : maxd;
            bad += d > tol;
        }
    CHECK_MSG(bad == 0, "%s: %d normalized values out of tolerance (max |diff| %g)", id, bad, maxd);
}

static void check_image(const lvd_tensors *ts, const char *id)
{
    const char *meta = lvd_tensors_metadata(ts, id);
    CHECK_MSG(meta != NULL, "metadata %s missing", id);
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(j, "path"));
    const char *file_sha = cJSON_GetStringValue(cJSON_GetObjectItem(j, "sha256"));
    const char *rgb_sha = cJSON_GetStringValue(cJSON_GetObjectItem(j, "decoded_rgb_sha256"));
    CHECK_MSG(path && file_sha && rgb_sha, "%s: metadata lacks path or sha256", id);
    size_t len = 0;
    uint8_t *buf = path ? read_all(path, &len) : NULL;
    CHECK_MSG(buf != NULL, "%s: cannot read %s (mate-backgrounds installed?)", id,
              path ? path : "?");
    if (!buf || !file_sha || !rgb_sha) {
        cJSON_Delete(j);
        free(buf);
        return;
    }
    char hex[65] = {0};
    sha256_hex(buf, len, hex);
    CHECK_MSG(strcmp(hex, file_sha) == 0, "%s: %s is not the file the reference used", id, path);

    lvd_decode_opts opts = {.alpha = LVD_ALPHA_DROP};
    lvd_image img;
    lvd_error err;
    int rc = lvd_image_decode(buf, len, &opts, &img, &err);
    CHECK_MSG(rc == 0, "%s: decode failed: %s", id, err.msg);
    if (rc == 0) {
        cJSON *wh = cJSON_GetObjectItem(j, "width_height");
        cJSON *rw = cJSON_GetArrayItem(wh, 0), *rh = cJSON_GetArrayItem(wh, 1);
        CHECK_MSG(cJSON_IsNumber(rw) && cJSON_IsNumber(rh), "%s: width_height missing", id);
        CHECK(rw && img.width == rw->valueint);
        CHECK(rh && img.height == rh->valueint);
        sha256_hex(img.rgb, (size_t)img.width * img.height * 3, hex);
        CHECK_MSG(strcmp(hex, rgb_sha) == 0, "%s: decoded RGB differs from PIL's", id);
        check_center(id, &img, need(ts, id, "decoded_center64_rgb"));

        uint8_t *mine = malloc(CROP * CROP * 3);
        float *chw = malloc(sizeof(float) * 3 * CROP * CROP);
        CHECK(lvd_image_resize_center_crop(&img, RESIZE, CROP, mine, &err) == 0);
        CHECK(lvd_image_preprocess(&img, RESIZE, CROP, chw, &err) == 0);
        const lvd_tensor *resized = need(ts, id, "resized_cropped_rgb");
        const lvd_tensor *norm = need(ts, id, "normalized_chw");
        if (resized && norm) {
            check_resized(id, mine, resized);
            check_normalized(id, chw, mine, resized, norm);
        }
        free(mine);
        free(chw);
        lvd_image_free(&img);
    }
    cJSON_Delete(j);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s\nChecks image decoding and preprocessing against the reference "
               "tensors in $LVD_REFERENCE.\n",
               argv[0]);
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    const char *dir = check_reference_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/preprocess.case.safetensors", dir);
    lvd_tensors *ts = NULL;
    lvd_error err;
    if (lvd_tensors_open(path, &ts, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *ids[] = {"img0", "img1", "img2", "img3"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        check_image(ts, ids[i]);
    lvd_tensors_close(ts);
    return check_finish();
}
