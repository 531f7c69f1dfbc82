/* Helpers shared by the store tests: a private temporary folder, raw file writing and
 * "this open must fail with a message mentioning X" checks. */
#ifndef LVD_TESTS_STORE_HELPERS_H
#define LVD_TESTS_STORE_HELPERS_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/tensors.h"
#include "tests/check.h"
#include "tests/check_run.h"

static char helper_dir[256];

/* Creates a fresh temporary folder for this test (removed by remove_temp_dir). */
static inline const char *make_temp_dir(void)
{
    char *d = check_tmpdir("lvd-store");
    snprintf(helper_dir, sizeof helper_dir, "%s", d);
    free(d);
    return helper_dir;
}

static inline void remove_temp_dir(void)
{
    check_rmtree(helper_dir);
}

/* helper_dir/name, in a static buffer (valid until the next call). */
static inline const char *temp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", helper_dir, name);
    return path;
}

static inline void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(buf, 1, len, fp) != len || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
}

static inline int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Opening path must fail, leave *out NULL, and the message must name the file and contain
 * `expect`. */
#define EXPECT_OPEN_FAILS(path, expect) expect_open_fails(__FILE__, __LINE__, path, expect)

static inline void expect_open_fails(const char *file, int line, const char *path,
                                     const char *expect)
{
    lvd_tensors *ts = (lvd_tensors *)1;
    lvd_error err;
    lvd_error_clear(&err);
    int rc = lvd_tensors_open(path, &ts, &err);
    if (rc == 0 || ts != NULL || !strstr(err.msg, path) || !strstr(err.msg, expect)) {
        fprintf(stderr, "%s:%d: opening %s: expected failure mentioning \"%s\", got rc %d: %s\n",
                file, line, path, expect, rc, err.msg);
        check_failures++;
        if (rc == 0)
            lvd_tensors_close(ts);
    }
}

/* True when ptr lies in a mapping of a file whose path ends with `suffix` (/proc/self/maps). */
static inline int mapped_from(const void *ptr, const char *suffix)
{
    FILE *fp = fopen("/proc/self/maps", "r");
    if (!fp)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof line, fp)) {
        unsigned long lo, hi;
        char *path = strchr(line, '/');
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2 || !path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        size_t n = strlen(path), m = strlen(suffix);
        found = (uintptr_t)ptr >= lo && (uintptr_t)ptr < hi && n >= m &&
                strcmp(path + n - m, suffix) == 0;
    }
    fclose(fp);
    return found;
}

/* Files in the temporary folder whose name holds ".tmp." (the writers' temporary files). */
static inline int count_temp_files(void)
{
    DIR *d = opendir(helper_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

#endif
