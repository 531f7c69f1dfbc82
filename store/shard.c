/* The tar shard writer of store/shard.h (libarchive, pax restricted format). */
#include "store/shard.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAR_BLOCK 512

struct lvd_shard_writer {
    struct archive *ar;
    int fd;
    char *path;
    char *tmp;
    uint64_t bytes;
    int members;
};

static void writer_free(lvd_shard_writer *w)
{
    if (w->ar)
        archive_write_free(w->ar);
    if (w->fd >= 0)
        close(w->fd);
    free(w->path);
    free(w->tmp);
    free(w);
}

void lvd_shard_abort(lvd_shard_writer *w)
{
    if (!w)
        return;
    unlink(w->tmp);
    writer_free(w);
}

static int fail_archive(lvd_shard_writer *w, lvd_error *err, const char *what)
{
    lvd_fail(err, "%s: %s: %s", w->tmp, what, archive_error_string(w->ar));
    lvd_shard_abort(w);
    return -1;
}

int lvd_shard_open(const char *path, lvd_shard_writer **out, lvd_error *err)
{
    *out = NULL;
    lvd_shard_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lvd_fail(err, "%s: out of memory", path);
    w->fd = -1;
    size_t n = strlen(path) + 5;
    w->path = strdup(path);
    w->tmp = malloc(n);
    if (!w->path || !w->tmp) {
        writer_free(w);
        return lvd_fail(err, "%s: out of memory", path);
    }
    snprintf(w->tmp, n, "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        lvd_fail(err, "%s: cannot create: %s", w->tmp, strerror(errno));
        writer_free(w);
        return -1;
    }
    w->ar = archive_write_new();
    if (!w->ar) {
        lvd_shard_abort(w);
        return lvd_fail(err, "%s: out of memory", path);
    }
    /* No padding of the last block: the file size is then exactly lvd_shard_bytes. */
    if (archive_write_set_format_pax_restricted(w->ar) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->ar, 1) != ARCHIVE_OK ||
        archive_write_open_fd(w->ar, w->fd) != ARCHIVE_OK)
        return fail_archive(w, err, "cannot start the archive");
    *out = w;
    return 0;
}

int lvd_shard_add(lvd_shard_writer *w, const char *name, const void *data, size_t len,
                  lvd_error *err)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return lvd_fail(err, "%s: out of memory", w->tmp);
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    /* No timestamp: a shard is a function of its members, so reruns give the same bytes. */
    archive_entry_set_mtime(e, 0, 0);
    int rc = archive_write_header(w->ar, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK) {
        lvd_fail(err, "%s: writing the header of %s: %s", w->tmp, name,
                 archive_error_string(w->ar));
        return -1;
    }
    if (len > 0 && archive_write_data(w->ar, data, len) != (la_ssize_t)len) {
        lvd_fail(err, "%s: writing %s: %s", w->tmp, name, archive_error_string(w->ar));
        return -1;
    }
    w->bytes += lvd_shard_member_bytes(len);
    w->members++;
    return 0;
}

uint64_t lvd_shard_member_bytes(size_t len)
{
    return TAR_BLOCK + ((uint64_t)len + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

uint64_t lvd_shard_bytes(const lvd_shard_writer *w)
{
    return w->bytes + 2 * TAR_BLOCK;
}

int lvd_shard_members(const lvd_shard_writer *w)
{
    return w->members;
}

/* Syncs the folder holding path so the rename itself survives a power loss. */
static int sync_parent(const char *path, lvd_error *err)
{
    char *copy = strdup(path);
    if (!copy)
        return lvd_fail(err, "%s: out of memory", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;
    if (rc != 0)
        lvd_fail(err, "%s: cannot sync its folder: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int lvd_shard_finish(lvd_shard_writer *w, lvd_error *err)
{
    if (archive_write_close(w->ar) != ARCHIVE_OK)
        return fail_archive(w, err, "cannot finish the archive");
    if (fsync(w->fd) != 0) {
        lvd_fail(err, "%s: cannot sync: %s", w->tmp, strerror(errno));
        lvd_shard_abort(w);
        return -1;
    }
    if (rename(w->tmp, w->path) != 0) {
        lvd_fail(err, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
        lvd_shard_abort(w);
        return -1;
    }
    int rc = sync_parent(w->path, err);
    writer_free(w);
    return rc;
}
