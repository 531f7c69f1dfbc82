/* lvd-fake: a test-only pipeline stage. It appends its --name to $LVD_FAKE_LOG (so tests count
 * runs), makes source S hold exactly N ok items with --images S:N (so tests change manifest
 * facts), and exits with --exit N or dies by signal --signal N. Other options are accepted and
 * ignored. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/manifest.h"

static int set_images(lvd_manifest *m, const char *spec, lvd_error *err)
{
    char source[128];
    int n;
    if (sscanf(spec, "%127[^:]:%d", source, &n) != 2 || n < 0)
        return lvd_fail(err, "--images wants SOURCE:N, not '%s'", spec);
    int64_t id;
    if (lvd_manifest_source(m, source, LVD_ROLE_POOL, &id, err) != 0)
        return -1;
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < %d)"
             " INSERT OR IGNORE INTO images (source_id, url, status, error_class)"
             " SELECT %lld, 'fake://' || i, 'ok', 'ok' FROM k WHERE %d > 0;"
             " DELETE FROM images WHERE source_id = %lld"
             " AND CAST(substr(url, 8) AS INTEGER) >= %d;",
             n, (long long)id, n, (long long)id, n);
    return lvd_manifest_exec(m, sql, err);
}

int main(int argc, char **argv)
{
    const char *db = NULL, *name = "?", *images = NULL;
    int code = 0, signo = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--images") == 0)
            images = argv[i + 1];
        else if (strcmp(argv[i], "--exit") == 0)
            code = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--signal") == 0)
            signo = atoi(argv[i + 1]);
    }
    const char *log = getenv("LVD_FAKE_LOG");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (!f || !db) {
        fprintf(stderr, "lvd-fake: needs --db and $LVD_FAKE_LOG\n");
        return 2;
    }
    fprintf(f, "%s\n", name);
    fclose(f);
    if (images) {
        lvd_error err;
        lvd_manifest *m = NULL;
        int rc = lvd_manifest_open(db, &m, &err);
        if (rc == 0)
            rc = set_images(m, images, &err);
        lvd_manifest_close(m);
        if (rc != 0) {
            fprintf(stderr, "lvd-fake: %s\n", err.msg);
            return 2;
        }
    }
    if (signo)
        raise(signo);
    if (code)
        fprintf(stderr, "lvd-fake: %s: failing with exit status %d as asked\n", name, code);
    return code;
}
