/* Progress and summary lines of the embed stage. */
#include "curate/stages/embed_stage_internal.h"

void stage_report_tick(stage_report *r, int force)
{
    if (!r->log)
        return;
    double now = lvd_kit_now();
    if (!force && now - r->last < (r->tty ? 0.25 : r->interval_s))
        return;
    r->last = now;
    double rate = now > r->start ? r->done / (now - r->start) : 0;
    fprintf(r->log,
            r->tty ? "\r\033[Kembed: %lld/%lld %.1f img/s, %lld failed"
                   : "embed: %lld/%lld %.1f img/s, %lld failed\n",
            (long long)r->done, (long long)r->todo, rate, (long long)r->failed);
    fflush(r->log);
}

void stage_report_failure(stage_report *r, int64_t image_id, const char *msg)
{
    if (!r->log)
        return;
    fprintf(r->log, "%sembed: image %lld skipped: %s\n", r->tty ? "\r\033[K" : "",
            (long long)image_id, msg);
    fflush(r->log);
}

void stage_report_summary(stage_report *r, const lvd_embed_summary *sum)
{
    if (!r->log)
        return;
    fprintf(r->log,
            "%sembed: run %lld: %lld images embedded in %.1f s (%.1f img/s), %lld failed, "
            "%lld files\n",
            r->tty ? "\r\033[K" : "", (long long)sum->run_id, (long long)sum->embedded,
            sum->seconds, sum->seconds > 0 ? sum->embedded / sum->seconds : 0.0,
            (long long)sum->failed, (long long)sum->files);
    fflush(r->log);
}
