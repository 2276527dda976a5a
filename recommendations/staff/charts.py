"""Small server-side SVG charts for the staff pages: no JavaScript, no CDN, readable without CSS.

Every chart is an <svg role="img"> with a <title> and a text description; the page shows the same
figures in a table beside it, so the numbers are never only in the picture. Labels are escaped
(format_html), so a category or metric name cannot inject markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# Colours chosen for contrast on white (WCAG AA for the text colour) and to stay distinct for
# the common colour-vision deficiencies (Okabe-Ito palette).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
TEXT = "#1b1b1b"
GRID = "#c8c8c8"


@dataclass(frozen=True)
class Segment:
    label: str
    value: float
    colour: str


def stacked_bars(*, title: str, rows: Sequence[tuple[str, Sequence[Segment]]], width: int = 560) -> SafeString:
    """One horizontal bar per row, split into segments (e.g. embedded / pending / failed)."""
    label_width, bar_height, gap, legend_height = 130, 26, 14, 28
    height = legend_height + len(rows) * (bar_height + gap) + 8
    bar_width = width - label_width - 70
    parts: list[SafeString] = []
    legend: dict[str, str] = {}
    for index, (row_label, segments) in enumerate(rows):
        y = legend_height + index * (bar_height + gap)
        total = sum(segment.value for segment in segments)
        parts.append(
            format_html(
                '<text x="0" y="{}" fill="{}" font-size="13">{}</text>',
                y + bar_height * 0.7,
                TEXT,
                row_label,
            )
        )
        x = float(label_width)
        for segment in segments:
            legend.setdefault(segment.label, segment.colour)
            if not total or not segment.value:
                continue
            share = segment.value / total * bar_width
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>',
                    round(x, 1),
                    y,
                    round(share, 1),
                    bar_height,
                    segment.colour,
                    segment.label,
                    _number(segment.value),
                )
            )
            x += share
        if not total:
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{}"/>',
                    label_width,
                    y,
                    bar_width,
                    bar_height,
                    GRID,
                )
            )
        parts.append(
            format_html(
                '<text x="{}" y="{}" fill="{}" font-size="13">{}</text>',
                label_width + bar_width + 6,
                y + bar_height * 0.7,
                TEXT,
                _number(total),
            )
        )
    parts.insert(0, _legend(legend))
    return _svg(title=title, width=width, height=height, body=parts)


def line_chart(
    *, title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], width: int = 560
) -> SafeString:
    """Lines over ordered x values (e.g. a metric per ranker version); None leaves a gap."""
    height, left, right, top, bottom = 240, 48, 16, 30, 30
    values = [value for points in series.values() for value in points if value is not None]
    if not values or not x_labels:
        return _svg(
            title=title,
            width=width,
            height=60,
            body=[format_html('<text x="0" y="30" fill="{}" font-size="13">No data yet.</text>', TEXT)],
        )
    plot = _Plot(
        left=left,
        top=top,
        plot_height=height - top - bottom,
        step=(width - left - right) / max(len(x_labels) - 1, 1),
        low=min(0.0, min(values)),
        high=max(values) or 1.0,
    )
    legend = {name: PALETTE[number % len(PALETTE)] for number, name in enumerate(series)}
    parts = [
        _legend(legend),
        *_line_grid(plot, right_edge=width - right),
        *_line_x_labels(plot, x_labels, baseline=height - 10),
    ]
    for name, points in series.items():
        parts.extend(_line_series(plot, name, points, legend[name]))
    return _svg(title=title, width=width, height=height, body=parts)


@dataclass(frozen=True)
class _Plot:
    """The drawing area of a line chart and its value range."""

    left: int
    top: int
    plot_height: int
    step: float  # pixels between two x values
    low: float
    high: float

    def point(self, index: int, value: float) -> tuple[float, float]:
        """Where the value at the index-th x lies, in pixels."""
        span = self.high - self.low or 1.0
        return self.left + index * self.step, self.top + self.plot_height - (value - self.low) / span * self.plot_height


def _line_grid(plot: _Plot, *, right_edge: int) -> list[SafeString]:
    """Horizontal lines at the bottom, middle and top of the value range, labelled on the left."""
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        tick = plot.low + (plot.high - plot.low) * fraction
        _x, y = plot.point(0, tick)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}"/>'
                '<text x="{}" y="{}" fill="{}" font-size="11" text-anchor="end">{}</text>',
                plot.left,
                right_edge,
                round(y, 1),
                round(y, 1),
                GRID,
                plot.left - 4,
                round(y + 4, 1),
                TEXT,
                _number(tick),
            )
        )
    return parts


def _line_x_labels(plot: _Plot, x_labels: Sequence[str], *, baseline: int) -> list[SafeString]:
    return [
        format_html(
            '<text x="{}" y="{}" fill="{}" font-size="11" text-anchor="middle">{}</text>',
            round(plot.point(index, plot.low)[0], 1),
            baseline,
            TEXT,
            label,
        )
        for index, label in enumerate(x_labels)
    ]


def _line_series(plot: _Plot, name: str, points: Sequence[float | None], colour: str) -> list[SafeString]:
    """One series: a line through its values (when there are two or more) and a dot at each."""
    known = [(index, value) for index, value in enumerate(points) if value is not None]
    coordinates = [plot.point(index, value) for index, value in known]
    parts = []
    if len(coordinates) > 1:
        parts.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>',
                " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates),
                colour,
            )
        )
    for (x, y), (_index, value) in zip(coordinates, known, strict=True):
        parts.append(
            format_html(
                '<circle cx="{}" cy="{}" r="4" fill="{}"><title>{}: {}</title></circle>',
                round(x, 1),
                round(y, 1),
                colour,
                name,
                _number(value),
            )
        )
    return parts


def _legend(entries: dict[str, str]) -> SafeString:
    x = 0
    parts = []
    for label, colour in entries.items():
        parts.append(
            format_html(
                '<rect x="{}" y="4" width="12" height="12" fill="{}"/>'
                '<text x="{}" y="15" fill="{}" font-size="12">{}</text>',
                x,
                colour,
                x + 16,
                TEXT,
                label,
            )
        )
        # About 7.5 px per character at 12 px, plus the swatch and a gap.
        x += 34 + round(7.5 * len(label))
    return format_html_join("", "{}", ((part,) for part in parts))


def _svg(*, title: str, width: int, height: int, body: list[SafeString]) -> SafeString:
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        title,
        width,
        height,
        title,
        format_html_join("", "{}", ((part,) for part in body)),
    )


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3f}"
