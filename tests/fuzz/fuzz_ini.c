/* libFuzzer target: pipeline INI files (libinih plus lvd's sections, keys, reads and ${VAR}). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "curate/pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) /* fmemopen refuses an empty buffer */
        return 0;
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    lvd_pipeline *p = NULL;
    lvd_error err;
    if (lvd_pipeline_parse(f, "fuzz.ini", &p, &err) == 0) {
        for (size_t i = 0; i < p->n_steps; i++) {
            char **argv = lvd_pipeline_argv(&p->steps[i], "fuzz.db");
            free(argv);
        }
    }
    lvd_pipeline_free(p);
    fclose(f);
    return 0;
}
