/* What a worker does with one item (fetch_process in curate/fetch/fetch_internal.h): read it (file://
 * items) and validate it. */
#include "curate/fetch/fetch_internal.h"
#include "curate/fetch/inputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes read per call: also how often the deadline is checked. */
#define READ_CHUNK (1 << 20)

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "not a regular file";
}

/* Reads the regular file open as fd (st its status) into job->body: at most max_bytes bytes
 * (the file may grow while it is read), before the deadline. */
static void read_fd(fetch_job *job, const char *path, int fd, const struct stat *st,
                    const lvd_net_opts *net)
{
    int64_t max_bytes = net->max_bytes;
    if (st->st_size > max_bytes) {
        fetch_job_fail(job, "too_large", "%s: more than %lld bytes", path, (long long)max_bytes);
        return;
    }
    double deadline = fetch_now() + (net->timeout_ms > 0 ? net->timeout_ms / 1000.0 : 1e30);
    size_t cap = (size_t)st->st_size + 1, got = 0;
    job->body = malloc(cap);
    for (;;) {
        if (!job->body) {
            fetch_job_fail(job, "decode", "%s: out of memory", path);
            return;
        }
        size_t want = cap - got < READ_CHUNK ? cap - got : READ_CHUNK;
        ssize_t n = read(fd, job->body + got, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fetch_job_fail(job, "http_4xx", "%s: %s", path, strerror(errno));
            return;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if ((int64_t)got > max_bytes) {
            fetch_job_fail(job, "too_large", "%s: more than %lld bytes", path,
                           (long long)max_bytes);
            return;
        }
        if (fetch_now() > deadline) {
            fetch_job_fail(job, "timeout", "%s: not read within %ld ms", path, net->timeout_ms);
            return;
        }
        if (got == cap) {
            cap = cap * 2 < (size_t)max_bytes + 1 ? cap * 2 : (size_t)max_bytes + 1;
            uint8_t *grown = realloc(job->body, cap);
            if (!grown)
                free(job->body);
            job->body = grown;
        }
    }
    job->len = got;
}

/* Reads the file behind job->url into job->body. A file that cannot be read, or is not a
 * regular file (opening a FIFO or a device could block or act on it), is the local equivalent
 * of an HTTP 4xx answer. */
static void read_local(fetch_job *job, const lvd_net_opts *net)
{
    char *path = NULL;
    lvd_error err;
    if (lvd_file_url_path(job->url, &path, &err) != 0) {
        fetch_job_fail(job, "http_4xx", "%s", err.msg);
        return;
    }
    struct stat st, opened;
    int fd = -1;
    if (stat(path, &st) != 0)
        fetch_job_fail(job, "http_4xx", "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        fetch_job_fail(job, "http_4xx", "%s: %s, not a regular file", path, file_kind(st.st_mode));
    else if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0 ||
             fstat(fd, &opened) != 0)
        fetch_job_fail(job, "http_4xx", "%s: %s", path, strerror(errno));
    else if (!S_ISREG(opened.st_mode)) /* replaced between stat and open */
        fetch_job_fail(job, "http_4xx", "%s: %s, not a regular file", path,
                       file_kind(opened.st_mode));
    else
        read_fd(job, path, fd, &opened, net);
    if (fd >= 0)
        close(fd);
    free(path);
}

void fetch_process(fetch_job *job, const lvd_validate_opts *vopts, const lvd_net_opts *net)
{
    if (job->local && !job->failed)
        read_local(job, net);
    if (!job->failed && lvd_validate(job->body, job->len, vopts, &job->stored, &job->err) != 0)
        job->failed = 1;
    if (job->failed) /* the bytes are of no use while the job waits for its turn */
        free(job->body);
    job->body = NULL; /* freed, or now owned by job->stored */
    job->len = 0;
}
