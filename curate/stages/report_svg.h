/* Inline SVG charts for lvd-report's pages: a line chart (axes with ticks, legend, several
 * series, optional logarithmic y axis) and a histogram with vertical markers. No script and no
 * external file: a browser shows them offline.
 *
 * Output is deterministic (fixed number formats, no addresses or clocks), so the same data give
 * byte-identical SVG, and bounded: a series of more than LVD_SVG_MAX_POINTS points is drawn as
 * LVD_SVG_MAX_POINTS / 2 buckets of consecutive points, each bucket by its lowest and highest
 * drawable point in their order (a bucket without one breaks the line), so spikes survive the
 * reduction. Every text goes through lvd_html_escape.
 *
 * Geometry, for readers of the SVG (tests parse it): the root <svg> carries
 * data-x0 / data-x1 / data-y0 / data-y1 (the axis domain, %.17g), data-log-y (0 or 1) and
 * data-plot="LEFT TOP RIGHT BOTTOM" (the plot area in pixels). A point (x, y) is drawn at
 *   px = LEFT + (x - x0) / (x1 - x0) * (RIGHT - LEFT)
 *   py = BOTTOM - (Y - Y0) / (Y1 - Y0) * (BOTTOM - TOP), Y = y or log10(y) on a log axis,
 * coordinates printed with one decimal. Each series is a <g data-series="NAME"> holding one
 * <polyline points="px,py ..."> per run of drawable points (a <circle> for a run of one). */
#ifndef LVD_CURATE_STAGES_REPORT_SVG_H
#define LVD_CURATE_STAGES_REPORT_SVG_H

#include <stdint.h>
#include <stdio.h>

#define LVD_SVG_MAX_POINTS 1000

/* One line of a chart: n points (x ascending). A point whose x or y is not finite, or whose y
 * is <= 0 on a log axis, is not drawn and breaks the line. */
typedef struct lvd_svg_series {
    const char *name; /* legend text */
    const double *x, *y;
    int64_t n;
} lvd_svg_series;

typedef struct lvd_svg_chart {
    const char *title, *xlabel, *ylabel;
    int log_y;         /* 1: log10 y axis, used when every drawable value is > 0 (else linear,
                        * and the title says so) */
    int width, height; /* pixels; 0 gives 560 x 240 */
    double x_lo, x_hi; /* line charts, when x_hi > x_lo: the x axis covers this range too */
} lvd_svg_chart;

/* A vertical line at x in a histogram, named in its legend with its value. */
typedef struct lvd_svg_marker {
    const char *name;
    double x;
} lvd_svg_marker;

/* Writes a line chart of the ns series. A chart without any drawable point shows its frame and
 * "no values". */
void lvd_svg_lines(FILE *f, const lvd_svg_chart *c, const lvd_svg_series *s, int ns);

/* The bin of v among bins equal bins over [lo, hi] (hi falls in the last bin); -1 when v is
 * outside, not finite, or the range is empty. */
int lvd_svg_bin(double lo, double hi, int bins, double v);

/* Writes a histogram of counts (bins bars over [lo, hi], x axis exactly that range, y from 0)
 * with the nm markers drawn where they fall inside the range (all are named in the legend). */
void lvd_svg_histogram(FILE *f, const lvd_svg_chart *c, double lo, double hi, const int64_t *counts,
                       int bins, const lvd_svg_marker *marks, int nm);

#endif
