/* The demo's closing table on lvd-report's index page: the figures pipelines/demo-summary.sh
 * records in the manifest (the counts of the last 'demo-summary' run, v_runs) drawn as tables:
 * pool images kept and removed per reason, the curated set per method, retrieval precision per
 * seed class against chance, and k-NN accuracy per model. Everything comes from the manifest
 * (SQLite's JSON functions read the record); labels there only score, they never steer. */
#ifndef LVD_CURATE_STAGES_REPORT_SUMMARY_H
#define LVD_CURATE_STAGES_REPORT_SUMMARY_H

#include <stdio.h>

#include "store/error.h"
#include "store/manifest.h"

/* Writes the section "Demo summary" (its heading, the run it comes from and four tables) when
 * the manifest records a 'demo-summary' run whose status is ok; writes nothing otherwise (a
 * manifest without the demo). Fails on an SQL error. */
int lvd_report_summary(lvd_manifest *m, FILE *f, lvd_error *err);

#endif
