/* Parameter layouts: offsets in insertion order, lookup, and refused shapes and names. */
#include "tests/check.h"
#include "train/params.h"

int main(void)
{
    lvd_param_layout l = {0};
    lvd_error err;
    int64_t w[2] = {3, 4}, b[1] = {3}, bad[2] = {3, 0};
    CHECK(lvd_param_layout_add(&l, "fc.weight", 2, w, &err) == 0);
    CHECK(lvd_param_layout_add(&l, "fc.bias", 1, b, &err) == 0);
    CHECK(l.n == 2 && l.total == 15);
    const lvd_param_tensor *t = lvd_param_layout_find(&l, "fc.bias");
    CHECK(t && t->offset == 12 && t->numel == 3 && t->ndim == 1 && t->shape[0] == 3);
    CHECK(lvd_param_layout_find(&l, "fc") == NULL);
    CHECK(lvd_param_layout_add(&l, "fc.bias", 1, b, &err) == -1 && strstr(err.msg, "twice"));
    CHECK(lvd_param_layout_add(&l, "z", 2, bad, &err) == -1 && strstr(err.msg, "bad size"));
    CHECK(lvd_param_layout_add(&l, "z", 0, b, &err) == -1);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK(lvd_param_layout_add(&l, longname, 1, b, &err) == -1 && strstr(err.msg, "too long"));
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d", i);
        CHECK(lvd_param_layout_add(&l, name, 1, b, &err) == 0);
    }
    CHECK(l.n == 202 && l.total == 15 + 600 && lvd_param_layout_find(&l, "p199")->offset == 612);
    lvd_param_layout_free(&l);
    CHECK(l.n == 0 && l.total == 0 && l.t == NULL);
    return check_finish();
}
