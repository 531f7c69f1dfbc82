/* lvd-bench-train: one DINOv2 training iteration (train/ssl.h) of the anchor
 * configuration, timed per phase.
 *
 * ViT dim 192, depth 6, 3 heads, patch 4, MLP 768, 28-px global crops x 2 and 12-px local crops
 * x 6, batch 128; DINO head 4096 prototypes, hidden 512, bottleneck 128, shared with iBOT; half
 * the global crops masked, each at a ratio drawn between consecutive steps of linspace(0.1, 0.5)
 * as the reference's collate does (random patches: the compute does not depend on the mask's
 * shape), with the collate's upper bound as the trainer's room; KoLeo 0.1, softmax centering, no
 * drop path. Synthetic normal images. Per step: data (making the synthetic batch), teacher,
 * student forward (backbones, heads, cross-entropy losses), backward (heads, KoLeo, backbones)
 * and optimizer (clipping, AdamW, EMA) wall seconds, and the process CPU seconds (meaningful on
 * a loaded machine); then the median of each over the steps after a first warm-up step, the peak
 * RSS, and as the last line `median step: S s` (wall). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "embed/vit_rng.h"
#include "train/ssl.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

enum {
    B = 128,
    N_LOCAL = 6,
    GLOBAL = 28,
    LOCAL = 12,
    PATCH = 4,
    NP = (GLOBAL / PATCH) * (GLOBAL / PATCH)
};

/* The collate's masks: int(2B * 0.5) crops masked, crop i at int(NP * U(p_i, p_i+1)) patches of
 * p = linspace(0.1, 0.5, n + 1), placed at random crops; returns the upper bound
 * sum int(NP * p_i+1). */
static int make_masks(uint8_t *masks, lvd_rng *r)
{
    int rows = 2 * B, n = rows / 2, bound = 0;
    memset(masks, 0, (size_t)rows * NP);
    int order[2 * B];
    for (int i = 0; i < rows; i++) {
        order[i] = i;
    }
    for (int i = rows - 1; i > 0; i--) {
        int j = lvd_rng_below(r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < n; i++) {
        double lo = 0.1 + 0.4 * i / n, hi = 0.1 + 0.4 * (i + 1) / n;
        int count = (int)(NP * (lo + (hi - lo) * lvd_rng_uniform(r)));
        bound += (int)(NP * hi);
        uint8_t *m = masks + (size_t)order[i] * NP;
        for (int k = 0; k < count;) {
            int p = lvd_rng_below(r, NP);
            if (!m[p]) {
                m[p] = 1;
                k++;
            }
        }
    }
    return bound;
}

static void fill_normal(float *x, size_t n, lvd_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)lvd_rng_normal(r);
    }
}

static void usage(FILE *f)
{
    fputs("usage: lvd-bench-train [--threads N] [--steps S]\n"
          "\n"
          "Times DINOv2 training iterations of the anchor configuration (ViT 192/6/3, patch 4,\n"
          "2 x 28 px + 6 x 12 px crops, batch 128, head 4096/512/128 shared with iBOT) per phase.\n"
          "\n"
          "  --threads N   OpenMP threads (default 2)\n"
          "  --steps S     timed steps after one warm-up step (default 5)\n"
          "  --help        this text\n",
          f);
}

int main(int argc, char **argv)
{
    int threads = 2, steps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || threads > 1024 || steps < 1 || steps > 10000) {
        fprintf(stderr, "lvd-bench-train: --threads 1..1024 and --steps 1..10000\n");
        return 2;
    }
    omp_set_num_threads(threads);

    lvd_vit_info arch = {.dim = 192,
                         .depth = 6,
                         .heads = 3,
                         .patch = PATCH,
                         .grid = GLOBAL / PATCH,
                         .n_reg = 0,
                         .ffn = LVD_VIT_MLP,
                         .ffn_hidden = 768};
    lvd_head_config head = {.in_dim = 192,
                            .hidden_dim = 512,
                            .bottleneck_dim = 128,
                            .out_dim = 4096,
                            .nlayers = 3,
                            .mlp_bias = 1};
    uint8_t *masks = malloc((size_t)2 * B * NP);
    lvd_rng rng = {1};
    lvd_ssl_config cfg;
    lvd_ssl_config_default(&cfg, B, N_LOCAL, GLOBAL, LOCAL);
    cfg.max_masked = make_masks(masks, &rng);
    cfg.threads = threads;
    lvd_ssl *t;
    lvd_error err;
    if (lvd_ssl_create_new(&cfg, &arch, 1e-5f, &head, NULL, 7, &t, &err) != 0) {
        fprintf(stderr, "lvd-bench-train: %s\n", err.msg);
        return 1;
    }
    size_t ng = (size_t)2 * B * 3 * GLOBAL * GLOBAL, nl = (size_t)N_LOCAL * B * 3 * LOCAL * LOCAL;
    float *global = malloc(ng * sizeof *global), *local = malloc(nl * sizeof *local);
    lvd_schedule_values sv = {
        .lr = 1e-3, .wd = 0.04, .momentum = 0.992, .teacher_temp = 0.04, .last_layer_lr = 1e-3};
    printf("lvd-bench-train: ViT 192/6/3 patch 4, batch %d (2 x %d px, %d x %d px), head 4096, "
           "%d thread%s\n",
           B, GLOBAL, N_LOCAL, LOCAL, threads, threads > 1 ? "s" : "");
    printf("%4s %7s %8s %8s %9s %9s %8s %8s %7s %7s\n", "step", "data", "teacher", "student",
           "backward", "optimizer", "step", "cpu", "masked", "loss");
    int total = steps + 1;
    double *ph[7];
    for (int k = 0; k < 7; k++) {
        ph[k] = calloc((size_t)total, sizeof(double));
    }
    for (int s = 0; s < total; s++) {
        double c0 = cpu_now(), w0 = now();
        fill_normal(global, ng, &rng);
        fill_normal(local, nl, &rng);
        int bound = make_masks(masks, &rng);
        double w1 = now();
        lvd_ssl_batch b = {.global_crops = global, .local_crops = local, .masks = masks};
        lvd_ssl_stats st;
        if (bound > cfg.max_masked || lvd_ssl_step(t, &b, &sv, &st, &err) != 0) {
            fprintf(stderr, "lvd-bench-train: %s\n", err.msg);
            return 1;
        }
        double w2 = now(), c1 = cpu_now();
        double v[7] = {w1 - w0,     st.t_teacher, st.t_student, st.t_backward,
                       st.t_update, w2 - w0,      c1 - c0};
        for (int k = 0; k < 7; k++) {
            ph[k][s] = v[k];
        }
        printf("%4d %7.3f %8.3f %8.3f %9.3f %9.3f %8.3f %8.3f %7d %7.3f%s\n", s, v[0], v[1], v[2],
               v[3], v[4], v[5], v[6], st.n_masked, st.loss_total, s == 0 ? "  (warm-up)" : "");
        fflush(stdout);
    }
    double m[7];
    for (int k = 0; k < 7; k++) {
        m[k] = median(ph[k] + 1, steps);
    }
    printf("%4s %7.3f %8.3f %8.3f %9.3f %9.3f %8.3f %8.3f\n", "med", m[0], m[1], m[2], m[3], m[4],
           m[5], m[6]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
            load[0] = load[1] = load[2] = -1;
        }
        fclose(f);
    }
    printf("peak RSS: %.0f MB; load average %.2f %.2f %.2f\n", (double)ru.ru_maxrss / 1024.0,
           load[0], load[1], load[2]);
    printf("median step: %.3f s\n", m[5]);
    for (int k = 0; k < 7; k++) {
        free(ph[k]);
    }
    free(global);
    free(local);
    free(masks);
    lvd_ssl_free(t);
    return 0;
}
