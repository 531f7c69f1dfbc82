/* Model descriptions of embed/model_registry.h: name checks, file hashing and architecture
 * strings. */
#include "embed/model_registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

int lvd_model_name_check(const char *name, lvd_error *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return lvd_fail(err, "model name '%s': want 1 to 64 characters, not '.' or '..'", name);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return lvd_fail(err, "model name '%s': only letters, digits, '.', '_' and '-' allowed",
                            name);
    }
    return 0;
}

#define HASH_CHUNK (1 << 20)

static int hash_stream(FILE *f, EVP_MD_CTX *ctx, const char *path, lvd_error *err)
{
    unsigned char *buf = malloc(HASH_CHUNK);
    if (!buf)
        return lvd_fail(err, "%s: out of memory", path);
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(buf, 1, HASH_CHUNK, f)) > 0) {
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            rc = lvd_fail(err, "%s: sha256 failed", path);
    }
    free(buf);
    if (rc != 0)
        return -1;
    if (ferror(f))
        return lvd_fail(err, "%s: read error: %s", path, strerror(errno));
    return 0;
}

int lvd_file_sha256(const char *path, char hex[65], lvd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lvd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int len = 0;
    int rc = -1;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        lvd_fail(err, "%s: sha256 unavailable", path);
    else if (hash_stream(f, ctx, path, err) == 0) {
        if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32)
            lvd_fail(err, "%s: sha256 failed", path);
        else
            rc = 0;
    }
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (rc != 0)
        return -1;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

/* The DINOv2 size letter of a width, or NULL for a width no released model has. */
static const char *size_letter(int dim)
{
    switch (dim) {
    case 384:
        return "s";
    case 768:
        return "b";
    case 1024:
        return "l";
    case 1536:
        return "g";
    default:
        return NULL;
    }
}

void lvd_model_arch_string(const lvd_vit_info *info, char *buf, size_t size)
{
    const char *letter = size_letter(info->dim);
    snprintf(buf, size, "vit%s%s%d dim=%d depth=%d heads=%d reg=%d ffn=%s grid=%d",
             letter ? "_" : "", letter ? letter : "", info->patch, info->dim, info->depth,
             info->heads, info->n_reg, info->ffn == LVD_VIT_SWIGLU ? "swiglu" : "mlp", info->grid);
}
