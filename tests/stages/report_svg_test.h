/* Parsing lvd-report's SVG charts back in tests: attributes, the documented plot geometry
 * (curate/stages/report_svg.h), the points of a series and the position of a tick. */
#ifndef LVD_TESTS_STAGES_REPORT_SVG_TEST_H
#define LVD_TESTS_STAGES_REPORT_SVG_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

/* The number in attribute name="..." of the first tag at or after from; NAN when absent. */
static inline double attr(const char *from, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(from, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* The plot geometry of an <svg> root. */
typedef struct geom {
    double x0, x1, y0, y1, left, top, right, bottom;
    int log_y;
} geom;

static inline geom geometry(const char *svg)
{
    geom g;
    g.x0 = attr(svg, "data-x0");
    g.x1 = attr(svg, "data-x1");
    g.y0 = attr(svg, "data-y0");
    g.y1 = attr(svg, "data-y1");
    g.log_y = (int)attr(svg, "data-log-y");
    const char *p = strstr(svg, " data-plot=\"");
    CHECK(p != NULL);
    if (p && sscanf(p + 12, "%lf %lf %lf %lf", &g.left, &g.top, &g.right, &g.bottom) != 4)
        CHECK(0);
    return g;
}

static inline void expected(const geom *g, double x, double y, double *px, double *py)
{
    *px = g->left + (x - g->x0) / (g->x1 - g->x0) * (g->right - g->left);
    double Y = g->log_y ? log10(y) : y, Y0 = g->log_y ? log10(g->y0) : g->y0,
           Y1 = g->log_y ? log10(g->y1) : g->y1;
    *py = g->bottom - (Y - Y0) / (Y1 - Y0) * (g->bottom - g->top);
}

/* The points of the polylines of series name (escaped as in the SVG), in order, into px / py
 * (at most cap); returns how many, *runs the number of polylines and circles. */
static inline int series_points(const char *svg, const char *name, double *px, double *py, int cap,
                                int *runs)
{
    char key[256];
    snprintf(key, sizeof key, "<g data-series=\"%s\"", name);
    const char *g = strstr(svg, key);
    *runs = 0;
    if (!g)
        return -1;
    const char *end = strstr(g, "</g>");
    int n = 0;
    for (const char *p = g; p && p < end;) {
        const char *pl = strstr(p, "<polyline points=\""), *ci = strstr(p, "<circle ");
        if (ci && ci < end && (!pl || ci < pl)) {
            if (n < cap) {
                px[n] = attr(ci, "cx");
                py[n] = attr(ci, "cy");
            }
            n++;
            (*runs)++;
            p = ci + 8;
            continue;
        }
        if (!pl || pl > end)
            break;
        (*runs)++;
        const char *q = pl + 18;
        while (*q != '"') {
            char *next;
            double x = strtod(q, &next);
            if (next == q || *next != ',')
                break;
            double y = strtod(next + 1, &next);
            if (n < cap) {
                px[n] = x;
                py[n] = y;
            }
            n++;
            q = next;
            while (*q == ' ')
                q++;
        }
        p = q;
    }
    return n;
}

/* The x pixel of the x tick labelled label; NAN when absent. */
static inline double tick_x(const char *svg, const char *label)
{
    char key[64];
    snprintf(key, sizeof key, "class=\"tick-x\">%s</text>", label);
    const char *p = strstr(svg, key);
    if (!p)
        return NAN;
    while (p > svg && strncmp(p, "<text ", 6) != 0)
        p--;
    return attr(p, "x");
}

#endif
