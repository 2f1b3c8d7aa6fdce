"""Tiny server-side SVG charts (no JavaScript library, no CDN). Every label is escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#d1242f", "#0969da", "#8250df", "#1a7f37", "#bf8700", "#57606a", "#cf222e", "#116329")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000):
        if value <= step:
            return float(step)
    return float(value)


def line_chart(series: dict[str, Sequence[float]], x_labels: Sequence[str], *, title: str, width: int = 640,
               height: int = 220) -> Markup:
    """One polyline per series over a shared x axis (e.g. minutes), with a legend."""
    left, right, top, bottom = 44, 10, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max((len(v) for v in series.values()), default=0)
    peak = _nice_max(max((max(v) for v in series.values() if len(v)), default=0))
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{peak * frac:g}</text>')
    if n:
        step = plot_w / max(n - 1, 1)
        for i in sorted({0, n // 2, n - 1}):
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 12}" text-anchor="{anchor}" class="tick">'
                         f"{escape(x_labels[i]) if i < len(x_labels) else ''}</text>")
        for k, (name, values) in enumerate(series.items()):
            color = PALETTE[k % len(PALETTE)]
            points = " ".join(f"{left + i * step:.1f},{top + plot_h * (1 - v / peak):.1f}" for i, v in enumerate(values))
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}">'
                         f"<title>{escape(name)}: {sum(values):g}</title></polyline>")
            parts.append(f'<rect x="{left + 8 + k * 110}" y="6" width="10" height="10" fill="{color}"/>'
                         f'<text x="{left + 22 + k * 110}" y="15" class="legend">{escape(name)}</text>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(items: Sequence[tuple[str, float]], *, title: str, fmt: Callable[[float], str] = lambda v: f"{v:g}",
              scale_max: float | None = None, width: int = 640, bar_h: int = 20) -> Markup:
    """Horizontal bars, one per (label, value)."""
    label_w, right = 170, 70
    height = max(1, len(items)) * (bar_h + 6) + 10
    peak = scale_max if scale_max is not None else max((v for _, v in items), default=0) or 1.0
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    if not items:
        parts.append(f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" class="empty">no data</text>')
    for i, (label, value) in enumerate(items):
        y = 5 + i * (bar_h + 6)
        w = (width - label_w - right) * (value / peak if peak else 0)
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" class="label">'
                     f"{escape(str(label))}</text>")
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(str(label))}: {escape(fmt(value))}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h * 0.7:.1f}" class="value">{escape(fmt(value))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
