/* Checkpoints (train/checkpoint.h): a round trip of several groups with step, RNG and config;
 * validation naming missing, misshapen, non-F32 and unexpected tensors with the buffers left
 * untouched; refused metadata; crashes during a save (a child killed by SIGXFSZ at a file-size
 * limit, and one killed with SIGKILL while saving in a loop) leave the previous checkpoint
 * loadable, and the next save removes the temporaries; the prefix-free model export. */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "tests/train/optim_test.h"
#include "train/checkpoint.h"

static void add(lvd_param_layout *l, const char *name, int ndim, int64_t a, int64_t b)
{
    int64_t shape[2] = {a, b};
    lvd_error err;
    if (lvd_param_layout_add(l, name, ndim, shape, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

/* Files in dir whose name starts with base ".tmp.". */
static int count_temporaries(const char *dir, const char *base)
{
    char start[256];
    snprintf(start, sizeof start, "%s.tmp.", base);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, start, strlen(start)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* Size of the largest temporary of base in dir (-1: none). */
static long long temporary_size(const char *dir, const char *base)
{
    char start[256], full[2048];
    snprintf(start, sizeof start, "%s.tmp.", base);
    DIR *d = opendir(dir);
    long long best = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (strncmp(e->d_name, start, strlen(start)) == 0 && stat(full, &st) == 0 &&
            (long long)st.st_size > best)
            best = (long long)st.st_size;
    }
    if (d)
        closedir(d);
    return best;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A safetensors file with one tensor "w" (2,) and the given lvd_checkpoint metadata. */
static void write_with_meta(const char *path, const char *json)
{
    float w[2] = {1, 2};
    lvd_tensor t = {.name = "w", .dtype = LVD_F32, .ndim = 1, .shape = {2}, .numel = 2, .data = w};
    const char *meta[2] = {"lvd_checkpoint", json};
    lvd_error err;
    if (lvd_safetensors_write(path, &t, 1, meta, 1, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static void expect_load_error(const char *path, const lvd_ckpt_group *g, int n, const char *part)
{
    lvd_ckpt_state st = {.step = -7};
    lvd_error err;
    CHECK_MSG(lvd_ckpt_load(path, g, n, &st, &err) == -1 && strstr(err.msg, part), "%s: '%s'", part,
              err.msg);
    CHECK(st.step == -7 && st.config == NULL);
}

int main(void)
{
    char *dir = ot_tmpdir();
    char path[1024], other[1024];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    lvd_error err;

    /* a backbone-like, a head-like and a centers layout */
    lvd_param_layout bb = {0}, head = {0}, center = {0};
    add(&bb, "cls_token", 2, 1, 8);
    add(&bb, "blocks.0.attn.qkv.weight", 2, 24, 8);
    add(&bb, "blocks.0.attn.qkv.bias", 1, 24, 0);
    add(&bb, "norm.weight", 1, 8, 0);
    add(&head, "mlp.0.weight", 2, 5, 8);
    add(&head, "last_layer.weight_g", 2, 7, 1);
    add(&center, "dino", 2, 1, 7);
    uint64_t seed = 3;
    float *sb = malloc(bb.total * 4), *tb = malloc(bb.total * 4), *mb = malloc(bb.total * 4);
    float *sh = malloc(head.total * 4), *th = malloc(head.total * 4), *c = malloc(center.total * 4);
    ot_fill(sb, bb.total, &seed, 1), ot_fill(tb, bb.total, &seed, 1);
    ot_fill(mb, bb.total, &seed, 1), ot_fill(sh, head.total, &seed, 1);
    ot_fill(th, head.total, &seed, 1), ot_fill(c, center.total, &seed, 1);
    lvd_ckpt_group g[6] = {
        {"student.backbone.", &bb, sb},    {"teacher.backbone.", &bb, tb},
        {"adamw.m.backbone.", &bb, mb},    {"student.dino_head.", &head, sh},
        {"teacher.dino_head.", &head, th}, {"center.", &center, c},
    };
    lvd_ckpt_state st = {.step = 1234, .n_rng = 3, .rng = {0, UINT64_MAX, 0x0123456789abcdefULL}};
    st.config = "{\"arch\":{\"embed_dim\":8,\"depth\":1},\"lr\":0.002,\"name\":\"t\\u00e9st\"}";
    CHECK_MSG(lvd_ckpt_save(path, g, 6, &st, &err) == 0, "%s", err.msg);

    /* the round trip into fresh buffers */
    float *buf[6];
    lvd_ckpt_group h[6];
    for (int i = 0; i < 6; i++) {
        h[i] = g[i];
        buf[i] = h[i].data = calloc(g[i].layout->total, 4);
    }
    lvd_ckpt_state back = {0};
    CHECK_MSG(lvd_ckpt_load(path, h, 6, &back, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 6; i++)
        CHECK(memcmp(h[i].data, g[i].data, g[i].layout->total * 4) == 0);
    CHECK(back.step == 1234 && back.n_rng == 3 && back.rng[1] == UINT64_MAX &&
          back.rng[2] == 0x0123456789abcdefULL && back.rng[0] == 0);
    cJSON *a = cJSON_Parse(st.config), *b = cJSON_Parse(back.config);
    CHECK(b && cJSON_Compare(a, b, 1));
    cJSON_Delete(a);
    cJSON_Delete(b);
    lvd_ckpt_state_free(&back);
    CHECK(back.config == NULL);
    /* the groups' order does not matter, the file layout is one of named tensors */
    lvd_ckpt_group swapped[6] = {h[5], h[4], h[3], h[2], h[1], h[0]};
    CHECK(lvd_ckpt_load(path, swapped, 6, &back, &err) == 0);
    lvd_ckpt_state_free(&back);

    /* validation: buffers untouched on failure */
    for (int i = 0; i < 6; i++)
        memset(buf[i], 0, g[i].layout->total * 4);
    lvd_param_layout bb2 = {0};
    add(&bb2, "cls_token", 2, 1, 8);
    add(&bb2, "blocks.0.attn.qkv.weight", 2, 8, 24); /* transposed */
    add(&bb2, "blocks.0.attn.qkv.bias", 1, 24, 0);
    add(&bb2, "norm.weight", 1, 8, 0);
    add(&bb2, "norm.bias", 1, 8, 0); /* not in the file */
    float *bb2_buf = calloc(bb2.total, 4);
    lvd_ckpt_group v[6] = {h[0], h[1], h[2], h[3], h[4], h[5]};
    v[0] = (lvd_ckpt_group){"student.backbone.", &bb2, bb2_buf};
    expect_load_error(path, v, 6, "missing student.backbone.norm.bias");
    expect_load_error(path, v, 6,
                      "student.backbone.blocks.0.attn.qkv.weight is (24, 8), expected (8, 24)");
    expect_load_error(path, h, 5, "unexpected center.dino");
    expect_load_error(path, h + 1, 5, "unexpected student.backbone.cls_token");
    int untouched = 1;
    for (int i = 0; i < 6; i++)
        for (size_t j = 0; j < g[i].layout->total; j++)
            untouched &= buf[i][j] == 0;
    for (size_t j = 0; j < bb2.total; j++)
        untouched &= bb2_buf[j] == 0;
    CHECK(untouched);
    /* many missing tensors are counted, not all listed */
    lvd_param_layout many = {0};
    for (int i = 0; i < 30; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        add(&many, name, 1, 1, 0);
    }
    float many_buf[30];
    lvd_ckpt_group gm = {"x.", &many, many_buf};
    expect_load_error(path, &gm, 1, "missing x.p0, x.p1, x.p2, x.p3, x.p4, x.p5 (and 24 more)");
    expect_load_error(path, &gm, 1, "unexpected student.backbone.cls_token");
    lvd_param_layout_free(&many);

    /* files that are not checkpoints, or whose block is wrong */
    snprintf(other, sizeof other, "%s/plain.safetensors", dir);
    float w[2] = {1, 2};
    lvd_tensor t = {.name = "w", .dtype = LVD_F32, .ndim = 1, .shape = {2}, .numel = 2, .data = w};
    CHECK(lvd_safetensors_write(other, &t, 1, NULL, 0, &err) == 0);
    lvd_param_layout lw = {0};
    add(&lw, "w", 1, 2, 0);
    lvd_ckpt_group gw = {NULL, &lw, w};
    expect_load_error(other, &gw, 1, "not an lvd checkpoint");
    const char *bad[][2] = {
        {"[1]", "not an lvd checkpoint block"},
        {"{\"format\":\"x\",\"version\":1,\"step\":0,\"rng\":[],\"config\":{}}",
         "not an lvd checkpoint block"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":2,\"step\":0,\"rng\":[],\"config\":{}}",
         "version"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":-1,\"rng\":[],\"config\":{}}",
         "step"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1.5,\"rng\":[],\"config\":{}}",
         "step"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1,\"rng\":[\"12\"],\"config\":{}}",
         "rng word 0"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1,\"rng\":[\"000000000000000g\"],"
         "\"config\":{}}",
         "rng word 0"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1,\"rng\":{},\"config\":{}}",
         "rng"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1,\"rng\":[],\"config\":3}",
         "config"},
        {"{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":1,\"rng\":[]}", "config"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_with_meta(other, bad[i][0]);
        expect_load_error(other, &gw, 1, bad[i][1]);
    }
    write_with_meta(other, "{\"format\":\"lvd-checkpoint\",\"version\":1,\"step\":5,\"rng\":[],"
                           "\"config\":{}}");
    CHECK(lvd_ckpt_load(other, &gw, 1, &back, &err) == 0 && back.step == 5 && back.n_rng == 0);
    lvd_ckpt_state_free(&back);
    /* an F16 tensor where F32 is stored: the shape matches but the type does not */
    const char hdr[] =
        "{\"__metadata__\":{\"lvd_checkpoint\":\"{\\\"format\\\":\\\"lvd-checkpoint\\\","
        "\\\"version\\\":1,\\\"step\\\":0,\\\"rng\\\":[],\\\"config\\\":{}}\"},"
        "\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    unsigned char raw[512] = {0};
    uint64_t hlen = sizeof hdr - 1;
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(raw + 8, hdr, hlen);
    raw[8 + hlen + 1] = 0x3c; /* 1.0 and 2.0 in half precision */
    raw[8 + hlen + 3] = 0x40;
    write_file(other, raw, 8 + hlen + 4);
    expect_load_error(other, &gw, 1, "w is not stored as F32");
    /* a truncated checkpoint */
    write_file(other, raw, 8 + hlen + 2);
    expect_load_error(other, &gw, 1, "plain.safetensors");

    /* refused saves leave the previous file as it was */
    struct stat before, after;
    CHECK(stat(path, &before) == 0);
    lvd_ckpt_state bad_state = st;
    bad_state.config = "[1]";
    CHECK(lvd_ckpt_save(path, g, 6, &bad_state, &err) == -1 && strstr(err.msg, "JSON object"));
    bad_state.config = "{";
    CHECK(lvd_ckpt_save(path, g, 6, &bad_state, &err) == -1);
    bad_state = st;
    bad_state.n_rng = LVD_CKPT_RNG_MAX + 1;
    CHECK(lvd_ckpt_save(path, g, 6, &bad_state, &err) == -1 && strstr(err.msg, "RNG"));
    bad_state = st;
    bad_state.step = -1;
    CHECK(lvd_ckpt_save(path, g, 6, &bad_state, &err) == -1 && strstr(err.msg, "step"));
    lvd_ckpt_group twice[2] = {g[0], g[0]};
    CHECK(lvd_ckpt_save(path, twice, 2, &st, &err) == -1 && strstr(err.msg, "twice"));
    lvd_ckpt_group nobuf = {"n.", &bb, NULL};
    CHECK(lvd_ckpt_save(path, &nobuf, 1, &st, &err) == -1 && strstr(err.msg, "no buffer"));
    CHECK(stat(path, &after) == 0 && after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
          after.st_mtim.tv_nsec == before.st_mtim.tv_nsec && after.st_size == before.st_size);
    CHECK(count_temporaries(dir, "ckpt.safetensors") == 0);

    /* crash 1: a child dies of SIGXFSZ at a 1 MiB file-size limit while saving 16 MiB */
    lvd_param_layout big = {0};
    add(&big, "w", 2, 1024, 4096);
    float *bigbuf = malloc(big.total * 4);
    ot_fill(bigbuf, big.total, &seed, 1);
    lvd_ckpt_group gb = {"big.", &big, bigbuf};
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit lim = {1 << 20, 1 << 20};
        setrlimit(RLIMIT_FSIZE, &lim);
        signal(SIGXFSZ, SIG_DFL);
        lvd_ckpt_save(path, &gb, 1, &st, &err);
        _exit(0);
    }
    CHECK(check_wait(pid) == 128 + SIGXFSZ);
    CHECK(count_temporaries(dir, "ckpt.safetensors") == 1);
    CHECK(temporary_size(dir, "ckpt.safetensors") == 1 << 20);
    CHECK_MSG(lvd_ckpt_load(path, h, 6, &back, &err) == 0, "%s", err.msg);
    CHECK(back.step == 1234 && memcmp(h[0].data, sb, bb.total * 4) == 0);
    lvd_ckpt_state_free(&back);

    /* crash 2: SIGKILL while a child saves in a loop; the path holds a whole checkpoint, the
     * previous one or the child's */
    snprintf(other, sizeof other, "%s/loop.safetensors", dir);
    lvd_ckpt_state st2 = st;
    st2.step = 1;
    CHECK(lvd_ckpt_save(other, &gb, 1, &st2, &err) == 0);
    pid = fork();
    if (pid == 0) {
        lvd_ckpt_state mine = st;
        mine.step = 2;
        for (size_t j = 0; j < big.total; j++)
            bigbuf[j] += 1;
        for (;;)
            if (lvd_ckpt_save(other, &gb, 1, &mine, &err) != 0)
                _exit(3);
    }
    long long seen = -1;
    for (int tries = 0; tries < 600000 && seen <= 0; tries++) {
        seen = temporary_size(dir, "loop.safetensors");
        if (seen <= 0)
            usleep(100);
    }
    CHECK(seen > 0);
    kill(pid, SIGKILL);
    CHECK(check_wait(pid) == 128 + SIGKILL);
    float *loaded = malloc(big.total * 4);
    lvd_ckpt_group gl = {"big.", &big, loaded};
    CHECK_MSG(lvd_ckpt_load(other, &gl, 1, &back, &err) == 0, "%s", err.msg);
    CHECK(back.step == 1 || back.step == 2);
    int same = 1;
    for (size_t j = 0; j < big.total; j++)
        same &= loaded[j] == bigbuf[j] + (back.step == 2 ? 1.0f : 0.0f);
    CHECK(same);
    lvd_ckpt_state_free(&back);
    printf("SIGKILL during a save loop: the checkpoint of step %lld was whole, %d temporary "
           "file(s) left\n",
           (long long)back.step, count_temporaries(dir, "loop.safetensors"));

    /* the next save removes the temporaries of both crashes, and only those */
    snprintf(other, sizeof other, "%s/ckpt.safetensors.tmp.ABCDEF", dir);
    write_file(other, "trunc", 5);
    char keep1[1100], keep2[1100];
    snprintf(keep1, sizeof keep1, "%s/ckpt.safetensors.tmp.ABCDEFG", dir);
    snprintf(keep2, sizeof keep2, "%s/other.safetensors.tmp.ABCDEF", dir);
    write_file(keep1, "x", 1);
    write_file(keep2, "x", 1);
    CHECK(count_temporaries(dir, "ckpt.safetensors") == 3);
    CHECK(lvd_ckpt_load(path, h, 6, &back, &err) == 0); /* the leftovers do not disturb a load */
    lvd_ckpt_state_free(&back);
    st.step = 1235;
    CHECK(lvd_ckpt_save(path, g, 6, &st, &err) == 0);
    CHECK(count_temporaries(dir, "ckpt.safetensors") == 1); /* the 7-character one is kept */
    CHECK(access(keep1, F_OK) == 0 && access(keep2, F_OK) == 0);
    snprintf(other, sizeof other, "%s/loop.safetensors", dir);
    CHECK(lvd_ckpt_save(other, &gb, 1, &st, &err) == 0);
    CHECK(count_temporaries(dir, "loop.safetensors") == 0);
    CHECK(lvd_ckpt_load(path, h, 6, &back, &err) == 0 && back.step == 1235);
    lvd_ckpt_state_free(&back);

    /* the model export: the layout's own names, config metadata */
    snprintf(other, sizeof other, "%s/model.safetensors", dir);
    CHECK(lvd_ckpt_export(other, &bb, tb, "{\"embed_dim\":8}", &err) == 0);
    lvd_tensors *ts;
    CHECK(lvd_tensors_open(other, &ts, &err) == 0);
    CHECK(lvd_tensors_count(ts) == (size_t)bb.n);
    for (int i = 0; i < bb.n; i++) {
        const lvd_tensor *x = lvd_tensors_find(ts, bb.t[i].name);
        CHECK(x && x->ndim == bb.t[i].ndim && x->shape[0] == bb.t[i].shape[0] &&
              memcmp(x->data, tb + bb.t[i].offset, bb.t[i].numel * 4) == 0);
    }
    CHECK(lvd_tensors_metadata(ts, "config") &&
          strcmp(lvd_tensors_metadata(ts, "config"), "{\"embed_dim\":8}") == 0);
    CHECK(lvd_tensors_metadata(ts, "lvd_checkpoint") == NULL);
    /* a layout and a group read back from the file */
    lvd_param_layout from = {0};
    CHECK(lvd_ckpt_layout_from(ts, "", &from, &err) == 0 && from.n == bb.n &&
          from.total == bb.total);
    float *rb = calloc(from.total, 4);
    lvd_ckpt_group gr = {"", &from, rb};
    CHECK(lvd_ckpt_read_group(ts, &gr, &err) == 0 && memcmp(rb, tb, bb.total * 4) == 0);
    gr.layout = &bb2;
    CHECK(lvd_ckpt_read_group(ts, &gr, &err) == -1 && strstr(err.msg, "missing norm.bias") &&
          strstr(err.msg, "blocks.0.attn.qkv.weight is (24, 8), expected (8, 24)"));
    lvd_param_layout none = {0};
    CHECK(lvd_ckpt_layout_from(ts, "teacher.", &none, &err) == -1 && strstr(err.msg, "teacher."));
    lvd_tensors_close(ts);
    CHECK(lvd_ckpt_export(other, &bb, tb, "nope", &err) == -1);
    CHECK(lvd_ckpt_export(other, &bb, tb, NULL, &err) == 0);
    CHECK(lvd_tensors_open(other, &ts, &err) == 0 && !lvd_tensors_metadata(ts, "config"));
    lvd_tensors_close(ts);

    free(sb), free(tb), free(mb), free(sh), free(th), free(c), free(bb2_buf), free(bigbuf);
    free(loaded), free(rb);
    for (int i = 0; i < 6; i++)
        free(buf[i]);
    lvd_param_layout_free(&bb), lvd_param_layout_free(&head), lvd_param_layout_free(&center);
    lvd_param_layout_free(&bb2), lvd_param_layout_free(&lw), lvd_param_layout_free(&big);
    lvd_param_layout_free(&from);
    check_rmtree(dir);
    return check_finish();
}
