"""The simulator's timeline as a small SVG chart (no plotting dependency): three stacked panels,
arrivals, backlog per task against the policy's target, and worker tasks (desired and ready)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from infra.scaling import ScalingPlan
from infra.simulate import Result

WIDTH = 900
PANEL_HEIGHT = 150
MARGIN_LEFT = 70
MARGIN_RIGHT = 20
GAP = 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")

Series = tuple[str, Sequence[float], str]


def timeline_svg(result: Result, plan: ScalingPlan) -> str:
    """The whole chart."""
    minutes = [m.minute for m in result.timeline]
    target = plan.target_backlog_per_task
    panels: list[tuple[str, list[Series]]] = [
        (
            "jobs arriving per minute",
            [("arrivals", [m.arrivals for m in result.timeline], COLORS[0])],
        ),
        (
            "BacklogPerTask (scaling metric)",
            [
                ("backlog per task", [m.backlog_per_task for m in result.timeline], COLORS[1]),
                ("target", [target] * len(minutes), "#888888"),
            ],
        ),
        (
            "worker tasks",
            [
                ("desired", [m.desired for m in result.timeline], COLORS[2]),
                ("ready", [m.ready for m in result.timeline], COLORS[3]),
            ],
        ),
    ]
    height = GAP + len(panels) * (PANEL_HEIGHT + GAP)
    title = f"{result.profile}: " + ", ".join(f"{k} {v}" for k, v in result.summary().items())
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN_LEFT}" y="20" font-size="12">{escape(title)}</text>',
    ]
    for index, (label, series) in enumerate(panels):
        top = GAP + index * (PANEL_HEIGHT + GAP)
        parts += _panel(top, label, minutes, series)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(top: int, label: str, minutes: Sequence[int], series: list[Series]) -> list[str]:
    right = WIDTH - MARGIN_RIGHT
    peak = max((max(values, default=0) for _, values, _ in series), default=0) or 1
    span = max(max(minutes, default=1), 1)

    def x(minute: float) -> float:
        return MARGIN_LEFT + (right - MARGIN_LEFT) * minute / span

    def y(value: float) -> float:
        return top + PANEL_HEIGHT - PANEL_HEIGHT * value / (peak * 1.1)

    out = [
        f'<text x="{MARGIN_LEFT}" y="{top - 6}">{escape(label)}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{top + PANEL_HEIGHT}" x2="{right}" '
        f'y2="{top + PANEL_HEIGHT}" stroke="#444"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{top}" x2="{MARGIN_LEFT}" y2="{top + PANEL_HEIGHT}" '
        'stroke="#444"/>',
        f'<text x="{MARGIN_LEFT - 6}" y="{y(peak):.1f}" text-anchor="end">{peak:g}</text>',
        f'<text x="{MARGIN_LEFT - 6}" y="{top + PANEL_HEIGHT}" text-anchor="end">0</text>',
        f'<text x="{right}" y="{top + PANEL_HEIGHT + 14}" text-anchor="end">minute {span}</text>',
    ]
    for offset, (name, values, color) in enumerate(series):
        # Step lines: each value holds for its minute, as a scaling decision does.
        points = []
        for minute, value in zip(minutes, values, strict=True):
            points += [f"{x(minute - 1 if minute else 0):.1f},{y(value):.1f}"]
            points += [f"{x(minute):.1f},{y(value):.1f}"]
        out.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
            f'points="{" ".join(points)}"/>'
        )
        out.append(
            f'<text x="{right - 150 + offset * 75}" y="{top + 12}" fill="{color}">'
            f"{escape(name)}</text>"
        )
    return out
