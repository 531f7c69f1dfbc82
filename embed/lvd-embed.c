/* lvd-embed: the embed stage (embed/stage.h) from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed/stage.h"

static const char usage[] =
    "usage: lvd-embed --db DB --model NAME [options]\n"
    "       lvd-embed --db DB --model NAME --import FILE.npy --ids FILE.txt [--source NAME]\n"
    "\n"
    "Embeds every stored ('ok') image of the manifest DB that has no embedding of model NAME\n"
    "(registered with lvd-model add): reads it from its tar shard, decodes it as PIL\n"
    "convert(\"RGB\") does (alpha dropped, EXIF orientation not applied), resizes the short\n"
    "side to S and center crops C x C (bicubic, ImageNet normalization) and runs the ViT.\n"
    "Writes one float32 .npy per shard, OUT/NAME/<shard>.r<run>.npy, and records its rows in\n"
    "the manifest (view v_embeddings) once the file is in place; a rerun after a crash embeds\n"
    "exactly what is missing. Images that fail to decode are recorded (v_embedding_failures)\n"
    "and skipped by later runs (unless --retry-failed).\n"
    "With --import, attaches the rows of FILE.npy (rows, dim) to the images named by the lines\n"
    "of FILE.txt (an image id or url a line); an unknown model name is registered as external.\n"
    "\n"
    "  --db DB             manifest database\n"
    "  --model NAME        registered model (lvd-model list)\n"
    "  --source NAME       only images of this source\n"
    "  --batch N           images per forward pass (default 32)\n"
    "  --threads N         ViT threads (default: all cores); decoding runs on one more thread\n"
    "  --features F        cls or cls+patchmean (default: the model's; changeable only while\n"
    "                      the model has no embeddings)\n"
    "  --limit N           embed at most N images this run\n"
    "  --resize S          short side before the crop (default 256)\n"
    "  --crop C            crop side, a multiple of the patch size (default 224)\n"
    "  --no-normalize      keep raw features (default: L2-normalized rows)\n"
    "  --out DIR           output folder (default: 'embeddings' beside DB)\n"
    "  --retry-failed      also images that failed to decode in earlier runs\n"
    "  --import FILE.npy   import embeddings instead (with --ids)\n"
    "  --ids FILE.txt      the images of the imported rows, one a line\n"
    "  --progress          progress line (default when stderr is a terminal)\n"
    "  --no-progress       periodic log lines instead\n"
    "  --log-interval S    seconds between log lines (default 10)\n"
    "  --help              this text\n";

typedef struct args {
    lvd_embed_opts o;
    const char *import, *ids;
} args;

static int parse_long(const char *flag, const char *s, long lo, long hi, long *v)
{
    char *end;
    *v = strtol(s, &end, 10);
    if (!*s || *end || *v < lo || *v > hi) {
        fprintf(stderr, "lvd-embed: %s wants a number from %ld to %ld\n", flag, lo, hi);
        return -1;
    }
    return 0;
}

/* Options with a numeric value; returns 1 when argv[i] was one, -1 on a bad value. */
static int parse_number(const char *flag, const char *val, lvd_embed_opts *o)
{
    static const struct {
        const char *flag;
        long lo, hi;
    } specs[] = {{"--batch", 1, 4096},   {"--threads", 1, 1024}, {"--limit", 1, 1L << 62},
                 {"--resize", 1, 16384}, {"--crop", 1, 16384},   {"--log-interval", 1, 86400}};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        if (strcmp(flag, specs[k].flag) != 0)
            continue;
        long v;
        if (parse_long(flag, val, specs[k].lo, specs[k].hi, &v) != 0)
            return -1;
        if (k == 0)
            o->batch = (int)v;
        else if (k == 1)
            o->threads = (int)v;
        else if (k == 2)
            o->limit = v;
        else if (k == 3)
            o->resize = (int)v;
        else if (k == 4)
            o->crop = (int)v;
        else
            o->log_interval_s = (double)v;
        return 1;
    }
    return 0;
}

static int parse_flag(const char *flag, args *a)
{
    if (strcmp(flag, "--no-normalize") == 0)
        a->o.normalize = 0;
    else if (strcmp(flag, "--retry-failed") == 0)
        a->o.retry_failed = 1;
    else if (strcmp(flag, "--progress") == 0)
        a->o.progress = 1;
    else if (strcmp(flag, "--no-progress") == 0)
        a->o.progress = 0;
    else
        return 0;
    return 1;
}

static int parse_string(const char *flag, const char *val, args *a)
{
    if (strcmp(flag, "--db") == 0)
        a->o.db = val;
    else if (strcmp(flag, "--model") == 0)
        a->o.model = val;
    else if (strcmp(flag, "--source") == 0)
        a->o.source = val;
    else if (strcmp(flag, "--out") == 0)
        a->o.out_dir = val;
    else if (strcmp(flag, "--import") == 0)
        a->import = val;
    else if (strcmp(flag, "--ids") == 0)
        a->ids = val;
    else if (strcmp(flag, "--features") == 0) {
        lvd_model_features f;
        lvd_error err;
        if (lvd_model_features_parse(val, &f, &err) != 0 || f == LVD_FEATURES_EXTERNAL) {
            fprintf(stderr, "lvd-embed: --features wants cls or cls+patchmean\n");
            return -1;
        }
        a->o.features = (int)f;
    } else
        return 0;
    return 1;
}

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    lvd_embed_opts_init(&a->o);
    a->o.progress = isatty(STDERR_FILENO);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        int r = parse_flag(f, a);
        if (r == 0 && i + 1 < argc) {
            r = parse_number(f, argv[i + 1], &a->o);
            if (r == 0)
                r = parse_string(f, argv[i + 1], a);
            if (r == 1)
                i++;
        }
        if (r < 0)
            return -1;
        if (r == 0) {
            fprintf(stderr, "lvd-embed: unexpected argument %s (see --help)\n", f);
            return -1;
        }
    }
    if (!a->o.db || !a->o.model) {
        fprintf(stderr, "lvd-embed: --db and --model are required (see --help)\n");
        return -1;
    }
    if (!a->import != !a->ids) {
        fprintf(stderr, "lvd-embed: --import and --ids go together\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    lvd_error err;
    lvd_error_clear(&err);
    if (a.import) {
        lvd_import_opts io = {.db = a.o.db,
                              .model = a.o.model,
                              .out_dir = a.o.out_dir,
                              .npy = a.import,
                              .ids = a.ids,
                              .source = a.o.source,
                              .log = stderr};
        int64_t rows;
        if (lvd_embed_import(&io, &rows, &err) != 0) {
            fprintf(stderr, "lvd-embed: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    lvd_embed_summary sum;
    if (lvd_embed_run(&a.o, &sum, &err) != 0) {
        fprintf(stderr, "%slvd-embed: %s\n", a.o.progress ? "\n" : "", err.msg);
        return 1;
    }
    return 0;
}
