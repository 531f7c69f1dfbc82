/* The fingerprints of curate/pipeline/pipeline_fp.h: input paths and manifest facts. */
#include "curate/pipeline/pipeline_fp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

typedef struct walk {
    EVP_MD_CTX *md;
    long entries;
} walk;

static void hash_entry(walk *w, const char *rel, const struct stat *st)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%o %lld %lld.%09ld", (unsigned)(st->st_mode & S_IFMT),
                     (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    EVP_DigestUpdate(w->md, rel, strlen(rel) + 1);
    EVP_DigestUpdate(w->md, line, (size_t)n + 1);
    w->entries++;
}

/* Hashes the entries of folder dir (rel: its path below the root) in directory order, which is
 * stable while the folder is unchanged (adding, removing or renaming an entry changes the
 * folder's own mtime, hashed by the caller). Reading stops at the entry budget, so neither time
 * nor memory grows with a huge folder. */
static int walk_dir(walk *w, const char *dir, const char *rel, int depth, lvd_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lvd_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && w->entries < LVD_FP_MAX_ENTRIES && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096], sub[4096];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name) >= (int)sizeof sub ||
            lstat(path, &st) != 0)
            continue;
        hash_entry(w, sub, &st);
        if (S_ISDIR(st.st_mode) && depth < LVD_FP_MAX_DEPTH)
            rc = walk_dir(w, path, sub, depth + 1, err);
    }
    closedir(d);
    return rc;
}

int lvd_fp_path(const char *path, char hex[65], lvd_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return lvd_fail(err, "%s: %s", path, strerror(errno));
    walk w = {.md = EVP_MD_CTX_new()};
    if (!w.md || !EVP_DigestInit_ex(w.md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(w.md);
        return lvd_fail(err, "%s: cannot start SHA-256", path);
    }
    hash_entry(&w, ".", &st);
    int rc = S_ISDIR(st.st_mode) ? walk_dir(&w, path, ".", 1, err) : 0;
    unsigned char d[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(w.md, d, &len);
    EVP_MD_CTX_free(w.md);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return rc;
}

int lvd_fp_inputs(char *const *argv, const char *db, cJSON *obj, lvd_error *err)
{
    struct stat db_st;
    int have_db = db && stat(db, &db_st) == 0;
    for (size_t i = 1; argv[i]; i++) {
        struct stat st;
        if (argv[i][0] == '\0' || stat(argv[i], &st) != 0)
            continue;
        if (have_db && st.st_dev == db_st.st_dev && st.st_ino == db_st.st_ino)
            continue;
        if (cJSON_GetObjectItemCaseSensitive(obj, argv[i]))
            continue;
        char hex[65];
        if (lvd_fp_path(argv[i], hex, err) != 0)
            return -1;
        if (!cJSON_AddStringToObject(obj, argv[i], hex))
            return lvd_fail(err, "out of memory");
    }
    return 0;
}

typedef struct fact_kind {
    const char *name;
    const char *sql; /* ?1: the filter after ':', NULL matching every row */
} fact_kind;

/* Each query yields text rows concatenated into the fact's summary, so they are ordered. */
static const fact_kind fact_kinds[] = {
    {"images", "SELECT s.name || '(' || s.role || ') ' || i.status || '=' || COUNT(*)"
               " FROM images i JOIN sources s ON s.id = i.source_id"
               " WHERE ?1 IS NULL OR s.name = ?1"
               " GROUP BY s.name, s.role, i.status ORDER BY s.name, i.status"},
    {"embeddings",
     "SELECT m.name || ' files=' || COUNT(f.id) || ' rows=' || COALESCE(SUM(f.rows), 0)"
     " || ' last=' || COALESCE(MAX(f.id), 0)"
     " FROM models m LEFT JOIN embedding_files f ON f.model_id = m.id"
     " WHERE ?1 IS NULL OR m.name = ?1 GROUP BY m.name ORDER BY m.name"},
    {"models", "SELECT name || ' ' || arch || ' ' || dim || ' ' || features || ' ' ||"
               " COALESCE(sha256, '-') || ' ' || COALESCE(path, '-')"
               " FROM models WHERE ?1 IS NULL OR name = ?1 ORDER BY name"},
    {"dedup", "SELECT m.name || ' kept=' || SUM(d.kept) || ' duplicate=' ||"
              " SUM(d.reason = 'duplicate') || ' eval=' || SUM(d.reason = 'eval')"
              " FROM dedup d JOIN models m ON m.id = d.model_id"
              " WHERE ?1 IS NULL OR m.name = ?1 GROUP BY m.name ORDER BY m.name"},
    {"curated", "SELECT m.name || '/' || s.name || ' ' || c.method || '=' || COUNT(*) ||"
                " ' last_run=' || MAX(COALESCE(c.run_id, 0))"
                " FROM curated c JOIN models m ON m.id = c.model_id"
                " JOIN sources s ON s.id = c.source_id"
                " WHERE ?1 IS NULL OR m.name = ?1"
                " GROUP BY m.name, s.name, c.method ORDER BY m.name, s.name, c.method"},
};

static const fact_kind *fact_find(const char *fact, const char **filter)
{
    const char *colon = strchr(fact, ':');
    size_t len = colon ? (size_t)(colon - fact) : strlen(fact);
    *filter = colon ? colon + 1 : NULL;
    if (colon && !colon[1])
        return NULL;
    for (size_t i = 0; i < sizeof fact_kinds / sizeof fact_kinds[0]; i++)
        if (strlen(fact_kinds[i].name) == len && strncmp(fact, fact_kinds[i].name, len) == 0)
            return fact_kinds + i;
    return NULL;
}

int lvd_fp_fact_valid(const char *fact)
{
    const char *filter;
    return fact_find(fact, &filter) != NULL;
}

/* Runs the fact's query and joins its rows with "; " into a malloc'd string. */
static char *fact_summary(lvd_manifest *m, const char *fact, lvd_error *err)
{
    const char *filter;
    const fact_kind *k = fact_find(fact, &filter);
    if (!k) {
        lvd_fail(err, "unknown manifest fact '%s'", fact);
        return NULL;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(lvd_manifest_db(m), k->sql, -1, &st, NULL) != SQLITE_OK) {
        /* A manifest built before the stage that adds the table: the fact is empty. */
        if (strstr(sqlite3_errmsg(lvd_manifest_db(m)), "no such table"))
            return strdup("");
        lvd_manifest_fail(m, err, fact);
        return NULL;
    }
    if (filter)
        sqlite3_bind_text(st, 1, filter, -1, SQLITE_STATIC);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = f ? SQLITE_ROW : SQLITE_NOMEM;
    for (int row = 0; f && (rc = sqlite3_step(st)) == SQLITE_ROW; row++)
        fprintf(f, "%s%s", row ? "; " : "", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (f)
        fclose(f);
    if (rc != SQLITE_DONE) {
        free(text);
        lvd_manifest_fail(m, err, fact);
        return NULL;
    }
    return text;
}

int lvd_fp_facts(lvd_manifest *m, char *const *facts, size_t n, cJSON *obj, lvd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        char *s = fact_summary(m, facts[i], err);
        if (!s)
            return -1;
        cJSON *item = cJSON_AddStringToObject(obj, facts[i], s);
        free(s);
        if (!item)
            return lvd_fail(err, "out of memory");
    }
    return 0;
}
