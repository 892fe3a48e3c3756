"""The views' one theme: status colours, the Plotly layout base, the stylesheet, number formats.

Readable in JupyterLab's light and dark themes: figures have transparent backgrounds, the live
widget re-colours text and grid lines from JupyterLab's CSS variables (``--jp-ui-font-color1`` ...)
in the browser, and the static form uses a mid-grey that reads on white and on near-black. The HTML
panels use the same CSS variables with light-theme fallbacks. Status colours are mid-tone hues
chosen to stand out on both backgrounds.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BUCKET_COLORS",
    "BUCKET_ORDER",
    "PALETTE",
    "SEVERITY_COLORS",
    "STATIC_FONT_COLOR",
    "STYLESHEET",
    "axis",
    "base_layout",
    "count_axis",
    "empty_figure",
    "format_age",
    "format_duration",
    "format_number",
    "format_signed",
    "format_time",
    "status_bucket",
    "status_buckets",
    "status_color",
    "to_naive_utc",
]

_PLOT_FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
#: text colour of static figures: 4.6:1 on white, 4.4:1 on JupyterLab's dark background
STATIC_FONT_COLOR = "#7b8490"
_GRID = "rgba(128, 128, 128, 0.22)"

PALETTE = {
    "green": "#2f9e5b",
    "blue": "#3b82d6",
    "red": "#d64545",
    "amber": "#e0962b",
    "grey": "#8b949e",
    "slate": "#5f6b7a",
    "purple": "#8a63d2",
    "teal": "#1fa2a8",
}

#: the four buckets every status falls in (progress bars, DAG runs, job counts)
BUCKET_ORDER = ("completed", "running", "failed", "pending")
BUCKET_COLORS = {
    "completed": PALETTE["green"],
    "running": PALETTE["blue"],
    "failed": PALETTE["red"],
    "pending": PALETTE["grey"],
}
SEVERITY_COLORS = {
    "critical": "#a11d2b",
    "error": PALETTE["red"],
    "warning": PALETTE["amber"],
    "info": PALETTE["blue"],
}

# status words seen from AIOS jobs, agents, Airflow runs and steps -> bucket
_BUCKET_OF = {
    "completed": "completed", "complete": "completed", "success": "completed",
    "succeeded": "completed", "done": "completed", "finished": "completed",
    "running": "running", "processing": "running", "working": "running", "in_progress": "running",
    "busy": "running", "retrying": "running", "up_for_retry": "running", "restarting": "running",
    "failed": "failed", "failure": "failed", "error": "failed", "upstream_failed": "failed",
    "cancelled": "failed", "canceled": "failed", "timeout": "failed", "offline": "failed",
    "pending": "pending", "queued": "pending", "scheduled": "pending", "idle": "pending",
    "waiting": "pending", "none": "pending", "skipped": "pending", "removed": "pending",
}
# statuses with a colour of their own (not just their bucket's)
_OWN_COLOR = {
    "retrying": PALETTE["amber"],
    "up_for_retry": PALETTE["amber"],
    "offline": PALETTE["slate"],
    "skipped": PALETTE["purple"],
    "upstream_failed": "#b5552f",
    "idle": PALETTE["teal"],
}


def status_bucket(status: object) -> str:
    """Map any job / agent / run / step status to completed, running, failed or pending."""
    if status is None or (isinstance(status, float) and math.isnan(status)):
        return "pending"
    return _BUCKET_OF.get(str(status).strip().lower(), "pending")


def status_buckets(statuses: pd.Series) -> pd.Series:
    """:func:`status_bucket` of a whole column, computed once per distinct status."""
    codes, uniques = pd.factorize(statuses.astype("object"), use_na_sentinel=True)
    buckets = np.array([status_bucket(status) for status in uniques] + ["pending"], dtype=object)
    return pd.Series(buckets[codes], index=statuses.index)  # code -1 (missing) -> the last, "pending"


def status_color(status: object) -> str:
    """The colour of a status (its own colour if it has one, else its bucket's)."""
    key = "" if status is None else str(status).strip().lower()
    return _OWN_COLOR.get(key) or BUCKET_COLORS[status_bucket(status)]


def base_layout(*, height: int = 360, uirevision: str = "view", **extra: Any) -> dict[str, Any]:
    """The layout every figure starts from (transparent, compact, legend on top)."""
    layout: dict[str, Any] = {
        "height": height,
        "autosize": True,
        "margin": {"l": 60, "r": 20, "t": 36, "b": 48},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": _PLOT_FONT, "size": 12, "color": STATIC_FONT_COLOR},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "bgcolor": "rgba(0,0,0,0)"},
        "hoverlabel": {"font": {"family": _PLOT_FONT}},
        # keeps the user's zoom and legend clicks across live updates
        "uirevision": uirevision,
        "colorway": [PALETTE[c] for c in ("blue", "green", "amber", "purple", "teal", "red", "slate")],
    }
    layout.update(extra)
    return layout


def axis(title: str, **extra: Any) -> dict[str, Any]:
    """An axis with the theme's grid and a title that names its unit."""
    spec: dict[str, Any] = {
        "title": {"text": title, "standoff": 6},
        "gridcolor": _GRID,
        "zerolinecolor": _GRID,
        "linecolor": _GRID,
        "automargin": True,
    }
    spec.update(extra)
    return spec


def count_axis(title: str, largest: float, **extra: Any) -> dict[str, Any]:
    """An axis of counts: whole-number ticks (one per unit while the counts are small)."""
    spec = axis(title, rangemode="tozero", tickformat=",d", **extra)
    if largest <= 8:
        spec.update(dtick=1, range=[0, max(1.0, float(largest)) * 1.08])
    return spec


def empty_figure(message: str = "waiting for events...", *, height: int = 220, uirevision: str = "view") -> dict[str, Any]:
    """A figure with no data and a centred message (the empty state)."""
    layout = base_layout(height=height, uirevision=uirevision)
    layout["xaxis"] = {"visible": False}
    layout["yaxis"] = {"visible": False}
    layout["annotations"] = [
        {"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
         "font": {"size": 15}},
    ]
    return {"data": [], "layout": layout}


def to_naive_utc(values: Any) -> Any:
    """Timestamps -> naive UTC (Plotly draws the clock time it is given: the axis says UTC)."""
    series = pd.to_datetime(values, utc=True, errors="coerce")
    if isinstance(series, pd.Series):
        return series.dt.tz_localize(None)
    if isinstance(series, pd.Timestamp):
        return series.tz_localize(None)
    return series.tz_localize(None)


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    if stamp is None or pd.isna(stamp):
        return None
    return stamp.to_pydatetime(warn=False)


def format_time(value: Any, *, seconds: bool = True) -> str:
    """``2023-01-01 00:05:00 UTC`` style (empty for missing)."""
    when = _as_datetime(value)
    if when is None:
        return ""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"


def format_duration(seconds: Any) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min`` (empty for missing)."""
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return ""
    if math.isnan(total):
        return ""
    if total < 0:
        total = 0.0
    if total < 10:
        return f"{total:.1f} s"
    if total < 60:
        return f"{total:.0f} s"
    minutes, secs = divmod(round(total), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def format_age(value: Any, now: Any) -> str:
    """How long before ``now`` a timestamp is: ``3 min 20 s ago`` (empty for missing)."""
    then, current = _as_datetime(value), _as_datetime(now)
    if then is None or current is None:
        return ""
    return format_duration((current - then).total_seconds()) + " ago"


def format_number(value: Any, *, decimals: int = 0, unit: str = "") -> str:
    """Thousands separators, fixed decimals and a unit; an en dash for missing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(number):
        return "–"
    text = f"{number:,.{decimals}f}"
    return f"{text}{unit}" if unit in ("%", "") else f"{text} {unit}"


def format_signed(value: Any, *, decimals: int = 0, unit: str = "") -> str:
    """A change with its sign: ``+5``, ``−0.2 %`` (empty for missing or zero-less input)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if math.isnan(number):
        return ""
    sign = "+" if number > 0 else ("−" if number < 0 else "±")
    text = f"{sign}{abs(number):,.{decimals}f}"
    if unit:
        text += unit if unit == "%" else f" {unit}"
    return text


# One stylesheet for every HTML panel. Colours come from JupyterLab's CSS variables (so the panels
# follow its light and dark themes); the fallbacks make the static HTML readable on a white page.
STYLESHEET = """
<style>
.aios-view { font-family: var(--jp-ui-font-family, -apple-system, 'Segoe UI', Roboto, sans-serif);
  color: var(--jp-ui-font-color1, #1f2328); font-size: 13px; line-height: 1.4; }
.aios-view .aios-muted { color: var(--jp-ui-font-color2, #59636e); }
.aios-view h3.aios-title { font-size: 14px; font-weight: 600; margin: 4px 0 6px 0; }
.aios-view .aios-summary { margin: 2px 0 8px 0; color: var(--jp-ui-font-color2, #59636e); }
.aios-view .aios-empty { padding: 14px; text-align: center; font-style: italic;
  color: var(--jp-ui-font-color2, #59636e); border: 1px dashed var(--jp-border-color2, #d0d7de);
  border-radius: 6px; }
.aios-view table.aios-table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
.aios-view table.aios-table th { text-align: left; font-weight: 600; padding: 4px 8px;
  border-bottom: 1px solid var(--jp-border-color1, #d0d7de); color: var(--jp-ui-font-color2, #59636e); }
.aios-view table.aios-table td { padding: 4px 8px; vertical-align: top;
  border-bottom: 1px solid var(--jp-border-color3, #eaeef2); }
.aios-view .aios-bar { position: relative; height: 10px; min-width: 90px; border-radius: 5px; overflow: hidden;
  background: var(--jp-layout-color3, #e6e9ed); display: flex; }
.aios-view .aios-bar > span { display: block; height: 100%; }
.aios-view .aios-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px;
  vertical-align: baseline; }
.aios-view .aios-chip { display: inline-block; padding: 0 7px; margin: 1px 3px 1px 0; border-radius: 9px;
  font-size: 11.5px; border: 1px solid var(--jp-border-color2, #d0d7de); color: var(--jp-ui-font-color1, #1f2328); }
.aios-view .aios-pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 11.5px;
  color: #fff; font-weight: 600; }
.aios-view .aios-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 8px; }
.aios-view .aios-card { border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 8px; padding: 8px 10px;
  background: var(--jp-layout-color1, #ffffff); }
.aios-view .aios-card .aios-card-title { font-weight: 600; }
.aios-view .aios-kv { display: grid; grid-template-columns: auto auto; gap: 0 10px; font-size: 12px; }
.aios-view .aios-tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 8px; }
.aios-view .aios-tile { border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 8px; padding: 8px 12px;
  background: var(--jp-layout-color1, #ffffff); }
.aios-view .aios-tile-label { font-size: 11.5px; text-transform: uppercase; letter-spacing: 0.04em;
  color: var(--jp-ui-font-color2, #59636e); }
.aios-view .aios-tile-value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.aios-view .aios-tile-change { font-size: 12px; font-variant-numeric: tabular-nums; }
.aios-view .aios-up { color: #2f9e5b; } .aios-view .aios-down { color: #d64545; }
.aios-view .aios-badge { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: center; padding: 6px 10px;
  border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 8px; font-size: 12.5px;
  background: var(--jp-layout-color1, #ffffff); }
.aios-view .aios-feed-item { border-left: 4px solid var(--jp-border-color2, #d0d7de); padding: 4px 10px;
  margin: 0 0 8px 0; }
.aios-view .aios-feed-item.aios-rule { border-left-style: dashed; }
.aios-view .aios-feed-meta { font-size: 11.5px; color: var(--jp-ui-font-color2, #59636e); }
.aios-view .aios-error { color: #d64545; font-size: 12px; }
.aios-view svg.aios-spark { display: block; margin-top: 2px; }
</style>
"""
