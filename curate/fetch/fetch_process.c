/* What a worker does with one item: read it (file:// items) and validate it. */
#include "curate/fetch/fetch_internal.h"
#include "curate/fetch/inputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the file behind job->url into job->body. A file that cannot be read is the local
 * equivalent of an HTTP 4xx answer. */
static void read_local(fetch_job *job, int64_t max_bytes)
{
    char *path = NULL;
    lvd_error err;
    if (lvd_file_url_path(job->url, &path, &err) != 0) {
        fetch_job_fail(job, "http_4xx", "%s", err.msg);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fetch_job_fail(job, "http_4xx", "%s: %s", path, strerror(errno));
    } else if (st.st_size > max_bytes) {
        fetch_job_fail(job, "too_large", "%s: more than %lld bytes", path, (long long)max_bytes);
    } else if (!(job->body = malloc(st.st_size > 0 ? (size_t)st.st_size : 1))) {
        fetch_job_fail(job, "decode", "%s: out of memory", path);
    } else {
        size_t got = 0;
        ssize_t n = 1;
        while (got < (size_t)st.st_size && (n = read(fd, job->body + got, st.st_size - got)) > 0)
            got += (size_t)n;
        if (n < 0)
            fetch_job_fail(job, "http_4xx", "%s: %s", path, strerror(errno));
        job->len = got;
    }
    if (fd >= 0)
        close(fd);
    free(path);
}

void fetch_process(fetch_job *job, const lvd_validate_opts *vopts, int64_t max_bytes)
{
    if (job->local && !job->failed)
        read_local(job, max_bytes);
    if (job->failed)
        return;
    if (lvd_validate(job->body, job->len, vopts, &job->stored, &job->err) != 0) {
        job->failed = 1;
        return;
    }
    job->body = NULL; /* now owned by job->stored */
    job->len = 0;
}
