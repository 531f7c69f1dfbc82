/* lvd-index: a saved vector index over a model's embeddings (curate/index_stage.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/index_stage.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-index --db DB --model NAME [options]\n"
    "\n"
    "Builds an inner-product index over the model's L2-normalized embeddings (cosine\n"
    "similarity): exact (Flat) for small sets, IVF or IVF-PQ chosen from the count and the\n"
    "memory budget otherwise. Saves it beside DB and records it with its id-map (index row ->\n"
    "image id; views v_indexes). It replaces the earlier index of the same model and source.\n"
    "\n"
    "  --db DB              manifest database\n"
    "  --model NAME         registered model whose embeddings are indexed\n"
    "  --source NAME        index only this source's images (default: every source)\n"
    "  --factory STRING     FAISS index factory string (default: chosen from the count)\n"
    "  --memory-budget MB   memory budget of the chosen index (default 4096)\n"
    "  --nprobe N           lists an IVF index visits per query, saved with it (default 16)\n"
    "  --help               this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, lvd_index_stage_options *o, lvd_error *err)
{
    static const struct option longs[] = {{"db", required_argument, 0, 'd'},
                                          {"model", required_argument, 0, 'm'},
                                          {"source", required_argument, 0, 's'},
                                          {"factory", required_argument, 0, 'f'},
                                          {"memory-budget", required_argument, 0, 'b'},
                                          {"nprobe", required_argument, 0, 'p'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->db = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 's':
            o->source = optarg;
            break;
        case 'f':
            o->factory = optarg;
            break;
        case 'b':
            if (lvd_cli_int("--memory-budget", optarg, 1, (int64_t)1 << 30, &v, err))
                return -1;
            o->memory_budget = (size_t)v << 20;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option");
        }
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!o->db || !o->model)
        return lvd_fail(err, "--db and --model are required");
    return 0;
}

int main(int argc, char **argv)
{
    lvd_index_stage_options o = {NULL, NULL, NULL, NULL, LVD_STAGE_MEMORY_BUDGET, LVD_STAGE_NPROBE};
    lvd_error err;
    int p = parse(argc, argv, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-index", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-index", o.db, &m))
        return 1;
    lvd_index_stage_result r;
    int rc = lvd_index_stage_run(m, &o, &r, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail("lvd-index", &err);
    printf("index %lld: %lld rows, %s, %s\n", (long long)r.index_id, (long long)r.rows, r.factory,
           r.path);
    return 0;
}
