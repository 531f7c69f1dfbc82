/* lvd-bench-fetch: ingest rate of lvd-fetch on ImageNet-sized JPEGs (500x375 crops of the
 * mate-backgrounds photos) from a local folder and through the local HTTP test server, with
 * --max-side 512. Reports images/s (wall), images per CPU-second of lvd-fetch (the per-core
 * rate) and peak RSS, for the full set and half of it (memory must not grow with input length).
 *
 * Usage: lvd-bench-fetch LVD_FETCH PYTHON SERVER_SCRIPT [N_IMAGES [THREADS]] */
#include <sys/resource.h>
#include <time.h>

#include "image/image.h"
#include "tests/fetch/fetch_test.h"

#define OUT_W 500
#define OUT_H 375

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int decode_file(const char *path, lvd_image *img)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    lvd_error err;
    int rc = lvd_image_decode(buf, got, NULL, img, &err);
    free(buf);
    return rc;
}

/* Writes n distinct 500x375 JPEGs (quality 90): crops of the photos scaled to 1000 px wide. */
static int make_dataset(const char *dir, int n)
{
    static const char *photos[] = {"Aqua",   "Blinds",      "Dune",     "FreshFlower",
                                   "Garden", "GreenMeadow", "LadyBird", "RainDrops",
                                   "Storm",  "TwoWings",    "Wood",     "YellowFlower"};
    int written = 0;
    for (int p = 0; written < n; p = (p + 1) % 12) {
        char path[1024];
        snprintf(path, sizeof path, "/usr/share/backgrounds/mate/nature/%s.jpg", photos[p]);
        lvd_image photo = {0}, scaled = {0};
        lvd_error err;
        if (decode_file(path, &photo) != 0)
            return -1;
        int w = 1000 + 8 * (written / 12 / 200), h = (int)((double)photo.height * w / photo.width);
        if (lvd_image_resize(&photo, w, h, &scaled, &err) != 0)
            return -1;
        lvd_image_free(&photo);
        uint8_t *rgb = malloc(OUT_W * OUT_H * 3);
        lvd_image crop = {OUT_W, OUT_H, rgb};
        for (int k = 0; k < 200 && written < n; k++) {
            int x = (k * 97) % (w - OUT_W), y = (k * 61) % (h - OUT_H);
            for (int r = 0; r < OUT_H; r++)
                memcpy(rgb + (size_t)r * OUT_W * 3, scaled.rgb + ((size_t)(y + r) * w + x) * 3,
                       OUT_W * 3);
            uint8_t *jpg;
            size_t len;
            if (lvd_image_encode_jpeg(&crop, 90, &jpg, &len, &err) != 0)
                return -1;
            snprintf(path, sizeof path, "%s/%s_%05d.jpg", dir, photos[p], written++);
            check_write_file(path, jpg, len);
            free(jpg);
        }
        free(rgb);
        lvd_image_free(&scaled);
    }
    return 0;
}

/* Runs lvd-fetch and prints one result line. */
static void measure(const char *label, const char *exe, const char *dir, const char *name,
                    const char *input, const char *threads, const char *parallel, int n)
{
    char db[600], out[600], log[600];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    snprintf(out, sizeof out, "%s/%s_shards", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *argv[] = {(char *)exe,  "--db",           db,
                    "--source",   "bench",          "--out",
                    out,          "--threads",      (char *)threads,
                    "--parallel", (char *)parallel, "--max-side",
                    "512",        "--no-progress",  (char *)input,
                    NULL};
    double t0 = now_s();
    pid_t pid = check_spawn(CHECK_LOG_APPEND, argv, log);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("%-28s lvd-fetch failed (see %s)\n", label, log);
        return;
    }
    double wall = now_s() - t0;
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    printf("%-28s %5d images %7.2f s %8.1f img/s %7.2f cpu-s %8.1f img/cpu-s  rss %6.1f MiB\n",
           label, n, wall, n / wall, cpu, n / cpu, ru.ru_maxrss / 1024.0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("usage: %s LVD_FETCH PYTHON SERVER_SCRIPT [N_IMAGES [THREADS]]\n"
               "Builds N_IMAGES (default 2000) 500x375 JPEGs from the mate-backgrounds photos and\n"
               "times lvd-fetch --max-side 512 on them: from the folder, from a list of half of\n"
               "them, and through the local HTTP test server.\n",
               argv[0]);
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: %s LVD_FETCH PYTHON SERVER_SCRIPT [N_IMAGES [THREADS]]\n", argv[0]);
        return 1;
    }
    int n = argc > 4 ? atoi(argv[4]) : 2000;
    const char *threads = argc > 5 ? argv[5] : "1";
    char *dir = check_tmpdir("lvd-fetch-test");
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    mkdir(data, 0755);
    double t0 = now_s();
    if (n < 2 || make_dataset(data, n) != 0) {
        fprintf(stderr, "cannot build the dataset (mate-backgrounds photos missing?)\n");
        return 1;
    }
    printf("dataset: %d JPEGs of %dx%d in %.1f s; lvd-fetch --threads %s --max-side 512\n", n,
           OUT_W, OUT_H, now_s() - t0, threads);

    measure("local folder", argv[1], dir, "local", data, threads, "16", n);

    /* Half the input through a file:// list: peak memory must stay about the same. */
    char list[700], cmd[2600];
    snprintf(list, sizeof list, "%s/half.txt", dir);
    snprintf(cmd, sizeof cmd, "ls '%s' | head -n %d | sed 's|^|%s/|' > '%s'", data, n / 2, data,
             list);
    if (system(cmd) == 0)
        measure("local list, half", argv[1], dir, "half", list, threads, "16", n / 2);

    test_server server;
    test_server_start(&server, argv[2], argv[3], data);
    snprintf(list, sizeof list, "%s/urls.txt", dir);
    snprintf(cmd, sizeof cmd, "ls '%s' | sed 's|^|http://127.0.0.1:%d/data/|' > '%s'", data,
             server.port, list);
    if (system(cmd) == 0)
        measure("local HTTP server", argv[1], dir, "http", list, threads, "32", n);
    test_server_stop(&server);

    check_rmtree(dir);
    free(dir);
    return 0;
}
