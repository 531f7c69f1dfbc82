/* lvd-train-step: replays a train_step case (two DINOv2 training iterations) with lvd's trainer
 * and writes every output under the case's names (train/ssl_case.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ssl_case.h"

static const char usage[] =
    "usage: lvd-train-step CASE.safetensors OUT.safetensors [--threads N]\n"
    "\n"
    "Reads a self-supervised training case in the naming of the reference's\n"
    "train_step.case.safetensors (inputs global_crops, local_crops, masks, dino_center_in,\n"
    "ibot_center_in; models student_init.* and teacher_init.*; metadata hyper, backbone, head),\n"
    "runs its two iterations (teacher targets with softmax centering, student forward, DINO +\n"
    "iBOT + KoLeo losses, backward, per-part clipping, AdamW, EMA) and writes to OUT:\n"
    "itN.loss.{dino_local,dino_global,koleo,ibot,total}, itN.teacher_dino_targets,\n"
    "itN.teacher_ibot_targets, itN.grad_norm.<part>, it0.grad.<part>.<name>,\n"
    "lr_multiplier.*, wd_multiplier.*, dino_center_out, ibot_center_out, student_final.*,\n"
    "teacher_final.*.\n"
    "\n"
    "  --threads N   threads to use (default: all cores)\n"
    "  --help        this text\n";

int main(int argc, char **argv)
{
    const char *pos[2];
    int npos = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) {
                fprintf(stderr, "lvd-train-step: --threads wants a number from 1 to 1024\n");
                return 2;
            }
            threads = (int)v;
        } else if (argv[i][0] == '-' || npos == 2) {
            fprintf(stderr, "lvd-train-step: unexpected argument %s (see --help)\n", argv[i]);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 2) {
        fprintf(stderr, "lvd-train-step: expected CASE and OUT (see --help)\n");
        return 2;
    }
    lvd_error err = {0};
    if (lvd_ssl_case_run(pos[0], pos[1], threads, &err) != 0) {
        fprintf(stderr, "lvd-train-step: %s\n", err.msg);
        return 1;
    }
    return 0;
}
