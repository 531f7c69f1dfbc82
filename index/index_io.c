/* Saving and loading indexes (index/index.h). */
#include "index/internal.h"

#include <errno.h>
#include <faiss/c_api/index_io_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lvd_index_write(const lvd_index *index, FILE *f, const char *tmp, lvd_error *err)
{
    if (faiss_write_index(index->faiss, f)) {
        index_faiss_fail(err, "index save");
        return lvd_error_prefix(err, "%s", tmp);
    }
    if (fflush(f) || fsync(fileno(f)))
        return lvd_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    return 0;
}

int index_save_atomic(const char *path, index_write_fn fill, const void *ctx, lvd_error *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lvd_fail(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return lvd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    int rc = fill(ctx, f, tmp, err);
    if (fclose(f) && rc == 0)
        rc = lvd_fail(err, "%s: close failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path))
        rc = lvd_fail(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

/* lvd_index_write as an index_write_fn. */
static int write_index(const void *index, FILE *f, const char *tmp, lvd_error *err)
{
    return lvd_index_write(index, f, tmp, err);
}

int lvd_index_save(const lvd_index *index, const char *path, lvd_error *err)
{
    return index_save_atomic(path, write_index, index, err);
}

int lvd_index_load(lvd_index **out, const char *path, lvd_error *err)
{
    *out = NULL;
    FaissIndex *f = NULL;
    if (faiss_read_index_fname(path, 0, &f)) {
        index_faiss_fail(err, "index load");
        return lvd_error_prefix(err, "%s", path);
    }
    if (faiss_Index_metric_type(f) != METRIC_INNER_PRODUCT) {
        faiss_Index_free(f);
        return lvd_fail(err, "%s: the index does not use the inner-product metric", path);
    }
    lvd_index *index = index_alloc(1, sizeof *index, "the index", err);
    if (!index) {
        faiss_Index_free(f);
        return -1;
    }
    index->faiss = f;
    index->d = faiss_Index_d(f);
    *out = index;
    return 0;
}
