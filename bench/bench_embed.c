/* lvd-bench-embed: end-to-end embed stage rate against the ViT alone, same machine, same run.
 *
 * 64 real photos (the mate-backgrounds JPEGs, resized to about 500x375 and re-encoded with
 * image/, each size slightly different so none is a duplicate) are stored in tar shards by
 * lvd-fetch (path given as argument). Then, alternating, best of 3 each:
 * - end to end: lvd_embed_run (shard read, decode, preprocess 256/224 on the producer thread,
 *   ViT-S/14 12 blocks random weights, L2 normalization, .npy writing, manifest recording);
 * - the ViT alone: lvd_vit_features on the same 64 images already preprocessed, same batch and
 *   threads.
 * Prints both rates and their ratio (target >= 90%) per wall-clock second, and per CPU second of
 * the process (which stays meaningful on a loaded machine, where wall-clock figures are not), and
 * the single-thread decode + preprocess rate that the producer has to sustain. Model creation is
 * outside both timings.
 *
 * With --mpi: the same kind of photos, many small shards (so whole-shard shares stay even),
 * `mpirun -np 2 lvd-embed --threads 1` against `lvd-embed --threads 2` on the same cores, each
 * with a model of its own, 3 rounds alternating; the rate is lvd-embed's own (images over the
 * seconds from the end of setup to the last commit); medians and the load average. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_child.h"
#include "bench/bench_util.h"
#include "curate/stages/embed_stage.h"
#include "image/image.h"
#include "kit/kit.h"

#define N_IMAGES 64
#define BATCH    16
#define ROUNDS   3

/* Images per wall-clock second and per CPU second. */
typedef struct rate {
    double wall, cpu;
} rate;

static void rate_best(rate *best, rate r)
{
    best->wall = r.wall > best->wall ? r.wall : best->wall;
    best->cpu = r.cpu > best->cpu ? r.cpu : best->cpu;
}

/* The JPEG photos of the mate-backgrounds package (paths malloc'd), at most max. */
static int list_photos(char **paths, int max)
{
    const char *dirs[] = {"/usr/share/backgrounds/mate/nature",
                          "/usr/share/backgrounds/mate/abstract",
                          "/usr/share/backgrounds/mate/desktop"};
    int n = 0;
    for (int d = 0; d < 3; d++) {
        DIR *dir = opendir(dirs[d]);
        struct dirent *e;
        while (dir && n < max && (e = readdir(dir)) != NULL) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".jpg") != 0 || strstr(e->d_name, "_"))
                continue;
            paths[n] = malloc(len + strlen(dirs[d]) + 2);
            sprintf(paths[n], "%s/%s", dirs[d], e->d_name);
            n++;
        }
        if (dir)
            closedir(dir);
    }
    return n;
}

/* Writes n JPEGs of about 500x375 into dir; returns 0 on success. */
static int make_images(const char *dir, int count)
{
    char *photos[64];
    int n = list_photos(photos, 64);
    if (n == 0) {
        fprintf(stderr, "bench_embed: no mate-backgrounds photos\n");
        return -1;
    }
    lvd_image *decoded = calloc((size_t)n, sizeof *decoded);
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        lvd_image *img = &decoded[i % n], small;
        lvd_error err;
        uint8_t *buf = NULL, *jpg = NULL;
        size_t len, jlen;
        if (!img->rgb && (!(buf = bench_read_all(photos[i % n], &len)) ||
                          lvd_image_decode(buf, len, NULL, img, &err) != 0))
            rc = -1;
        free(buf);
        int k = i / n; /* each round through the photos gets its own size: no duplicates */
        if (rc == 0 && lvd_image_resize(img, 500 - 2 * k, 375 - k, &small, &err) == 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/img-%03d.jpg", dir, i);
            FILE *f = NULL;
            if (lvd_image_encode_jpeg(&small, 90, &jpg, &jlen, &err) != 0 ||
                !(f = fopen(path, "wb")) || fwrite(jpg, 1, jlen, f) != jlen)
                rc = -1;
            if (f)
                fclose(f);
            free(jpg);
            lvd_image_free(&small);
        }
    }
    for (int i = 0; i < n; i++) {
        lvd_image_free(&decoded[i]);
        free(photos[i]);
    }
    free(decoded);
    return rc;
}

/* lvd-fetch of folder in; shard_size "" for its default. */
static int run_fetch(const char *fetch, const char *db, const char *in, const char *shard_size)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (shard_size[0])
            execl(fetch, fetch, "--db", db, "--source", "bench", "--no-progress", "--log-interval",
                  "3600", "--shard-size", shard_size, in, (char *)NULL);
        else
            execl(fetch, fetch, "--db", db, "--source", "bench", "--no-progress", "--log-interval",
                  "3600", in, (char *)NULL);
        _exit(127);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

/* Decodes and preprocesses every image of dir into x (N_IMAGES, 3, 224, 224); returns the
 * single-thread rate. */
static double preprocess_all(const char *dir, float *x)
{
    double t0 = lvd_kit_now();
    for (int i = 0; i < N_IMAGES; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/img-%03d.jpg", dir, i);
        size_t len;
        uint8_t *buf = bench_read_all(path, &len);
        lvd_image img;
        lvd_error err;
        lvd_decode_opts opts = {.alpha = LVD_ALPHA_DROP};
        if (!buf || lvd_image_decode(buf, len, &opts, &img, &err) != 0 ||
            lvd_image_preprocess(&img, 256, 224, x + (size_t)i * 3 * 224 * 224, &err) != 0) {
            fprintf(stderr, "bench_embed: %s failed\n", path);
            exit(1);
        }
        lvd_image_free(&img);
        free(buf);
    }
    return N_IMAGES / (lvd_kit_now() - t0);
}

static rate vit_alone(lvd_vit *vit, const float *x, float *feats)
{
    lvd_error err;
    double t0 = lvd_kit_now(), c0 = lvd_kit_cpu_now();
    for (int i = 0; i < N_IMAGES; i += BATCH) {
        if (lvd_vit_features(vit, x + (size_t)i * 3 * 224 * 224, BATCH, 224, 224, LVD_VIT_POOL_CLS,
                             feats, &err) != 0) {
            fprintf(stderr, "bench_embed: %s\n", err.msg);
            exit(1);
        }
    }
    return (rate){N_IMAGES / (lvd_kit_now() - t0), N_IMAGES / (lvd_kit_cpu_now() - c0)};
}

static rate end_to_end(const char *db, const char *model)
{
    lvd_embed_opts o;
    lvd_embed_opts_init(&o);
    o.db = db;
    o.model = model;
    o.batch = BATCH;
    o.log = NULL;
    lvd_embed_summary sum;
    lvd_error err;
    if (lvd_embed_run(&o, &sum, &err) != 0 || sum.embedded != N_IMAGES) {
        fprintf(stderr, "bench_embed: %s\n", err.msg);
        exit(1);
    }
    return (rate){N_IMAGES / sum.seconds, N_IMAGES / sum.cpu_seconds};
}

/* ---- --mpi: `mpirun -np 2 lvd-embed --threads 1` against `lvd-embed --threads 2` ---------- */

/* Runs argv with stderr to log; returns the img/s of lvd-embed's summary line ("N images
 * embedded in S s"), the whole command's wall seconds in *wall. */
static double timed_embed(char *const argv[], const char *log, int images, double *wall)
{
    fflush(stdout); /* the child's freopen would write pending output again */
    double t0 = lvd_kit_now();
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_embed: %s failed (log %s)\n", argv[0], log);
        exit(1);
    }
    *wall = lvd_kit_now() - t0;
    FILE *f = fopen(log, "r");
    char line[512];
    long long n = 0;
    double secs = 0;
    while (f && fgets(line, sizeof line, f)) {
        long long run;
        const char *q = strstr(line, "embed: run ");
        if (q && sscanf(q, "embed: run %lld: %lld images embedded in %lf s", &run, &n, &secs) == 3)
            break;
    }
    if (f)
        fclose(f);
    if (n != images || secs <= 0) {
        fprintf(stderr, "bench_embed: no summary of %d images in %s\n", images, log);
        exit(1);
    }
    return n / secs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_mpi(const char *fetch, const char *mpirun, const char *embed, int images,
                     const char *shard_size)
{
    char tmp[] = "/tmp/lvd-bench-embed-mpi-XXXXXX";
    if (!mkdtemp(tmp))
        return perror("mkdtemp"), 1;
    char in[256], db[256], log[256];
    snprintf(in, sizeof in, "%s/in", tmp);
    snprintf(db, sizeof db, "%s/m.db", tmp);
    snprintf(log, sizeof log, "%s/log", tmp);
    mkdir(in, 0755);
    if (make_images(in, images) != 0 || run_fetch(fetch, db, in, shard_size) != 0) {
        fprintf(stderr, "bench_embed: cannot build the test manifest in %s\n", tmp);
        return 1;
    }
    lvd_manifest *m;
    lvd_error err;
    lvd_model_record rec;
    if (lvd_manifest_open(db, &m, &err) != 0)
        return fprintf(stderr, "bench_embed: %s\n", err.msg), 1;
    for (int r = 0; r < 2 * ROUNDS; r++) {
        char name[16];
        snprintf(name, sizeof name, "%s%d", r % 2 ? "mpi" : "one", r / 2);
        if (lvd_model_add_random(m, name, "vits14", 0, LVD_FEATURES_CLS, &rec, &err) != 0)
            return fprintf(stderr, "bench_embed: %s\n", err.msg), 1;
    }
    sqlite3_stmt *st;
    long long shards = 0;
    if (lvd_manifest_prepare(m, "SELECT COUNT(*) FROM shards", &st, &err) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            shards = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    lvd_manifest_close(m);
    setenv("OMP_WAIT_POLICY", "passive", 0);
    printf("%d photos of about 500x375 in %lld shards, ViT-S/14 random, 256 / 224, batch %d\n",
           images, shards, BATCH);
    bench_print_load("before");
    double one[ROUNDS], mpi[ROUNDS], one_wall[ROUNDS], mpi_wall[ROUNDS];
    char batch[16];
    snprintf(batch, sizeof batch, "%d", BATCH);
    for (int r = 0; r < ROUNDS; r++) {
        char name_one[16], name_mpi[16];
        snprintf(name_one, sizeof name_one, "one%d", r);
        snprintf(name_mpi, sizeof name_mpi, "mpi%d", r);
        char *argv_one[] = {(char *)embed, "--db",      db,  "--model",       name_one, "--batch",
                            batch,         "--threads", "2", "--no-progress", NULL};
        char *argv_mpi[] = {(char *)mpirun,
                            "--allow-run-as-root",
                            "--oversubscribe",
                            "-np",
                            "2",
                            (char *)embed,
                            "--db",
                            db,
                            "--model",
                            name_mpi,
                            "--batch",
                            batch,
                            "--threads",
                            "1",
                            "--no-progress",
                            NULL};
        one[r] = timed_embed(argv_one, log, images, &one_wall[r]);
        mpi[r] = timed_embed(argv_mpi, log, images, &mpi_wall[r]);
        printf("round %d: one process, 2 threads %.2f img/s (command %.1f s); mpirun -np 2, 1 "
               "thread each %.2f img/s (command %.1f s)\n",
               r, one[r], one_wall[r], mpi[r], mpi_wall[r]);
        fflush(stdout);
    }
    bench_print_load("after");
    qsort(one, ROUNDS, sizeof *one, cmp_double);
    qsort(mpi, ROUNDS, sizeof *mpi, cmp_double);
    printf("median: one process %.2f img/s, 2 ranks %.2f img/s: %.1f%% (target >= 90%%)\n",
           one[ROUNDS / 2], mpi[ROUNDS / 2], 100.0 * mpi[ROUNDS / 2] / one[ROUNDS / 2]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_embed: cannot remove %s\n", tmp);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: lvd-bench-embed LVD-FETCH\n"
               "       lvd-bench-embed LVD-FETCH --mpi MPIRUN LVD-EMBED [IMAGES [SHARD-SIZE]]\n\n"
               "End-to-end embed rate (64 photos of about 500x375, ViT-S/14 random, 224) "
               "against the ViT alone; prints the ratio.\n"
               "With --mpi: lvd-embed under `MPIRUN -np 2` (1 thread a rank) against one "
               "process with 2 threads, IMAGES photos (default 128) in shards of SHARD-SIZE "
               "(lvd-fetch --shard-size, default 96K), 3 rounds alternating, medians and the "
               "load average.\n");
        return argc < 2;
    }
    if (argc >= 5 && strcmp(argv[2], "--mpi") == 0)
        return bench_mpi(argv[1], argv[3], argv[4], argc > 5 ? atoi(argv[5]) : 128,
                         argc > 6 ? argv[6] : "96K");
    char tmp[] = "/tmp/lvd-bench-embed-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char in[256], db[256];
    snprintf(in, sizeof in, "%s/in", tmp);
    snprintf(db, sizeof db, "%s/m.db", tmp);
    mkdir(in, 0755);
    if (make_images(in, N_IMAGES) != 0 || run_fetch(argv[1], db, in, "") != 0) {
        fprintf(stderr, "bench_embed: cannot build the test manifest in %s\n", tmp);
        return 1;
    }
    lvd_manifest *m;
    lvd_error err;
    lvd_model_record rec;
    char names[ROUNDS][16];
    if (lvd_manifest_open(db, &m, &err) != 0)
        return fprintf(stderr, "bench_embed: %s\n", err.msg), 1;
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(names[r], sizeof names[r], "r%d", r);
        if (lvd_model_add_random(m, names[r], "vits14", 0, LVD_FEATURES_CLS, &rec, &err) != 0)
            return fprintf(stderr, "bench_embed: %s\n", err.msg), 1;
    }
    lvd_manifest_close(m);
    float *x = malloc((size_t)N_IMAGES * 3 * 224 * 224 * sizeof *x);
    float *feats = malloc((size_t)BATCH * 384 * sizeof *feats);
    double pre = preprocess_all(in, x);
    lvd_vit *vit;
    lvd_vit_info arch = {.dim = 384, .depth = 12, .patch = 14, .grid = 37, .ffn = LVD_VIT_MLP};
    if (lvd_vit_init_random(&arch, 0, &vit, &err) != 0)
        return fprintf(stderr, "bench_embed: %s\n", err.msg), 1;
    vit_alone(vit, x, feats); /* warm-up: scratch buffers and the positional cache */
    rate best_vit = {0, 0}, best_e2e = {0, 0};
    for (int r = 0; r < ROUNDS; r++) {
        rate v = vit_alone(vit, x, feats), e = end_to_end(db, names[r]);
        printf("round %d: ViT alone %.2f img/s (%.2f per CPU s), end to end %.2f img/s (%.2f per "
               "CPU s)\n",
               r, v.wall, v.cpu, e.wall, e.cpu);
        rate_best(&best_vit, v);
        rate_best(&best_e2e, e);
    }
    printf("decode + preprocess (1 thread, ~500x375 JPEG -> 224): %.1f img/s\n", pre);
    printf("ViT-S/14 alone (batch %d): %.2f img/s, %.2f img per CPU s\n", BATCH, best_vit.wall,
           best_vit.cpu);
    printf("end to end (lvd_embed_run, batch %d): %.2f img/s, %.2f img per CPU s\n", BATCH,
           best_e2e.wall, best_e2e.cpu);
    printf("end to end / ViT alone: %.1f%% wall clock, %.1f%% per CPU second (target >= 90%%)\n",
           100.0 * best_e2e.wall / best_vit.wall, 100.0 * best_e2e.cpu / best_vit.cpu);
    lvd_vit_free(vit);
    free(x);
    free(feats);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_embed: cannot remove %s\n", tmp);
    return 0;
}
