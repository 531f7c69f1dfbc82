/* lvd-query: nearest neighbours of an image in a recorded index (curate/index_stage_query.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/index_stage_query.h"
#include "curate/stages_cli.h"

static const char usage[] =
    "usage: lvd-query --db DB --model NAME (--id ID | --image FILE) [options]\n"
    "\n"
    "Prints the nearest images of the model's index (made by lvd-index) as TSV lines\n"
    "id<TAB>url<TAB>similarity (cosine), nearest first, after a header line. --id queries\n"
    "with the stored embedding of image ID (which is left out of the answer); --image decodes,\n"
    "preprocesses and embeds FILE with the registered model (it needs the model's weights).\n"
    "\n"
    "  --db DB           manifest database\n"
    "  --model NAME      registered model\n"
    "  --id ID           query image id\n"
    "  --image FILE      query image file (JPEG, PNG or WebP)\n"
    "  -k K              neighbours printed (default 10)\n"
    "  --source NAME     use the index over this source (default: over every source)\n"
    "  --resize N        --image: short side resize (default 256)\n"
    "  --crop N          --image: center crop (default 224)\n"
    "  --nprobe N        lists an IVF index visits (default: as saved)\n"
    "  --help            this text\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static int parse(int argc, char **argv, const char **db, lvd_query_options *o, lvd_error *err)
{
    static const struct option longs[] = {
        {"db", required_argument, 0, 'd'},     {"model", required_argument, 0, 'm'},
        {"id", required_argument, 0, 'i'},     {"image", required_argument, 0, 'I'},
        {"source", required_argument, 0, 's'}, {"resize", required_argument, 0, 'r'},
        {"crop", required_argument, 0, 'c'},   {"nprobe", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c, rc;
    int64_t v = 0;
    while ((c = getopt_long(argc, argv, "k:", longs, NULL)) != -1) {
        rc = 0;
        switch (c) {
        case 'd':
            *db = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 'i':
            rc = lvd_cli_int("--id", optarg, 1, INT64_MAX, &o->image_id, err);
            break;
        case 'I':
            o->image = optarg;
            break;
        case 's':
            o->source = optarg;
            break;
        case 'k':
            rc = lvd_cli_int("-k", optarg, 1, 100000, &v, err);
            o->k = (int)v;
            break;
        case 'r':
            rc = lvd_cli_int("--resize", optarg, 1, 16384, &v, err);
            o->resize = (int)v;
            break;
        case 'c':
            rc = lvd_cli_int("--crop", optarg, 1, 16384, &v, err);
            o->crop = (int)v;
            break;
        case 'p':
            rc = lvd_cli_int("--nprobe", optarg, 1, 1 << 20, &v, err);
            o->nprobe = (int)v;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option");
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!*db || !o->model)
        return lvd_fail(err, "--db and --model are required");
    if ((o->image_id > 0) == (o->image != NULL))
        return lvd_fail(err, "give exactly one of --id and --image");
    if (o->crop > o->resize)
        return lvd_fail(err, "--crop %d is larger than --resize %d", o->crop, o->resize);
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_query_options o;
    lvd_query_defaults(&o);
    lvd_error err;
    int p = parse(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail("lvd-query", err.msg);
    lvd_manifest *m;
    if (lvd_cli_open("lvd-query", db, &m))
        return 1;
    int rc = lvd_query_run(m, &o, stdout, &err);
    lvd_manifest_close(m);
    return rc ? lvd_cli_fail("lvd-query", &err) : 0;
}
