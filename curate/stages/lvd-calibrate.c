/* lvd-calibrate: measures how a model separates copies from distinct pool images and suggests a
 * dedup threshold (curate/stages/calibrate_cli.h). */
#include "curate/stages/calibrate_cli.h"

int main(int argc, char **argv)
{
    return lvd_calibrate_cli("lvd-calibrate", argc, argv);
}
