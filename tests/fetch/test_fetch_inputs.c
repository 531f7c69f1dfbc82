/* Input enumeration: folders (labels, order, hidden files), URL lists in every format, and a
 * list that is a FIFO (waited for without a blocking open, so a stop request is seen). */
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "curate/fetch/inputs.h"
#include "tests/check.h"

/* Collected items, one line each: url|key|label|caption ("-" for absent). */
typedef struct collected {
    char text[8192];
    int n;
} collected;

static int collect(void *ctx, const lvd_input_item *it, lvd_error *err)
{
    (void)err;
    collected *c = ctx;
    size_t len = strlen(c->text);
    snprintf(c->text + len, sizeof c->text - len, "%s|%s|%s|%s\n", it->url, it->key ? it->key : "-",
             it->label ? it->label : "-", it->caption ? it->caption : "-");
    c->n++;
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void check_list(const char *path, const char *expected)
{
    collected c = {{0}, 0};
    lvd_error err;
    int rc = lvd_inputs_read(path, collect, &c, NULL, &err);
    CHECK_MSG(rc == 0, "%s: %s", path, err.msg);
    CHECK_MSG(strcmp(c.text, expected) == 0, "%s gave:\n%s\nexpected:\n%s", path, c.text, expected);
}

static void check_bad_list(const char *path, const char *message)
{
    collected c = {{0}, 0};
    lvd_error err;
    CHECK(lvd_inputs_read(path, collect, &c, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, message) != NULL, "%s: '%s' lacks '%s'", path, err.msg, message);
}

/* A FIFO list: with no writer and a stop request, the read fails at once (a blocking open would
 * wait forever); with a writer that comes late, its lines are read. */
static void fifo_case(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fifo.txt", dir);
    CHECK(mkfifo(path, 0644) == 0);
    volatile sig_atomic_t stop = 1;
    collected c = {{0}, 0};
    lvd_error err;
    CHECK(lvd_inputs_read(path, collect, &c, &stop, &err) == -1);
    CHECK_MSG(strstr(err.msg, "stopped") != NULL, "%s", err.msg);
    CHECK(c.n == 0);

    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        FILE *f = fopen(path, "w");
        fputs("http://a/1.jpg\nhttp://a/2.jpg\n", f);
        _exit(fclose(f) == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    stop = 0;
    int rc = lvd_inputs_read(path, collect, &c, &stop, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK_MSG(strcmp(c.text, "http://a/1.jpg|-|-|-\nhttp://a/2.jpg|-|-|-\n") == 0, "%s", c.text);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    char dir[] = "/tmp/lvd-inputs-test-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[PATH_MAX], expected[8192], url[1024];
    lvd_error err;

    snprintf(path, sizeof path, "%s/urls.txt", dir);
    write_text(path, "# comment\n\nhttp://a/1.jpg\r\n  https://b/2.png  \nfile:///x/3.jpg");
    check_list(path, "http://a/1.jpg|-|-|-\nhttps://b/2.png|-|-|-\nfile:///x/3.jpg|-|-|-\n");

    snprintf(path, sizeof path, "%s/list.csv", dir);
    write_text(path, "key,URL,label,caption\n"
                     "k1,http://a/1.jpg,cat,\"a cat, sitting\"\n"
                     "k2,http://a/2.jpg,dog,\"two\nlines \"\"quoted\"\"\"\n"
                     ",http://a/3.jpg,,\n");
    check_list(path, "http://a/1.jpg|k1|cat|a cat, sitting\n"
                     "http://a/2.jpg|k2|dog|two\nlines \"quoted\"\n"
                     "http://a/3.jpg|-|-|-\n");

    snprintf(path, sizeof path, "%s/list.tsv", dir);
    write_text(path, "\xef\xbb\xbfurl\tlabel\nhttp://a/1.jpg\tcat\nhttp://a/2.jpg\n");
    check_list(path, "http://a/1.jpg|-|cat|-\nhttp://a/2.jpg|-|-|-\n");

    snprintf(path, sizeof path, "%s/list.jsonl.gz", dir);
    gzFile gz = gzopen(path, "wb");
    gzputs(gz, "{\"url\": \"http://a/1.jpg\", \"label\": 7, \"key\": \"x\"}\n\n"
               "{\"url\": \"http://a/2.jpg\", \"caption\": \"c\"}\n");
    gzclose(gz);
    check_list(path, "http://a/1.jpg|x|7|-\nhttp://a/2.jpg|-|-|c\n");

    /* Only a newline ends a line: a NUL byte is read as %00, it never merges two lines. */
    snprintf(path, sizeof path, "%s/nul.txt", dir);
    FILE *nul = fopen(path, "wb");
    fwrite("http://a/1.jpg\0x\nhttp://a/2.jpg\n", 1, 32, nul);
    fclose(nul);
    check_list(path, "http://a/1.jpg%00x|-|-|-\nhttp://a/2.jpg|-|-|-\n");
    snprintf(path, sizeof path, "%s/nul.csv", dir);
    nul = fopen(path, "wb");
    fwrite("url,label\nhttp://a/1.jpg,c\0t\nhttp://a/2.jpg,d\n", 1, 46, nul);
    fclose(nul);
    check_list(path, "http://a/1.jpg|-|c%00t|-\nhttp://a/2.jpg|-|d|-\n");

    /* A path without a scheme is a local file. */
    snprintf(path, sizeof path, "%s/local.txt", dir);
    write_text(path, "/some where/x%.jpg\n");
    check_list(path, "file:///some%20where/x%25.jpg|-|-|-\n");
    char *decoded = NULL;
    CHECK(lvd_file_url_path("file:///some%20where/x%25.jpg", &decoded, &err) == 0 &&
          strcmp(decoded, "/some where/x%.jpg") == 0);
    free(decoded);
    CHECK(lvd_file_url_path("file://remote/x.jpg", &decoded, &err) == -1);
    CHECK(lvd_file_url_path("file:///etc/passwd%00.jpg", &decoded, &err) == -1);
    CHECK(lvd_url_has_scheme("s3+x://a") == 1 && lvd_url_has_scheme("/a://b") == 0);

    snprintf(path, sizeof path, "%s/nourl.csv", dir);
    write_text(path, "link,label\nhttp://a,b\n");
    check_bad_list(path, "no 'url' column");
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    write_text(path, "{\"url\": \"http://a\"}\n[1, 2]\n");
    check_bad_list(path, "bad.jsonl:2");
    snprintf(path, sizeof path, "%s/open.csv", dir);
    write_text(path, "url\n\"http://a\n");
    check_bad_list(path, "unterminated");
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    check_bad_list(path, "missing.txt");

    /* A folder: sorted, recursive, hidden entries skipped, parent folder name as label. */
    char tree[256];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    mkdir(tree, 0755);
    snprintf(path, sizeof path, "%s/tree/dog", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/tree/cat", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/tree/.hidden", dir);
    mkdir(path, 0755);
    const char *files[] = {"root.jpg",  "dog/b.jpg",     "dog/a.jpg",
                           "cat/c.png", ".hidden/h.jpg", "cat/.h.jpg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/tree/%s", dir, files[i]);
        write_text(path, "x");
    }
    char real[PATH_MAX];
    char file[PATH_MAX + 256];
    CHECK(realpath(tree, real) != NULL);
    expected[0] = '\0';
    const char *order[][2] = {
        {"cat/c.png", "cat"}, {"dog/a.jpg", "dog"}, {"dog/b.jpg", "dog"}, {"root.jpg", "-"}};
    for (int i = 0; i < 4; i++) {
        snprintf(file, sizeof file, "%s/%s", real, order[i][0]);
        CHECK(lvd_file_url(file, url, sizeof url, &err) == 0);
        size_t len = strlen(expected);
        snprintf(expected + len, sizeof expected - len, "%.1000s|-|%s|-\n", url, order[i][1]);
    }
    check_list(tree, expected);

    fifo_case(dir);

    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_finish();
}
