/* The progress and summary lines of curate/fetch_internal.h. */
#include "curate/fetch/fetch_internal.h"

#include <time.h>

double fetch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t done_count(const int64_t *counts)
{
    int64_t n = 0;
    for (int i = 0; i < LVD_FETCH_N_CLASSES; i++)
        n += counts[i];
    return n;
}

/* "ok 12 duplicate 1 | timeout 2 decode 1": the classes seen so far. */
static void print_counts(FILE *f, const int64_t *counts)
{
    fprintf(f, "ok %lld duplicate %lld", (long long)counts[0], (long long)counts[1]);
    const char *sep = " | failed:";
    for (int i = 2; i < LVD_FETCH_N_CLASSES; i++) {
        if (!counts[i])
            continue;
        fprintf(f, "%s %s %lld", sep, lvd_fetch_classes[i], (long long)counts[i]);
        sep = ",";
    }
}

void fetch_report_tick(fetch_report *r, int force)
{
    double now = fetch_now();
    double every = r->tty ? 0.25 : r->interval_s;
    if (!force && now - r->last < every)
        return;
    r->last = now;
    int64_t done = done_count(r->counts);
    double rate = now > r->start ? done / (now - r->start) : 0;
    fprintf(r->log,
            r->tty ? "\r\033[Kfetch: %lld/%lld %.1f img/s " : "fetch: %lld/%lld %.1f img/s ",
            (long long)done, (long long)r->todo, rate);
    print_counts(r->log, r->counts);
    if (!r->tty)
        fputc('\n', r->log);
    fflush(r->log);
}

void fetch_report_summary(fetch_report *r, const lvd_fetch_summary *sum)
{
    if (r->tty)
        fputs("\r\033[K", r->log);
    int64_t done = done_count(sum->counts);
    fprintf(r->log,
            "fetch: run %lld: %lld input items (%lld new), %lld processed in %.1f s (%.1f img/s), "
            "%lld shards\nfetch: ",
            (long long)sum->run_id, (long long)sum->inputs, (long long)sum->new_items,
            (long long)done, sum->seconds, sum->seconds > 0 ? done / sum->seconds : 0.0,
            (long long)sum->shards);
    print_counts(r->log, sum->counts);
    fputc('\n', r->log);
    if (sum->interrupted)
        fputs("fetch: interrupted; the items not done are still pending: rerun to continue\n",
              r->log);
    fflush(r->log);
}
