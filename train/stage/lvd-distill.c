/* lvd-distill: distillation of a frozen teacher into a smaller student on the manifest's images
 * (train/distill.h), run by the pretraining stage's loop (train/stage/train_stage.h). */
#include "train/stage/train_stage.h"

static const char help[] =
    "--db DB (--curated MODEL | --source NAME...) --teacher PATH --out DIR\n"
    "[options] [--config FILE.ini] [options]\n"
    "\n"
    "Distils a frozen teacher into a new, smaller student on the curated set of a model or on\n"
    "the images of sources (DINOv2's distillation): with --distill-mode heads (the default\n"
    "when the teacher has heads, e.g. an lvd-train folder) the student gets heads of the\n"
    "teacher's shape and prototype counts and is trained with the pretraining losses (DINO,\n"
    "iBOT on every patch of the global crops, KoLeo) on the teacher's targets, without\n"
    "stochastic depth or masking; with --distill-mode features (a teacher without heads, e.g.\n"
    "the public DINOv2 weights) its cls and patch tokens regress the teacher's through a\n"
    "learned projection (cosine loss). The teacher sees each global crop at the size that\n"
    "gives it the student's patch grid. The EMA of the student (momentum schedule as in\n"
    "pretraining) is the output model. DIR receives checkpoint.safetensors (the training\n"
    "state), teacher_backbone.safetensors (the output model's backbone, official key names:\n"
    "lvd-model add, lvd-embed, lvd-vit, or --teacher of a further distillation) and, in head\n"
    "mode, teacher_heads.safetensors (its EMA heads).\n"
    "\n"
    "The student's architecture: the presets and size options of lvd-train (--arch tiny by\n"
    "default). Schedules, checkpoints, resumption (also bitwise), budgets, metrics (v_runs\n"
    "stage distill, v_train_steps) and --register work as in lvd-train. Options can come from\n"
    "an INI file (--config): its [distill] section, in lvd-run's format.";

static const char footer[] =
    "Exit status 0 on success (also when --minutes stops the run), 1 on failure, 2 on bad\n"
    "usage, 130 after a clean stop on SIGINT or SIGTERM (checkpoint saved).";

int main(int argc, char **argv)
{
    return lvd_train_command("lvd-distill", help, footer, 1, argc, argv);
}
