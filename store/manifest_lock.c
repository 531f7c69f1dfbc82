/* The locks of store/manifest.h: one descriptor per database file (by device and inode) for the
 * life of the process, OFD byte-range locks on it for stage locks and run locks, and the
 * bookkeeping that makes two handles of one process exclude each other as two processes do. */
#include "store/manifest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* SQLite locks bytes from 2^30 on (its pending byte) for about 512 bytes; these are far above. */
#define STAGE_BASE ((off_t)1 << 40)
#define RUN_BASE   ((off_t)1 << 41)

struct lock_file {
    pid_t pid; /* a child made by fork alone inherits the list: its entries are not its own */
    dev_t dev;
    ino_t ino;
    int fd;      /* never closed: see store/manifest.h */
    off_t *held; /* bytes held by some handle of this process */
    size_t n_held, cap_held;
    lock_file *next;
};

static lock_file *files;
static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;

off_t manifest_stage_byte(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a: a fixed byte per stage name */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return STAGE_BASE + (off_t)(h & 0xffffff);
}

off_t manifest_run_byte(int64_t run_id)
{
    return RUN_BASE + (off_t)run_id;
}

static lock_file *find_file(dev_t dev, ino_t ino)
{
    pid_t self = getpid();
    for (lock_file *f = files; f; f = f->next)
        if (f->pid == self && f->dev == dev && f->ino == ino)
            return f;
    return NULL;
}

int manifest_lock_attach(lvd_manifest *m, int create, lvd_error *err)
{
    struct stat st;
    pthread_mutex_lock(&files_mu);
    lock_file *f = stat(m->path, &st) == 0 ? find_file(st.st_dev, st.st_ino) : NULL;
    if (!f) {
        int fd = open(m->path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
        int e = errno;
        f = fd >= 0 && fstat(fd, &st) == 0 ? calloc(1, sizeof *f) : NULL;
        if (!f) {
            pthread_mutex_unlock(&files_mu);
            if (fd >= 0)
                close(fd); /* nothing of this process has the file open yet */
            if (fd < 0 && e == ENOENT)
                return lvd_fail(err, "%s: no such manifest: %s", m->path, strerror(e));
            return lvd_fail(err, "%s: cannot open for writing: %s", m->path,
                            fd < 0 ? strerror(e) : "out of memory");
        }
        *f = (lock_file){
            .pid = getpid(), .dev = st.st_dev, .ino = st.st_ino, .fd = fd, .next = files};
        files = f;
    }
    m->lf = f;
    pthread_mutex_unlock(&files_mu);
    return 0;
}

static int push(off_t **v, size_t *n, size_t *cap, off_t at)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 8;
        off_t *p = realloc(*v, c * sizeof *p);
        if (!p)
            return -1;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = at;
    return 0;
}

static int drop(off_t *v, size_t *n, off_t at)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == at) {
            v[i] = v[--*n];
            return 1;
        }
    return 0;
}

static int has(const off_t *v, size_t n, off_t at)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == at)
            return 1;
    return 0;
}

static int ofd(int fd, int cmd, short type, off_t at, struct flock *out)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    int rc = fcntl(fd, cmd, &fl);
    if (out)
        *out = fl;
    return rc;
}

int manifest_lock_byte(lvd_manifest *m, off_t at, lvd_error *err)
{
    if (!m->lf)
        return lvd_fail(err, "%s: opened read-only: no locks", m->path);
    lock_file *f = m->lf;
    pthread_mutex_lock(&files_mu);
    int rc = 1;
    if (!has(f->held, f->n_held, at)) {
        if (ofd(f->fd, F_OFD_SETLK, F_WRLCK, at, NULL) == 0)
            rc = 0;
        else if (errno != EAGAIN && errno != EACCES)
            rc = lvd_fail(err, "%s: cannot lock: %s", m->path, strerror(errno));
    }
    if (rc == 0 && (push(&f->held, &f->n_held, &f->cap_held, at) ||
                    push(&m->held, &m->n_held, &m->cap_held, at))) {
        drop(f->held, &f->n_held, at);
        ofd(f->fd, F_OFD_SETLK, F_UNLCK, at, NULL);
        rc = lvd_fail(err, "%s: out of memory", m->path);
    }
    pthread_mutex_unlock(&files_mu);
    return rc;
}

void manifest_unlock_byte(lvd_manifest *m, off_t at)
{
    if (!m->lf || !drop(m->held, &m->n_held, at))
        return;
    pthread_mutex_lock(&files_mu);
    drop(m->lf->held, &m->lf->n_held, at);
    ofd(m->lf->fd, F_OFD_SETLK, F_UNLCK, at, NULL);
    pthread_mutex_unlock(&files_mu);
}

void manifest_unlock_all(lvd_manifest *m)
{
    while (m->n_held > 0)
        manifest_unlock_byte(m, m->held[m->n_held - 1]);
    free(m->held);
    m->held = NULL;
    m->cap_held = 0;
}

int manifest_byte_held(lvd_manifest *m, off_t at, lvd_error *err)
{
    if (!m->lf)
        return lvd_fail(err, "%s: opened read-only: no locks", m->path);
    pthread_mutex_lock(&files_mu);
    /* F_OFD_GETLK does not see this descriptor's own locks: those are in held. */
    struct flock fl;
    int rc = has(m->lf->held, m->lf->n_held, at) ? 1 : 0;
    if (rc == 0 && ofd(m->lf->fd, F_OFD_GETLK, F_WRLCK, at, &fl) != 0)
        rc = lvd_fail(err, "%s: cannot test a lock: %s", m->path, strerror(errno));
    else if (rc == 0)
        rc = fl.l_type != F_UNLCK;
    pthread_mutex_unlock(&files_mu);
    return rc;
}
