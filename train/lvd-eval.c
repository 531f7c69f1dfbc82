/* lvd-eval: the k-NN and linear-probe evaluations of frozen features (train/eval.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "curate/stages_cli.h"
#include "train/eval.h"

static const char usage[] =
    "usage: lvd-eval knn --db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "       lvd-eval linear --db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "\n"
    "Evaluates a registered model's frozen features with the DINOv2 protocols on two labelled\n"
    "sources (v_images.label; every stored image of both must have one) and records the\n"
    "scores in the manifest (view v_evals). lvd-eval knn --help and lvd-eval linear --help\n"
    "list their options.\n"
    "\n"
    "Exit status 0 on success, 1 on failure, 2 on bad usage.\n";

static const char knn_usage[] =
    "usage: lvd-eval knn --db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "\n"
    "k-NN classification (dinov2/eval/knn.py): L2-normalized features, cosine similarity,\n"
    "the k most similar train images of each test image vote with weights\n"
    "softmax(similarity / T) over the largest k, top-1 and top-5 accuracy for each k (a k\n"
    "larger than the train set is clamped). Uses the model's stored embeddings (v_embeddings)\n"
    "when the pooling is the model's, embedding the missing ones first (lvd-embed's stage);\n"
    "another pooling computes the features from the shards without storing them.\n"
    "\n"
    "  --db DB              manifest database\n"
    "  --model NAME         registered model (lvd-model list)\n"
    "  --train SOURCE       source of the bank of labelled train images\n"
    "  --test SOURCE        source of the labelled test images\n"
    "  --k LIST             neighbour counts, comma-separated (default 10,20,100,200)\n"
    "  --temperature T      voting temperature (default 0.07)\n"
    "  --pool P             cls or cls+mean (cls and mean patch token; default: the model's\n"
    "                       registered features)\n"
    "  --no-embed           fail instead of embedding images without an embedding\n"
    "  --resize S           short side before the crop when embedding (default: as the\n"
    "                       model's stored embeddings were made, else 256)\n"
    "  --crop C             crop side, a multiple of the patch size (default: as stored, else\n"
    "                       224)\n"
    "  --vit-batch N        images per forward pass (default 32)\n"
    "  --threads N          ViT threads (default: all cores)\n"
    "  --query-chunk N      test images per similarity block (default 1024)\n"
    "  --bank-chunk N       train images per similarity block (default 8192)\n"
    "  --help               this text\n";

static const char linear_usage[] =
    "usage: lvd-eval linear --db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "\n"
    "Linear probe (dinov2/eval/linear.py): features of the frozen ViT computed once from the\n"
    "shards (cls tokens of the last blocks, each through the final norm, optionally with the\n"
    "mean patch token), one linear classifier per learning rate trained together (SGD momentum\n"
    "0.9, no weight decay, lr * batch / 256 with a cosine schedule), the best on a validation\n"
    "share carved from the train source (by image id) scored on the test source.\n"
    "\n"
    "  --db DB              manifest database\n"
    "  --model NAME         registered model with weights\n"
    "  --train SOURCE       labelled train images (the validation share comes from them)\n"
    "  --test SOURCE        labelled test images\n"
    "  --blocks N           cls tokens of the last N blocks (1 or 4 in the reference; default 1)\n"
    "  --meanpatch          also the mean patch token of the last block\n"
    "  --lrs LIST           base learning rates, comma-separated (default the reference's 13,\n"
    "                       1e-5 .. 0.1)\n"
    "  --epochs N           passes over the train rows (default 10)\n"
    "  --batch-size N       rows per SGD step (default 128)\n"
    "  --val-share F        share of the train source used for validation (default 0.1)\n"
    "  --seed N             weight init, shuffling and the validation split (default 0)\n"
    "  --resize S           short side before the crop (default: as the model's stored\n"
    "                       embeddings were made, else 256)\n"
    "  --crop C             crop side, a multiple of the patch size (default: as stored, else\n"
    "                       224)\n"
    "  --vit-batch N        images per forward pass (default 32)\n"
    "  --threads N          ViT threads (default: all cores)\n"
    "  --help               this text\n";

/* A comma-separated list of integers (ints) or floats (floats) for option opt. */
static int parse_list(const char *opt, const char *text, int max, int *ints, float *floats, int *n,
                      lvd_error *err)
{
    char buf[1024];
    if (strlen(text) >= sizeof buf)
        return lvd_fail(err, "%s: list too long", opt);
    strcpy(buf, text);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == max)
            return lvd_fail(err, "%s: at most %d values", opt, max);
        int64_t v;
        if (ints ? lvd_cli_int(opt, tok, 1, 1 << 20, &v, err)
                 : lvd_cli_float(opt, tok, 1e-12, 1e6, &floats[*n], err))
            return -1;
        if (ints)
            ints[*n] = (int)v;
        (*n)++;
    }
    return *n > 0 ? 0 : lvd_fail(err, "%s: empty list", opt);
}

/* Options both subcommands share; returns 1 when c was one of them. */
static int common_opt(int c, const char **db, const char **model, const char **train,
                      const char **test, int *resize, int *crop, int *batch, int *threads, int *rc,
                      lvd_error *err)
{
    int64_t v;
    *rc = 0;
    switch (c) {
    case 'd':
        *db = optarg;
        return 1;
    case 'm':
        *model = optarg;
        return 1;
    case 'a':
        *train = optarg;
        return 1;
    case 'e':
        *test = optarg;
        return 1;
    case 'R':
        *rc = lvd_cli_int("--resize", optarg, 1, 8192, &v, err);
        *resize = (int)v;
        return 1;
    case 'C':
        *rc = lvd_cli_int("--crop", optarg, 1, 8192, &v, err);
        *crop = (int)v;
        return 1;
    case 'B':
        *rc = lvd_cli_int("--vit-batch", optarg, 1, 4096, &v, err);
        *batch = (int)v;
        return 1;
    case 'T':
        *rc = lvd_cli_int("--threads", optarg, 1, 4096, &v, err);
        *threads = (int)v;
        return 1;
    }
    return 0;
}

#define COMMON_LONGS                                                                               \
    {"db", required_argument, 0, 'd'}, {"model", required_argument, 0, 'm'},                       \
        {"train", required_argument, 0, 'a'}, {"test", required_argument, 0, 'e'},                 \
        {"resize", required_argument, 0, 'R'}, {"crop", required_argument, 0, 'C'},                \
        {"vit-batch", required_argument, 0, 'B'}, {"threads", required_argument, 0, 'T'},          \
    {                                                                                              \
        "help", no_argument, 0, 'h'                                                                \
    }

/* Returns 0 to run, 1 after --help, -1 on bad usage. */
static int parse_knn(int argc, char **argv, const char **db, lvd_eval_knn_options *o,
                     lvd_error *err)
{
    static const struct option longs[] = {COMMON_LONGS,
                                          {"k", required_argument, 0, 'k'},
                                          {"temperature", required_argument, 0, 't'},
                                          {"pool", required_argument, 0, 'p'},
                                          {"no-embed", no_argument, 0, 'n'},
                                          {"query-chunk", required_argument, 0, 'q'},
                                          {"bank-chunk", required_argument, 0, 'b'},
                                          {0, 0, 0, 0}};
    int c, rc;
    int64_t v;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (common_opt(c, db, &o->model, &o->train, &o->test, &o->resize, &o->crop, &o->batch,
                       &o->threads, &rc, err)) {
            if (rc)
                return -1;
            continue;
        }
        switch (c) {
        case 'k':
            if (parse_list("--k", optarg, LVD_KNN_MAX_KS, o->knn.ks, NULL, &o->knn.n_ks, err))
                return -1;
            break;
        case 't':
            if (lvd_cli_float("--temperature", optarg, 1e-6, 1e6, &o->knn.temperature, err))
                return -1;
            break;
        case 'p':
            if (strcmp(optarg, "cls") == 0)
                o->pool = LVD_EVAL_POOL_CLS;
            else if (strcmp(optarg, "cls+mean") == 0)
                o->pool = LVD_EVAL_POOL_CLS_MEAN;
            else
                return lvd_fail(err, "--pool: cls or cls+mean, not '%s'", optarg);
            break;
        case 'n':
            o->embed = 0;
            break;
        case 'q':
            if (lvd_cli_int("--query-chunk", optarg, 1, (int64_t)1 << 24, &v, err))
                return -1;
            o->knn.query_chunk = v;
            break;
        case 'b':
            if (lvd_cli_int("--bank-chunk", optarg, 1, (int64_t)1 << 24, &v, err))
                return -1;
            o->knn.bank_chunk = v;
            break;
        case 'h':
            fputs(knn_usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!*db || !o->model || !o->train || !o->test)
        return lvd_fail(err, "--db, --model, --train and --test are required");
    return 0;
}

static int parse_linear(int argc, char **argv, const char **db, lvd_eval_linear_options *o,
                        lvd_error *err)
{
    static const struct option longs[] = {COMMON_LONGS,
                                          {"blocks", required_argument, 0, 'k'},
                                          {"meanpatch", no_argument, 0, 'M'},
                                          {"lrs", required_argument, 0, 'l'},
                                          {"epochs", required_argument, 0, 'E'},
                                          {"batch-size", required_argument, 0, 'b'},
                                          {"val-share", required_argument, 0, 'v'},
                                          {"seed", required_argument, 0, 's'},
                                          {0, 0, 0, 0}};
    int c, rc;
    int64_t v;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (common_opt(c, db, &o->model, &o->train, &o->test, &o->resize, &o->crop, &o->batch,
                       &o->threads, &rc, err)) {
            if (rc)
                return -1;
            continue;
        }
        switch (c) {
        case 'k':
            if (lvd_cli_int("--blocks", optarg, 1, 64, &v, err))
                return -1;
            o->blocks = (int)v;
            break;
        case 'M':
            o->meanpatch = 1;
            break;
        case 'l':
            if (parse_list("--lrs", optarg, LVD_LINEAR_MAX_LRS, NULL, o->linear.lrs,
                           &o->linear.n_lrs, err))
                return -1;
            break;
        case 'E':
            if (lvd_cli_int("--epochs", optarg, 1, 100000, &v, err))
                return -1;
            o->linear.epochs = (int)v;
            break;
        case 'b':
            if (lvd_cli_int("--batch-size", optarg, 1, 1 << 20, &v, err))
                return -1;
            o->linear.batch = (int)v;
            break;
        case 'v': {
            float f;
            if (lvd_cli_float("--val-share", optarg, 1e-6, 0.999999, &f, err))
                return -1;
            o->val_share = f;
            break;
        }
        case 's':
            if (lvd_cli_int("--seed", optarg, 0, INT64_MAX, &v, err))
                return -1;
            o->linear.seed = (uint64_t)v;
            break;
        case 'h':
            fputs(linear_usage, stdout);
            return 1;
        default:
            return lvd_fail(err, "unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return lvd_fail(err, "unexpected argument '%s'", argv[optind]);
    if (!*db || !o->model || !o->train || !o->test)
        return lvd_fail(err, "--db, --model, --train and --test are required");
    return 0;
}

static int run_knn(int argc, char **argv)
{
    const char *tool = "lvd-eval knn", *db = NULL;
    lvd_eval_knn_options o;
    lvd_eval_knn_defaults(&o);
    lvd_error err;
    int p = parse_knn(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail(tool, err.msg);
    lvd_manifest *m;
    if (lvd_cli_open(tool, db, &m))
        return 1;
    lvd_eval_knn_report r;
    int rc = lvd_eval_knn_run(m, &o, &r, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail(tool, &err);
    lvd_eval_knn_print(stdout, &o, &r);
    return 0;
}

static int run_linear(int argc, char **argv)
{
    const char *tool = "lvd-eval linear", *db = NULL;
    lvd_eval_linear_options o;
    lvd_eval_linear_defaults(&o);
    lvd_error err;
    int p = parse_linear(argc, argv, &db, &o, &err);
    if (p == 1)
        return 0;
    if (p)
        return lvd_cli_usage_fail(tool, err.msg);
    lvd_manifest *m;
    if (lvd_cli_open(tool, db, &m))
        return 1;
    lvd_eval_linear_report r;
    int rc = lvd_eval_linear_run(m, &o, &r, &err);
    lvd_manifest_close(m);
    if (rc)
        return lvd_cli_fail(tool, &err);
    lvd_eval_linear_print(stdout, &o, &r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    opterr = 0; /* one error line, ours */
    /* The subcommand's options start after its name. */
    if (strcmp(argv[1], "knn") == 0)
        return run_knn(argc - 1, argv + 1);
    if (strcmp(argv[1], "linear") == 0)
        return run_linear(argc - 1, argv + 1);
    char msg[256];
    snprintf(msg, sizeof msg, "unknown subcommand '%s' (knn or linear)", argv[1]);
    return lvd_cli_usage_fail("lvd-eval", msg);
}
