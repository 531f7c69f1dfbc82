/* lvd-bench-fetch-list: lvd-fetch on a URL list of a million lines (file:// URLs), to show that
 * planning and fetching a long list take bounded memory. Writes N distinct 48x48 JPEGs (one in
 * ten a hard link to the one before, so its bytes are a duplicate), and a text list of N lines:
 * every image's file:// URL, plus one line in fifty naming a missing file (failed, http_4xx) and
 * one in twenty repeating an earlier URL (ignored at registration). Runs lvd-fetch (a child) on
 * the first tenth of the list and on the whole list, each into a new manifest, and prints wall
 * and CPU time, items/s, peak RSS and the outcome counts (v_status) of each.
 *
 * Usage: lvd-bench-fetch-list LVD-FETCH [--lines N (1000000)] [--dir DIR] [--keep] */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_child.h"
#include "image/image.h"

#define SIDE 48

static void image_path(char *out, size_t size, const char *dir, int64_t k)
{
    snprintf(out, size, "%s/img/%04lld/%07lld.jpg", dir, (long long)(k / 1000), (long long)k);
}

/* Image k: a colour gradient whose corners depend on k, so every image has its own bytes. */
static int write_images(const char *dir, int64_t n)
{
    uint8_t rgb[SIDE * SIDE * 3];
    lvd_image img = {SIDE, SIDE, rgb};
    char path[700];
    for (int64_t k = 0; k < n; k++) {
        if (k % 1000 == 0) {
            snprintf(path, sizeof path, "%s/img/%04lld", dir, (long long)(k / 1000));
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return -1;
        }
        image_path(path, sizeof path, dir, k);
        if (k % 10 == 9) { /* the bytes of image k - 1 */
            char prev[700];
            image_path(prev, sizeof prev, dir, k - 1);
            if (link(prev, path) != 0)
                return -1;
            continue;
        }
        uint32_t z = (uint32_t)k * 2654435761u;
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++)
                for (int c = 0; c < 3; c++)
                    rgb[(y * SIDE + x) * 3 + c] =
                        (uint8_t)((z >> (8 * c)) + x * (c + 1) + y * (3 - c) + (k >> (8 * c)));
        uint8_t *jpg;
        size_t len;
        lvd_error err;
        if (lvd_image_encode_jpeg(&img, 90, &jpg, &len, &err) != 0)
            return -1;
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(jpg, 1, len, f) == len;
        if (f && fclose(f) != 0)
            ok = 0;
        free(jpg);
        if (!ok)
            return -1;
    }
    return 0;
}

/* The first `lines` lines of the list (see the top of the file). */
static int write_list(const char *dir, const char *list, int64_t lines)
{
    FILE *f = fopen(list, "w");
    if (!f)
        return -1;
    char path[700];
    int64_t k = 0;
    for (int64_t line = 0; line < lines; line++) {
        if (line % 50 == 49)
            fprintf(f, "file://%s/img/missing/%lld.jpg\n", dir, (long long)line);
        else if (line % 20 == 19 && k > 0)
            fprintf(f, "file://%s/img/%04lld/%07lld.jpg\n", dir, (long long)((k / 2) / 1000),
                    (long long)(k / 2));
        else {
            image_path(path, sizeof path, dir, k++);
            fprintf(f, "file://%s\n", path);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

static void print_status(const char *db_path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return;
    if (sqlite3_prepare_v2(db,
                           "SELECT status, COALESCE(error_class, '-'), n FROM v_status ORDER BY "
                           "n DESC",
                           -1, &st, NULL) == SQLITE_OK) {
        printf("    outcomes:");
        while (sqlite3_step(st) == SQLITE_ROW)
            printf(" %s/%s %lld", (const char *)sqlite3_column_text(st, 0),
                   (const char *)sqlite3_column_text(st, 1),
                   (long long)sqlite3_column_int64(st, 2));
        printf("\n");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static int fetch(const char *exe, const char *dir, const char *name, const char *list,
                 int64_t lines)
{
    char db[700], out[700], log[700];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    snprintf(out, sizeof out, "%s/%s-shards", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *argv[] = {(char *)exe, "--db",          db,           "--source", "web", "--out",
                    out,         "--no-progress", (char *)list, NULL};
    bench_child r;
    bench_run_child(argv, log, 1, &r);
    printf("lvd-fetch, %8lld lines: %7.1f s wall, %7.1f s CPU, %7.0f lines/s, peak RSS %6.1f MiB, "
           "exit %d\n",
           (long long)lines, r.wall, r.cpu, (double)lines / r.wall, r.rss_mib, r.status);
    print_status(db);
    return r.status == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int64_t lines = 1000000;
    int keep = 0;
    char dir[512] = "";
    static const struct option opts[] = {{"lines", required_argument, 0, 'n'},
                                         {"dir", required_argument, 0, 'd'},
                                         {"keep", no_argument, 0, 'k'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'n')
            lines = atoll(optarg);
        else if (o == 'd')
            snprintf(dir, sizeof dir, "%s", optarg);
        else if (o == 'k')
            keep = 1;
        else
            lines = 0;
    }
    if (argc - optind != 1 || lines < 100) {
        fprintf(stderr, "usage: lvd-bench-fetch-list LVD-FETCH [--lines N (1000000)] [--dir DIR] "
                        "[--keep]\n");
        return 2;
    }
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/lvd-bench-fetch-list-XXXXXX");
        if (!mkdtemp(dir))
            return 1;
    } else if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "bench: %s: %s (give a new folder)\n", dir, strerror(errno));
        return 1;
    }
    bench_print_load("at start");
    char img[600], small[600], full[600];
    snprintf(img, sizeof img, "%s/img", dir);
    snprintf(small, sizeof small, "%s/tenth.txt", dir);
    snprintf(full, sizeof full, "%s/all.txt", dir);
    double t0 = lvd_kit_now();
    int rc = mkdir(img, 0755) != 0 || write_images(dir, lines) ||
                     write_list(dir, small, lines / 10) || write_list(dir, full, lines)
                 ? -1
                 : 0;
    if (rc == 0)
        printf("%lld images and the lists written in %.1f s\n", (long long)lines,
               lvd_kit_now() - t0);
    if (rc == 0)
        rc = fetch(argv[optind], dir, "tenth", small, lines / 10);
    if (rc == 0)
        rc = fetch(argv[optind], dir, "all", full, lines);
    bench_print_load("at end");
    if (!keep) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", dir);
    }
    return rc ? 1 : 0;
}
