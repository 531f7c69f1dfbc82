/* The worker pool of the fetch stage (fetch_internal.h): threads that read and validate jobs. */
#include "curate/fetch/fetch_internal.h"

#include <stdlib.h>

struct fetch_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    fetch_job *todo, *todo_tail;
    fetch_job *done, *done_tail;
    int held; /* submitted, not taken */
    int stopping;
    pthread_t *threads;
    int n_threads;
    lvd_validate_opts vopts;
    lvd_net_opts net;
    void (*wake)(void *);
    void *wake_ctx;
};

static void push(fetch_job **head, fetch_job **tail, fetch_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static void *worker(void *arg)
{
    fetch_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->todo && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (!p->todo)
            break;
        fetch_job *job = p->todo;
        p->todo = job->next;
        if (!p->todo)
            p->todo_tail = NULL;
        pthread_mutex_unlock(&p->lock);
        fetch_process(job, &p->vopts, &p->net);
        pthread_mutex_lock(&p->lock);
        push(&p->done, &p->done_tail, job);
        p->wake(p->wake_ctx);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int fetch_pool_start(int threads, const lvd_validate_opts *vopts, const lvd_net_opts *net,
                     void (*wake)(void *), void *wake_ctx, fetch_pool **out, lvd_error *err)
{
    *out = NULL;
    fetch_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)threads, sizeof *p->threads))) {
        free(p);
        return lvd_fail(err, "out of memory");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    p->vopts = *vopts;
    p->net = *net;
    p->wake = wake;
    p->wake_ctx = wake_ctx;
    for (; p->n_threads < threads; p->n_threads++) {
        if (pthread_create(&p->threads[p->n_threads], NULL, worker, p) != 0) {
            fetch_pool_stop(p);
            return lvd_fail(err, "cannot start worker threads");
        }
    }
    *out = p;
    return 0;
}

void fetch_pool_submit(fetch_pool *p, fetch_job *job)
{
    pthread_mutex_lock(&p->lock);
    push(&p->todo, &p->todo_tail, job);
    p->held++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

int fetch_pool_held(fetch_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->held;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void fetch_pool_cancel(fetch_pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->todo) {
        fetch_job *job = p->todo;
        p->todo = job->next;
        job->cancelled = 1;
        push(&p->done, &p->done_tail, job);
    }
    p->todo_tail = NULL;
    pthread_mutex_unlock(&p->lock);
}

fetch_job *fetch_pool_take(fetch_pool *p)
{
    pthread_mutex_lock(&p->lock);
    fetch_job *jobs = p->done;
    for (fetch_job *j = jobs; j; j = j->next)
        p->held--;
    p->done = p->done_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    return jobs;
}

void fetch_pool_stop(fetch_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p->threads);
    free(p);
}
