/* lvd-model: the model registry (embed/model_registry.h) from the command line. */
#include <stdio.h>
#include <string.h>

#include "embed/model_registry.h"
#include "kit/kit.h"

static const char help[] =
    "add --db DB --name NAME [--features F] WEIGHTS\n"
    "add --db DB --name NAME --random SPEC [--seed N] [--features F]\n"
    "list --db DB\n"
    "\n"
    "add registers a DINOv2 ViT checkpoint (safetensors or torch .pth) under NAME in the\n"
    "manifest DB: its absolute path, the sha256 of the file (lvd-embed refuses the file once\n"
    "it changes), the architecture inferred from its tensors, the embedding width and the\n"
    "number of parameters. With --random it registers a built-in randomly initialized ViT\n"
    "instead (SPEC vits14, vitb14, vitl14 or vitg14; DINOv2 init, deterministic for a seed):\n"
    "random features, for demos and benchmarks. list prints the registered models (v_models).";

typedef struct args {
    const char *db, *name, *random;
    const char *const *operand; /* the command, then WEIGHTS */
    int n_operands;
    unsigned long long seed;
    lvd_model_features features;
} args;

static int is_add(const args *a)
{
    return strcmp(a->operand[0], "add") == 0;
}

static int check(void *ctx, lvd_error *err)
{
    const args *a = ctx;
    const char *weights = a->n_operands > 1 ? a->operand[1] : NULL;
    if (!is_add(a) && strcmp(a->operand[0], "list") != 0)
        return lvd_fail(err, "unknown command '%s' (add or list)", a->operand[0]);
    if (is_add(a) && (!a->name || !weights == !a->random))
        return lvd_fail(err, "add wants --name and either WEIGHTS or --random SPEC");
    if (!is_add(a) && (a->name || weights || a->random))
        return lvd_fail(err, "list takes only --db");
    return 0;
}

static int add(lvd_manifest *m, const args *a, lvd_error *err)
{
    lvd_model_record rec;
    int rc = a->random
                 ? lvd_model_add_random(m, a->name, a->random, a->seed, a->features, &rec, err)
                 : lvd_model_add_weights(m, a->name, a->operand[1], a->features, &rec, err);
    if (rc != 0)
        return -1;
    printf("%s: %s, %s features, dim %d, %lld parameters%s%s\n", rec.name, rec.arch,
           lvd_model_features_name(rec.features), rec.dim, (long long)rec.params,
           rec.path[0] ? ", sha256 " : "", rec.sha256);
    return 0;
}

static const char *column(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "-";
}

static int list(lvd_manifest *m, lvd_error *err)
{
    sqlite3_stmt *st;
    if (lvd_manifest_prepare(m,
                             "SELECT v.name, v.arch, v.dim, v.params, m.features, v.path, v.sha256 "
                             "FROM v_models v JOIN models m ON m.name = v.name ORDER BY v.name",
                             &st, err) != 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        printf("%s\t%s\t%s dim=%s params=%s\t%s\t%s\n", column(st, 0), column(st, 1), column(st, 4),
               column(st, 2), column(st, 3), column(st, 5), column(st, 6));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : lvd_manifest_fail(m, err, "listing models");
}

/* add may create the manifest; list only reads it, and never creates one. */
static int run(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    const args *a = ctx;
    lvd_manifest *m;
    if (lvd_kit_open(a->db, is_add(a) ? LVD_MANIFEST_CREATE : LVD_MANIFEST_READ, NULL, &m, err))
        return -1;
    int rc = is_add(a) ? add(m, a, err) : list(m, err);
    lvd_manifest_close(m);
    return rc;
}

int main(int argc, char **argv)
{
    args a = {0};
    const lvd_kit_opt opts[] = {
        LVD_OPT_DB(a.db),
        LVD_OPT_STR("name", "NAME", a.name, "model name (letters, digits, '.', '_', '-')"),
        LVD_OPT_FN("features", "F", a.features, lvd_kit_features_opt,
                   "cls or cls+patchmean (embedding width 2 x dim)", .def = "cls"),
        LVD_OPT_STR("random", "SPEC", a.random, "built-in random model"),
        LVD_OPT_INT("seed", "N", a.seed, 0, (int64_t)1 << 53, "its seed"),
        LVD_OPT_END,
    };
    const lvd_kit_operands command = {"a command, add or list", 1, 2, &a.operand, &a.n_operands};
    lvd_kit_cmd cmd = {"lvd-model", help, opts, run, &a, .db = LVD_KIT_NO_DB, .check = check};
    cmd.operands = &command;
    return lvd_kit_main(&cmd, argc, argv);
}
