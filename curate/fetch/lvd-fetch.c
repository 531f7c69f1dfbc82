/* lvd-fetch: the fetch stage of the curation pipeline (see curate/fetch/fetch.h). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "curate/fetch/fetch.h"
#include "kit/kit.h"

static const char help[] =
    "--db DB --source NAME [options] INPUT...\n"
    "\n"
    "Registers every item of the inputs under source NAME in the manifest DB, downloads or\n"
    "reads each pending one, validates it by content and stores it in WebDataset tar shards.\n"
    "An INPUT is a folder (recursive; class/file.jpg gives label 'class') or a URL list:\n"
    "text (one URL a line), .csv, .tsv or .jsonl with a url column and optional label,\n"
    "caption and key columns, optionally gzipped. Schemes: http, https, file.\n"
    "Rerunning fetches only new items; after a crash it completes the interrupted work.";

static const char footer[] =
    "Exit status 0 when every item reached a terminal status, failed items included; 1 on\n"
    "failure, 2 on bad usage; 130 after a clean stop on the first SIGINT or SIGTERM (a second\n"
    "one kills at once).";

/* Seconds (decimals allowed) stored as milliseconds in a long. */
static int seconds_ms(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    double s;
    if (lvd_kit_number(o, value, &s, err))
        return -1;
    *(long *)o->dest = (long)llround(s * 1000.0);
    return 0;
}

/* Seconds (decimals allowed) rounded up to whole seconds in a long. */
static int seconds_up(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    double s;
    if (lvd_kit_number(o, value, &s, err))
        return -1;
    *(long *)o->dest = ((long)llround(s * 1000.0) + 999) / 1000;
    return 0;
}

static int role(const lvd_kit_opt *o, const char *value, lvd_error *err)
{
    return lvd_role_parse(value, o->dest, err);
}

/* A resized image must still pass the short-side check. */
static int check(void *ctx, lvd_error *err)
{
    const lvd_validate_opts *v = &((const lvd_fetch_opts *)ctx)->validate;
    if (v->max_side > 0 && v->max_side < v->min_side)
        return lvd_fail(err,
                        "--max-side %d is below --min-side %d: resized images would be refused",
                        v->max_side, v->min_side);
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* The first SIGINT or SIGTERM asks for a clean stop (the open shard is completed); a second one
 * kills at once, which is safe too (see curate/fetch/fetch.h). */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run(lvd_manifest *unused, void *ctx, lvd_error *err)
{
    (void)unused;
    lvd_fetch_opts *o = ctx;
    o->stop = &stop_requested;
    catch_signals();
    lvd_fetch_summary sum;
    if (lvd_fetch_run(o, &sum, err) != 0)
        return -1;
    return sum.interrupted ? 130 : 0;
}

#define SECONDS(name_, dest_, fn_, ...)                                                            \
    {                                                                                              \
        .kind = LVD_KIT_FN, .name = name_, .arg = "S", .dest = &(dest_), .fn = fn_, .lo = 0,       \
        .hi = 1e9, .help = __VA_ARGS__                                                             \
    }

int main(int argc, char **argv)
{
    lvd_fetch_opts o;
    lvd_fetch_opts_init(&o);
    o.progress = isatty(STDERR_FILENO);
    lvd_net_opts *n = &o.net;
    lvd_validate_opts *v = &o.validate;
    const lvd_kit_opt opts[] = {
        LVD_OPT_STR("db", "DB", o.db, "manifest database (created if needed)", .required = 1),
        LVD_OPT_STR("source", "NAME", o.source, "source the items belong to", .required = 1),
        LVD_OPT_FN("role", "ROLE", o.role, role, "pool, seed or eval", .def = "pool"),
        LVD_OPT_STR("out", "DIR", o.out_dir, "shard folder", .def = "'shards' beside DB"),
        LVD_OPT_INT("parallel", "N", o.parallel, 1, 1000000000, "concurrent downloads"),
        LVD_OPT_INT("threads", "N", o.threads, 0, 1000000000, "decode threads",
                    .def = "one per CPU"),
        SECONDS("connect-timeout", n->connect_timeout_ms, seconds_ms, "connect timeout in seconds",
                .def = "10"),
        SECONDS("timeout", n->timeout_ms, seconds_ms, "total timeout per attempt in seconds",
                .def = "60"),
        LVD_OPT_BYTES("low-speed", "BYTES", n->low_speed_bytes, 0, INT64_MAX,
                      "abort transfers slower than BYTES/s ..."),
        SECONDS("low-speed-time", n->low_speed_s, seconds_up, "... for S seconds; 0 disables",
                .def = "20"),
        LVD_OPT_INT("retries", "N", n->retries, 0, 1000000000,
                    "retries of transient failures: timeouts, resets, 429, 5xx"),
        SECONDS("retry-backoff", n->backoff_ms, seconds_ms,
                "first retry delay in seconds, doubled each time", .def = "1"),
        LVD_OPT_INT("max-redirects", "N", n->max_redirects, 0, 1000000000, "redirects followed"),
        LVD_OPT_BYTES("max-bytes", "SIZE", n->max_bytes, 1, INT64_MAX,
                      "byte cap per image, K/M/G suffixes allowed"),
        LVD_OPT_STR("user-agent", "UA", n->user_agent, "HTTP User-Agent"),
        LVD_OPT_BYTES("max-pixels", "N", v->max_pixels, 1, INT64_MAX,
                      "reject larger images from their header"),
        LVD_OPT_INT("min-side", "N", v->min_side, 0, 1000000000,
                    "reject images whose short side is below N"),
        LVD_OPT_NUM("max-aspect", "X", v->max_aspect, 1, 1e6,
                    "reject images with long/short above X; 0: off", .zero = 1),
        LVD_OPT_INT("max-side", "S", v->max_side, 1, 1000000000,
                    "resize larger images to fit S and re-encode them as JPEG\n"
                    "(at least --min-side; 0: keep every original)",
                    .zero = 1),
        LVD_OPT_INT("quality", "Q", v->quality, 1, 100, "JPEG quality of re-encoded images"),
        LVD_OPT_BYTES("shard-size", "SIZE", o.shard_size, 4096, INT64_MAX,
                      "shard size bound, K/M/G suffixes allowed"),
        LVD_OPT_FLAG("retry-failed", o.retry_failed, 1,
                     "also retry items that failed in earlier runs"),
        LVD_OPT_FLAG("progress", o.progress, 1,
                     "progress line (default when stderr is a terminal)"),
        LVD_OPT_FLAG("no-progress", o.progress, 0, "periodic log lines instead"),
        LVD_OPT_NUM("log-interval", "S", o.log_interval_s, 0, 1e9, "seconds between log lines"),
        LVD_OPT_END,
    };
    const lvd_kit_operands inputs = {"at least one INPUT", 1, -1, &o.inputs, &o.n_inputs};
    lvd_kit_cmd cmd = {"lvd-fetch", help, opts, run, &o, .db = LVD_KIT_NO_DB, .check = check};
    cmd.operands = &inputs;
    cmd.footer = footer;
    return lvd_kit_main(&cmd, argc, argv);
}
