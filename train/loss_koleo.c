/* The KoLeo regularizer (train/loss.h): lvd_koleo_loss. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/loss.h"

#define KOLEO_EPS                                                                                  \
    1e-8f /* KoLeoLoss: F.normalize eps, PairwiseDistance eps and the log's offset                 \
           */
#define MAX_ROWS (1 << 16)

int lvd_koleo_loss(const float *x, int n, int d, double scale, double *loss, float *dx,
                   lvd_error *err)
{
    *loss = 0.0;
    if (n < 1 || n > MAX_ROWS || d < 1 || d > (1 << 24))
        return lvd_fail(err, "koleo: bad size %d x %d (1 to %d rows)", n, d, MAX_ROWS);
    size_t nd = (size_t)n * (size_t)d;
    float *y = malloc(nd * sizeof *y);
    float *diff = malloc(nd * sizeof *diff);
    float *dots = malloc((size_t)n * (size_t)n * sizeof *dots);
    float *xnorm = malloc((size_t)n * sizeof *xnorm);
    float *dist = malloc((size_t)n * sizeof *dist);
    int *nn = malloc((size_t)n * sizeof *nn);
    float *gy = dx ? calloc(nd, sizeof *gy) : NULL;
    int rc = -1;
    if (!y || !diff || !dots || !xnorm || !dist || !nn || (dx && !gy)) {
        lvd_fail(err, "koleo: out of memory for %d x %d", n, d);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)d;
        double s = 0.0;
        for (int j = 0; j < d; j++)
            s += (double)xi[j] * xi[j];
        xnorm[i] = (float)sqrt(s);
        float inv = 1.0f / (xnorm[i] > KOLEO_EPS ? xnorm[i] : KOLEO_EPS);
        for (int j = 0; j < d; j++)
            y[(size_t)i * (size_t)d + j] = xi[j] * inv;
    }
    /* pairwise_NNs_inner: max dot product, the diagonal set to -1, the first index on ties. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.0f, y, d, y, d, 0.0f, dots, n);
    for (int i = 0; i < n; i++) {
        float *row = dots + (size_t)i * (size_t)n;
        row[i] = -1.0f;
        int best = 0;
        for (int j = 1; j < n; j++)
            if (row[j] > row[best])
                best = j;
        nn[i] = best;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * (size_t)d, *yj = y + (size_t)nn[i] * (size_t)d;
        float *di = diff + (size_t)i * (size_t)d;
        double s = 0.0;
        for (int j = 0; j < d; j++) {
            di[j] = yi[j] - yj[j] + KOLEO_EPS;
            s += (double)di[j] * di[j];
        }
        dist[i] = (float)sqrt(s);
        sum += log((double)dist[i] + KOLEO_EPS);
    }
    *loss = -scale * sum / n;
    if (dx) {
        /* d loss / d dist_i = -scale / n / (dist_i + eps); d dist / d diff = diff / dist (0 at
         * dist 0, as torch's norm backward); diff depends on y_i (+) and y_nn(i) (-). */
        for (int i = 0; i < n; i++) {
            if (!(dist[i] > 0.0f))
                continue;
            double c = -scale / n / ((double)dist[i] + KOLEO_EPS) / dist[i];
            const float *di = diff + (size_t)i * (size_t)d;
            float *gi = gy + (size_t)i * (size_t)d, *gj = gy + (size_t)nn[i] * (size_t)d;
            for (int j = 0; j < d; j++) {
                gi[j] += (float)(c * di[j]);
                gj[j] -= (float)(c * di[j]);
            }
        }
        /* F.normalize backward: (g - y (y . g)) / ||x||, or g / eps where ||x|| <= eps. */
        for (int i = 0; i < n; i++) {
            const float *yi = y + (size_t)i * (size_t)d, *gi = gy + (size_t)i * (size_t)d;
            float *dxi = dx + (size_t)i * (size_t)d;
            if (xnorm[i] > KOLEO_EPS) {
                double p = 0.0;
                for (int j = 0; j < d; j++)
                    p += (double)yi[j] * gi[j];
                float inv = 1.0f / xnorm[i];
                for (int j = 0; j < d; j++)
                    dxi[j] += (gi[j] - yi[j] * (float)p) * inv;
            } else {
                for (int j = 0; j < d; j++)
                    dxi[j] += gi[j] / KOLEO_EPS;
            }
        }
    }
    rc = 0;
done:
    free(y);
    free(diff);
    free(dots);
    free(xnorm);
    free(dist);
    free(nn);
    free(gy);
    return rc;
}
