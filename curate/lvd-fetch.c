/* lvd-fetch: the fetch stage of the curation pipeline (see curate/fetch.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curate/fetch.h"

static void usage(FILE *f)
{
    fputs(
        "usage: lvd-fetch --db DB --source NAME [options] INPUT...\n"
        "\n"
        "Registers every item of the inputs under source NAME in the manifest DB, downloads or\n"
        "reads each pending one, validates it by content and stores it in WebDataset tar shards.\n"
        "An INPUT is a folder (recursive; class/file.jpg gives label 'class') or a URL list:\n"
        "text (one URL a line), .csv, .tsv or .jsonl with a url column and optional label,\n"
        "caption and key columns, optionally gzipped. Schemes: http, https, file.\n"
        "Rerunning fetches only new items; after a crash it completes the interrupted work.\n"
        "\n"
        "  --db DB               manifest database (created if needed)\n"
        "  --source NAME         source the items belong to\n"
        "  --role ROLE           pool (default), seed or eval\n"
        "  --out DIR             shard folder (default: 'shards' beside DB)\n"
        "  --parallel N          concurrent downloads (default 64)\n"
        "  --threads N           decode threads (default: one per CPU)\n"
        "  --connect-timeout S   connect timeout in seconds (default 10)\n"
        "  --timeout S           total timeout per attempt in seconds (default 60)\n"
        "  --low-speed BYTES     abort transfers slower than BYTES/s ... (default 1024)\n"
        "  --low-speed-time S    ... for S seconds (default 20; 0 disables)\n"
        "  --retries N           retries of transient failures: timeouts, resets, 429, 5xx "
        "(default 3)\n"
        "  --retry-backoff S     first retry delay in seconds, doubled each time (default 1)\n"
        "  --max-redirects N     redirects followed (default 5)\n"
        "  --max-bytes SIZE      byte cap per image, K/M/G suffixes allowed (default 32M)\n"
        "  --user-agent UA       HTTP User-Agent (default lvd-fetch/0.1)\n"
        "  --max-pixels N        reject larger images from their header (default 89478485)\n"
        "  --min-side N          reject images whose short side is below N (default 32)\n"
        "  --max-aspect X        reject images with long/short above X (default 10; 0: off)\n"
        "  --max-side S          resize larger images to fit S and re-encode them as JPEG\n"
        "                        (default 0: keep every original)\n"
        "  --quality Q           JPEG quality of re-encoded images (default 90)\n"
        "  --shard-size SIZE     shard size bound, K/M/G suffixes allowed (default 256M)\n"
        "  --retry-failed        also retry items that failed in earlier runs\n"
        "  --progress            progress line (default when stderr is a terminal)\n"
        "  --no-progress         periodic log lines instead\n"
        "  --log-interval S      seconds between log lines (default 10)\n"
        "  --help                this text\n"
        "\n"
        "Exit status 0 when every item reached a terminal status, failed items included; 130\n"
        "after a clean stop on the first SIGINT or SIGTERM (a second one kills at once).\n",
        f);
}

static int parse_int64(const char *opt, const char *s, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int64_t mul = 1;
    if (end != s && *end && !end[1]) {
        const char *units = "KMG";
        const char *u = strchr(units, *end);
        if (u) {
            mul = (int64_t)1 << (10 * (u - units + 1));
            end++;
        }
    }
    if (errno || end == s || *end || v < 0 || v > INT64_MAX / mul || v * mul < min) {
        fprintf(stderr, "lvd-fetch: %s: invalid value '%s'\n", opt, s);
        return -1;
    }
    *out = v * mul;
    return 0;
}

static int parse_int(const char *opt, const char *s, int min, int *out)
{
    int64_t v;
    if (parse_int64(opt, s, min, &v) != 0)
        return -1;
    if (v > 1000000000) {
        fprintf(stderr, "lvd-fetch: %s: value too large '%s'\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0) {
        fprintf(stderr, "lvd-fetch: %s: invalid value '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_ms(const char *opt, const char *s, long *out)
{
    double v;
    if (parse_double(opt, s, &v) != 0)
        return -1;
    *out = (long)llround(v * 1000.0);
    return 0;
}

enum {
    OPT_DB = 256,
    OPT_SOURCE,
    OPT_ROLE,
    OPT_OUT,
    OPT_PARALLEL,
    OPT_THREADS,
    OPT_CONNECT,
    OPT_TIMEOUT,
    OPT_LOW_SPEED,
    OPT_LOW_SPEED_TIME,
    OPT_RETRIES,
    OPT_BACKOFF,
    OPT_REDIRECTS,
    OPT_MAX_BYTES,
    OPT_UA,
    OPT_MAX_PIXELS,
    OPT_MIN_SIDE,
    OPT_MAX_ASPECT,
    OPT_MAX_SIDE,
    OPT_QUALITY,
    OPT_SHARD_SIZE,
    OPT_RETRY_FAILED,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_LOG_INTERVAL,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"role", required_argument, NULL, OPT_ROLE},
    {"out", required_argument, NULL, OPT_OUT},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"low-speed", required_argument, NULL, OPT_LOW_SPEED},
    {"low-speed-time", required_argument, NULL, OPT_LOW_SPEED_TIME},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"retry-backoff", required_argument, NULL, OPT_BACKOFF},
    {"max-redirects", required_argument, NULL, OPT_REDIRECTS},
    {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
    {"user-agent", required_argument, NULL, OPT_UA},
    {"max-pixels", required_argument, NULL, OPT_MAX_PIXELS},
    {"min-side", required_argument, NULL, OPT_MIN_SIDE},
    {"max-aspect", required_argument, NULL, OPT_MAX_ASPECT},
    {"max-side", required_argument, NULL, OPT_MAX_SIDE},
    {"quality", required_argument, NULL, OPT_QUALITY},
    {"shard-size", required_argument, NULL, OPT_SHARD_SIZE},
    {"retry-failed", no_argument, NULL, OPT_RETRY_FAILED},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"log-interval", required_argument, NULL, OPT_LOG_INTERVAL},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Applies one option; returns 0, or -1 after printing the problem. */
static int apply(int c, const char *arg, lvd_fetch_opts *o)
{
    lvd_error err;
    long low_speed_ms = 0;
    int rc = 0;
    switch (c) {
    case OPT_DB:
        o->db = arg;
        break;
    case OPT_SOURCE:
        o->source = arg;
        break;
    case OPT_ROLE:
        if (lvd_role_parse(arg, &o->role, &err) != 0) {
            fprintf(stderr, "lvd-fetch: --role: %s\n", err.msg);
            return -1;
        }
        break;
    case OPT_OUT:
        o->out_dir = arg;
        break;
    case OPT_PARALLEL:
        return parse_int("--parallel", arg, 1, &o->parallel);
    case OPT_THREADS:
        return parse_int("--threads", arg, 0, &o->threads);
    case OPT_CONNECT:
        return parse_ms("--connect-timeout", arg, &o->net.connect_timeout_ms);
    case OPT_TIMEOUT:
        return parse_ms("--timeout", arg, &o->net.timeout_ms);
    case OPT_LOW_SPEED: {
        int64_t v;
        rc = parse_int64("--low-speed", arg, 0, &v);
        o->net.low_speed_bytes = (long)v;
        return rc;
    }
    case OPT_LOW_SPEED_TIME:
        rc = parse_ms("--low-speed-time", arg, &low_speed_ms);
        o->net.low_speed_s = (low_speed_ms + 999) / 1000;
        return rc;
    case OPT_RETRIES:
        return parse_int("--retries", arg, 0, &o->net.retries);
    case OPT_BACKOFF:
        return parse_ms("--retry-backoff", arg, &o->net.backoff_ms);
    case OPT_REDIRECTS:
        return parse_int("--max-redirects", arg, 0, &o->net.max_redirects);
    case OPT_MAX_BYTES:
        return parse_int64("--max-bytes", arg, 1, &o->net.max_bytes);
    case OPT_UA:
        o->net.user_agent = arg;
        break;
    case OPT_MAX_PIXELS:
        return parse_int64("--max-pixels", arg, 0, &o->validate.max_pixels);
    case OPT_MIN_SIDE:
        return parse_int("--min-side", arg, 0, &o->validate.min_side);
    case OPT_MAX_ASPECT:
        return parse_double("--max-aspect", arg, &o->validate.max_aspect);
    case OPT_MAX_SIDE:
        return parse_int("--max-side", arg, 0, &o->validate.max_side);
    case OPT_QUALITY:
        rc = parse_int("--quality", arg, 1, &o->validate.quality);
        if (rc == 0 && o->validate.quality > 100) {
            fprintf(stderr, "lvd-fetch: --quality: must be 1..100\n");
            return -1;
        }
        return rc;
    case OPT_SHARD_SIZE:
        return parse_int64("--shard-size", arg, 4096, &o->shard_size);
    case OPT_RETRY_FAILED:
        o->retry_failed = 1;
        break;
    case OPT_PROGRESS:
        o->progress = 1;
        break;
    case OPT_NO_PROGRESS:
        o->progress = 0;
        break;
    case OPT_LOG_INTERVAL:
        return parse_double("--log-interval", arg, &o->log_interval_s);
    default:
        fprintf(stderr, "lvd-fetch: unknown option (see --help)\n");
        return -1;
    }
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* The first SIGINT or SIGTERM asks for a clean stop (the open shard is completed); a second one
 * kills at once, which is safe too (see curate/fetch.h). */
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

int main(int argc, char **argv)
{
    lvd_fetch_opts o;
    lvd_fetch_opts_init(&o);
    o.progress = isatty(STDERR_FILENO);
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage(stdout);
            return 0;
        }
        if (apply(c, optarg, &o) != 0)
            return 2;
    }
    if (!o.db || !o.source || optind >= argc) {
        fprintf(stderr,
                "lvd-fetch: --db, --source and at least one INPUT are required (see --help)\n");
        return 2;
    }
    o.inputs = (const char *const *)(argv + optind);
    o.n_inputs = argc - optind;
    o.stop = &stop_requested;
    catch_signals();
    lvd_fetch_summary sum;
    lvd_error err;
    lvd_error_clear(&err);
    if (lvd_fetch_run(&o, &sum, &err) != 0) {
        fprintf(stderr, "lvd-fetch: %s\n", err.msg);
        return 1;
    }
    return sum.interrupted ? 130 : 0;
}
