/* lvd-idx-export: IDX image/label files (Fashion-MNIST) to PNG files in class folders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/mnist/mnist_idx.h"
#include "curate/mnist/mnist_export.h"
#include "kit/kit.h"

static const char help[] =
    "--images FILE --labels FILE --out DIR [options]\n"
    "\n"
    "Writes the selected records of an IDX image/label pair (Fashion-MNIST, plain or\n"
    ".gz) as grayscale PNG files OUT/<class>/<index>.png, index being the record number\n"
    "(5 digits). Classes: tshirt-top trouser pullover dress coat sandal shirt sneaker\n"
    "bag ankle-boot. Records are visited in file order from --offset; one is kept when\n"
    "its class is selected and under --per-class, until --limit are kept. Files that\n"
    "already hold the same bytes are not rewritten.";

/* --classes: comma-separated class names or numbers into a bit mask. */
static int parse_classes(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    uint16_t *mask = o->dest;
    char *copy = strdup(value), *save = NULL;
    if (!copy)
        return lvd_fail(err, "out of memory");
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        int c = lvd_fashion_mnist_parse(tok);
        if (c < 0)
            rc = lvd_fail(err, "unknown class '%s'", tok);
        else
            *mask |= (uint16_t)(1u << c);
    }
    free(copy);
    return rc;
}

static int run(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    const lvd_idx_export_opts *o = ctx;
    lvd_idx_export_counts n;
    if (lvd_idx_export(o, &n, err) != 0)
        return -1;
    printf("lvd-idx-export: %u of %u records kept into %s (%u written, %u unchanged):", n.kept,
           n.records, o->out, n.written, n.kept - n.written);
    for (int i = 0; i < 10; i++)
        if (n.per_class[i])
            printf(" %s %u", lvd_fashion_mnist_class(i), n.per_class[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    lvd_idx_export_opts o = {0};
    const char *db = NULL;
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("images", "FILE", o.images, "IDX image file (N x rows x cols)", .required = 1),
        LVD_OPT_STR("labels", "FILE", o.labels, "IDX label file (N labels 0..9)", .required = 1),
        LVD_OPT_STR("out", "DIR", o.out, "output folder (created)", .required = 1),
        LVD_OPT_INT("offset", "N", o.offset, 0, UINT32_MAX, "first record visited"),
        LVD_OPT_INT("limit", "N", o.limit, 0, UINT32_MAX, "records kept at most; 0: all"),
        LVD_OPT_INT("per-class", "N", o.per_class, 0, UINT32_MAX,
                    "records kept per class at most; 0: no limit"),
        LVD_OPT_FN("classes", "LIST", o.classes, parse_classes,
                   "comma-separated class names or numbers", .def = "all"),
        LVD_OPT_STR("db", "DB", db, "accepted and ignored (lvd-run passes it to every stage)"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-idx-export", help, opts, run, &o, .db = LVD_KIT_NO_DB};
    return lvd_kit_main(&cmd, argc, argv);
}
