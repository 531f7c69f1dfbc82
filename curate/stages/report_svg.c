/* The charts of curate/stages/report_svg.h: axis domains and ticks, the legend, series drawn
 * with bucketed min / max reduction, histogram bars and markers. */
#include "curate/stages/report_svg.h"

#include <math.h>
#include <string.h>

#include "curate/stages/report_html.h"

#define DEFAULT_W 560
#define DEFAULT_H 240
#define MARGIN_L  64
#define MARGIN_R  16
#define MARGIN_B  40
#define TITLE_H   24
#define LEGEND_H  16
#define CHAR_W    6.6 /* a generous width of a character at font-size 11, for legend layout */
#define BIG       1e300

static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_COLOURS ((int)(sizeof colours / sizeof *colours))

/* One axis: its domain (log10 of it on a log axis) and pixel span. */
typedef struct axis {
    double lo, hi, step; /* step: tick spacing of a linear axis */
    int log;
    double p0, p1; /* pixels of lo and hi */
} axis;

typedef struct frame {
    int w, h;
    double left, top, right, bottom;
} frame;

static double to_px(const axis *a, double v)
{
    double t = a->log ? log10(v) : v;
    return a->p0 + (t - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0);
}

static double nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double n = raw / mag;
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

/* A linear domain covering [lo, hi] with ends on ticks. */
static void nice_axis(double lo, double hi, axis *a)
{
    if (!(hi > lo)) {
        double d = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= d;
        hi += d;
    }
    a->step = nice_step(hi - lo, 5);
    a->lo = floor(lo / a->step) * a->step;
    a->hi = ceil(hi / a->step) * a->step;
    a->log = 0;
}

/* A log domain of whole decades covering [lo, hi] (both > 0). */
static void log_axis(double lo, double hi, axis *a)
{
    a->lo = floor(log10(lo));
    a->hi = ceil(log10(hi));
    if (a->hi <= a->lo)
        a->hi = a->lo + 1;
    a->step = 1;
    a->log = 1;
}

static void tick_label(char *buf, size_t size, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    if (v == 0)
        snprintf(buf, size, "0");
    else if (step >= 1e-3 && fabs(v) < 1e6)
        snprintf(buf, size, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
    else
        snprintf(buf, size, "%.3g", v);
}

/* The tick values of a (at most 32 entries), in domain units (real values on a log axis). */
static int ticks(const axis *a, double *out)
{
    int n = 0;
    if (!a->log) {
        double first = ceil(a->lo / a->step - 1e-9);
        for (double i = first; n < 32 && i * a->step <= a->hi + a->step * 1e-9; i++)
            out[n++] = i * a->step;
        return n;
    }
    int decades = (int)(a->hi - a->lo);
    if (decades <= 2) {
        static const double mult[3] = {1, 2, 5};
        for (int e = (int)a->lo; e < (int)a->hi; e++)
            for (int k = 0; k < 3; k++)
                out[n++] = mult[k] * pow(10.0, e);
        out[n++] = pow(10.0, a->hi);
        return n;
    }
    int every = (decades + 7) / 8;
    for (int e = (int)a->lo; n < 32 && e <= (int)a->hi; e += every)
        out[n++] = pow(10.0, e);
    return n;
}

static void text(FILE *f, double x, double y, const char *anchor, const char *extra, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra);
    lvd_html_escape(f, s);
    fputs("</text>\n", f);
}

/* Rows the legend needs for the given names within the plot width. */
static int legend_rows(const frame *fr, const char *const *names, int n)
{
    int rows = n > 0;
    double x = fr->left;
    for (int i = 0; i < n; i++) {
        double w = 32 + CHAR_W * (double)strlen(names[i] ? names[i] : "");
        if (x > fr->left && x + w > fr->right) {
            rows++;
            x = fr->left;
        }
        x += w;
    }
    return rows;
}

/* Draws the legend: a swatch (dashed for markers) and the name of each entry. */
static void legend(FILE *f, const frame *fr, const char *const *names, int n, int dashed)
{
    double x = fr->left, y = TITLE_H + 8;
    for (int i = 0; i < n; i++) {
        const char *name = names[i] ? names[i] : "";
        double w = 32 + CHAR_W * (double)strlen(name);
        if (x > fr->left && x + w > fr->right) {
            y += LEGEND_H;
            x = fr->left;
        }
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"%s/>\n",
                x, y - 4, x + 18, y - 4, colours[i % N_COLOURS],
                dashed ? " stroke-dasharray=\"4 3\"" : "");
        text(f, x + 22, y, "start", "", name);
        x += w;
    }
}

static void frame_init(frame *fr, const lvd_svg_chart *c, int rows)
{
    fr->w = c->width > 0 ? c->width : DEFAULT_W;
    fr->h = c->height > 0 ? c->height : DEFAULT_H;
    fr->left = MARGIN_L;
    fr->right = fr->w - MARGIN_R;
    fr->top = TITLE_H + LEGEND_H * rows + 4;
    fr->bottom = fr->h - MARGIN_B;
    if (fr->bottom < fr->top + 20) /* a small chart with a long legend: the plot keeps 20 px */
        fr->bottom = fr->top + 20;
}

/* The <svg> root with its geometry, the title and the axis labels. */
static void open_svg(FILE *f, const frame *fr, const axis *ax, const axis *ay,
                     const lvd_svg_chart *c, const char *note)
{
    double x0 = ax->lo, x1 = ax->hi, y0 = ay->log ? pow(10.0, ay->lo) : ay->lo,
           y1 = ay->log ? pow(10.0, ay->hi) : ay->hi;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
            "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"11\" "
            "data-x0=\"%.17g\" data-x1=\"%.17g\" data-y0=\"%.17g\" data-y1=\"%.17g\" "
            "data-log-y=\"%d\" data-plot=\"%.0f %.0f %.0f %.0f\">\n",
            fr->w, fr->bottom + MARGIN_B, fr->w, fr->bottom + MARGIN_B, x0, x1, y0, y1, ay->log,
            fr->left, fr->top, fr->right, fr->bottom);
    fprintf(f, "<text x=\"%.1f\" y=\"16\" font-size=\"13\" font-weight=\"bold\">", fr->left);
    lvd_html_escape(f, c->title);
    if (note) {
        fputs(" <tspan font-weight=\"normal\" font-size=\"11\">(", f);
        lvd_html_escape(f, note);
        fputs(")</tspan>", f);
    }
    fputs("</text>\n", f);
    text(f, (fr->left + fr->right) / 2, fr->bottom + 32, "middle", "", c->xlabel);
    char rot[96];
    double my = (fr->top + fr->bottom) / 2;
    snprintf(rot, sizeof rot, " transform=\"rotate(-90 14 %.1f)\"", my);
    text(f, 14, my, "middle", rot, c->ylabel);
}

/* Grid lines, tick labels and the plot frame. */
static void draw_axes(FILE *f, const frame *fr, const axis *ax, const axis *ay)
{
    double t[64];
    int n = ticks(ax, t);
    fputs("<g stroke=\"#e4e4e4\">\n", f);
    for (int i = 0; i < n; i++) {
        double px = to_px(ax, t[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px, fr->top, px,
                fr->bottom);
    }
    int m = ticks(ay, t + n);
    for (int i = n; i < n + m; i++) {
        double py = to_px(ay, t[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", fr->left, py,
                fr->right, py);
    }
    fputs("</g>\n", f);
    char label[64];
    for (int i = 0; i < n; i++) {
        tick_label(label, sizeof label, t[i], ax->step);
        text(f, to_px(ax, t[i]), fr->bottom + 14, "middle", " class=\"tick-x\"", label);
    }
    for (int i = n; i < n + m; i++) {
        if (ay->log)
            snprintf(label, sizeof label, "%g", t[i]);
        else
            tick_label(label, sizeof label, t[i], ay->step);
        text(f, fr->left - 4, to_px(ay, t[i]) + 4, "end", " class=\"tick-y\"", label);
    }
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#999\"/>\n",
            fr->left, fr->top, fr->right - fr->left, fr->bottom - fr->top);
}

static int drawable(double x, double y, int log_y)
{
    return isfinite(x) && isfinite(y) && fabs(x) < BIG && fabs(y) < BIG && (!log_y || y > 0);
}

/* A polyline being written: its first point waits until a second one arrives, so a run of one
 * point becomes a circle. */
typedef struct run {
    FILE *f;
    const axis *ax, *ay;
    int n;
    double px0, py0;
} run;

static void run_add(run *r, double x, double y)
{
    double px = to_px(r->ax, x), py = to_px(r->ay, y);
    if (r->n == 0) {
        r->px0 = px;
        r->py0 = py;
    } else {
        if (r->n == 1)
            fprintf(r->f, "<polyline points=\"%.1f,%.1f", r->px0, r->py0);
        fprintf(r->f, " %.1f,%.1f", px, py);
    }
    r->n++;
}

static void run_end(run *r)
{
    if (r->n == 1)
        fprintf(r->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\"/>\n", r->px0, r->py0);
    else if (r->n > 1)
        fputs("\"/>\n", r->f);
    r->n = 0;
}

static void draw_series(FILE *f, const lvd_svg_series *s, const axis *ax, const axis *ay, int k)
{
    fputs("<g data-series=\"", f);
    lvd_html_escape(f, s->name);
    fprintf(f, "\" stroke=\"%s\" fill=\"none\" stroke-width=\"1.5\">\n", colours[k % N_COLOURS]);
    run r = {f, ax, ay, 0, 0, 0};
    if (s->n <= LVD_SVG_MAX_POINTS) {
        for (int64_t i = 0; i < s->n; i++) {
            if (drawable(s->x[i], s->y[i], ay->log))
                run_add(&r, s->x[i], s->y[i]);
            else
                run_end(&r);
        }
    } else {
        int64_t buckets = LVD_SVG_MAX_POINTS / 2;
        for (int64_t b = 0; b < buckets; b++) {
            int64_t lo = b * s->n / buckets, hi = (b + 1) * s->n / buckets, imin = -1, imax = -1;
            for (int64_t i = lo; i < hi; i++) {
                if (!drawable(s->x[i], s->y[i], ay->log))
                    continue;
                if (imin < 0 || s->y[i] < s->y[imin])
                    imin = i;
                if (imax < 0 || s->y[i] > s->y[imax])
                    imax = i;
            }
            if (imin < 0) {
                run_end(&r);
                continue;
            }
            int64_t first = imin < imax ? imin : imax, second = imin < imax ? imax : imin;
            run_add(&r, s->x[first], s->y[first]);
            if (second != first)
                run_add(&r, s->x[second], s->y[second]);
        }
    }
    run_end(&r);
    fputs("</g>\n", f);
}

void lvd_svg_lines(FILE *f, const lvd_svg_chart *c, const lvd_svg_series *s, int ns)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int any_nonpositive = 0;
    int64_t points = 0;
    for (int k = 0; k < ns; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            if (!drawable(s[k].x[i], s[k].y[i], 0))
                continue;
            xmin = fmin(xmin, s[k].x[i]);
            xmax = fmax(xmax, s[k].x[i]);
            ymin = fmin(ymin, s[k].y[i]);
            ymax = fmax(ymax, s[k].y[i]);
            any_nonpositive |= s[k].y[i] <= 0;
            points++;
        }
    const char *note = NULL;
    axis ax, ay;
    if (points == 0) {
        nice_axis(0, 1, &ax);
        nice_axis(0, 1, &ay);
    } else {
        if (c->x_hi > c->x_lo && isfinite(c->x_lo) && isfinite(c->x_hi)) {
            xmin = fmin(xmin, c->x_lo);
            xmax = fmax(xmax, c->x_hi);
        }
        nice_axis(xmin, xmax, &ax);
        if (c->log_y && !any_nonpositive)
            log_axis(ymin, ymax, &ay);
        else
            nice_axis(ymin, ymax, &ay);
        if (c->log_y && any_nonpositive)
            note = "linear scale: values <= 0";
    }
    const char *names[64];
    int nn = ns < 64 ? ns : 64;
    for (int k = 0; k < nn; k++)
        names[k] = s[k].name;
    frame fr;
    memset(&fr, 0, sizeof fr);
    frame_init(&fr, c, 0);
    frame_init(&fr, c, legend_rows(&fr, names, nn));
    ax.p0 = fr.left;
    ax.p1 = fr.right;
    ay.p0 = fr.bottom;
    ay.p1 = fr.top;
    open_svg(f, &fr, &ax, &ay, c, note);
    draw_axes(f, &fr, &ax, &ay);
    legend(f, &fr, names, nn, 0);
    if (points == 0)
        text(f, (fr.left + fr.right) / 2, (fr.top + fr.bottom) / 2, "middle", "", "no values");
    for (int k = 0; k < ns; k++)
        draw_series(f, &s[k], &ax, &ay, k);
    fputs("</svg>\n", f);
}

int lvd_svg_bin(double lo, double hi, int bins, double v)
{
    if (!(hi > lo) || bins < 1 || !isfinite(v) || v < lo || v > hi)
        return -1;
    int b = (int)((v - lo) / (hi - lo) * bins);
    return b < bins ? b : bins - 1;
}

void lvd_svg_histogram(FILE *f, const lvd_svg_chart *c, double lo, double hi, const int64_t *counts,
                       int bins, const lvd_svg_marker *marks, int nm)
{
    int64_t top = 0;
    for (int b = 0; b < bins; b++)
        top = counts[b] > top ? counts[b] : top;
    int valid = hi > lo && isfinite(lo) && isfinite(hi) && bins > 0;
    axis ax = {valid ? lo : 0, valid ? hi : 1, 0, 0, 0, 0}, ay;
    ax.step = nice_step(ax.hi - ax.lo, 5);
    nice_axis(0, (double)(top > 0 ? top : 1), &ay);
    if (ay.step < 1) { /* counts: whole ticks */
        ay.step = 1;
        ay.hi = ceil(ay.hi);
    }
    char labels[16][96];
    const char *names[16];
    int nl = nm < 16 ? nm : 16;
    for (int i = 0; i < nl; i++) {
        snprintf(labels[i], sizeof labels[i], "%s = %.3f", marks[i].name ? marks[i].name : "",
                 marks[i].x);
        names[i] = labels[i];
    }
    frame fr;
    memset(&fr, 0, sizeof fr);
    frame_init(&fr, c, 0);
    frame_init(&fr, c, legend_rows(&fr, names, nl));
    ax.p0 = fr.left;
    ax.p1 = fr.right;
    ay.p0 = fr.bottom;
    ay.p1 = fr.top;
    open_svg(f, &fr, &ax, &ay, c, NULL);
    draw_axes(f, &fr, &ax, &ay);
    legend(f, &fr, names, nl, 1);
    if (top == 0)
        text(f, (fr.left + fr.right) / 2, (fr.top + fr.bottom) / 2, "middle", "", "no values");
    fputs("<g fill=\"#8aa8c8\" stroke=\"#4a6a8a\" stroke-width=\"0.5\">\n", f);
    for (int b = 0; valid && b < bins; b++) {
        if (counts[b] <= 0)
            continue;
        double x0 = to_px(&ax, lo + (hi - lo) * b / bins),
               x1 = to_px(&ax, lo + (hi - lo) * (b + 1) / bins), y = to_px(&ay, (double)counts[b]);
        fprintf(f,
                "<rect data-bin=\"%d\" data-count=\"%lld\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                "height=\"%.1f\"/>\n",
                b, (long long)counts[b], x0, y, x1 - x0, fr.bottom - y);
    }
    fputs("</g>\n", f);
    for (int i = 0; i < nl; i++) {
        if (!(marks[i].x >= ax.lo && marks[i].x <= ax.hi))
            continue;
        double px = to_px(&ax, marks[i].x);
        fputs("<line data-marker=\"", f);
        lvd_html_escape(f, marks[i].name);
        fprintf(f,
                "\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\" stroke-dasharray=\"4 3\"/>\n",
                px, fr.top, px, fr.bottom, colours[i % N_COLOURS]);
    }
    fputs("</svg>\n", f);
}
