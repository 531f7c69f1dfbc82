/* The whole SSL iteration against the reference's train_step case (../shared/reference): the
 * case replayed through the library (lvd_ssl_case_run) and through lvd-train-step, every output
 * of the case compared within the README tolerances (losses, targets, centers, grad norms and
 * multipliers as forward features; iteration 0's gradients 1e-3 relative; final parameters: the
 * update final - init within 1e-3 relative per tensor); bitwise determinism for a thread count;
 * a case whose KoLeo weight is changed must fail the comparison; the tool's --help and errors.
 *
 * One exception, from the math: the key third of every attn.qkv.bias has a gradient that is 0 in
 * exact arithmetic (attention is invariant to adding one vector to every key), so both
 * implementations hold float rounding noise there (~1e-10 against gradients ~1e-4), and AdamW
 * with eps 1e-8 turns that noise into updates proportional to it. Those slices are held to the
 * noise level instead: their it0 gradient (compared with the whole tensor above) must stay under
 * 1e-5 of the tensor's largest, their update under two AdamW steps of that tensor's lr. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "store/tensors.h"
#include "tests/train/optim_test.h"
#include "train/ssl_case.h"
#include "train/step_case.h"

static int is_input(const char *name)
{
    static const char *inputs[] = {"global_crops", "local_crops", "masks", "dino_center_in",
                                   "ibot_center_in"};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        if (strcmp(name, inputs[i]) == 0) {
            return 1;
        }
    }
    return strncmp(name, "student_init.", 13) == 0 || strncmp(name, "teacher_init.", 13) == 0;
}

typedef struct kind_stat {
    const char *kind;
    double worst; /* relative error */
    char where[160];
    int n;
} kind_stat;

typedef struct comparison {
    int failures;
    int verbose; /* print each failure */
    kind_stat kinds[16];
    int n_kinds;
} comparison;

static void record(comparison *c, const char *kind, const char *name, double rel)
{
    kind_stat *k = NULL;
    for (int i = 0; i < c->n_kinds; i++) {
        if (strcmp(c->kinds[i].kind, kind) == 0) {
            k = &c->kinds[i];
        }
    }
    if (!k) {
        k = &c->kinds[c->n_kinds++];
        memset(k, 0, sizeof *k);
        k->kind = kind;
    }
    k->n++;
    if (rel >= k->worst) {
        k->worst = rel;
        snprintf(k->where, sizeof k->where, "%s", name);
    }
}

static void fail(comparison *c, const char *fmt, const char *name, double a, double b)
{
    c->failures++;
    if (c->verbose) {
        fprintf(stderr, "  FAIL ");
        fprintf(stderr, fmt, name, a, b);
        fputc('\n', stderr);
    }
}

/* ||a - b|| / ||b|| over n values, a and b possibly offset by init (update = x - init). */
static double rel_update(const float *a, const float *b, const float *init, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double x = init ? (double)a[i] - init[i] : a[i];
        double y = init ? (double)b[i] - init[i] : b[i];
        d += (x - y) * (x - y);
        r += y * y;
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The final parameters' check of one tensor; qkv biases with the key third held to noise. */
static void check_update(comparison *c, const lvd_tensors *ref, const char *name, const float *a,
                         const float *b, const float *init, size_t n, double lr)
{
    const char *kind =
        strncmp(name, "student_final.", 14) == 0 ? "student update" : "teacher update";
    if (!ends_with(name, ".attn.qkv.bias")) {
        double e = rel_update(a, b, init, n);
        record(c, kind, name, e);
        if (!(e <= 1e-3)) {
            fail(c, "%s: update relative error %.3g (tol %g)", name, e, 1e-3);
        }
        return;
    }
    size_t D = n / 3;
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i >= D && i < 2 * D) {
            continue;
        }
        double x = (double)a[i] - init[i], y = (double)b[i] - init[i];
        d += (x - y) * (x - y);
        r += y * y;
    }
    double e = sqrt(d / r);
    record(c, kind, name, e);
    if (!(e <= 1e-3)) {
        fail(c, "%s: update of the query and value thirds, relative error %.3g (tol %g)", name, e,
             1e-3);
    }
    /* The key third: the gradient at noise level, the update within two steps' reach. */
    char gname[256];
    const char *rest = strchr(name, '.') + 1; /* "<part>.<tensor>" */
    snprintf(gname, sizeof gname, "it0.grad.%s", rest);
    const lvd_tensor *g = lvd_tensors_find(ref, gname);
    double gmax = 0, gkey = 0, ukey = 0;
    for (size_t i = 0; g && i < n; i++) {
        gmax = fmax(gmax, fabs(g->data[i]));
        if (i >= D && i < 2 * D) {
            gkey = fmax(gkey, fabs(g->data[i]));
            ukey = fmax(ukey, fabs((double)a[i] - init[i]));
        }
    }
    if (!g || !(gkey <= 1e-5 * gmax) || !(ukey <= 2 * lr)) {
        fail(c, "%s: key third not at noise level (gradient ratio %.3g, update %.3g)", name,
             gmax > 0 ? gkey / gmax : 1.0, ukey);
    }
}

/* Compares every output of the case ref with ours; returns the failures. */
static int compare(const lvd_tensors *ref, const lvd_tensors *ours, int verbose, int print)
{
    comparison c = {.verbose = verbose};
    lvd_step_case sc;
    lvd_error err;
    if (lvd_step_case_read(ref, &sc, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int n_out = 0;
    for (size_t i = 0; i < lvd_tensors_count(ref); i++) {
        const lvd_tensor *r = lvd_tensors_at(ref, i);
        if (is_input(r->name)) {
            continue;
        }
        n_out++;
        const lvd_tensor *o = lvd_tensors_find(ours, r->name);
        int same = o && o->ndim == r->ndim && o->numel == r->numel;
        for (int d = 0; same && d < r->ndim; d++) {
            same = o->shape[d] == r->shape[d];
        }
        if (!same) {
            fail(&c, "%s: missing or of another shape%.0f%.0f", r->name, 0.0, 0.0);
            continue;
        }
        size_t n = (size_t)r->numel;
        if (strncmp(r->name, "student_final.", 14) == 0 ||
            strncmp(r->name, "teacher_final.", 14) == 0) {
            char iname[256];
            snprintf(iname, sizeof iname, "%.7s_init.%s", r->name, strchr(r->name, '.') + 1);
            const lvd_tensor *init = lvd_tensors_find(ref, iname);
            if (!init || init->numel != r->numel) {
                fail(&c, "%s: no initial value%.0f%.0f", r->name, 0.0, 0.0);
                continue;
            }
            /* the largest lr multiplier of the parts is 1 */
            check_update(&c, ref, r->name, o->data, r->data, init->data, n,
                         fmax(sc.hyper.lr, sc.hyper.last_layer_lr));
        } else if (strncmp(r->name, "it0.grad.", 9) == 0) {
            double e = rel_update(o->data, r->data, NULL, n);
            record(&c, "gradient", r->name, e);
            if (!(e <= 1e-3)) {
                fail(&c, "%s: gradient relative error %.3g (tol %g)", r->name, e, 1e-3);
            }
        } else {
            const char *kind = strstr(r->name, ".loss.")         ? "loss"
                               : strstr(r->name, "_targets")     ? "targets"
                               : strstr(r->name, ".grad_norm.")  ? "grad norm"
                               : strstr(r->name, "_multiplier.") ? "multiplier"
                                                                 : "center";
            double maxr = 0, maxd = 0;
            for (size_t j = 0; j < n; j++) {
                maxr = fmax(maxr, fabs(r->data[j]));
                maxd = fmax(maxd, fabs((double)o->data[j] - r->data[j]));
            }
            record(&c, kind, r->name, rel_update(o->data, r->data, NULL, n));
            double tol = 1e-4 * fmax(1.0, maxr);
            if (!(maxd <= tol)) {
                fail(&c, "%s: max|ours - ref| %.3g (tol %.3g)", r->name, maxd, tol);
            }
        }
    }
    if (n_out < 100) {
        fail(&c, "%s: only %.0f outputs in the case%.0f", "case", (double)n_out, 0.0);
    }
    if (print) {
        for (int i = 0; i < c.n_kinds; i++) {
            printf("  %-15s %4d tensors, worst relative error %.2e (%s)\n", c.kinds[i].kind,
                   c.kinds[i].n, c.kinds[i].worst, c.kinds[i].where);
        }
    }
    return c.failures;
}

/* 1 when the two files hold the same tensors, bit for bit. */
static int identical(const char *pa, const char *pb)
{
    lvd_tensors *a, *b;
    lvd_error err;
    if (lvd_tensors_open(pa, &a, &err) != 0) {
        return 0;
    }
    if (lvd_tensors_open(pb, &b, &err) != 0) {
        lvd_tensors_close(a);
        return 0;
    }
    int same = lvd_tensors_count(a) == lvd_tensors_count(b);
    for (size_t i = 0; same && i < lvd_tensors_count(a); i++) {
        const lvd_tensor *x = lvd_tensors_at(a, i), *y = lvd_tensors_find(b, x->name);
        same = y && y->numel == x->numel &&
               (x->numel == 0 || memcmp(x->data, y->data, (size_t)x->numel * 4) == 0);
    }
    lvd_tensors_close(a);
    lvd_tensors_close(b);
    return same;
}

static int compare_files(const char *case_path, const char *out, int verbose, int print)
{
    lvd_tensors *ref, *ours;
    lvd_error err;
    if (lvd_tensors_open(case_path, &ref, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (lvd_tensors_open(out, &ours, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        lvd_tensors_close(ref);
        return 1;
    }
    int f = compare(ref, ours, verbose, print);
    lvd_tensors_close(ref);
    lvd_tensors_close(ours);
    return f;
}

/* A copy of the case with the hyper metadata's KoLeo weight 0.1 replaced by 0.2. */
static int write_mutated(const char *case_path, const char *path)
{
    lvd_tensors *ts;
    lvd_error err;
    if (lvd_tensors_open(case_path, &ts, &err) != 0) {
        return -1;
    }
    size_t n = lvd_tensors_count(ts);
    lvd_tensor *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        t[i] = *lvd_tensors_at(ts, i);
    }
    static const char *keys[] = {"hyper", "backbone", "head"};
    const char *meta[6];
    char hyper[4096];
    snprintf(hyper, sizeof hyper, "%s", lvd_tensors_metadata(ts, "hyper"));
    char *k = strstr(hyper, "\"koleo_weight\": 0.1");
    int rc = -1;
    if (k) {
        k[strlen("\"koleo_weight\": 0.")] = '2';
        for (int i = 0; i < 3; i++) {
            meta[2 * i] = keys[i];
            meta[2 * i + 1] = i == 0 ? hyper : lvd_tensors_metadata(ts, keys[i]);
        }
        rc = lvd_safetensors_write(path, t, n, meta, 3, &err);
    }
    free(t);
    lvd_tensors_close(ts);
    return rc;
}

/* Runs the executable with args; returns its exit status. */
static int run_tool(const char *exe, const char *a, const char *b, const char *c, int quiet)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (quiet && !freopen("/dev/null", "w", stdout)) {
            _exit(126);
        }
        execl(exe, exe, a, b, c, (char *)NULL);
        _exit(127);
    }
    return check_wait(pid);
}

int main(int argc, char **argv)
{
    const char *dir = check_reference_dir();
    char case_path[1024];
    snprintf(case_path, sizeof case_path, "%s/train_step.case.safetensors", dir);
    char *tmp = ot_tmpdir();
    char out1[1100], out2[1100], out3[1100], outx[1100], mutated[1100];
    snprintf(out1, sizeof out1, "%s/out1.safetensors", tmp);
    snprintf(out2, sizeof out2, "%s/out2.safetensors", tmp);
    snprintf(out3, sizeof out3, "%s/out3.safetensors", tmp);
    snprintf(outx, sizeof outx, "%s/outx.safetensors", tmp);
    snprintf(mutated, sizeof mutated, "%s/mutated.safetensors", tmp);
    lvd_error err;

    /* The library, 1 thread, then again (bitwise), then 3 threads (within tolerance). */
    CHECK_MSG(lvd_ssl_case_run(case_path, out1, 1, &err) == 0, "%s", err.msg);
    printf("1 thread:\n");
    CHECK(compare_files(case_path, out1, 1, 1) == 0);
    CHECK_MSG(lvd_ssl_case_run(case_path, out2, 1, &err) == 0, "%s", err.msg);
    CHECK_MSG(identical(out1, out2), "two runs on 1 thread differ");
    CHECK_MSG(lvd_ssl_case_run(case_path, out3, 3, &err) == 0, "%s", err.msg);
    printf("3 threads:\n");
    CHECK(compare_files(case_path, out3, 1, 1) == 0);

    /* A wrong normalization (the KoLeo weight doubled) must be caught. */
    CHECK(write_mutated(case_path, mutated) == 0);
    CHECK_MSG(lvd_ssl_case_run(mutated, outx, 1, &err) == 0, "%s", err.msg);
    int f = compare_files(case_path, outx, 0, 0);
    printf("KoLeo weight 0.2 instead of 0.1: %d outputs out of tolerance\n", f);
    CHECK(f > 10);

    /* Errors name the problem. */
    CHECK(lvd_ssl_case_run("/nonexistent/case.safetensors", outx, 1, &err) == -1 &&
          strstr(err.msg, "/nonexistent/case.safetensors"));
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/vit_backward.case.safetensors", dir);
    CHECK_MSG(lvd_ssl_case_run(bad, outx, 1, &err) == -1 && strstr(err.msg, "hyper"), "%s",
              err.msg);

    /* The executable: the same outputs bit for bit, --help, errors. */
    if (argc > 1) {
        const char *exe = argv[1];
        unlink(out2);
        CHECK(run_tool(exe, case_path, out2, "--threads=1", 1) != 0); /* unknown option form */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execl(exe, exe, case_path, out2, "--threads", "1", (char *)NULL);
            _exit(127);
        }
        CHECK(check_wait(pid) == 0);
        CHECK_MSG(identical(out1, out2), "lvd-train-step differs from the library");
        CHECK(run_tool(exe, "--help", NULL, NULL, 1) == 0);
        CHECK(run_tool(exe, case_path, NULL, NULL, 0) == 2);
        CHECK(run_tool(exe, bad, outx, NULL, 0) == 1);
    }
    check_rmtree(tmp);
    return check_finish();
}
