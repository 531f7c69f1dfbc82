/* Training schedules (train/schedule.h): CosineScheduler values, the sqrt scaling rule and
 * build_schedulers. */
#include "train/schedule.h"

#include <math.h>

int lvd_cosine_init(lvd_cosine *s, double base, double final, int64_t total, int64_t warmup,
                    double start_warmup, int64_t freeze, lvd_error *err)
{
    if (total < 0 || warmup < 0 || freeze < 0 || warmup > total || freeze > total - warmup)
        return lvd_fail(err, "schedule: %lld warm-up and %lld frozen iterations do not fit in %lld",
                        (long long)warmup, (long long)freeze, (long long)total);
    *s = (lvd_cosine){.base = base,
                      .final = final,
                      .start_warmup = start_warmup,
                      .total = total,
                      .warmup = warmup,
                      .freeze = freeze};
    return 0;
}

double lvd_cosine_at(const lvd_cosine *s, int64_t it)
{
    if (it >= s->total)
        return s->final;
    if (it < s->zero_until || it < s->freeze)
        return 0.0;
    it -= s->freeze;
    if (it < s->warmup) {
        /* numpy.linspace: i * ((stop - start) / (num - 1)) + start, the last value exactly stop */
        if (it == s->warmup - 1 && s->warmup > 1)
            return s->base;
        double step = s->warmup > 1 ? (s->base - s->start_warmup) / (double)(s->warmup - 1) : 0;
        return (double)it * step + s->start_warmup;
    }
    it -= s->warmup;
    double n = (double)(s->total - s->warmup - s->freeze);
    return s->final + 0.5 * (s->base - s->final) * (1 + cos(M_PI * (double)it / n));
}

double lvd_lr_sqrt_scaling(double base_lr, int64_t batch)
{
    return base_lr * sqrt((double)batch / 1024.0);
}

void lvd_schedule_config_default(lvd_schedule_config *c)
{
    *c = (lvd_schedule_config){
        .epoch_length = 1250,
        .epochs = 100,
        .lr = lvd_lr_sqrt_scaling(0.004, 1024),
        .min_lr = 1e-6,
        .warmup_epochs = 10,
        .weight_decay = 0.04,
        .weight_decay_end = 0.4,
        .momentum_teacher = 0.992,
        .final_momentum_teacher = 1.0,
        .warmup_teacher_temp = 0.04,
        .teacher_temp = 0.07,
        .warmup_teacher_temp_epochs = 30,
        .freeze_last_layer_epochs = 1,
    };
}

/* epochs * epoch_length, failing on negative counts or overflow. */
static int iterations(int64_t epochs, int64_t epoch_length, const char *what, int64_t *out,
                      lvd_error *err)
{
    if (epochs < 0 || epochs > INT64_MAX / epoch_length)
        return lvd_fail(err, "schedule: bad %s: %lld epochs of %lld iterations", what,
                        (long long)epochs, (long long)epoch_length);
    *out = epochs * epoch_length;
    return 0;
}

int lvd_schedules_init(lvd_schedules *s, const lvd_schedule_config *c, lvd_error *err)
{
    if (c->epoch_length <= 0)
        return lvd_fail(err, "schedule: epoch length %lld must be positive",
                        (long long)c->epoch_length);
    int64_t total = 0, warmup = 0, temp_warmup = 0, freeze = 0;
    if (c->total_iterations < 0)
        return lvd_fail(err, "schedule: training length %lld must not be negative",
                        (long long)c->total_iterations);
    if (c->total_iterations > 0)
        total = c->total_iterations;
    else if (iterations(c->epochs, c->epoch_length, "training length", &total, err))
        return -1;
    if (iterations(c->warmup_epochs, c->epoch_length, "lr warm-up", &warmup, err) ||
        iterations(c->warmup_teacher_temp_epochs, c->epoch_length, "teacher temperature warm-up",
                   &temp_warmup, err) ||
        iterations(c->freeze_last_layer_epochs, c->epoch_length, "last-layer freeze", &freeze, err))
        return -1;
    if (warmup > total)
        return lvd_fail(err,
                        "schedule: lr warm-up of %lld epochs (%lld iterations) is longer than "
                        "training (%lld iterations)",
                        (long long)c->warmup_epochs, (long long)warmup, (long long)total);
    if (lvd_cosine_init(&s->lr, c->lr, c->min_lr, total, warmup, 0.0, 0, err) ||
        lvd_cosine_init(&s->wd, c->weight_decay, c->weight_decay_end, total, 0, 0.0, 0, err) ||
        lvd_cosine_init(&s->momentum, c->momentum_teacher, c->final_momentum_teacher, total, 0, 0.0,
                        0, err) ||
        lvd_cosine_init(&s->teacher_temp, c->teacher_temp, c->teacher_temp, temp_warmup,
                        temp_warmup, c->warmup_teacher_temp, 0, err))
        return -1;
    s->last_layer_lr = s->lr;
    s->last_layer_lr.zero_until = freeze;
    return 0;
}

void lvd_schedules_at(const lvd_schedules *s, int64_t it, lvd_schedule_values *out)
{
    out->lr = lvd_cosine_at(&s->lr, it);
    out->wd = lvd_cosine_at(&s->wd, it);
    out->momentum = lvd_cosine_at(&s->momentum, it);
    out->teacher_temp = lvd_cosine_at(&s->teacher_temp, it);
    out->last_layer_lr = lvd_cosine_at(&s->last_layer_lr, it);
}
