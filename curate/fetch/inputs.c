/* Folder inputs of curate/fetch/inputs.h: the sorted recursive walk. Every visible entry that is
 * not a folder walked into becomes an item, so that a bad one (dangling symlink, self-link, symlink
 * loop, FIFO, unreadable subfolder) is recorded as a failure of its own by the fetch stage
 * instead of stopping the walk. */
#include "curate/fetch/inputs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Folders below the root walked into at most; a deeper one is an item (refused when read). */
#define MAX_DEPTH 64

/* The folders from the root down to the one being walked, to recognise a symlink back up. */
typedef struct walk_path {
    dev_t dev[MAX_DEPTH + 1];
    ino_t ino[MAX_DEPTH + 1];
    int depth;
} walk_path;

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

static int on_path(const walk_path *w, const struct stat *st)
{
    for (int i = 0; i <= w->depth; i++)
        if (w->dev[i] == st->st_dev && w->ino[i] == st->st_ino)
            return 1;
    return 0;
}

/* Walks the folder dir (listed as list[0..n)); label: the name of dir when below the root. */
static int walk_list(const char *dir, struct dirent **list, int n, const char *label, walk_path *w,
                     lvd_input_fn fn, void *ctx, lvd_error *err);

/* Walks into the folder path (status st) when it can, else emits it as an item. */
static int walk_folder(const char *path, const char *name, const struct stat *st, const char *label,
                       walk_path *w, lvd_input_fn fn, void *ctx, lvd_error *err)
{
    struct dirent **list;
    int n;
    if (w->depth >= MAX_DEPTH || on_path(w, st) || (n = scandir(path, &list, visible, by_name)) < 0)
        return emit_file(path, label, fn, ctx, err);
    w->depth++;
    w->dev[w->depth] = st->st_dev;
    w->ino[w->depth] = st->st_ino;
    int rc = walk_list(path, list, n, name, w, fn, ctx, err);
    w->depth--;
    return rc;
}

static int walk_list(const char *dir, struct dirent **list, int n, const char *label, walk_path *w,
                     lvd_input_fn fn, void *ctx, lvd_error *err)
{
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name) >= (int)sizeof path)
            rc = lvd_fail(err, "%s/%s: path too long", dir, list[i]->d_name);
        else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rc = walk_folder(path, list[i]->d_name, &st, label, w, fn, ctx, err);
        else /* a file, or an entry that cannot be followed: the fetch says which */
            rc = emit_file(path, label, fn, ctx, err);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

int lvd_inputs_read(const char *input, lvd_input_fn fn, void *ctx,
                    const volatile sig_atomic_t *stop, lvd_error *err)
{
    struct stat st;
    if (stat(input, &st) != 0)
        return lvd_fail(err, "%s: cannot open input: %s", input, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return lvd_inputs_read_list(input, fn, ctx, stop, err);
    char root[PATH_MAX];
    if (!realpath(input, root))
        return lvd_fail(err, "%s: cannot resolve: %s", input, strerror(errno));
    struct dirent **list;
    int n = scandir(root, &list, visible, by_name);
    if (n < 0)
        return lvd_fail(err, "%s: cannot list: %s", root, strerror(errno));
    walk_path w = {.dev = {st.st_dev}, .ino = {st.st_ino}, .depth = 0};
    return walk_list(root, list, n, NULL, &w, fn, ctx, err);
}
