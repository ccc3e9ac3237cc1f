"""Charts as inline SVG, drawn on the server: no script, no network, legible in Airflow's light and dark themes.

Colours are CSS classes (``series-<name>``, ``axis``, ``grid``) that the page styles from its theme's variables, so
one drawing serves both themes. Every mark carries a ``<title>`` (its day, series and value) for hover and screen
readers, and the numbers are in the page's tables and CSV as well. Labels are escaped (``markupsafe``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 26


def _nice_max(value: float) -> float:
    """A round top for an axis (1, 2, 5 x 10^n) at or above ``value``."""
    if value <= 0:
        return 1
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _frame(top: float, label: Callable[[float], str], days: Sequence[str]) -> list[str]:
    inner_h = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(5):
        value = top * i / 4
        y = TOP + inner_h - inner_h * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(label(value))}</text>'
        )
    if days:
        step = max(1, len(days) // 6)
        inner_w = WIDTH - LEFT - RIGHT
        for i in range(0, len(days), step):
            x = LEFT + inner_w * (i + 0.5) / len(days)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(days[i][5:])}</text>'
            )
    return parts


def _svg(title: str, parts: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )


def stacked_bars(
    title: str,
    days: Sequence[str],
    values: Mapping[str, Mapping[str, int]],
    series: Sequence[tuple[str, str]],
) -> Markup:
    """One bar a day, stacked by series (``(key, label)``, bottom first)."""
    top = _nice_max(max((sum(values[d].get(k, 0) for k, _ in series) for d in days), default=0))
    parts = _frame(top, lambda v: f"{v:g}", days)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / max(1, len(days))
    bar = max(1.0, slot * 0.7)
    for i, day in enumerate(days):
        base: float = TOP + inner_h
        for key, label in series:
            n = values[day].get(key, 0)
            if not n:
                continue
            h = inner_h * n / top
            base -= h
            x = LEFT + slot * i + (slot - bar) / 2
            parts.append(
                f'<rect class="series-{escape(key)}" x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{escape(day)}: {escape(label)} {n}</title></rect>"
            )
    return _svg(title, parts)


def lines(
    title: str,
    days: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    label: Callable[[float], str],
) -> Markup:
    """One line per series (``(key, label, a value or None per day)``); a day without a value is a gap."""
    top = _nice_max(max((v for _, _, vs in series for v in vs if v is not None), default=0))
    parts = _frame(top, label, days)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / max(1, len(days))
    for key, name, values in series:
        run: list[str] = []
        for i, value in enumerate([*values, None]):
            if value is not None:
                x, y = LEFT + slot * (i + 0.5), TOP + inner_h - inner_h * value / top
                run.append(f"{x:.1f},{y:.1f}")
                parts.append(
                    f'<circle class="series-{escape(key)}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                    f"<title>{escape(days[i])}: {escape(name)} {escape(label(value))}</title></circle>"
                )
            elif run:
                parts.append(f'<polyline class="line series-{escape(key)}" points="{" ".join(run)}"/>')
                run = []
    return _svg(title, parts)


def duration(seconds: float | None) -> str:
    """A time to decision as a person reads it: 45s, 12m, 3.5h, 2.1d."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h".replace(".0h", "h")
    return f"{seconds / 86400:.1f}d".replace(".0d", "d")
