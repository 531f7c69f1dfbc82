/* lvd-train: DINOv2 self-supervised pretraining on the manifest's images
 * (train/stage/train_stage.h). */
#include "train/stage/train_stage.h"

static const char help[] =
    "--db DB (--curated MODEL | --source NAME...) --out DIR [options]\n"
    "[--config FILE.ini] [options]\n"
    "\n"
    "Pretrains a ViT with DINOv2's objective (DINO + iBOT + KoLeo, EMA teacher) on the curated\n"
    "set of a model or on the images of sources, and writes into DIR: checkpoint.safetensors\n"
    "(the whole training state, atomically every --ckpt-every steps and at the end),\n"
    "teacher_backbone.safetensors (the teacher's backbone under official key names, for\n"
    "lvd-model add, lvd-embed and lvd-vit) and teacher_heads.safetensors (its heads).\n"
    "\n"
    "Presets: tiny (dim 192, depth 6, 3 heads, patch 4; for 28-px images: crops 28 x 2 and\n"
    "12 x 6, head 4096 prototypes, hidden 512, bottleneck 128, batch 128), vits14, vitb14,\n"
    "vitl14 (crops 224 x 2 and 98 x 8, head 65536 / 2048 / 256, batch 64) and vitg14 (SwiGLU,\n"
    "head 131072 / 2048 / 384), and fmnist, the short-budget recipe for 28-px images (dim\n"
    "192, depth 4, 3 heads, patch 28: one patch token, 1024 prototypes, crops 28 x 2 and\n"
    "28 x 4, batch 128; LayerScale 0.1, Sinkhorn centering, momentum 0.99, epochs of 100\n"
    "steps with warm-ups of 1 (lr) and 3 (teacher temperature), 1000 steps). Explicit sizes\n"
    "override the preset's; --init takes the architecture and the weights of any checkpoint\n"
    "lvd loads. The other defaults are dinov2/configs/ssl_default_config.yaml's. lvd-embed\n"
    "and lvd-vit take head dim 64 only.\n"
    "--eval-train and --eval-test score the EMA teacher by k-NN during training (v_train_evals).\n"
    "\n"
    "The schedules span --steps even when --minutes or --stop-at ends the run first; it saves\n"
    "its checkpoint and exports the teacher, and the same command run again (without\n"
    "--stop-at, or with a later one) continues from the checkpoint: any stop and resume\n"
    "gives bitwise the parameters of one uninterrupted run (for the same --threads). A run\n"
    "resumes automatically when DIR holds a checkpoint of the same options and images, and\n"
    "refuses one of other options. Per-step metrics go to the manifest (view\n"
    "v_train_steps), the run to v_runs. Options can come from an INI file (--config): its\n"
    "[train] section, in lvd-run's format; the command line wins.";

static const char footer[] =
    "Exit status 0 on success (also when --minutes stops the run), 1 on failure (a\n"
    "non-finite loss keeps the last checkpoint), 2 on bad usage, 130 after a clean stop on\n"
    "SIGINT or SIGTERM (checkpoint saved, run marked interrupted).";

int main(int argc, char **argv)
{
    return lvd_train_command("lvd-train", help, footer, 0, argc, argv);
}
