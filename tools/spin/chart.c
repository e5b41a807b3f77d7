/* Line charts with cairo: PNG through an image surface, SVG through cairo's SVG surface, both
 * written to memory so the caller can store them atomically. */
#include "tools/spin/chart.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 900, PANEL_H = 220, TOP = 40, BOTTOM = 40, LEFT = 80, RIGHT = 170, GAP = 30 };

/* colour-blind-safe palette (Okabe-Ito) */
static const double palette[CHART_MAX_SERIES][3] = {
    {0.000, 0.447, 0.698}, {0.835, 0.369, 0.000}, {0.000, 0.620, 0.451}, {0.800, 0.475, 0.655}};

typedef struct {
    unsigned char *data;
    size_t size, cap;
    int failed;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len) {
    membuf *b = closure;
    if (b->size + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->size + len)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, data, len);
    b->size += len;
    return CAIRO_STATUS_SUCCESS;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `want` intervals. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void range_of(const chart_panel *p, double *lo, double *hi, int use_x) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int s = 0; s < p->nseries; s++)
        for (size_t i = 0; i < p->series[s].n; i++) {
            double v = use_x ? p->series[s].x[i] : p->series[s].y[i];
            if (isfinite(v)) {
                *lo = fmin(*lo, v);
                *hi = fmax(*hi, v);
            }
        }
}

static void pad_range(double *lo, double *hi) {
    if (!isfinite(*lo)) {
        *lo = 0;
        *hi = 1;
    } else if (*hi - *lo < 1e-12 * fmax(1.0, fabs(*hi))) {
        double d = fmax(fabs(*hi) * 0.05, 1e-6);
        *lo -= d;
        *hi += d;
    } else {
        double d = (*hi - *lo) * 0.05;
        *lo -= d;
        *hi += d;
    }
}

static void text(cairo_t *cr, double x, double y, const char *s, double align_x, double align_y) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.width * align_x - e.x_bearing, y - e.height * align_y - e.y_bearing);
    cairo_show_text(cr, s);
}

static void draw_panel(cairo_t *cr, const chart *c, const chart_panel *p, double x0, double y0, double w,
                       double h, double xlo, double xhi, int last) {
    double ylo, yhi;
    range_of(p, &ylo, &yhi, 0);
    pad_range(&ylo, &yhi);
#define PX(v) (x0 + ((v)-xlo) / (xhi - xlo) * w)
#define PY(v) (y0 + h - ((v)-ylo) / (yhi - ylo) * h)
    cairo_set_font_size(cr, 11);
    /* grid and y ticks */
    double ys = nice_step(yhi - ylo, 4);
    for (double t = ceil(ylo / ys) * ys; t <= yhi; t += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x0, PY(t));
        cairo_line_to(cr, x0 + w, PY(t));
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);
        char lab[32];
        snprintf(lab, sizeof lab, "%.4g", fabs(t) < ys * 1e-6 ? 0.0 : t);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        text(cr, x0 - 6, PY(t), lab, 1.0, 0.5);
    }
    double xs = nice_step(xhi - xlo, 8);
    for (double t = ceil(xlo / xs) * xs; t <= xhi; t += xs) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, PX(t), y0);
        cairo_line_to(cr, PX(t), y0 + h);
        cairo_stroke(cr);
        if (last) {
            char lab[32];
            snprintf(lab, sizeof lab, "%.6g", t);
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            text(cr, PX(t), y0 + h + 6, lab, 0.5, 0.0);
        }
    }
    /* separators between runs */
    for (int m = 0; m < c->nmarks; m++) {
        double mx = c->marks[m].x;
        if (mx < xlo || mx > xhi)
            continue;
        cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
        double dash[] = {4, 3};
        cairo_set_dash(cr, dash, 2, 0);
        cairo_move_to(cr, PX(mx), y0);
        cairo_line_to(cr, PX(mx), y0 + h);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        if (c->marks[m].label)
            text(cr, PX(mx) + 3, y0 + 2, c->marks[m].label, 0.0, 0.0);
    }
    /* frame and title */
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 13);
    text(cr, x0, y0 - 6, p->title, 0.0, 1.0);
    /* the series, clipped to the frame; a non-finite value breaks the line */
    cairo_save(cr);
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_clip(cr);
    for (int s = 0; s < p->nseries; s++) {
        const chart_series *se = &p->series[s];
        cairo_set_source_rgb(cr, palette[s][0], palette[s][1], palette[s][2]);
        cairo_set_line_width(cr, 1.8);
        int pen = 0;
        for (size_t i = 0; i < se->n; i++) {
            if (!isfinite(se->y[i]) || !isfinite(se->x[i])) {
                pen = 0;
                continue;
            }
            if (pen)
                cairo_line_to(cr, PX(se->x[i]), PY(se->y[i]));
            else
                cairo_move_to(cr, PX(se->x[i]), PY(se->y[i]));
            pen = 1;
        }
        cairo_stroke(cr);
        if (se->n == 1 && isfinite(se->y[0])) { /* a single point is a dot */
            cairo_arc(cr, PX(se->x[0]), PY(se->y[0]), 3, 0, 6.283185307179586);
            cairo_fill(cr);
        }
    }
    cairo_restore(cr);
    /* legend */
    cairo_set_font_size(cr, 11);
    for (int s = 0; s < p->nseries; s++) {
        double ly = y0 + 12 + 18 * s;
        cairo_set_source_rgb(cr, palette[s][0], palette[s][1], palette[s][2]);
        cairo_set_line_width(cr, 3);
        cairo_move_to(cr, x0 + w + 12, ly);
        cairo_line_to(cr, x0 + w + 32, ly);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text(cr, x0 + w + 38, ly, p->series[s].name, 0.0, 0.5);
    }
#undef PX
#undef PY
}

int chart_render(const chart *c, chart_format fmt, unsigned char **out, size_t *size, char *err,
                 size_t errlen) {
    *out = NULL;
    *size = 0;
    if (c->npanels < 1 || c->npanels > CHART_MAX_PANELS) {
        snprintf(err, errlen, "a chart needs 1 to %d panels (got %d)", CHART_MAX_PANELS, c->npanels);
        return -1;
    }
    double W = WIDTH, H = TOP + c->npanels * PANEL_H + (c->npanels - 1) * GAP + BOTTOM + 20;
    membuf buf = {0};
    cairo_surface_t *surf = fmt == CHART_SVG ? cairo_svg_surface_create_for_stream(mem_write, &buf, W, H)
                                             : cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)W, (int)H);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    double xlo = INFINITY, xhi = -INFINITY;
    for (int p = 0; p < c->npanels; p++) {
        double lo, hi;
        range_of(&c->panels[p], &lo, &hi, 1);
        xlo = fmin(xlo, lo);
        xhi = fmax(xhi, hi);
    }
    if (!isfinite(xlo)) {
        xlo = 0;
        xhi = 1;
    } else if (xhi <= xlo) {
        xlo -= 0.5;
        xhi += 0.5;
    }
    if (c->title) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_font_size(cr, 15);
        text(cr, W / 2, 8, c->title, 0.5, 0.0);
    }
    double pw = W - LEFT - RIGHT;
    for (int p = 0; p < c->npanels; p++)
        draw_panel(cr, c, &c->panels[p], LEFT, TOP + p * (PANEL_H + GAP), pw, PANEL_H, xlo, xhi,
                   p == c->npanels - 1);
    if (c->xlabel) {
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_set_font_size(cr, 12);
        text(cr, LEFT + pw / 2, H - 6, c->xlabel, 0.5, 1.0);
    }
    cairo_destroy(cr);
    cairo_status_t st;
    if (fmt == CHART_SVG) {
        cairo_surface_finish(surf);
        st = cairo_surface_status(surf);
    } else {
        st = cairo_surface_write_to_png_stream(surf, mem_write, &buf);
    }
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS || buf.failed) {
        snprintf(err, errlen, "cairo: %s", buf.failed ? "out of memory" : cairo_status_to_string(st));
        free(buf.data);
        return -1;
    }
    *out = buf.data;
    *size = buf.size;
    return 0;
}
