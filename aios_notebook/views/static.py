"""The views' static form: HTML with plain Plotly figures, readable without a kernel.

Where plotly.js goes: ``view.snapshot()`` inlines it by default (a self-contained piece a report
can embed offline; pass ``include_plotlyjs=False`` when the page already has it). The text/html
fallback that every displayed view carries (see :func:`display_mode`) inlines it only in the
first fallback of the kernel, like Plotly's own ``notebook`` renderer, so a notebook holds one
copy: an exported notebook then needs that first output kept.

Display modes (``AIOS_VIEWS_DISPLAY`` environment variable, or :func:`display_mode`):

- ``auto`` (default): in a Jupyter kernel a view displays as its live widget with the static HTML
  beside it as the fallback (nbconvert picks the HTML when no widget state was saved); elsewhere
  (plain IPython, scripts) as static HTML.
- ``live``: widget plus fallback, even outside a kernel.
- ``static``: static HTML only, e.g. for report runs through nbclient/papermill, which save widget
  state and would otherwise export widget placeholders that render nothing offline.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import plotly.io as pio

from ..exceptions import ConfigurationError
from .markup import esc
from .theme import STYLESHEET

__all__ = [
    "DISPLAY_MODES",
    "display_mode",
    "figure_html",
    "in_kernel",
    "plotlyjs_for_fallback",
    "standalone_page",
    "wants_static",
]

DISPLAY_MODES = ("auto", "live", "static")
_ENV = "AIOS_VIEWS_DISPLAY"
_mode: str | None = None
_fallback_lock = threading.Lock()
_fallback_with_plotlyjs = False

_CONFIG = {"displaylogo": False, "responsive": True}


def display_mode(mode: str | None = None) -> str:
    """Get, or set with ``mode``, how views display: ``auto``, ``live`` or ``static``."""
    global _mode
    if mode is not None:
        if mode not in DISPLAY_MODES:
            raise ConfigurationError(f"display mode must be one of {', '.join(DISPLAY_MODES)}, not {mode!r}")
        _mode = mode
        return _mode
    if _mode is not None:
        return _mode
    env = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if env not in DISPLAY_MODES:
        raise ConfigurationError(f"{_ENV} must be one of {', '.join(DISPLAY_MODES)}, not {env!r}")
    return env


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where widget front ends can exist)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def wants_static() -> bool:
    """Whether displaying a view should show only its static form."""
    mode = display_mode()
    return mode == "static" or (mode == "auto" and not in_kernel())


def plotlyjs_for_fallback() -> bool:
    """True for the first text/html fallback of the process (it carries plotly.js), then False."""
    global _fallback_with_plotlyjs
    with _fallback_lock:
        first = not _fallback_with_plotlyjs
        _fallback_with_plotlyjs = True
        return first


def figure_html(figure: dict[str, Any], *, include_plotlyjs: bool | str = False) -> str:
    """One figure (a figure dict) as an HTML ``<div>`` drawn by plotly.js."""
    return pio.to_html(
        figure,
        include_plotlyjs=include_plotlyjs,
        full_html=False,
        config=_CONFIG,
        validate=False,
        div_id=f"aios-{uuid.uuid4().hex[:12]}",
        default_width="100%",
    )


def standalone_page(title: str, body: str) -> str:
    """A whole HTML document around a snapshot (light page; the panels follow the reader's theme)."""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title>{STYLESHEET}"
        "<style>body{margin:16px;background:#fff}</style></head>"
        f"<body>{body}</body></html>\n"
    )
