/* End to end: the lvd-vit executable (path in argv[1]) on the vits14_reg4_d2 reference case;
 * every tensor it writes must match the reference, every reference output must be written.
 * Also --help and a bad invocation. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/embed/vit_check.h"

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --mask: the vit_backward case, whose input x goes with the iBOT mask `masks`; its outputs
 * are named cls and patch in the reference, x.cls and x.patch in lvd-vit's output. */
static void check_masked(const char *exe, const char *dir, const char *tmp)
{
    char out[1024], cmd[4096], path[1024];
    snprintf(out, sizeof out, "%s/masked.safetensors", tmp);
    snprintf(cmd, sizeof cmd,
             "'%s' '%s/vit_backward.weights.safetensors' '%s/vit_backward.case.safetensors' '%s' "
             "--mask masks 2> /dev/null",
             exe, dir, dir, out);
    CHECK_MSG(run(cmd) == 0, "%s failed", cmd);
    lvd_error err = {0};
    lvd_tensors *got, *ref;
    int rc = lvd_tensors_open(out, &got, &err);
    rc |= lvd_tensors_open(vit_ref_path(path, sizeof path, dir, "vit_backward.case.safetensors"),
                           &ref, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        static const char *names[2][2] = {{"x.cls", "cls"}, {"x.patch", "patch"}};
        for (int i = 0; i < 2; i++) {
            const lvd_tensor *t = vit_need(got, names[i][0]);
            const lvd_tensor *r = vit_need(ref, names[i][1]);
            CHECK(t && r && t->numel == r->numel);
            if (t && r && t->numel == r->numel) {
                vit_compare(names[i][0], t->data, r);
            }
        }
    }
    lvd_tensors_close(got);
    lvd_tensors_close(ref);
    unlink(out);
}

int main(int argc, char **argv)
{
    const char *dir = check_reference_dir();
    if (argc < 2) {
        fprintf(stderr, "usage: test_lvd_vit PATH-TO-lvd-vit\n");
        return 1;
    }
    char tmp[] = "/tmp/lvd-test-lvd-vit-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char out[1024], cmd[4096];
    snprintf(out, sizeof out, "%s/out.safetensors", tmp);
    snprintf(cmd, sizeof cmd,
             "'%s' '%s/vits14_reg4_d2.weights.safetensors' '%s/vits14_reg4_d2.case.safetensors' "
             "'%s' --threads 2",
             argv[1], dir, dir, out);
    CHECK_MSG(run(cmd) == 0, "%s failed", cmd);
    lvd_error err = {0};
    lvd_tensors *got, *ref;
    int rc = lvd_tensors_open(out, &got, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    char path[1024];
    int rc2 = lvd_tensors_open(
        vit_ref_path(path, sizeof path, dir, "vits14_reg4_d2.case.safetensors"), &ref, &err);
    CHECK_MSG(rc2 == 0, "%s", err.msg);
    if (rc == 0 && rc2 == 0) {
        for (size_t i = 0; i < lvd_tensors_count(got); i++) {
            const lvd_tensor *t = lvd_tensors_at(got, i);
            const lvd_tensor *r = vit_need(ref, t->name);
            CHECK(!r || r->numel == t->numel);
            if (r && r->numel == t->numel) {
                vit_compare(t->name, t->data, r);
            }
        }
        int outputs = 0;
        for (size_t i = 0; i < lvd_tensors_count(ref); i++) {
            const char *name = lvd_tensors_at(ref, i)->name;
            if (strchr(name, '.')) {
                CHECK_MSG(lvd_tensors_find(got, name) != NULL, "output %s not written", name);
                outputs++;
            }
        }
        printf("lvd-vit wrote %zu tensors for %d reference outputs\n", lvd_tensors_count(got),
               outputs);
    }
    lvd_tensors_close(got);
    lvd_tensors_close(ref);
    unlink(out);

    check_masked(argv[1], dir, tmp);

    snprintf(cmd, sizeof cmd, "'%s' --help > /dev/null", argv[1]);
    CHECK(run(cmd) == 0);
    snprintf(cmd, sizeof cmd, "'%s' only-one-argument 2> /dev/null", argv[1]);
    CHECK(run(cmd) != 0);
    snprintf(cmd, sizeof cmd, "'%s' '%s/README.md' '%s/README.md' /tmp/never 2> /dev/null", argv[1],
             dir, dir);
    CHECK(run(cmd) != 0);
    rmdir(tmp);
    return check_finish();
}
