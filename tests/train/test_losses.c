/* The SSL losses (train/loss.h) against the reference: Sinkhorn-Knopp and softmax-centered teacher
 * targets, the lazy center update, the DINO loss on Sinkhorn targets and its gradients, the iBOT
 * masked-patch loss and KoLeo with their gradients. */
#include <stdlib.h>
#include <string.h>

#include "tests/train/heads_check.h"
#include "train/loss.h"

/* Checks a scalar loss with the forward tolerance. */
static void check_scalar(const char *label, double v, double r)
{
    double tol = 1e-4 * fmax(1.0, fabs(r));
    printf("  %-44s %.7f (ref %.7f)\n", label, v, r);
    CHECK_MSG(fabs(v - r) <= tol, "%s: %.7f, reference %.7f", label, v, r);
}

/* dinov2's sinkhorn_knopp_teacher transcribed step by step in float64 (where exp(t / temp) does
 * not overflow): q (n, k) receives Q.t(). */
static void sinkhorn_f64(const float *t, int n, int k, double temp, int iters, double *q)
{
    double sum = 0.0;
    for (int i = 0; i < n * k; i++) {
        q[i] = exp(t[i] / temp);
        sum += q[i];
    }
    for (int i = 0; i < n * k; i++)
        q[i] /= sum;
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < k; j++) { /* rows of the K x B matrix: prototypes */
            double r = 0.0;
            for (int b = 0; b < n; b++)
                r += q[b * k + j];
            for (int b = 0; b < n; b++)
                q[b * k + j] = q[b * k + j] / r / k;
        }
        for (int b = 0; b < n; b++) { /* columns: samples */
            double c = 0.0;
            for (int j = 0; j < k; j++)
                c += q[b * k + j];
            for (int j = 0; j < k; j++)
                q[b * k + j] = q[b * k + j] / c / n;
        }
    }
    for (int i = 0; i < n * k; i++)
        q[i] *= n;
}

/* DINOLoss.forward in float64 for student crops s[0..ns) against teacher crops t[0..nt), n rows of
 * k each; d (ns * n * k) receives the gradient (the softmax cross-entropy's: -(t - sum(t) p) /
 * temp / n per teacher crop). */
static double dino_loss_f64(const float *const *s, int ns, const float *const *t, int nt, int n,
                            int k, double temp, double *d)
{
    double total = 0.0;
    for (int a = 0; a < ns; a++) {
        for (int b = 0; b < n; b++) {
            const float *x = s[a] + b * k;
            double m = -INFINITY, z = 0.0;
            for (int j = 0; j < k; j++)
                m = fmax(m, x[j] / temp);
            for (int j = 0; j < k; j++)
                z += exp(x[j] / temp - m);
            double *db = d + ((size_t)a * n + b) * k;
            for (int j = 0; j < k; j++)
                db[j] = 0.0;
            for (int c = 0; c < nt; c++) {
                const float *y = t[c] + b * k;
                double ts = 0.0, dot = 0.0;
                for (int j = 0; j < k; j++) {
                    dot += y[j] * (x[j] / temp - m - log(z));
                    ts += y[j];
                }
                total -= dot / n;
                for (int j = 0; j < k; j++)
                    db[j] -= (y[j] - ts * exp(x[j] / temp - m) / z) / temp / n;
            }
        }
    }
    return total;
}

/* Checks float results against float64 values with the forward or the gradient tolerance. */
static void check_f64(const char *label, const float *v, const double *r, int n, int gradient)
{
    double maxd = 0.0, maxr = 0.0, nd = 0.0, nr = 0.0;
    for (int i = 0; i < n; i++) {
        double e = fabs(v[i] - r[i]);
        maxd = e <= maxd ? maxd : e;
        maxr = fmax(maxr, fabs(r[i]));
        nd += e * e;
        nr += r[i] * r[i];
    }
    double rel = sqrt(nd / nr), tol = gradient ? 1e-3 : 1e-4 * fmax(1.0, maxr);
    double err = gradient ? rel : maxd;
    printf("  %-44s vs float64 transcription: %s %.2e (tol %.1e)\n", label,
           gradient ? "rel" : "max|d|", err, tol);
    CHECK_MSG(err <= tol, "%s: %.3e from the float64 transcription", label, err);
}

/* The reference tensor when finite; otherwise a note (the reference overflowed) and NULL. */
static const lvd_tensor *finite_or_note(const lvd_tensor *t)
{
    if (!t || hc_finite(t->data, t->numel))
        return t;
    printf("  NOTE: reference %s is not finite: float32 exp(teacher_raw / 0.07) overflows in "
           "the reference (|teacher_raw| up to 10); checked against the float64 transcription of "
           "the reference code only\n",
           t->name);
    return NULL;
}

int main(void)
{
    const char *dir = check_reference_dir();
    char path[1024];
    lvd_error err = {0};
    lvd_tensors *ref;
    int rc = lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "losses.case.safetensors"), &ref,
                              &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc != 0)
        return check_finish();
    const int K = 256, B = 4;
    const float ts = 0.1f, tt = 0.07f;
    const lvd_tensor *raw = hc_need(ref, "teacher_raw", 2 * B * K);
    const lvd_tensor *sk = hc_need(ref, "teacher_sinkhorn", 2 * B * K);
    const lvd_tensor *sc = hc_need(ref, "teacher_softmax_centered", 2 * B * K);
    const lvd_tensor *cin = hc_need(ref, "center_in", K);
    const lvd_tensor *cout = hc_need(ref, "center_out", K);
    const lvd_tensor *s0 = hc_need(ref, "student0", B * K), *s1 = hc_need(ref, "student1", B * K);
    const lvd_tensor *g0 = hc_need(ref, "grad.student0", B * K);
    const lvd_tensor *g1 = hc_need(ref, "grad.student1", B * K);
    const lvd_tensor *dl = hc_need(ref, "dino_loss_sinkhorn", 1);
    if (raw && sk && sc && cin && cout) {
        float *q = malloc(sizeof(float) * 2 * B * K);
        double *q64 = malloc(sizeof(double) * 2 * B * K);
        CHECK(lvd_sinkhorn_targets(raw->data, 2 * B, K, tt, 3, NULL, q, &err) == 0);
        sinkhorn_f64(raw->data, 2 * B, K, tt, 3, q64);
        check_f64("teacher_sinkhorn", q, q64, 2 * B * K, 0);
        if (finite_or_note(sk))
            hc_forward("teacher_sinkhorn", q, sk);
        if (s0 && s1 && g0 && g1 && dl) {
            const float *t[2] = {q, q + B * K}, *s[2] = {s0->data, s1->data};
            float *d = malloc(sizeof(float) * 2 * B * K);
            double *d64 = malloc(sizeof(double) * 2 * B * K);
            double l0, l1;
            CHECK(lvd_dino_loss(s0->data, t, 2, B, K, ts, 1.0, &l0, d, &err) == 0);
            CHECK(lvd_dino_loss(s1->data, t, 2, B, K, ts, 1.0, &l1, d + B * K, &err) == 0);
            double l64 = dino_loss_f64(s, 2, t, 2, B, K, ts, d64);
            check_scalar("dino_loss_sinkhorn (float64 transcription)", l0 + l1, l64);
            check_f64("grad.student0, grad.student1", d, d64, 2 * B * K, 1);
            if (finite_or_note(dl))
                check_scalar("dino_loss_sinkhorn", l0 + l1, dl->data[0]);
            if (finite_or_note(g0))
                hc_grad("grad.student0", d, g0);
            if (finite_or_note(g1))
                hc_grad("grad.student1", d + B * K, g1);
            /* In place: the gradient overwrites the logits. */
            float *d2 = malloc(sizeof(float) * B * K);
            memcpy(d2, s0->data, sizeof(float) * B * K);
            double l2;
            CHECK(lvd_dino_loss(d2, t, 2, B, K, ts, 1.0, &l2, d2, &err) == 0);
            CHECK(l2 == l0 && memcmp(d2, d, sizeof(float) * B * K) == 0);
            free(d);
            free(d2);
            free(d64);
        }
        free(q64);

        lvd_center c;
        CHECK(lvd_center_init(&c, K, 0.9f, &err) == 0);
        memcpy(c.center, cin->data, sizeof(float) * K);
        CHECK(lvd_center_softmax(&c, raw->data, 2 * B, tt, q, &err) == 0);
        hc_forward("teacher_softmax_centered", q, sc);
        /* The update is recorded, not applied, until the next use or apply. */
        CHECK(lvd_center_update(&c, raw->data, 2 * B, NULL, &err) == 0);
        CHECK(memcmp(c.center, cin->data, sizeof(float) * K) == 0);
        float *q2 = malloc(sizeof(float) * 2 * B * K);
        memcpy(q2, raw->data, sizeof(float) * 2 * B * K);
        CHECK(lvd_center_softmax(&c, q2, 2 * B, tt, q2, &err) == 0); /* applies, in place */
        hc_forward("center_out", c.center, cout);
        lvd_center_apply(&c); /* nothing pending: no change */
        hc_forward("center_out (applied once)", c.center, cout);
        lvd_center_free(&c);
        free(q);
        free(q2);
    }

    const lvd_tensor *masks = vit_need(ref, "ibot.masks");
    const lvd_tensor *is = vit_need(ref, "ibot.student"), *it = vit_need(ref, "ibot.teacher");
    const lvd_tensor *il = hc_need(ref, "ibot.loss", 1);
    if (masks && is && it && il && masks->ndim == 2) {
        int ni = (int)masks->shape[0], np = (int)masks->shape[1];
        uint8_t *m = malloc((size_t)ni * np);
        for (int i = 0; i < ni * np; i++)
            m[i] = masks->data[i] != 0.0f;
        int *idx = malloc(sizeof(int) * (size_t)ni * np), n;
        float *w = malloc(sizeof(float) * (size_t)ni * np);
        CHECK(lvd_ibot_masked_rows(m, ni, np, idx, w, &n, &err) == 0);
        CHECK_MSG(n == is->shape[0], "%d masked rows, %lld in the reference", n,
                  (long long)is->shape[0]);
        const lvd_tensor *ig = hc_need(ref, "ibot.grad.student", is->numel);
        if (n == is->shape[0] && ig) {
            float *ds = malloc(sizeof(float) * (size_t)is->numel);
            double l;
            CHECK(lvd_ibot_loss(is->data, it->data, w, n, K, ts, ni, 1.0, &l, ds, &err) == 0);
            check_scalar("ibot.loss", l, il->data[0]);
            hc_grad("ibot.grad.student", ds, ig);
            free(ds);
        }
        free(m);
        free(idx);
        free(w);
    }

    const lvd_tensor *kx = vit_need(ref, "koleo.x"), *kl = hc_need(ref, "koleo.loss", 1);
    if (kx && kl && kx->ndim == 2) {
        const lvd_tensor *kg = hc_need(ref, "koleo.grad.x", kx->numel);
        float *dx = calloc((size_t)kx->numel, sizeof *dx);
        double l;
        CHECK(lvd_koleo_loss(kx->data, (int)kx->shape[0], (int)kx->shape[1], 1.0, &l, dx, &err) ==
              0);
        check_scalar("koleo.loss", l, kl->data[0]);
        if (kg)
            hc_grad("koleo.grad.x", dx, kg);
        free(dx);
    }
    lvd_tensors_close(ref);
    return check_finish();
}
