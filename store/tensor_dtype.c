/* Stored dtypes: sizes, safetensors names and conversion to float32. */
#include <math.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the F32 fast path assumes a little-endian host"
#endif

#include "store/tensors_internal.h"

static const struct {
    lvd_dtype dtype;
    const char *name;
    size_t size;
} dtypes[] = {
    {LVD_F32, "F32", 4}, {LVD_F16, "F16", 2}, {LVD_BF16, "BF16", 2},
    {LVD_F64, "F64", 8}, {LVD_U8, "U8", 1},   {LVD_BOOL, "BOOL", 1},
    {LVD_I8, "I8", 1},   {LVD_I32, "I32", 4}, {LVD_I64, "I64", 8},
};

size_t dtype_size(lvd_dtype dtype)
{
    return dtypes[dtype].size;
}

const char *dtype_name(lvd_dtype dtype)
{
    return dtypes[dtype].name;
}

int dtype_from_name(const char *name, lvd_dtype *out)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(dtypes[i].name, name) == 0) {
            *out = dtypes[i].dtype;
            return 0;
        }
    }
    return -1;
}

int shape_numel(const int64_t *shape, int ndim, int64_t *numel)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    *numel = n;
    return 0;
}

static float bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f)
        return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        float v = ldexpf((float)mant, -24); /* zero or subnormal: exact in float32 */
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static float element_to_f32(lvd_dtype dtype, const uint8_t *p, bool big_endian)
{
    switch (dtype) {
    case LVD_F32:
        return bits_to_f32((uint32_t)load_uint(p, 4, big_endian));
    case LVD_F16:
        return half_to_f32((uint16_t)load_uint(p, 2, big_endian));
    case LVD_BF16:
        return bits_to_f32((uint32_t)load_uint(p, 2, big_endian) << 16);
    case LVD_F64: {
        uint64_t bits = load_uint(p, 8, big_endian);
        double d;
        memcpy(&d, &bits, sizeof d);
        return (float)d;
    }
    case LVD_U8:
        return (float)p[0];
    case LVD_BOOL:
        return p[0] ? 1.0f : 0.0f;
    case LVD_I8:
        return (float)(int8_t)p[0];
    case LVD_I32:
        return (float)(int32_t)(uint32_t)load_uint(p, 4, big_endian);
    case LVD_I64:
        return (float)(int64_t)load_uint(p, 8, big_endian);
    }
    return NAN;
}

void dtype_convert(lvd_dtype dtype, const uint8_t *src, int64_t stride_elems, int64_t count,
                   bool big_endian, float *dst)
{
    if (dtype == LVD_F32 && stride_elems == 1 && !big_endian) {
        memcpy(dst, src, (size_t)count * sizeof *dst); /* the common case, at memory speed */
        return;
    }
    size_t step = (size_t)stride_elems * dtype_size(dtype);
    for (int64_t i = 0; i < count; i++, src += step)
        dst[i] = element_to_f32(dtype, src, big_endian);
}
