/* The training page of lvd-report (training.html): for every training and distillation in the
 * manifest (v_train_steps, one section per train_id in id order), charts against the step of
 *   - the losses (total, DINO local and global crops, iBOT; log scale) and KoLeo (linear: it is
 *     usually negative),
 *   - the schedules: learning rate (and the last layer's), weight decay, teacher momentum and
 *     teacher temperature,
 *   - the gradient norms before clipping (backbone, DINO head, iBOT head; log scale),
 *   - k-NN accuracy measured during the training (v_train_evals: top-1 per protocol, setting
 *     when the view has that column, and k; against the step and against the training minutes
 *     the view records, with a table of the last evaluated step), left out with a note when the
 *     manifest has no such view,
 * then a table of the final evaluations (v_evals, test split). A chart whose columns hold no
 * value (a feature distillation records the total loss and the backbone norm only) is replaced
 * by a one-line note; long runs are reduced as curate/stages/report_svg.h says. */
#ifndef LVD_CURATE_STAGES_REPORT_TRAIN_H
#define LVD_CURATE_STAGES_REPORT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "store/error.h"
#include "store/manifest.h"

/* Writes the page body into f (after lvd_html_begin); *trainings gets the number of trainings
 * shown. A manifest without v_train_steps (an older schema) gives a page that says so. Fails on
 * an SQL error or out of memory. Memory: 15 doubles per step of the longest training. */
int lvd_report_training(lvd_manifest *m, FILE *f, int64_t *trainings, lvd_error *err);

#endif
