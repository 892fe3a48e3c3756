"""Small HTML pieces the views' panels are built from (tables, bars, pills, sparklines).

Every text that comes from the stream goes through :func:`esc`: event fields are untrusted.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .theme import BUCKET_COLORS, BUCKET_ORDER

__all__ = [
    "bar",
    "chip",
    "dot",
    "empty",
    "esc",
    "pill",
    "sparkline",
    "stacked_bar",
    "table",
    "text_of",
]


def text_of(value: Any) -> str:
    """A cell value as text: missing values (None, NaN, NaT, pd.NA) become ''."""
    if value is None:
        return ""
    try:
        if value != value:  # NaN, NaT
            return ""
    except (TypeError, ValueError):  # pd.NA and array-likes refuse comparison
        pass
    if type(value).__name__ == "NAType":
        return ""
    return str(value)


def esc(value: Any) -> str:
    """HTML-escaped text of a value (missing -> '')."""
    return html.escape(text_of(value), quote=True)


def _percent(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(number):
        return 0.0
    return max(0.0, min(100.0, number))


def bar(percent: Any, color: str, *, label: str | None = None) -> str:
    """A thin progress bar filled to ``percent`` (0-100), with an optional label after it."""
    width = _percent(percent)
    text = f'<span class="aios-muted" style="font-size:11.5px">{esc(label)}</span>' if label else ""
    return (
        f'<div style="display:flex;align-items:center;gap:6px">'
        f'<div class="aios-bar" data-value="{width:.1f}" title="{width:.0f} %">'
        f'<span style="width:{width:.1f}%;background:{color}"></span></div>{text}</div>'
    )


def stacked_bar(counts: dict[str, Any], *, title: str = "") -> str:
    """A bar split into the completed / running / failed / pending buckets."""
    numbers = {key: max(0.0, float(counts.get(key) or 0)) for key in BUCKET_ORDER}
    total = sum(numbers.values())
    tooltip = " · ".join(f"{key} {int(numbers[key])}" for key in BUCKET_ORDER)
    segments = "".join(
        f'<span data-bucket="{key}" style="width:{100 * numbers[key] / total:.2f}%;'
        f'background:{BUCKET_COLORS[key]}"></span>'
        for key in BUCKET_ORDER
        if total and numbers[key]
    )
    return f'<div class="aios-bar" title="{esc(title + " " if title else "")}{tooltip}">{segments}</div>'


def dot(color: str, *, title: str = "") -> str:
    """A coloured status dot."""
    return f'<span class="aios-dot" style="background:{color}" title="{esc(title)}"></span>'


def pill(text: Any, color: str) -> str:
    """White text on a coloured rounded label (statuses, severities, sources)."""
    return f'<span class="aios-pill" style="background:{color}">{esc(text)}</span>'


def chip(text: Any) -> str:
    """An outlined tag."""
    return f'<span class="aios-chip">{esc(text)}</span>'


def empty(message: str = "waiting for events...") -> str:
    """The empty state of a panel."""
    return f'<div class="aios-empty">{esc(message)}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css_class: str = "") -> str:
    """A table; the cells are HTML already (escape stream text with :func:`esc` first)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="aios-table {css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def sparkline(values: Sequence[Any], *, color: str, width: int = 120, height: int = 24) -> str:
    """An inline SVG line of the last values (no Plotly needed; empty for fewer than 2 points)."""
    points = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            points.append(number)
    if len(points) < 2:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(
        f"{i * step:.1f},{height - 2 - (p - low) / span * (height - 4):.1f}" for i, p in enumerate(points)
    )
    return (
        f'<svg class="aios-spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-hidden="true"><polyline fill="none" stroke="{color}" stroke-width="1.6" '
        f'points="{coords}"/></svg>'
    )
