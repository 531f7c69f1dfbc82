/* The charts of curate/stages/report_svg.h, written to memory and parsed back: a known point of
 * a linear and of a log chart lands where the documented geometry and the axis ticks say, the
 * log axis falls back to linear for values <= 0, empty, one-point, NaN and infinite series give
 * valid SVG, long series are reduced to at most LVD_SVG_MAX_POINTS points keeping a spike,
 * names are escaped, output is byte-identical for the same data, and histogram bins and
 * markers sit at their values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curate/stages/report_svg.h"
#include "tests/check.h"
#include "tests/stages/report_svg_test.h"

/* Output of one call, NUL-terminated; caller frees. */
typedef struct mem {
    char *buf;
    size_t len;
    FILE *f;
} mem;

static void mem_open(mem *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    if (!m->f)
        exit(1);
}

static char *mem_close(mem *m)
{
    fclose(m->f);
    return m->buf;
}

static char *lines(const lvd_svg_chart *c, const lvd_svg_series *s, int ns)
{
    mem m;
    mem_open(&m);
    lvd_svg_lines(m.f, c, s, ns);
    return mem_close(&m);
}

static int well_formed(const char *svg)
{
    size_t n = strlen(svg);
    return strncmp(svg, "<svg ", 5) == 0 && n > 7 && strcmp(svg + n - 7, "</svg>\n") == 0 &&
           !strstr(svg, "nan") && !strstr(svg, "inf");
}

#define N 100

static void test_linear(void)
{
    double x[N], y[N], y2[N];
    for (int i = 0; i < N; i++) {
        x[i] = i + 1;
        y[i] = (i + 1) / 10.0;
        y2[i] = 10 - y[i];
    }
    lvd_svg_series s[2] = {{"a&<b>", x, y, N}, {"down", x, y2, N}};
    lvd_svg_chart c = {"Linear", "step", "value", 0, 0, 0, 0, 0};
    char *svg = lines(&c, s, 2);
    CHECK(well_formed(svg));
    geom g = geometry(svg);
    CHECK_MSG(g.x0 == 0 && g.x1 == 100 && g.y0 == 0 && g.y1 == 10 && !g.log_y, "domain %g %g %g %g",
              g.x0, g.x1, g.y0, g.y1);
    double px[N], py[N];
    int runs;
    int n = series_points(svg, "a&amp;&lt;b&gt;", px, py, N, &runs);
    CHECK_MSG(n == N && runs == 1, "%d points in %d runs", n, runs);
    double ex, ey;
    expected(&g, 50, 5, &ex, &ey);
    CHECK_MSG(fabs(px[49] - ex) <= 0.05 && fabs(py[49] - ey) <= 0.05, "(50, 5) at %g,%g not %g,%g",
              px[49], py[49], ex, ey);
    /* The point of x = 50 is the plot's middle; the tick labelled 40 is where x = 40 is. */
    CHECK(fabs(tick_x(svg, "40") - px[39]) <= 0.05);
    CHECK(fabs(px[49] - (g.left + g.right) / 2) <= 0.05);
    CHECK(fabs(py[49] - (g.top + g.bottom) / 2) <= 0.05);
    n = series_points(svg, "down", px, py, N, &runs);
    CHECK(n == N && runs == 1 && py[0] < py[N - 1]);
    CHECK(strstr(svg, ">a&amp;&lt;b&gt;</text>") != NULL && !strstr(svg, "a&<b>"));
    /* A wider x range asked for is covered; the data keep their places in it. */
    c.x_lo = -50;
    c.x_hi = 150;
    char *wide = lines(&c, s, 2);
    g = geometry(wide);
    CHECK_MSG(g.x0 <= -50 && g.x1 >= 150, "x domain %g %g", g.x0, g.x1);
    n = series_points(wide, "a&amp;&lt;b&gt;", px, py, N, &runs);
    expected(&g, 50, 5, &ex, &ey);
    CHECK(n == N && fabs(px[49] - ex) <= 0.05 && fabs(py[49] - ey) <= 0.05);
    free(wide);
    c.x_lo = c.x_hi = 0;
    /* Same data, same bytes. */
    char *again = lines(&c, s, 2);
    CHECK(strcmp(svg, again) == 0);
    free(again);
    free(svg);
}

static void test_log(void)
{
    double x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = i;
        y[i] = pow(10.0, i / 50.0) * 3; /* 3 to about 285 */
    }
    lvd_svg_series s = {"loss", x, y, N};
    lvd_svg_chart c = {"Log", "step", "loss", 1, 0, 0, 0, 0};
    char *svg = lines(&c, &s, 1);
    CHECK(well_formed(svg));
    geom g = geometry(svg);
    CHECK_MSG(g.log_y && g.y0 == 1 && g.y1 == 1000, "log domain %g %g", g.y0, g.y1);
    double px[N], py[N], ex, ey;
    int runs;
    CHECK(series_points(svg, "loss", px, py, N, &runs) == N);
    expected(&g, x[50], y[50], &ex, &ey);
    CHECK_MSG(fabs(px[50] - ex) <= 0.05 && fabs(py[50] - ey) <= 0.05,
              "log point at %g,%g not %g,%g", px[50], py[50], ex, ey);
    CHECK(strstr(svg, "class=\"tick-y\">100</text>") != NULL);
    free(svg);
    /* A value <= 0 makes the axis linear, and the title says so. */
    y[10] = -0.5;
    svg = lines(&c, &s, 1);
    geom h = geometry(svg);
    CHECK(!h.log_y && h.y0 <= -0.5 && strstr(svg, "linear scale: values &lt;= 0"));
    CHECK(series_points(svg, "loss", px, py, N, &runs) == N && runs == 1);
    free(svg);
}

static void test_degenerate(void)
{
    lvd_svg_chart c = {"Empty <x>", NULL, NULL, 1, 0, 0, 0, 0};
    char *svg = lines(&c, NULL, 0);
    CHECK(well_formed(svg) && strstr(svg, "no values") && strstr(svg, "Empty &lt;x&gt;"));
    free(svg);
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {NAN, NAN, NAN, NAN, NAN};
    lvd_svg_series s = {"all missing", x, y, 5};
    svg = lines(&c, &s, 1);
    CHECK(well_formed(svg) && strstr(svg, "no values") && !strstr(svg, "<polyline"));
    free(svg);
    s.n = 0;
    svg = lines(&c, &s, 1);
    CHECK(well_formed(svg) && strstr(svg, "no values"));
    free(svg);
    /* One point: a circle at the middle of its (widened) domain. */
    double one_x = 7, one_y = 0.25;
    lvd_svg_series one = {"one", &one_x, &one_y, 1};
    c.log_y = 0;
    svg = lines(&c, &one, 1);
    CHECK(well_formed(svg) && !strstr(svg, "no values"));
    double px[8], py[8], ex, ey;
    int runs;
    CHECK(series_points(svg, "one", px, py, 8, &runs) == 1 && runs == 1);
    geom g = geometry(svg);
    expected(&g, one_x, one_y, &ex, &ey);
    CHECK(strstr(svg, "<circle ") && fabs(px[0] - ex) <= 0.05 && fabs(py[0] - ey) <= 0.05);
    free(svg);
    /* NaN and infinities break the line into runs; the rest is drawn. */
    double xs[7] = {1, 2, 3, 4, 5, 6, 7}, ys[7] = {1, 2, NAN, 4, INFINITY, 6, 7};
    lvd_svg_series gaps = {"gaps", xs, ys, 7};
    svg = lines(&c, &gaps, 1);
    CHECK(well_formed(svg));
    CHECK_MSG(series_points(svg, "gaps", px, py, 8, &runs) == 5 && runs == 3, "%d runs", runs);
    free(svg);
    /* A non-finite x is a gap too. */
    xs[1] = NAN;
    svg = lines(&c, &gaps, 1);
    CHECK(well_formed(svg) && series_points(svg, "gaps", px, py, 8, &runs) == 4 && runs == 3);
    free(svg);
}

#define LONG 100000

static void test_long(void)
{
    double *x = malloc(LONG * sizeof *x), *y = malloc(LONG * sizeof *y);
    for (int i = 0; i < LONG; i++) {
        x[i] = i + 1;
        y[i] = 1 + 0.1 * sin(i * 0.01);
    }
    y[77777] = 5; /* a spike that stride sampling would miss */
    y[33333] = -3;
    lvd_svg_series s[8];
    for (int k = 0; k < 8; k++)
        s[k] = (lvd_svg_series){"series", x, y, LONG};
    lvd_svg_chart c = {"Long", "step", "v", 0, 0, 0, 0, 0};
    char *svg = lines(&c, s, 1);
    CHECK(well_formed(svg));
    static double px[LONG], py[LONG];
    int runs;
    int n = series_points(svg, "series", px, py, LONG, &runs);
    CHECK_MSG(n > LVD_SVG_MAX_POINTS / 2 && n <= LVD_SVG_MAX_POINTS && runs == 1, "%d points", n);
    geom g = geometry(svg);
    double ex, ey, fx, fy;
    expected(&g, x[77777], 5, &ex, &ey);
    expected(&g, x[33333], -3, &fx, &fy);
    int spike = 0, dip = 0;
    for (int i = 0; i < n; i++) {
        spike |= fabs(px[i] - ex) <= 0.05 && fabs(py[i] - ey) <= 0.05;
        dip |= fabs(px[i] - fx) <= 0.05 && fabs(py[i] - fy) <= 0.05;
    }
    CHECK(spike && dip);
    for (int i = 1; i < n; i++)
        CHECK(px[i] >= px[i - 1]);
    free(svg);
    /* Eight long series stay small. */
    svg = lines(&c, s, 8);
    size_t len = strlen(svg);
    CHECK_MSG(len < 8 * LVD_SVG_MAX_POINTS * 16 + 8192, "%zu bytes", len);
    free(svg);
    free(x);
    free(y);
}

static void test_histogram(void)
{
    CHECK(lvd_svg_bin(0, 1, 10, 0) == 0);
    CHECK(lvd_svg_bin(0, 1, 10, 0.0999) == 0);
    CHECK(lvd_svg_bin(0, 1, 10, 0.1) == 1);
    CHECK(lvd_svg_bin(0, 1, 10, 0.95) == 9);
    CHECK(lvd_svg_bin(0, 1, 10, 1) == 9);
    CHECK(lvd_svg_bin(0, 1, 10, 1.01) == -1);
    CHECK(lvd_svg_bin(0, 1, 10, -0.01) == -1);
    CHECK(lvd_svg_bin(0, 1, 10, NAN) == -1);
    CHECK(lvd_svg_bin(1, 1, 10, 1) == -1);
    CHECK(lvd_svg_bin(0, 1, 0, 0.5) == -1);
    int64_t counts[40] = {0};
    counts[5] = 3;
    counts[30] = 12;
    lvd_svg_marker marks[3] = {{"thr <a>", 0.75}, {"calibrated", 0.9}, {"outside", 2}};
    lvd_svg_chart c = {"Hist", "cosine similarity", "pairs", 0, 720, 260, 0, 0};
    mem m;
    mem_open(&m);
    lvd_svg_histogram(m.f, &c, 0.6, 1.0, counts, 40, marks, 3);
    char *svg = mem_close(&m);
    CHECK(well_formed(svg));
    geom g = geometry(svg);
    CHECK_MSG(g.x0 == 0.6 && g.x1 == 1.0 && g.y0 == 0 && g.y1 >= 12, "domain %g %g %g %g", g.x0,
              g.x1, g.y0, g.y1);
    CHECK(strstr(svg, "data-bin=\"5\" data-count=\"3\"") && strstr(svg, "data-count=\"12\""));
    CHECK(!strstr(svg, "data-bin=\"6\""));
    const char *bar = strstr(svg, "data-bin=\"30\"");
    double ex, ey;
    expected(&g, 0.6 + 0.01 * 30, 12, &ex, &ey);
    CHECK(bar && fabs(attr(bar, "x") - ex) <= 0.05 && fabs(attr(bar, "y") - ey) <= 0.05);
    CHECK(bar && fabs(attr(bar, "x") + attr(bar, "width") - (ex + 16)) <= 0.1);
    const char *mk = strstr(svg, "<line data-marker=\"thr &lt;a&gt;\"");
    expected(&g, 0.75, 0, &ex, &ey);
    CHECK(mk && fabs(attr(mk, "x1") - ex) <= 0.05);
    CHECK(strstr(svg, "thr &lt;a&gt; = 0.750") && strstr(svg, "outside = 2.000"));
    CHECK(!strstr(svg, "data-marker=\"outside\""));
    free(svg);
    /* No counts, no bins: still a valid chart. */
    int64_t zero[4] = {0};
    mem_open(&m);
    lvd_svg_histogram(m.f, &c, 0.6, 1.0, zero, 4, NULL, 0);
    svg = mem_close(&m);
    CHECK(well_formed(svg) && strstr(svg, "no values") && !strstr(svg, "data-bin"));
    free(svg);
    mem_open(&m);
    lvd_svg_histogram(m.f, &c, 1, 1, NULL, 0, marks, 1);
    svg = mem_close(&m);
    CHECK(well_formed(svg) && strstr(svg, "no values"));
    free(svg);
}

int main(void)
{
    test_linear();
    test_log();
    test_degenerate();
    test_long();
    test_histogram();
    return check_finish();
}
