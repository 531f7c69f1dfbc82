/* The downloads of curate/fetch/net.h: libcurl multi, retries with backoff, limits and classes. */
#include "curate/fetch/net.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct transfer {
    CURL *easy;
    void *tag;
    uint8_t *buf;
    size_t len, cap;
    int64_t max_bytes;
    int over_cap;
    int attempts;
    int64_t due_ms;        /* when a waiting retry starts again */
    struct transfer *next; /* in the running or the waiting list */
    char errbuf[CURL_ERROR_SIZE];
} transfer;

struct lvd_net {
    CURLM *multi;
    lvd_net_opts opts;
    transfer *running; /* transfers inside the multi handle */
    transfer *waiting; /* transfers waiting for their retry */
    int n_running, n_waiting;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    if ((int64_t)(t->len + n) > t->max_bytes) {
        t->over_cap = 1;
        return 0;
    }
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 65536;
        while (cap < t->len + n)
            cap *= 2;
        uint8_t *buf = realloc(t->buf, cap);
        if (!buf)
            return 0;
        t->buf = buf;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, data, n);
    t->len += n;
    return n;
}

static void transfer_free(transfer *t)
{
    if (t->easy)
        curl_easy_cleanup(t->easy);
    free(t->buf);
    free(t);
}

int lvd_net_create(const lvd_net_opts *opts, lvd_net **out, lvd_error *err)
{
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return lvd_fail(err, "libcurl initialization failed");
    lvd_net *n = calloc(1, sizeof *n);
    if (!n)
        return lvd_fail(err, "out of memory");
    n->opts = *opts;
    n->multi = curl_multi_init();
    if (!n->multi) {
        free(n);
        return lvd_fail(err, "libcurl multi initialization failed");
    }
    *out = n;
    return 0;
}

static void free_list(transfer *t, void (*free_tag)(void *))
{
    while (t) {
        transfer *next = t->next;
        if (free_tag)
            free_tag(t->tag);
        transfer_free(t);
        t = next;
    }
}

void lvd_net_cancel(lvd_net *n, void (*free_tag)(void *tag))
{
    for (transfer *t = n->running; t; t = t->next)
        curl_multi_remove_handle(n->multi, t->easy);
    free_list(n->running, free_tag);
    free_list(n->waiting, free_tag);
    n->running = n->waiting = NULL;
    n->n_running = n->n_waiting = 0;
}

void lvd_net_destroy(lvd_net *n, void (*free_tag)(void *tag))
{
    if (!n)
        return;
    lvd_net_cancel(n, free_tag);
    curl_multi_cleanup(n->multi);
    free(n);
}

/* Moves t into the multi handle and the running list. */
static int start(lvd_net *n, transfer *t)
{
    if (curl_multi_add_handle(n->multi, t->easy) != CURLM_OK)
        return -1;
    t->attempts++;
    t->next = n->running;
    n->running = t;
    n->n_running++;
    return 0;
}

static void unlink_running(lvd_net *n, transfer *t)
{
    for (transfer **p = &n->running; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            n->n_running--;
            return;
        }
    }
}

static void set_options(lvd_net *n, transfer *t, const char *url)
{
    const lvd_net_opts *o = &n->opts;
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)o->max_redirects);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (o->low_speed_s > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_s);
    }
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    if (o->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
}

int lvd_net_add(lvd_net *n, const char *url, void *tag, lvd_error *err)
{
    transfer *t = calloc(1, sizeof *t);
    if (!t)
        return lvd_fail(err, "%s: out of memory", url);
    t->tag = tag;
    t->max_bytes = n->opts.max_bytes;
    t->easy = curl_easy_init();
    if (!t->easy) {
        free(t);
        return lvd_fail(err, "%s: libcurl handle creation failed", url);
    }
    set_options(n, t, url);
    if (start(n, t) != 0) {
        transfer_free(t);
        return lvd_fail(err, "%s: cannot start the transfer", url);
    }
    return 0;
}

int lvd_net_pending(const lvd_net *n)
{
    return n->n_running + n->n_waiting;
}

void lvd_net_wakeup(lvd_net *n)
{
    curl_multi_wakeup(n->multi);
}

/* Classifies a finished attempt into err; returns 1 when it is worth retrying. */
static int classify(transfer *t, CURLcode rc, long status, lvd_error *err)
{
    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        lvd_fail_class(err, "dns", "%s", t->errbuf);
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        lvd_fail_class(err, "timeout", "%s", t->errbuf);
        return 1;
    case CURLE_FILESIZE_EXCEEDED:
        lvd_fail_class(err, "too_large", "more than %lld bytes", (long long)t->max_bytes);
        return 0;
    case CURLE_WRITE_ERROR:
        if (t->over_cap)
            lvd_fail_class(err, "too_large", "more than %lld bytes", (long long)t->max_bytes);
        else
            lvd_fail_class(err, "connect", "out of memory while receiving");
        return 0;
    case CURLE_TOO_MANY_REDIRECTS:
        lvd_fail_class(err, "http_4xx", "%s", t->errbuf);
        return 0;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        lvd_fail_class(err, "connect", "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
        return 1;
    default:
        lvd_fail_class(err, "connect", "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
        return 0;
    }
    if (status >= 200 && status < 300)
        return 0;
    if (status >= 500) {
        lvd_fail_class(err, "http_5xx", "HTTP %ld", status);
        return 1;
    }
    lvd_fail_class(err, "http_4xx", "HTTP %ld", status);
    return status == 429;
}

/* The longest wait before a retry, whatever the backoff or the server's Retry-After say. */
#define MAX_RETRY_DELAY_MS 60000

/* Queues t for another attempt after the backoff, or after the server's Retry-After (seconds)
 * when that is longer. */
static void schedule_retry(lvd_net *n, transfer *t, curl_off_t retry_after)
{
    long delay = n->opts.backoff_ms;
    for (int i = 1; i < t->attempts && delay < MAX_RETRY_DELAY_MS; i++)
        delay *= 2;
    if (retry_after > delay / 1000)
        delay =
            retry_after < MAX_RETRY_DELAY_MS / 1000 ? (long)retry_after * 1000 : MAX_RETRY_DELAY_MS;
    if (delay > MAX_RETRY_DELAY_MS)
        delay = MAX_RETRY_DELAY_MS;
    t->due_ms = now_ms() + delay;
    t->len = 0;
    t->over_cap = 0;
    t->errbuf[0] = '\0';
    t->next = n->waiting;
    n->waiting = t;
    n->n_waiting++;
}

/* Hands a transfer that is over (successful or failed for good) to done, and frees it. */
static void deliver(transfer *t, lvd_net_result *res, lvd_net_done_fn done, void *ctx)
{
    if (res->err.cls) {
        res->failed = 1;
    } else {
        res->body = t->buf;
        res->len = t->len;
        t->buf = NULL;
    }
    transfer_free(t);
    done(ctx, res);
}

static void finish(lvd_net *n, CURLMsg *msg, lvd_net_done_fn done, void *ctx)
{
    transfer *t = NULL;
    long status = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t retry_after = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RETRY_AFTER, &retry_after);
    CURLcode rc = msg->data.result;
    curl_multi_remove_handle(n->multi, msg->easy_handle);
    unlink_running(n, t);
    lvd_net_result res = {.tag = t->tag, .attempts = t->attempts};
    lvd_error_clear(&res.err);
    int transient = classify(t, rc, status, &res.err);
    if (res.err.cls && transient && t->attempts <= n->opts.retries) {
        schedule_retry(n, t, retry_after);
        return;
    }
    deliver(t, &res, done, ctx);
}

/* Puts due retries back into the multi handle; returns the wait until the next one (or limit). */
static int restart_due(lvd_net *n, int limit_ms, lvd_net_done_fn done, void *ctx)
{
    int64_t now = now_ms();
    int wait = limit_ms;
    for (transfer **p = &n->waiting; *p;) {
        transfer *t = *p;
        if (t->due_ms > now) {
            if (t->due_ms - now < wait)
                wait = (int)(t->due_ms - now);
            p = &t->next;
            continue;
        }
        *p = t->next;
        n->n_waiting--;
        if (start(n, t) != 0) {
            lvd_net_result res = {.tag = t->tag, .attempts = t->attempts};
            lvd_fail_class(&res.err, "connect", "cannot restart the transfer");
            deliver(t, &res, done, ctx);
        }
    }
    return wait;
}

int lvd_net_poll(lvd_net *n, int timeout_ms, lvd_net_done_fn done, void *ctx, lvd_error *err)
{
    int wait = restart_due(n, timeout_ms, done, ctx);
    int still = 0;
    if (curl_multi_poll(n->multi, NULL, 0, wait, NULL) != CURLM_OK ||
        curl_multi_perform(n->multi, &still) != CURLM_OK)
        return lvd_fail(err, "libcurl multi failure");
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(n->multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            finish(n, msg, done, ctx);
    return 0;
}
