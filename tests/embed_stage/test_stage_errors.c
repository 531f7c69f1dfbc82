/* Clear errors, and nothing recorded, for: a missing or non-checkpoint weights file, a taken
 * name, a bad name, an unknown random spec, an unknown model or source, a crop that is not a
 * multiple of the patch size, an external model asked to embed, and (with the reference weights)
 * a weights file that changed after registration. */
#include "tests/embed_stage/embed_stage_test.h"

#include "store/npy.h"

typedef struct env {
    tools tl;
    char tmp[512], db[1024], log[1024];
} env;

/* Runs the tool with the arguments (NULL-terminated); it must exit 1 with want in its message. */
static void expect(env *e, const char *want, const char *exe, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)exe;
    va_list ap;
    va_start(ap, exe);
    char *a;
    while (n < 31 && (a = va_arg(ap, char *)) != NULL)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int rc = check_wait(check_spawn(CHECK_LOG_QUIET, argv, e->log));
    CHECK_MSG(rc == 1, "%s %s exited %d (want 1)", exe, argv[1], rc);
    CHECK_MSG(test_file_has(e->log, want), "message lacks '%s'", want);
    if (rc != 1 || !test_file_has(e->log, want))
        test_print_file(e->log);
}

static void registry_errors(env *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/none.safetensors", e->tmp);
    expect(e, "none.safetensors: No such file", e->tl.model, "add", "--db", e->db, "--name", "a",
           path, NULL);
    snprintf(path, sizeof path, "%s/in/p-000.jpg", e->tmp);
    expect(e, "p-000.jpg", e->tl.model, "add", "--db", e->db, "--name", "a", path, NULL);
    expect(e, "unknown random model 'vitx14'", e->tl.model, "add", "--db", e->db, "--name", "a",
           "--random", "vitx14", NULL);
    expect(e, "only letters, digits", e->tl.model, "add", "--db", e->db, "--name", "a/b",
           "--random", "vits14", NULL);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM models") == 0);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.model, e->log, "add", "--db", e->db, "--name", "rnd",
                    "--random", "vits14", NULL) == 0);
    expect(e, "model 'rnd' is already registered", e->tl.model, "add", "--db", e->db, "--name",
           "rnd", "--random", "vitb14", NULL);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM models") == 1);
}

static void embed_errors(env *e)
{
    expect(e, "no model named 'nope'", e->tl.embed, "--db", e->db, "--model", "nope", NULL);
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/none.db", e->tmp);
    expect(e, "none.db: no such manifest", e->tl.embed, "--db", missing, "--model", "rnd", NULL);
    CHECK(access(missing, F_OK) != 0);
    expect(e, "--crop 100 is not a multiple of the patch size 14 of model 'rnd'", e->tl.embed,
           "--db", e->db, "--model", "rnd", "--crop", "100", NULL);
    expect(e, "no source named 'zzz'", e->tl.embed, "--db", e->db, "--model", "rnd", "--source",
           "zzz", NULL);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "rnd", "--crop",
                    "300", NULL) == 1);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "rnd",
                    "--batch", "0", NULL) == 2);
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM runs WHERE stage = 'embed'") == 0);
}

static void external_cannot_embed(env *e)
{
    char npy[1024], ids[1024];
    snprintf(npy, sizeof npy, "%s/ext.npy", e->tmp);
    snprintf(ids, sizeof ids, "%s/ids.txt", e->tmp);
    const float x[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    const int64_t shape[2] = {2, 4};
    lvd_error err;
    CHECK(lvd_npy_write(npy, x, 2, shape, &err) == 0);
    FILE *f = fopen(ids, "w");
    CHECK(f && fputs("1\n2\n", f) >= 0 && fclose(f) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "ext",
                    "--import", npy, "--ids", ids, NULL) == 0);
    expect(e, "model 'ext' is external", e->tl.embed, "--db", e->db, "--model", "ext", NULL);
}

static void sha_mismatch(env *e)
{
    const char *ref = getenv("LVD_REFERENCE");
    char weights[1024], copy[1024], cmd[2200];
    snprintf(weights, sizeof weights, "%s/vits14_d2.weights.safetensors", ref ? ref : "");
    if (!ref || access(weights, R_OK) != 0) {
        printf("reference weights absent: sha256 mismatch case skipped\n");
        return;
    }
    snprintf(copy, sizeof copy, "%s/w.safetensors", e->tmp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", weights, copy);
    CHECK(system(cmd) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.model, e->log, "add", "--db", e->db, "--name", "w", copy,
                    NULL) == 0);
    CHECK(check_run(CHECK_LOG_QUIET, e->tl.embed, e->log, "--db", e->db, "--model", "w", "--limit",
                    "1", "--no-progress", NULL) == 0);
    FILE *f = fopen(copy, "r+b");
    CHECK(f && fseek(f, -1, SEEK_END) == 0);
    int c = f ? fgetc(f) : 0;
    CHECK(f && fseek(f, -1, SEEK_END) == 0 && fputc(c ^ 1, f) != EOF);
    if (f)
        fclose(f);
    expect(e, "weights file", e->tl.embed, "--db", e->db, "--model", "w", NULL);
    CHECK(test_file_has(e->log, "changed since it was registered"));
    CHECK(test_sql_int(e->db, "SELECT COUNT(*) FROM v_embeddings WHERE model = 'w'") == 1);
}

int main(int argc, char **argv)
{
    env e = {.tl = test_tools(argc, argv)};
    char *tmp = test_scratch(e.tmp, e.db, e.log);
    char in[1024];
    snprintf(in, sizeof in, "%s/in", tmp);
    CHECK(test_fetch_photos(e.tl.fetch, e.db, e.log, in, "p", 2, "s", NULL) == 0);
    registry_errors(&e);
    embed_errors(&e);
    external_cannot_embed(&e);
    sha_mismatch(&e);
    return test_finish(tmp, NULL);
}
