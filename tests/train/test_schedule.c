/* Schedules (train/schedule.h) against values worked out by hand from dinov2's CosineScheduler
 * and build_schedulers: warm-up ends, cosine midpoints and ends, the last-layer freeze, the
 * teacher temperature plateau, custom epoch lengths and refused configurations. */
#include <math.h>

#include "tests/check.h"
#include "train/schedule.h"

static int near(double a, double b)
{
    return fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b));
}

#define CHECK_NEAR(a, b) CHECK_MSG(near((a), (b)), "%.17g vs %.17g", (double)(a), (double)(b))

int main(void)
{
    lvd_error err;
    lvd_schedule_config c;
    lvd_schedule_config_default(&c);
    lvd_schedules s;
    lvd_schedule_values v;
    CHECK(lvd_schedules_init(&s, &c, &err) == 0);

    /* lr: 10 epochs of 1250 from 0 to 0.004 (linspace, both ends), cosine to 1e-6 over 90 */
    lvd_schedules_at(&s, 0, &v);
    CHECK(v.lr == 0.0 && v.last_layer_lr == 0.0);
    CHECK(v.teacher_temp == 0.04);
    CHECK_NEAR(v.wd, 0.04); /* 0.4 + 0.5 * (0.04 - 0.4) * 2: not exactly 0.04, as in numpy */
    CHECK_NEAR(v.momentum, 0.992);
    lvd_schedules_at(&s, 1, &v);
    CHECK_NEAR(v.lr, 0.004 / 12499);
    CHECK(v.last_layer_lr == 0.0);
    CHECK_NEAR(v.teacher_temp, 0.04 + 0.03 / 37499);
    lvd_schedules_at(&s, 1249, &v);
    CHECK(v.last_layer_lr == 0.0 && v.lr > 0);
    lvd_schedules_at(&s, 1250, &v); /* the first iteration after the one-epoch freeze */
    CHECK_NEAR(v.lr, 1250 * (0.004 / 12499));
    CHECK(v.last_layer_lr == v.lr);
    lvd_schedules_at(&s, 12499, &v);
    CHECK(v.lr == 0.004); /* linspace's last value is exactly the end */
    lvd_schedules_at(&s, 12500, &v);
    CHECK_NEAR(v.lr, 0.004);
    lvd_schedules_at(&s, 12500 + 56250, &v);
    CHECK_NEAR(v.lr, (0.004 + 1e-6) / 2);
    CHECK_NEAR(v.last_layer_lr, v.lr);
    lvd_schedules_at(&s, 124999, &v);
    CHECK_NEAR(v.lr, 1e-6 + 0.5 * (0.004 - 1e-6) * (1 + cos(M_PI * 112499 / 112500)));
    CHECK(v.lr > 1e-6 && v.lr < 1.01e-6);
    lvd_schedules_at(&s, 125000, &v);
    CHECK(v.lr == 1e-6 && v.last_layer_lr == 1e-6 && v.wd == 0.4 && v.momentum == 1.0);
    lvd_schedules_at(&s, 1000000, &v);
    CHECK(v.lr == 1e-6 && v.teacher_temp == 0.07);

    /* wd and momentum: cosine over all 125000 iterations, no warm-up */
    lvd_schedules_at(&s, 62500, &v);
    CHECK_NEAR(v.wd, 0.22);
    CHECK_NEAR(v.momentum, 0.996);
    lvd_schedules_at(&s, 31250, &v);
    CHECK_NEAR(v.wd, 0.4 + 0.5 * (0.04 - 0.4) * (1 + cos(M_PI / 4)));
    CHECK_NEAR(v.momentum, 1 + 0.5 * (0.992 - 1) * (1 + cos(M_PI / 4)));

    /* teacher temperature: 0.04 -> 0.07 over 30 epochs, then 0.07 */
    lvd_schedules_at(&s, 18750, &v);
    CHECK_NEAR(v.teacher_temp, 0.04 + 18750 * (0.03 / 37499));
    lvd_schedules_at(&s, 37499, &v);
    CHECK(v.teacher_temp == 0.07);
    lvd_schedules_at(&s, 37500, &v);
    CHECK(v.teacher_temp == 0.07);

    /* the sqrt scaling rule */
    CHECK_NEAR(lvd_lr_sqrt_scaling(0.004, 2048), 0.004 * sqrt(2.0));
    CHECK_NEAR(lvd_lr_sqrt_scaling(0.004, 256), 0.002);
    CHECK(c.lr == 0.004);

    /* an "epoch" of a settable number of iterations */
    c.epoch_length = 10;
    c.epochs = 5;
    c.warmup_epochs = 1;
    c.warmup_teacher_temp_epochs = 2;
    c.freeze_last_layer_epochs = 3;
    c.lr = 1.0;
    c.min_lr = 0.0;
    CHECK(lvd_schedules_init(&s, &c, &err) == 0);
    lvd_schedules_at(&s, 9, &v);
    CHECK(v.lr == 1.0 && v.last_layer_lr == 0.0);
    lvd_schedules_at(&s, 5, &v);
    CHECK_NEAR(v.lr, 5.0 / 9);
    lvd_schedules_at(&s, 30, &v);
    CHECK_NEAR(v.lr, 0.5 * (1 + cos(M_PI * 20 / 40)));
    CHECK(v.last_layer_lr == v.lr);
    lvd_schedules_at(&s, 29, &v);
    CHECK(v.last_layer_lr == 0.0 && v.lr > 0);
    lvd_schedules_at(&s, 19, &v);
    CHECK(v.teacher_temp == 0.07);
    lvd_schedules_at(&s, 10, &v);
    CHECK_NEAR(v.teacher_temp, 0.04 + 10 * (0.03 / 19));
    lvd_schedules_at(&s, 49, &v);
    CHECK_NEAR(v.wd, 0.4 + 0.5 * (0.04 - 0.4) * (1 + cos(M_PI * 49 / 50)));
    /* a freeze longer than training: zero throughout, final value after the end */
    c.freeze_last_layer_epochs = 9;
    CHECK(lvd_schedules_init(&s, &c, &err) == 0);
    lvd_schedules_at(&s, 49, &v);
    CHECK(v.last_layer_lr == 0.0);
    lvd_schedules_at(&s, 50, &v);
    CHECK(v.last_layer_lr == 0.0 && v.lr == 0.0); /* min_lr 0 */

    /* CosineScheduler with its own freeze (zeros prepended) and a warm-up start */
    lvd_cosine k;
    CHECK(lvd_cosine_init(&k, 1.0, 0.25, 10, 3, 0.5, 2, &err) == 0);
    /* [0, 0 | 0.5, 0.75, 1 | 0.25 + 0.375 (1 + cos(pi i / 5)), i = 0..4] */
    const double head[5] = {0, 0, 0.5, 0.75, 1.0};
    for (int i = 0; i < 10; i++) {
        double want = i < 5 ? head[i] : 0.25 + 0.375 * (1 + cos(M_PI * (i - 5) / 5));
        CHECK_MSG(near(lvd_cosine_at(&k, i), want), "it %d: %.17g vs %.17g", i,
                  lvd_cosine_at(&k, i), want);
    }
    CHECK(lvd_cosine_at(&k, 4) == 1.0 && lvd_cosine_at(&k, 5) == 1.0);
    CHECK(lvd_cosine_at(&k, 10) == 0.25 && lvd_cosine_at(&k, 1 << 30) == 0.25);
    /* a one-value warm-up is its start value; no cosine part when warm-up fills the schedule */
    CHECK(lvd_cosine_init(&k, 1.0, 2.0, 1, 1, 0.3, 0, &err) == 0);
    CHECK(lvd_cosine_at(&k, 0) == 0.3 && lvd_cosine_at(&k, 1) == 2.0);

    /* refused configurations */
    CHECK(lvd_cosine_init(&k, 1, 0, 10, 8, 0, 3, &err) == -1 && strstr(err.msg, "do not fit"));
    CHECK(lvd_cosine_init(&k, 1, 0, 10, -1, 0, 0, &err) == -1);
    lvd_schedule_config_default(&c);
    c.warmup_epochs = 101;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "longer than training"));
    lvd_schedule_config_default(&c);
    c.epoch_length = 0;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "positive"));
    lvd_schedule_config_default(&c);
    c.epochs = INT64_MAX / 100;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "training length"));
    lvd_schedule_config_default(&c);
    c.freeze_last_layer_epochs = -1;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "last-layer"));

    /* total_iterations: a run of 30 iterations in epochs of 8 (warm-up 1 epoch): the lr cosine
     * spans the 22 iterations after the warm-up whatever c.epochs says; a warm-up longer than
     * that length is refused */
    lvd_schedule_config_default(&c);
    c.epoch_length = 8;
    c.warmup_epochs = 1;
    c.total_iterations = 30;
    CHECK(lvd_schedules_init(&s, &c, &err) == 0);
    lvd_schedules_at(&s, 7, &v);
    CHECK(v.lr == c.lr);
    lvd_schedules_at(&s, 8 + 11, &v);
    CHECK_NEAR(v.lr, c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + cos(M_PI * 11 / 22)));
    lvd_schedules_at(&s, 30, &v);
    CHECK(v.lr == c.min_lr && v.wd == c.weight_decay_end);
    c.warmup_epochs = 4;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "longer than training"));
    c.total_iterations = -1;
    CHECK(lvd_schedules_init(&s, &c, &err) == -1 && strstr(err.msg, "training length"));
    return check_finish();
}
