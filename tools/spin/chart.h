/* Line charts of training metrics, drawn with cairo into PNG or SVG bytes: a column of panels, each
 * with its own y axis, sharing the x axis (the training step), with a legend per panel and optional
 * vertical separators (iteration boundaries). */
#ifndef SPIN_TOOLS_CHART_H
#define SPIN_TOOLS_CHART_H

#include <stddef.h>

#define CHART_MAX_SERIES 4
#define CHART_MAX_PANELS 6
#define CHART_MAX_MARKS 32

typedef struct {
    const char *name; /* legend text */
    const double *x, *y;
    size_t n;
} chart_series;

typedef struct {
    const char *title;
    chart_series series[CHART_MAX_SERIES];
    int nseries;
} chart_panel;

typedef struct {
    double x;
    const char *label;
} chart_mark;

typedef struct {
    const char *title;
    const char *xlabel;
    chart_panel panels[CHART_MAX_PANELS];
    int npanels;
    chart_mark marks[CHART_MAX_MARKS];
    int nmarks;
} chart;

typedef enum { CHART_PNG, CHART_SVG } chart_format;

/* Renders the chart; *out is malloc'd (caller frees). Returns 0, or -1 with a message in err. */
int chart_render(const chart *c, chart_format fmt, unsigned char **out, size_t *size, char *err,
                 size_t errlen);

#endif
