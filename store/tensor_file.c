/* The crash-safe file writes of store/tensor_file.h (temporary name, sync, rename). */
#include "store/tensor_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tensor_file_release(tensor_file *f)
{
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    f->fp = NULL;
}

int tensor_file_create(tensor_file *f, const char *path, lvd_error *err)
{
    memset(f, 0, sizeof *f);
    size_t len = strlen(path);
    f->path = strdup(path);
    f->tmp_path = malloc(len + sizeof ".tmp.XXXXXX");
    if (!f->path || !f->tmp_path) {
        tensor_file_release(f);
        return lvd_fail(err, "%s: out of memory", path);
    }
    memcpy(f->tmp_path, path, len);
    memcpy(f->tmp_path + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(f->tmp_path, O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        tensor_file_release(f);
        return lvd_fail(err, "%s: cannot create temporary file: %s", path, strerror(saved));
    }
    /* mkostemp creates 0600; published files are world-readable like any other output (umask is
     * not consulted: reading it means changing it, which races with other threads). */
    if (fchmod(fd, 0644) != 0 || !(f->fp = fdopen(fd, "wb"))) {
        int saved = errno;
        close(fd);
        unlink(f->tmp_path);
        tensor_file_release(f);
        return lvd_fail(err, "%s: cannot open temporary file: %s", path, strerror(saved));
    }
    return 0;
}

int tensor_file_write(tensor_file *f, const void *buf, size_t n, lvd_error *err)
{
    if (n && fwrite(buf, 1, n, f->fp) != n)
        return lvd_fail(err, "%s: write failed: %s", f->path, strerror(errno));
    return 0;
}

int tensor_file_write_at(tensor_file *f, int64_t at, const void *buf, size_t n, lvd_error *err)
{
    if (fflush(f->fp) != 0)
        return lvd_fail(err, "%s: write failed: %s", f->path, strerror(errno));
    ssize_t done = pwrite(fileno(f->fp), buf, n, (off_t)at);
    if (done < 0 || (size_t)done != n)
        return lvd_fail(err, "%s: write failed: %s", f->path,
                        done < 0 ? strerror(errno) : "short write");
    return 0;
}

/* Makes the rename durable: the folder entry must reach the disk too. */
static void sync_folder(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return;
    fsync(fd);
    close(fd);
}

int tensor_file_commit(tensor_file *f, lvd_error *err)
{
    const char *problem = NULL;
    int saved = 0;
    if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0) {
        problem = "cannot flush";
        saved = errno;
    }
    if (fclose(f->fp) != 0 && !problem) {
        problem = "cannot close";
        saved = errno;
    }
    f->fp = NULL;
    if (!problem && rename(f->tmp_path, f->path) != 0) {
        problem = "cannot rename temporary file into place";
        saved = errno;
    }
    if (problem) {
        lvd_fail(err, "%s: %s: %s", f->path, problem, strerror(saved));
        tensor_file_abort(f);
        return -1;
    }
    sync_folder(f->path);
    tensor_file_release(f);
    return 0;
}

void tensor_file_abort(tensor_file *f)
{
    if (f->fp)
        fclose(f->fp);
    if (f->tmp_path)
        unlink(f->tmp_path);
    tensor_file_release(f);
}
