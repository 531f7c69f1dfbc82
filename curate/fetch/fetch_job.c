/* The job of curate/fetch/fetch_internal.h that carries one item through the fetch stage. */
#include "curate/fetch/fetch_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

fetch_job *fetch_job_new(int64_t id, const char *url, const char *key, const char *label,
                         const char *caption)
{
    fetch_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    int oom = 0;
    job->id = id;
    job->url = dup_or_null(url, &oom);
    job->key = dup_or_null(key, &oom);
    job->label = dup_or_null(label, &oom);
    job->caption = dup_or_null(caption, &oom);
    if (oom) {
        fetch_job_free(job);
        return NULL;
    }
    lvd_error_clear(&job->err);
    return job;
}

void fetch_job_free(fetch_job *job)
{
    if (!job)
        return;
    free(job->url);
    free(job->key);
    free(job->label);
    free(job->caption);
    free(job->body);
    lvd_stored_free(&job->stored);
    free(job);
}

void fetch_job_fail(fetch_job *job, const char *cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->err.msg, sizeof job->err.msg, fmt, ap);
    va_end(ap);
    job->err.cls = cls;
    job->failed = 1;
}

void fetch_job_free_list(fetch_job *job)
{
    while (job) {
        fetch_job *next = job->next;
        fetch_job_free(job);
        job = next;
    }
}
