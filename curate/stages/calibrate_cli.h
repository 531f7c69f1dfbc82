/* The command line of threshold calibration, shared by lvd-calibrate and lvd-dedup --calibrate
 * (curate/stages/calibrate_stage.h): parses the options, runs, prints the similarity quantiles,
 * the suggested threshold and the precision / recall table. */
#ifndef LVD_CURATE_STAGES_CALIBRATE_CLI_H
#define LVD_CURATE_STAGES_CALIBRATE_CLI_H

/* Runs the command with argv[1 ..] as options; prog names it in messages. Returns the exit
 * status: 0 on success (or --help), 1 on failure, 2 on bad usage. */
int lvd_calibrate_cli(const char *prog, int argc, char **argv);

#endif
