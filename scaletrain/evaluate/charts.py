"""The reports' charts as inline SVG: lines, steps, points and reference lines on linear or log
axes, a matrix of counts, and horizontal bars with error bars.

Written here rather than drawn with matplotlib: matplotlib takes 100-250 ms a figure, so a small
table's report (four figures) cost 1.2 s of its 1.5 s run. These take about a millisecond, stay
sharp at any zoom and keep their words as text; points and cells name their values on hover.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

COLOURS = {"blue": "#1f77b4", "orange": "#ff7f0e", "green": "#2ca02c", "red": "#d62728", "gray": "#7f7f7f"}
PANEL_W, PANEL_H = 480, 330
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 26, 44  # room for tick labels, axis labels and a title
MAX_POINTS = 3000  # a scatter of more rows draws an even sample of them, and says so
HOVER_POINTS = 400  # up to this many points each carry their values as a tooltip
CHAR_W = 6.2  # a character's width at the 11 px font, for the legend box and label room


@dataclass
class Series:
    """One thing drawn on a panel. kind: `line`, `step` (level after each x), `points`, or
    `hline` (a reference line across the panel at y[0])."""
    x: Sequence[float] = ()
    y: Sequence[float] = ()
    label: str | None = None
    colour: str = COLOURS["blue"]
    kind: str = "line"
    dashed: bool = False
    sizes: Sequence[float] | None = None  # points: each one's area in px², as matplotlib's `s`
    marker: str = "o"  # points: "o" or "x"


@dataclass
class Panel:
    series: list[Series]
    x_label: str = ""
    y_label: str = ""
    title: str = ""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    y_log: bool = False
    x_log: bool = False
    notes: list[str] = field(default_factory=list)  # filled while drawing: what a caption should add


class _Axis:
    """Data values in [lo, hi] onto pixels in [start, stop] (stop < start for a y axis)."""

    def __init__(self, values: np.ndarray, fixed: tuple | None, start: float, stop: float, log: bool):
        self.log, self.start, self.stop = log, start, stop
        if fixed is not None:
            lo, hi = map(float, fixed)
        else:
            finite = values[np.isfinite(values) & ((values > 0) if log else True)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            lo, hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
            pad = (hi - lo) * 0.05 or max(abs(hi) * 0.1, 0.5)
            lo, hi = lo - pad, hi + pad
            lo, hi = (10 ** lo, 10 ** hi) if log else (lo, hi)
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)

    def __call__(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log10(values)
        share = (values - self.lo) / (self.hi - self.lo)
        return self.start + np.clip(share, -0.02, 1.02) * (self.stop - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        if self.log:
            powers = range(math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9) + 1)
            values = [10.0 ** p * m for p in range(math.floor(self.lo), math.ceil(self.hi) + 1) for m in (1, 2, 5)]
            values = [v for v in values if self.lo - 1e-9 <= math.log10(v) <= self.hi + 1e-9]
            if len(powers) >= 2:
                values = [10.0 ** p for p in powers]
            return [(v, f"{v:g}") for v in values]
        return nice_ticks(self.lo, self.hi)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[tuple[float, str]]:
    """About `target` round values in [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    raw = (hi - lo) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / magnitude, 3) == 2.5 else 0)
    first = math.ceil(lo / step - 1e-9)
    values = [(first + i) * step for i in range(int((hi - first * step) / step + 1e-9) + 1)]
    if max(abs(lo), abs(hi)) < 1e5 and decimals <= 5:
        return [(v, f"{v:.{decimals}f}") for v in values]
    digits = max(3, math.ceil(math.log10(max(abs(lo), abs(hi)) / step)) + 2)  # enough that no two print alike
    return [(v, f"{v:.{digits}g}") for v in values]


def chart(panels: list[Panel], title: str) -> str:
    """Panels side by side in one <svg>."""
    body = "".join(_panel(panel, index * PANEL_W) for index, panel in enumerate(panels))
    return _svg(PANEL_W * len(panels), PANEL_H, title, body)


def _svg(width: float, height: float, title: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}" style="max-width:100%;height:auto" font-family="system-ui,sans-serif" '
            f'font-size="11" role="img" aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
            f"{body}</svg>")


def _panel(panel: Panel, left: float) -> str:
    x0, x1, y0, y1 = left + LEFT, left + PANEL_W - RIGHT, TOP, PANEL_H - BOTTOM
    xs = np.concatenate([np.asarray(s.x, float) for s in panel.series if s.kind != "hline"] or [np.zeros(0)])
    ys = np.concatenate([np.asarray(s.y, float) for s in panel.series] or [np.zeros(0)])
    x_axis = _Axis(xs, panel.x_range, x0, x1, panel.x_log)
    y_axis = _Axis(ys, panel.y_range, y1, y0, panel.y_log)
    parts = [f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="#fff" stroke="#aaa"/>']
    for value, text in x_axis.ticks():
        x = float(x_axis(value))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y1}" stroke="#e8e8e8"/>'
                     f'<text x="{x:.1f}" y="{y1 + 15}" text-anchor="middle">{text}</text>')
    for value, text in y_axis.ticks():
        y = float(y_axis(value))
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e8e8e8"/>'
                     f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{PANEL_H - 8}" text-anchor="middle">{html.escape(panel.x_label)}</text>'
                 f'<text transform="translate({left + 14},{(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 f"{html.escape(panel.y_label)}</text>")
    if panel.title:
        parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="16" text-anchor="middle" font-weight="600">'
                     f"{html.escape(panel.title)}</text>")
    drawn = [_series(s, x_axis, y_axis, panel) for s in panel.series]
    parts.extend(drawn)
    parts.append(_legend(panel, x_axis, y_axis, (x0, x1, y0, y1)))
    return "<g>" + "".join(parts) + "</g>"


def _series(series: Series, x_axis: _Axis, y_axis: _Axis, panel: Panel) -> str:
    stroke = f'stroke="{series.colour}" stroke-width="1.6" fill="none"' + (' stroke-dasharray="5 4"' if series.dashed else "")
    tip = f"<title>{html.escape(series.label)}</title>" if series.label else ""
    if series.kind == "hline":
        y = float(y_axis([series.y[0]])[0])
        return f'<line x1="{x_axis.start}" x2="{x_axis.stop}" y1="{y:.1f}" y2="{y:.1f}" {stroke}>{tip}</line>'
    x, y = np.asarray(series.x, float), np.asarray(series.y, float)
    if series.kind == "points":
        return _points(series, x, y, x_axis, y_axis, panel)
    if series.kind == "step":  # the level holds from each x to the next
        x, y = np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]
    runs = _finite_runs(x, y)
    if sum(r.stop - r.start for r in runs) == 1:  # one epoch, one value: a dot, not an invisible line
        return _points(Series(x, y, series.label, series.colour, kind="points", sizes=[16.0] * len(x)), x, y,
                       x_axis, y_axis, panel)
    return "".join(f"<polyline points=\"{_path(x_axis(x[run]), y_axis(y[run]))}\" {stroke}>{tip}</polyline>"
                   for run in runs)


def _finite_runs(x: np.ndarray, y: np.ndarray) -> list[slice]:
    """The stretches without a missing value: a line breaks where a value is missing."""
    ok = np.isfinite(x) & np.isfinite(y)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(int), [0]])))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2])]


def _path(px: np.ndarray, py: np.ndarray) -> str:
    """Pixel coordinates on a half-pixel grid, repeats dropped: a curve of 10,000 thresholds stays small."""
    coords = np.round(np.stack([px, py], axis=1) * 2) / 2
    keep = np.ones(len(coords), bool)
    keep[1:] = np.any(coords[1:] != coords[:-1], axis=1)
    return " ".join(f"{a:g},{b:g}" for a, b in coords[keep])


def _points(series: Series, x: np.ndarray, y: np.ndarray, x_axis: _Axis, y_axis: _Axis, panel: Panel) -> str:
    sizes = np.broadcast_to(np.asarray(series.sizes if series.sizes is not None else 16.0, float), x.shape)
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if len(ok) > MAX_POINTS:
        ok = ok[np.linspace(0, len(ok) - 1, MAX_POINTS).astype(int)]
        panel.notes.append(f"{MAX_POINTS:,} of {len(x):,} points drawn, evenly spaced")
    px, py, radius = x_axis(x[ok]), y_axis(y[ok]), 0.7 * np.sqrt(sizes[ok])
    hover = len(ok) <= HOVER_POINTS
    name = f"{series.label}: " if series.label else ""
    marks = []
    for i, (a, b, r) in enumerate(zip(px, py, radius)):
        tip = f"<title>{html.escape(name)}{x[ok[i]]:.4g}, {y[ok[i]]:.4g}</title>" if hover else ""
        if series.marker == "x":
            marks.append(f'<path d="M{a - r:.1f},{b - r:.1f}L{a + r:.1f},{b + r:.1f}M{a - r:.1f},{b + r:.1f}'
                         f'L{a + r:.1f},{b - r:.1f}" stroke="{series.colour}" stroke-width="2">{tip}</path>')
        else:
            marks.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{r:.1f}">{tip}</circle>')
    opacity = "" if len(ok) <= 50 else ' fill-opacity="0.6"'
    return f'<g fill="{series.colour}"{opacity}>' + "".join(marks) + "</g>"


def _legend(panel: Panel, x_axis: _Axis, y_axis: _Axis, frame: tuple) -> str:
    """The labelled series in a box, in the corner that covers the fewest points."""
    named = [s for s in panel.series if s.label]
    if not named:
        return ""
    width, height = 30 + CHAR_W * max(len(s.label) for s in named), 6 + 16 * len(named)
    x0, x1, y0, y1 = frame
    corners = [(x1 - width - 6, y0 + 6), (x0 + 6, y0 + 6), (x1 - width - 6, y1 - height - 6), (x0 + 6, y1 - height - 6)]
    px = np.concatenate([x_axis(s.x) for s in panel.series if s.kind != "hline"] or [np.zeros(0)])
    py = np.concatenate([y_axis(s.y) for s in panel.series if s.kind != "hline"] or [np.zeros(0)])
    covered = [np.sum((px >= a) & (px <= a + width) & (py >= b) & (py <= b + height)) for a, b in corners]
    a, b = corners[int(np.argmin(covered))]
    rows = []
    for i, s in enumerate(named):
        y = b + 14 + 16 * i
        swatch = (f'<circle cx="{a + 14}" cy="{y - 4}" r="3.5" fill="{s.colour}"/>' if s.kind == "points" else
                  f'<line x1="{a + 5}" x2="{a + 23}" y1="{y - 4}" y2="{y - 4}" stroke="{s.colour}" stroke-width="2"'
                  + (' stroke-dasharray="5 3"' if s.dashed else "") + "/>")
        rows.append(swatch + f'<text x="{a + 28}" y="{y}">{html.escape(s.label)}</text>')
    return (f'<g><rect x="{a:.1f}" y="{b:.1f}" width="{width:.1f}" height="{height}" fill="#fff" fill-opacity="0.85" '
            f'stroke="#ccc"/>' + "".join(rows) + "</g>")


def _blue(share: float) -> str:
    """White to dark blue through mid blue (as matplotlib's Blues)."""
    stops = np.array([[247, 251, 255], [107, 174, 214], [8, 48, 107]], float)
    low = min(int(share * 2), 1)
    rgb = stops[low] + (stops[low + 1] - stops[low]) * (share * 2 - low)
    return "#%02x%02x%02x" % tuple(int(round(c)) for c in rgb)


def matrix_chart(counts: np.ndarray, names: list[str], x_label: str, y_label: str, title: str) -> str:
    """A matrix of counts, rows by columns named alike; numbers in the cells up to 20 names."""
    n, top = len(names), max(int(counts.max()), 1)
    cell = max(8.0, min(80.0, 520 / n))
    shown = [s if len(s) <= 18 else s[:17] + "…" for s in map(str, names)]
    room = 24 + CHAR_W * max(len(s) for s in shown)
    x0, y0 = room + 20, 10
    parts = []
    for i in range(n):
        for j in range(n):
            share = counts[i, j] / top
            x, y = x0 + j * cell, y0 + i * cell
            tip = f"<title>{html.escape(f'{y_label} {names[i]}, {x_label} {names[j]}: {counts[i, j]:,}')}</title>"
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{_blue(share)}">'
                         f"{tip}</rect>")
            if n <= 20:
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                             f'fill="{"#fff" if share > 0.5 else "#222"}">{counts[i, j]}</text>')
    size = n * cell
    for k, name in enumerate(shown):
        middle = k * cell + cell / 2
        parts.append(f'<text x="{x0 - 5}" y="{y0 + middle + 4:.1f}" text-anchor="end">{html.escape(name)}</text>'
                     f'<text transform="translate({x0 + middle + 4:.1f},{y0 + size + 12}) rotate(-45)" '
                     f'text-anchor="end">{html.escape(name)}</text>')
    parts.append(f'<text x="{x0 + size / 2:.1f}" y="{y0 + size + room}" text-anchor="middle">{html.escape(x_label)}</text>'
                 f'<text transform="translate(12,{y0 + size / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 f"{html.escape(y_label)}</text>")
    parts.append(_colour_scale(x0 + size + 16, y0, size, top))
    return _svg(x0 + size + 70, y0 + size + room + 10, title, "".join(parts))


def _colour_scale(x: float, y: float, height: float, top: int) -> str:
    steps = 12
    bands = "".join(f'<rect x="{x}" y="{y + height * k / steps:.1f}" width="12" height="{height / steps + 0.5:.1f}" '
                    f'fill="{_blue(1 - k / (steps - 1))}"/>' for k in range(steps))
    return bands + (f'<text x="{x + 16}" y="{y + 9}">{top:,}</text>'
                    f'<text x="{x + 16}" y="{y + height:.1f}">0</text>')


def hbar_chart(names: list[str], panels: list[tuple[str, Sequence[float], Sequence[float]]], title: str) -> str:
    """Horizontal bars, one row per name, one panel per (x label, values, ±errors)."""
    shown = [s if len(s) <= 24 else s[:23] + "…" for s in map(str, names)]
    room, row = 12 + CHAR_W * max(len(s) for s in shown), 24
    width, height = 360, row * len(names) + 50
    parts = []
    for p, (x_label, values, errors) in enumerate(panels):
        values, errors = np.asarray(values, float), np.asarray(errors, float)
        left = room + p * (width + 20)
        top = float(np.nanmax(values + errors, initial=0.0)) * 1.08 or 1.0
        axis = _Axis(values, (0.0, top), left, left + width, False)
        for value, text in axis.ticks():
            x = float(axis([value])[0])
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="6" y2="{height - 40}" stroke="#e8e8e8"/>'
                         f'<text x="{x:.1f}" y="{height - 26}" text-anchor="middle">{text}</text>')
        for i, (value, error) in enumerate(zip(values, errors)):
            y, end = 10 + row * i, float(axis([value])[0])
            lo, hi = axis([value - error, value + error])
            tip = f"<title>{html.escape(names[i])}: {value:.4f} ± {error:.4f}</title>"
            parts.append(f'<rect x="{left}" y="{y}" width="{max(end - left, 0.5):.1f}" height="{row - 8}" '
                         f'fill="{COLOURS["blue"]}" fill-opacity="0.8">{tip}</rect>'
                         f'<path d="M{lo:.1f},{y + (row - 8) / 2}H{hi:.1f}" stroke="#222" stroke-width="1.2"/>')
            if p == 0:
                parts.append(f'<text x="{room - 6}" y="{y + row / 2:.1f}" text-anchor="end">{html.escape(shown[i])}</text>')
        parts.append(f'<text x="{left + width / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    return _svg(room + len(panels) * (width + 20), height, title, "".join(parts))


def figure_svg(plot_id: str, caption: str, svg: str, notes: Sequence[str] = ()) -> str:
    """A chart as the report's <figure>, its caption saying what was left out."""
    text = caption + "".join(f" ({note})" for note in dict.fromkeys(notes))
    return f'<figure id="{plot_id}">{svg}<figcaption>{html.escape(text)}</figcaption></figure>'
