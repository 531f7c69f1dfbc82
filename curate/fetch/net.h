/* Concurrent HTTP(S) downloads on one libcurl multi handle, driven by the caller's thread.
 *
 * Transient failures (timeouts, including the low-speed abort; connection resets; HTTP 429 and
 * 5xx) are retried with exponential backoff. Failure classes: dns, connect, timeout, http_4xx,
 * http_5xx, too_large (more than max_bytes). Redirects are followed up to max_redirects (more count
 * as http_4xx), and only to http and https. */
#ifndef LVD_CURATE_FETCH_NET_H
#define LVD_CURATE_FETCH_NET_H

#include <stddef.h>
#include <stdint.h>

#include "store/error.h"

typedef struct lvd_net lvd_net;

typedef struct lvd_net_opts {
    long connect_timeout_ms;
    long timeout_ms;      /* whole transfer, per attempt */
    long low_speed_bytes; /* abort when slower than this many bytes/s ... */
    long low_speed_s;     /* ... for this many seconds (0: never) */
    int max_redirects;
    int64_t max_bytes; /* per image */
    int retries;       /* extra attempts for transient failures */
    long backoff_ms;   /* first retry delay; doubles on each further retry */
    const char *user_agent;
} lvd_net_opts;

typedef struct lvd_net_result {
    void *tag;     /* as given to lvd_net_add */
    uint8_t *body; /* on success: malloc'd, owned by the receiver; NULL on failure */
    size_t len;
    int attempts;
    int failed;
    lvd_error err; /* with a class when failed */
} lvd_net_result;

/* Receives each finished transfer (successful or failed for good). */
typedef void (*lvd_net_done_fn)(void *ctx, lvd_net_result *res);

int lvd_net_create(const lvd_net_opts *opts, lvd_net **out, lvd_error *err);

/* Cancels every transfer (running or waiting for a retry), passing each tag to free_tag (when
 * not NULL); n stays usable. */
void lvd_net_cancel(lvd_net *n, void (*free_tag)(void *tag));

/* Cancels what is still running, passes the tag of each cancelled transfer to free_tag (when not
 * NULL) and frees n (NULL allowed). */
void lvd_net_destroy(lvd_net *n, void (*free_tag)(void *tag));

/* Starts downloading url (http or https); tag comes back in the result. */
int lvd_net_add(lvd_net *n, const char *url, void *tag, lvd_error *err);

/* Transfers running or waiting for a retry. */
int lvd_net_pending(const lvd_net *n);

/* Waits up to timeout_ms for network activity (or lvd_net_wakeup), moves transfers on and calls
 * done for each finished one. */
int lvd_net_poll(lvd_net *n, int timeout_ms, lvd_net_done_fn done, void *ctx, lvd_error *err);

/* Makes a concurrent lvd_net_poll return early; safe from any thread. */
void lvd_net_wakeup(lvd_net *n);

#endif
