/* lvd_inputs_read of curate/fetch/inputs.h: a folder or a URL list, item by item. */
#include "curate/fetch/inputs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounds the walk through symlinked folder loops. */
#define MAX_DEPTH 64

static int visible(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int emit_file(const char *path, const char *label, lvd_input_fn fn, void *ctx,
                     lvd_error *err)
{
    char url[PATH_MAX * 3 + 16];
    if (lvd_file_url(path, url, sizeof url, err) != 0)
        return -1;
    lvd_input_item item = {.url = url, .label = label};
    return fn(ctx, &item, err);
}

/* label: the name of dir when dir is below the root, else NULL. */
static int walk(const char *dir, const char *label, int depth, lvd_input_fn fn, void *ctx,
                lvd_error *err)
{
    if (depth > MAX_DEPTH)
        return lvd_fail(err, "%s: folders nested too deeply (symlink loop?)", dir);
    struct dirent **list;
    int n = scandir(dir, &list, visible, by_name);
    if (n < 0)
        return lvd_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name) >= (int)sizeof path)
            rc = lvd_fail(err, "%s/%s: path too long", dir, list[i]->d_name);
        else if (stat(path, &st) != 0)
            rc = lvd_fail(err, "%s: cannot stat: %s", path, strerror(errno));
        else if (S_ISDIR(st.st_mode))
            rc = walk(path, list[i]->d_name, depth + 1, fn, ctx, err);
        else if (S_ISREG(st.st_mode))
            rc = emit_file(path, label, fn, ctx, err);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

int lvd_inputs_read(const char *input, lvd_input_fn fn, void *ctx, lvd_error *err)
{
    struct stat st;
    if (stat(input, &st) != 0)
        return lvd_fail(err, "%s: cannot open input: %s", input, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return lvd_inputs_read_list(input, fn, ctx, err);
    char root[PATH_MAX];
    if (!realpath(input, root))
        return lvd_fail(err, "%s: cannot resolve: %s", input, strerror(errno));
    return walk(root, NULL, 0, fn, ctx, err);
}
