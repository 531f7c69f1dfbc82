/* lvd-index leaves no index file behind: what killed runs left (a temporary file, a file renamed
 * but never recorded, the file of a replaced index) is removed by the next run, while files that
 * a live run holds (locked) and files of another manifest are left alone; concurrent runs leave
 * exactly the recorded index file and no temporary one.
 * Usage: test_index_files LVD-FETCH LVD-INDEX LVD-QUERY */
#include <dirent.h>
#include <sys/file.h>

#include "tests/stages/stages_test.h"

#define N   40
#define DIM 16

static const char *fetch_exe, *index_exe, *query_exe;
static char dir[256], db_path[320];

static int index_run(void)
{
    char *argv[] = {(char *)index_exe, "--db", db_path, "--model", "m", NULL};
    return st_run(argv, NULL);
}

/* Names in dir that start with prefix, sorted and joined with '\n'. */
static char *files_with(const char *prefix)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort);
    char *out = calloc(1, 1);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (strncmp(e[i]->d_name, prefix, strlen(prefix)) == 0) {
            size_t k = strlen(e[i]->d_name);
            out = realloc(out, len + k + 2);
            memcpy(out + len, e[i]->d_name, k);
            len += k;
            out[len++] = '\n';
            out[len] = '\0';
        }
        free(e[i]);
    }
    free(e);
    return out;
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static void touch(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs("not an index\n", f) < 0 || fclose(f) != 0)
        exit(1);
}

/* Opens and locks dir/name the way a live lvd-index holds its file. */
static int hold(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
    return fd;
}

static void setup(void)
{
    char in[300];
    snprintf(in, sizeof in, "%s/in", dir);
    st_mkdir(in);
    for (int i = 0; i < N; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/i%02d.jpg", in, i);
        CHECK(st_write_jpeg(path, 40, 36, (uint32_t)i) == 0);
    }
    char *argv[] = {(char *)fetch_exe, "--db", db_path, "--source", "web",
                    "--no-progress",   in,     NULL};
    CHECK(st_run(argv, NULL) == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO models (id, name, arch, dim, features) VALUES (1, 'm',"
                       " 'external', 16, 'external')",
                       NULL, NULL, NULL) == SQLITE_OK);
    float rows[N * DIM];
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        st_item it = {"x", "in", {i % DIM, (i + 5) % DIM, -1}, {1.0f, 0.3f * (float)(i / DIM)}, 0};
        st_item_vector(&it, DIM, rows + i * DIM);
        ids[i] = i + 1;
    }
    char npy[400];
    snprintf(npy, sizeof npy, "%s/e.npy", dir);
    CHECK(st_add_embeddings(db, 1, npy, rows, ids, N, DIM) == 0);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s LVD-FETCH LVD-INDEX LVD-QUERY\n", argv[0]);
        return 1;
    }
    fetch_exe = argv[1];
    index_exe = argv[2];
    query_exe = argv[3];
    snprintf(dir, sizeof dir, "/tmp/lvd-index-files-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    setup();

    /* What killed runs leave, what live runs hold, and another manifest's file. */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    check_wait(dead);
    char name[128];
    snprintf(name, sizeof name, "m.db.index-m1-r900.faiss.tmp.%ld", (long)dead);
    touch(name);
    touch("m.db.index-m1-r901.faiss");
    touch("m.db.index-m1-s1-r902.faiss");
    int held_final = hold("m.db.index-m1-r903.faiss");
    snprintf(name, sizeof name, "m.db.index-m1-r904.faiss.tmp.%ld", (long)getpid());
    int held_tmp = hold(name);
    touch("m.dbx.index-m1-r1.faiss");
    CHECK(index_run() == 0);
    sqlite3 *db = open_db();
    char *left = files_with("m.db.index-");
    char expected[512];
    snprintf(expected, sizeof expected, "m.db.index-m1-r%lld.faiss\nm.db.index-m1-r903.faiss\n%s\n",
             (long long)st_int(db, "SELECT run_id FROM indexes"), name);
    CHECK_MSG(strcmp(left, expected) == 0, "index files left:\n%s\nexpected:\n%s", left, expected);
    CHECK(st_int(db, "SELECT COUNT(*) FROM indexes") == 1);
    char *other = files_with("m.dbx.");
    CHECK(strcmp(other, "m.dbx.index-m1-r1.faiss\n") == 0);
    free(left);
    free(other);
    sqlite3_close(db);
    close(held_final);
    close(held_tmp);

    /* Runs at the same time: only the recorded file remains. */
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1);
            execl(index_exe, index_exe, "--db", db_path, "--model", "m", (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < 4; i++)
        CHECK(check_wait(pids[i]) == 0);
    db = open_db();
    left = files_with("m.db.index-");
    snprintf(expected, sizeof expected, "m.db.index-m1-r%lld.faiss\n",
             (long long)st_int(db, "SELECT run_id FROM indexes"));
    /* The files the first run found (held ones, since released) are swept by the next runs. */
    CHECK_MSG(strcmp(left, expected) == 0, "after 4 concurrent runs:\n%s\nexpected:\n%s", left,
              expected);
    CHECK(st_int(db, "SELECT COUNT(*) FROM indexes") == 1);
    CHECK(st_int(db, "SELECT COUNT(*) FROM runs WHERE stage = 'index' AND status = 'ok'") == 5);
    free(left);
    sqlite3_close(db);
    char *q[] = {(char *)query_exe, "--db", db_path, "--model", "m", "--id", "1", NULL};
    CHECK(st_run(q, NULL) == 0);

    if (!check_failures) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    } else {
        fprintf(stderr, "kept %s\n", dir);
    }
    return check_finish();
}
