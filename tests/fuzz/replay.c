/* Runs a fuzz target's LLVMFuzzerTestOneInput over every file of the given folders, so the seed
 * corpus (and any crash reproducer added to it) is exercised by plain `meson test` without
 * libFuzzer. Usage: replay-<target> DIR... */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *p = realloc(buf, cap);
            if (!p)
                break;
            buf = p;
        }
        got = fread(buf + len, 1, cap - len, fp);
        len += got;
    } while (got > 0);
    int ok = !ferror(fp);
    fclose(fp);
    if (ok)
        LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return ok ? 0 : -1;
}

static int replay_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open %s\n", dir);
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (replay_file(path) != 0) {
            fprintf(stderr, "replay: cannot read %s\n", path);
            rc = -1;
        }
        (*count)++;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: %s DIR...\nFeeds every file of each DIR to the fuzz target once.\n",
               argv[0]);
        return argc < 2;
    }
    int count = 0;
    for (int i = 1; i < argc; i++)
        if (replay_dir(argv[i], &count) != 0)
            return 1;
    if (count == 0) {
        fprintf(stderr, "replay: no input files\n");
        return 1;
    }
    printf("replayed %d inputs\n", count);
    return 0;
}
