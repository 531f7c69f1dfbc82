/* Replaying a train_step case (../shared/reference/README.md, `train_step`) with the SSL trainer
 * (train/ssl.h): what lvd-train-step runs, and what anyone comparing lvd's training math with
 * another implementation feeds it.
 *
 * A case file holds, in the reference's naming: inputs `global_crops` (2B, 3, Hg, Wg) crop-major,
 * `local_crops` (n_local B, 3, Hl, Wl), `masks` (2B, N) (nonzero = masked), `dino_center_in`
 * (1, K), `ibot_center_in` (1, 1, K), the models `student_init.<part>.<name>` and
 * `teacher_init.<part>.<name>` for the parts backbone, dino_head and (a separate iBOT head, when
 * present) ibot_head, and the metadata `hyper`, `backbone`, `head` (train/step_case.h). The
 * replay runs two iterations in the case's mode (softmax centering, no drop path, constant
 * schedule values from `hyper`, loss weights 1) and writes, under the case's names:
 *   itN.loss.{dino_local,dino_global,koleo,ibot,total} (1), itN.teacher_dino_targets (2B, K),
 *   itN.teacher_ibot_targets (n_masked, K), itN.grad_norm.<part> (1) for N = 0, 1;
 *   it0.grad.<part>.<name> (iteration 0's gradients, before clipping);
 *   lr_multiplier.<part>.<name> and wd_multiplier.<part>.<name> (1);
 *   dino_center_out (1, K), ibot_center_out (1, 1, K) (the centers after both iterations, the
 *   last pending update applied); student_final.<part>.<name>, teacher_final.<part>.<name>. */
#ifndef LVD_TRAIN_SSL_CASE_H
#define LVD_TRAIN_SSL_CASE_H

#include "store/error.h"

/* Reads the case at case_path, replays it on `threads` OpenMP threads (<= 0: OpenMP's default)
 * and writes the outputs to out_path (safetensors, atomically). Fails with one line naming the
 * file and the problem: unreadable case, missing or misshapen tensor, inconsistent metadata, an
 * architecture the trainer does not take, a write error. */
int lvd_ssl_case_run(const char *case_path, const char *out_path, int threads, lvd_error *err);

#endif
