/* lvd-idx-export: IDX image/label files (Fashion-MNIST) to PNG files in class folders. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/idx.h"
#include "curate/idx_export.h"

static void usage(FILE *f)
{
    fputs("usage: lvd-idx-export --images FILE --labels FILE --out DIR [options]\n"
          "\n"
          "Writes the selected records of an IDX image/label pair (Fashion-MNIST, plain or\n"
          ".gz) as grayscale PNG files OUT/<class>/<index>.png, index being the record number\n"
          "(5 digits). Classes: tshirt-top trouser pullover dress coat sandal shirt sneaker\n"
          "bag ankle-boot. Records are visited in file order from --offset; one is kept when\n"
          "its class is selected and under --per-class, until --limit are kept. Files that\n"
          "already hold the same bytes are not rewritten.\n"
          "\n"
          "  --images FILE      IDX image file (N x rows x cols)\n"
          "  --labels FILE      IDX label file (N labels 0..9)\n"
          "  --out DIR          output folder (created)\n"
          "  --offset N         first record visited (default 0)\n"
          "  --limit N          records kept at most (default 0: all)\n"
          "  --per-class N      records kept per class at most (default 0: no limit)\n"
          "  --classes LIST     comma-separated class names or numbers (default: all)\n"
          "  --db DB            accepted and ignored (lvd-run passes it to every stage)\n"
          "  --help             this text\n",
          f);
}

static int parse_u32(const char *name, const char *s, uint32_t *v)
{
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || x > UINT32_MAX) {
        fprintf(stderr, "lvd-idx-export: %s: not a count: '%s'\n", name, s);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

static int parse_classes(const char *s, uint16_t *mask)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        int c = lvd_fashion_mnist_parse(tok);
        if (c < 0) {
            fprintf(stderr, "lvd-idx-export: --classes: unknown class '%s'\n", tok);
            rc = -1;
        } else {
            *mask |= (uint16_t)(1u << c);
        }
    }
    free(copy);
    return rc;
}

enum {
    OPT_IMAGES = 1,
    OPT_LABELS,
    OPT_OUT,
    OPT_OFFSET,
    OPT_LIMIT,
    OPT_PER_CLASS,
    OPT_CLASSES,
    OPT_DB,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"images", required_argument, NULL, OPT_IMAGES},
    {"labels", required_argument, NULL, OPT_LABELS},
    {"out", required_argument, NULL, OPT_OUT},
    {"offset", required_argument, NULL, OPT_OFFSET},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"per-class", required_argument, NULL, OPT_PER_CLASS},
    {"classes", required_argument, NULL, OPT_CLASSES},
    {"db", required_argument, NULL, OPT_DB},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int apply(int c, const char *arg, lvd_idx_export_opts *o)
{
    switch (c) {
    case OPT_IMAGES:
        o->images = arg;
        return 0;
    case OPT_LABELS:
        o->labels = arg;
        return 0;
    case OPT_OUT:
        o->out = arg;
        return 0;
    case OPT_OFFSET:
        return parse_u32("--offset", arg, &o->offset);
    case OPT_LIMIT:
        return parse_u32("--limit", arg, &o->limit);
    case OPT_PER_CLASS:
        return parse_u32("--per-class", arg, &o->per_class);
    case OPT_CLASSES:
        return parse_classes(arg, &o->classes);
    case OPT_DB:
        return 0;
    default:
        return -1;
    }
}

int main(int argc, char **argv)
{
    lvd_idx_export_opts o = {0};
    int c;
    opterr = 0; /* one error line, ours */
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage(stdout);
            return 0;
        }
        if (c == '?') {
            fprintf(stderr, "lvd-idx-export: unknown option or missing value: %s (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (apply(c, optarg, &o) != 0)
            return 2;
    }
    if (!o.images || !o.labels || !o.out || optind < argc) {
        fprintf(stderr, "lvd-idx-export: --images, --labels and --out are required, and no "
                        "other argument (see --help)\n");
        return 2;
    }
    lvd_idx_export_counts n;
    lvd_error err;
    lvd_error_clear(&err);
    if (lvd_idx_export(&o, &n, &err) != 0) {
        fprintf(stderr, "lvd-idx-export: %s\n", err.msg);
        return 1;
    }
    printf("lvd-idx-export: %u of %u records kept into %s (%u written, %u unchanged):", n.kept,
           n.records, o.out, n.written, n.kept - n.written);
    for (int i = 0; i < 10; i++)
        if (n.per_class[i])
            printf(" %s %u", lvd_fashion_mnist_class(i), n.per_class[i]);
    printf("\n");
    return 0;
}
