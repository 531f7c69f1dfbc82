/* lvd-model: the model registry (embed/model_registry.h) from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/model_registry.h"

static const char usage[] =
    "usage: lvd-model add --db DB --name NAME [--features F] WEIGHTS\n"
    "       lvd-model add --db DB --name NAME --random SPEC [--seed N] [--features F]\n"
    "       lvd-model list --db DB\n"
    "\n"
    "add registers a DINOv2 ViT checkpoint (safetensors or torch .pth) under NAME in the\n"
    "manifest DB: its absolute path, the sha256 of the file (lvd-embed refuses the file once\n"
    "it changes), the architecture inferred from its tensors, the embedding width and the\n"
    "number of parameters. With --random it registers a built-in randomly initialized ViT\n"
    "instead (SPEC vits14, vitb14, vitl14 or vitg14; DINOv2 init, deterministic for a seed):\n"
    "random features, for demos and benchmarks. list prints the registered models (v_models).\n"
    "\n"
    "  --db DB        manifest database\n"
    "  --name NAME    model name (letters, digits, '.', '_', '-')\n"
    "  --features F   cls (default) or cls+patchmean (embedding width 2 x dim)\n"
    "  --random SPEC  built-in random model\n"
    "  --seed N       its seed (default 0)\n"
    "  --help         this text\n";

typedef struct args {
    const char *cmd, *db, *name, *weights, *random;
    unsigned long long seed;
    lvd_model_features features;
} args;

static int parse_value(const char *flag, const char *val, args *a)
{
    lvd_error err;
    if (strcmp(flag, "--db") == 0)
        a->db = val;
    else if (strcmp(flag, "--name") == 0)
        a->name = val;
    else if (strcmp(flag, "--random") == 0)
        a->random = val;
    else if (strcmp(flag, "--seed") == 0) {
        char *end;
        a->seed = strtoull(val, &end, 10);
        if (!*val || *end || val[0] == '-' || a->seed > (1ULL << 53)) {
            fprintf(stderr, "lvd-model: --seed wants a number from 0 to 2^53\n");
            return -1;
        }
    } else if (strcmp(flag, "--features") == 0) {
        if (lvd_model_features_parse(val, &a->features, &err) != 0 ||
            a->features == LVD_FEATURES_EXTERNAL) {
            fprintf(stderr, "lvd-model: --features wants cls or cls+patchmean\n");
            return -1;
        }
    } else {
        fprintf(stderr, "lvd-model: unexpected argument %s (see --help)\n", flag);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
    }
    if (argc < 2 || (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "list") != 0)) {
        fprintf(stderr, "lvd-model: want a command, add or list (see --help)\n");
        return -1;
    }
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && i + 1 < argc) {
            if (parse_value(argv[i], argv[i + 1], a) != 0)
                return -1;
            i++;
        } else if (argv[i][0] != '-' && !a->weights) {
            a->weights = argv[i];
        } else {
            fprintf(stderr, "lvd-model: unexpected argument %s (see --help)\n", argv[i]);
            return -1;
        }
    }
    if (!a->db) {
        fprintf(stderr, "lvd-model: --db is required\n");
        return -1;
    }
    if (strcmp(a->cmd, "add") == 0 && (!a->name || !a->weights == !a->random)) {
        fprintf(stderr, "lvd-model: add wants --name and either WEIGHTS or --random SPEC\n");
        return -1;
    }
    if (strcmp(a->cmd, "list") == 0 && (a->name || a->weights || a->random)) {
        fprintf(stderr, "lvd-model: list takes only --db\n");
        return -1;
    }
    return 0;
}

static int add(lvd_manifest *m, const args *a, lvd_error *err)
{
    lvd_model_record rec;
    int rc = a->random
                 ? lvd_model_add_random(m, a->name, a->random, a->seed, a->features, &rec, err)
                 : lvd_model_add_weights(m, a->name, a->weights, a->features, &rec, err);
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

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    lvd_error err;
    lvd_error_clear(&err);
    lvd_manifest *m;
    if (lvd_manifest_open(a.db, &m, &err) != 0) {
        fprintf(stderr, "lvd-model: %s\n", err.msg);
        return 1;
    }
    int rc = strcmp(a.cmd, "add") == 0 ? add(m, &a, &err) : list(m, &err);
    lvd_manifest_close(m);
    if (rc != 0) {
        fprintf(stderr, "lvd-model: %s\n", err.msg);
        return 1;
    }
    return 0;
}
