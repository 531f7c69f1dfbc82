/* lvd-eval: the k-NN and linear-probe evaluations of frozen features (train/eval/eval.h). Each
 * subcommand is a stage kit command (kit/kit.h) of its own; main picks it by the first word. */
#include <stdio.h>
#include <string.h>

#include "kit/kit.h"
#include "train/eval/eval.h"

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

static const char knn_help[] =
    "--db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "\n"
    "k-NN classification (dinov2/eval/knn.py): L2-normalized features, cosine similarity,\n"
    "the k most similar train images of each test image vote with weights\n"
    "softmax(similarity / T) over the largest k, top-1 and top-5 accuracy for each k (a k\n"
    "larger than the train set is clamped). Uses the model's stored embeddings (v_embeddings)\n"
    "when the pooling is the model's, embedding the missing ones first (lvd-embed's stage);\n"
    "another pooling computes the features from the shards without storing them.";

static const char linear_help[] =
    "--db DB --model NAME --train SOURCE --test SOURCE [options]\n"
    "\n"
    "Linear probe (dinov2/eval/linear.py): features of the frozen ViT computed once from the\n"
    "shards (cls tokens of the last blocks, each through the final norm, optionally with the\n"
    "mean patch token), one linear classifier per learning rate trained together (SGD momentum\n"
    "0.9, no weight decay, lr * batch / 256 with a cosine schedule), the best on a validation\n"
    "share carved from the train source (by image id) scored on the test source.";

/* A comma-separated list of integers in [1, 2^20] (ints) or numbers in [1e-12, 1e6] (floats),
 * at most max of them. */
static int parse_list(const char *text, int max, int *ints, float *floats, int *n, lvd_error *err)
{
    const lvd_kit_opt range = {.lo = ints ? 1 : 1e-12, .hi = ints ? 1 << 20 : 1e6};
    char buf[1024];
    if (strlen(text) >= sizeof buf)
        return lvd_fail(err, "list too long");
    strcpy(buf, text);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == max)
            return lvd_fail(err, "at most %d values", max);
        double v;
        if (lvd_kit_number(&range, tok, &v, err))
            return -1;
        if (ints && v != (int)v)
            return lvd_fail(err, "'%s' is not an integer", tok);
        if (ints)
            ints[*n] = (int)v;
        else
            floats[*n] = (float)v;
        (*n)++;
    }
    return *n > 0 ? 0 : lvd_fail(err, "empty list");
}

static int ks_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    lvd_knn_opts *k = o->dest;
    return parse_list(value, LVD_KNN_MAX_KS, k->ks, NULL, &k->n_ks, err);
}

static int lrs_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    lvd_linear_opts *l = o->dest;
    return parse_list(value, LVD_LINEAR_MAX_LRS, NULL, l->lrs, &l->n_lrs, err);
}

static int pool_opt(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    int *pool = o->dest;
    if (strcmp(value, "cls") == 0)
        *pool = LVD_EVAL_POOL_CLS;
    else if (strcmp(value, "cls+mean") == 0)
        *pool = LVD_EVAL_POOL_CLS_MEAN;
    else
        return lvd_fail(err, "cls or cls+mean, not '%s'", value);
    return 0;
}

static int run_knn(lvd_manifest *m, void *ctx, lvd_error *err)
{
    const lvd_eval_knn_options *o = ctx;
    lvd_eval_knn_report r;
    if (lvd_eval_knn_run(m, o, &r, err))
        return -1;
    lvd_eval_knn_print(stdout, o, &r);
    return 0;
}

static int run_linear(lvd_manifest *m, void *ctx, lvd_error *err)
{
    const lvd_eval_linear_options *o = ctx;
    lvd_eval_linear_report r;
    if (lvd_eval_linear_run(m, o, &r, err))
        return -1;
    lvd_eval_linear_print(stdout, o, &r);
    return 0;
}

/* The options both subcommands share, for options struct s. */
#define COMMON_OPTS(s, model_help, train_help, test_help)                                          \
    LVD_OPT_DB(db), LVD_OPT_MODEL(s.model, model_help),                                            \
        LVD_OPT_STR("train", "SOURCE", s.train, train_help, .required = 1),                        \
        LVD_OPT_STR("test", "SOURCE", s.test, test_help, .required = 1),                           \
        LVD_OPT_INT("resize", "S", s.resize, 1, 8192, "short side before the crop",                \
                    .def = "as stored, else 256"),                                                 \
        LVD_OPT_INT("crop", "C", s.crop, 1, 8192, "crop side, a multiple of the patch size",       \
                    .def = "as stored, else 224"),                                                 \
        LVD_OPT_INT("vit-batch", "N", s.batch, 1, 4096, "images per forward pass"),                \
        LVD_OPT_INT("threads", "N", s.threads, 1, 4096, "ViT threads", .def = "all cores")

static int knn_main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_eval_knn_options o;
    lvd_eval_knn_defaults(&o);
    const lvd_kit_opt opts[] = {
        COMMON_OPTS(o, "registered model (lvd-model list)",
                    "source of the bank of labelled train images",
                    "source of the labelled test images"),
        LVD_OPT_FN("k", "LIST", o.knn, ks_opt, "neighbour counts, comma-separated",
                   .def = "10,20,100,200"),
        LVD_OPT_NUM("temperature", "T", o.knn.temperature, 1e-6, 1e6, "voting temperature"),
        LVD_OPT_FN("pool", "P", o.pool, pool_opt, "cls, or cls+mean: cls and mean patch token",
                   .def = "the model's registered features"),
        LVD_OPT_FLAG("no-embed", o.embed, 0,
                     "fail instead of embedding images without an embedding"),
        LVD_OPT_INT("query-chunk", "N", o.knn.query_chunk, 1, (int64_t)1 << 24,
                    "test images per similarity block"),
        LVD_OPT_INT("bank-chunk", "N", o.knn.bank_chunk, 1, (int64_t)1 << 24,
                    "train images per similarity block"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-eval knn", knn_help, opts, run_knn, &o, .db = LVD_KIT_WRITE};
    return lvd_kit_main(&cmd, argc, argv);
}

static int linear_main(int argc, char **argv)
{
    const char *db = NULL;
    lvd_eval_linear_options o;
    lvd_eval_linear_defaults(&o);
    const lvd_kit_opt opts[] = {
        COMMON_OPTS(o, "registered model with weights",
                    "labelled train images (the validation share comes from them)",
                    "labelled test images"),
        LVD_OPT_INT("blocks", "N", o.blocks, 1, 64,
                    "cls tokens of the last N blocks (1 or 4 in the reference)"),
        LVD_OPT_FLAG("meanpatch", o.meanpatch, 1, "also the mean patch token of the last block"),
        LVD_OPT_FN("lrs", "LIST", o.linear, lrs_opt, "base learning rates, comma-separated",
                   .def = "the reference's 13, 1e-5 .. 0.1"),
        LVD_OPT_INT("epochs", "N", o.linear.epochs, 1, 100000, "passes over the train rows"),
        LVD_OPT_INT("batch-size", "N", o.linear.batch, 1, 1 << 20, "rows per SGD step"),
        LVD_OPT_NUM("val-share", "F", o.val_share, 1e-6, 0.999999,
                    "share of the train source used for validation"),
        LVD_OPT_INT("seed", "N", o.linear.seed, 0, INT64_MAX,
                    "weight init, shuffling and the validation split"),
        LVD_OPT_END,
    };
    const lvd_kit_cmd cmd = {"lvd-eval linear", linear_help, opts,
                             run_linear,        &o,          .db = LVD_KIT_WRITE};
    return lvd_kit_main(&cmd, argc, argv);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* The subcommand's options start after its name. */
    if (strcmp(argv[1], "knn") == 0)
        return knn_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "linear") == 0)
        return linear_main(argc - 1, argv + 1);
    char msg[256];
    snprintf(msg, sizeof msg, "unknown subcommand '%s' (knn or linear)", argv[1]);
    return lvd_kit_usage_error("lvd-eval", msg);
}
