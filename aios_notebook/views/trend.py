"""SuccessRateTrend: the server's success rate, a rolling rate from job outcomes, failures and gaps."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..exceptions import ConfigurationError
from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames, read_table
from .markup import esc
from .theme import (
    PALETTE,
    axis,
    base_layout,
    empty_figure,
    format_duration,
    format_number,
    to_naive_utc,
)

if TYPE_CHECKING:  # the name only: views import history when given an archive
    from ..history import Archive

__all__ = ["WINDOWS", "SuccessRateTrend", "rolling_success_rate"]

#: the rolling windows offered by the picker (label -> seconds); the server uses 30 minutes
WINDOWS: dict[str, float] = {"5 min": 300.0, "15 min": 900.0, "30 min": 1800.0, "1 h": 3600.0, "6 h": 21600.0}
_COMPLETED = "processing_job_completed"
_FAILED = "processing_job_failed"
_GRID_POINTS = 300
_MAX_FAILURE_MARKERS = 400
_MAX_GAPS = 30


def rolling_success_rate(ok_times: np.ndarray, failed_times: np.ndarray, at: np.ndarray,
                         window_s: float) -> np.ndarray:
    """Percent of outcomes that succeeded in the window ``(t - window, t]`` for each ``t`` in ``at``.

    All times are int64 nanoseconds; NaN where the window holds no outcome.
    """
    ok_sorted, failed_sorted = np.sort(ok_times), np.sort(failed_times)
    width = np.int64(window_s * 1e9)

    def in_window(sorted_times: np.ndarray) -> np.ndarray:
        return (np.searchsorted(sorted_times, at, side="right")
                - np.searchsorted(sorted_times, at - width, side="right"))

    ok, failed = in_window(ok_sorted), in_window(failed_sorted)
    total = ok + failed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * ok / np.maximum(total, 1), np.nan)


def _ns(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True, errors="coerce").dropna()
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _outcomes(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """Completion and failure times: from the job events, else from the jobs' completed/failed_at."""
    events = frames["job_events"]
    if not events.empty or "jobs" not in frames.tables:
        kind = events["event"].astype("string")
        return (_ns(events.loc[(kind == _COMPLETED).fillna(False).to_numpy(), "timestamp"]),
                _ns(events.loc[(kind == _FAILED).fillna(False).to_numpy(), "timestamp"]))
    # a store filled from REST snapshots has jobs but no job events
    jobs = frames["jobs"]
    return _ns(jobs["completed_at"]), _ns(jobs["failed_at"])


class SuccessRateTrend(View):
    """The server's ``success_rate`` over time, a success rate computed from job completions and
    failures over a selectable rolling window, failure markers, and shaded gaps in the stream.

    Args:
        store: the EventStore (or a client), or an ``Archive`` for a static figure of its history.
        window: rolling window, a key of :data:`WINDOWS` (e.g. ``"30 min"``) or seconds.
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "Success rate"
    tables: ClassVar[tuple[str, ...]] = ("metrics", "job_events")
    reads_gaps: ClassVar[bool] = True
    slots: ClassVar[tuple[str, ...]] = ("summary", "figure")

    def __init__(self, store: StoreSource | Archive, *, window: str | float = "30 min", **kwargs: Any) -> None:
        from ..history.sources import view_source

        # an Archive: only the outcomes and the server's rate are read from it (a static figure)
        store = view_source(store, columns={"metrics": ["timestamp", "success_rate"],
                                            "job_events": ["timestamp", "event"]},
                            filters={"job_events": {"event": [_COMPLETED, _FAILED]}})
        super().__init__(store, **kwargs)
        self._window_lock = threading.Lock()
        self._window_s = self._check_window(window)
        self._picker: widgets.Dropdown | None = None

    @staticmethod
    def _check_window(window: str | float) -> float:
        if isinstance(window, str):
            if window not in WINDOWS:
                raise ConfigurationError(f"window must be one of {', '.join(WINDOWS)} or seconds, not {window!r}")
            return WINDOWS[window]
        try:
            seconds = float(window)
        except (TypeError, ValueError):
            raise ConfigurationError(f"window must be a label or a number of seconds, not {window!r}") from None
        if not seconds > 0:
            raise ConfigurationError(f"window must be positive, not {window!r}")
        return seconds

    @property
    def window(self) -> float:
        """The rolling window in seconds."""
        with self._window_lock:
            return self._window_s

    @window.setter
    def window(self, window: str | float) -> None:
        seconds = self._check_window(window)
        with self._window_lock:
            self._window_s = seconds
        if self._picker is not None and seconds in WINDOWS.values() and self._picker.value != seconds:
            self._picker.value = seconds
        self._changed()

    def _controls(self) -> list[widgets.Widget]:
        options = [(label, seconds) for label, seconds in WINDOWS.items()]
        if self.window not in WINDOWS.values():
            options.append((format_duration(self.window), self.window))
        self._picker = widgets.Dropdown(options=options, value=self.window, description="rolling window",
                                        style={"description_width": "initial"}, layout=widgets.Layout(width="240px"))
        self._picker.observe(self._on_pick, names="value")
        return [self._picker]

    def _on_pick(self, change: dict[str, Any]) -> None:
        with self._window_lock:
            self._window_s = float(change["new"])
        self._changed()

    def _read(self) -> Frames:
        frames = super()._read()
        if frames["job_events"].empty:
            frames.tables["jobs"] = read_table(self.store, "jobs")
        return frames

    def _render(self, frames: Frames) -> Rendered:
        window = self.window
        window_label = next((k for k, v in WINDOWS.items() if v == window), format_duration(window))
        metrics = frames["metrics"]
        server_t = pd.to_datetime(metrics["timestamp"], utc=True, errors="coerce")
        server_rate = pd.to_numeric(metrics["success_rate"], errors="coerce")
        server = pd.DataFrame({"t": server_t, "rate": server_rate}).dropna().sort_values("t")
        ok_times, failed_times = _outcomes(frames)
        now = frames.now
        values: dict[str, Any] = {"window_s": window, "server_points": len(server), "completed": len(ok_times),
                                  "failed": len(failed_times), "gaps": 0}
        if server.empty and not len(ok_times) and not len(failed_times):
            message = "waiting for metrics and job outcomes..."
            return Rendered(empty_figure(message, height=320, uirevision="trend"), {"summary": ""}, values)

        starts = [server["t"].iloc[0].value] if not server.empty else []
        starts += [int(a.min()) for a in (ok_times, failed_times) if len(a)]
        start = min(starts)
        end_candidates = [now.value] if now is not None else []
        end_candidates += [int(a.max()) for a in (ok_times, failed_times) if len(a)]
        if not server.empty:
            end_candidates.append(server["t"].iloc[-1].value)
        end = max(end_candidates)
        grid = np.linspace(start, max(end, start + 1), _GRID_POINTS).astype(np.int64)
        computed = rolling_success_rate(ok_times, failed_times, grid, window)

        data: list[dict[str, Any]] = []
        if not server.empty:
            data.append({"type": "scatter", "mode": "lines", "name": "server success_rate",
                         "x": to_naive_utc(server["t"]), "y": server["rate"],
                         "line": {"color": PALETTE["blue"], "width": 2, "shape": "hv"},
                         "hovertemplate": "server: %{y:.1f} %<br>%{x|%Y-%m-%d %H:%M:%S} UTC<extra></extra>"})
        if len(ok_times) or len(failed_times):
            data.append({"type": "scatter", "mode": "lines", "name": f"from job outcomes ({window_label} window)",
                         "x": pd.to_datetime(grid), "y": computed, "connectgaps": False,
                         "line": {"color": PALETTE["green"], "width": 2, "dash": "dot"},
                         "hovertemplate": "computed: %{y:.1f} %<br>%{x|%Y-%m-%d %H:%M:%S} UTC<extra></extra>"})
        if len(failed_times):
            marks = np.sort(failed_times)[-_MAX_FAILURE_MARKERS:]
            data.append({"type": "scatter", "mode": "markers", "name": "job failure",
                         "x": pd.to_datetime(marks), "y": rolling_success_rate(ok_times, failed_times, marks, window),
                         "marker": {"color": PALETTE["red"], "symbol": "x-thin", "size": 8,
                                    "line": {"color": PALETTE["red"], "width": 2}},
                         "hovertemplate": "job failed<br>%{x|%Y-%m-%d %H:%M:%S} UTC<extra></extra>"})
        shapes, annotations, n_gaps = self._gaps(frames, now, start)
        values["gaps"] = n_gaps
        observed = np.concatenate([server["rate"].to_numpy(dtype=float), computed[~np.isnan(computed)]])
        low = float(np.nanmin(observed)) if observed.size else 90.0
        layout = base_layout(height=340, uirevision="trend", shapes=shapes, annotations=annotations)
        layout["xaxis"] = axis("time (UTC)", type="date")
        layout["yaxis"] = axis("success rate (%)", range=[max(0.0, np.floor(low - 3)), 100.5])
        last_server = float(server["rate"].iloc[-1]) if not server.empty else float("nan")
        finite = computed[~np.isnan(computed)]
        last_computed = float(finite[-1]) if finite.size else float("nan")
        values.update(last_server_rate=last_server, last_computed_rate=last_computed)
        summary = (f'<div class="aios-summary">server {format_number(last_server, decimals=1, unit="%")} · '
                   f'from {len(ok_times) + len(failed_times):,} job outcomes over {esc(window_label)}: '
                   f'{format_number(last_computed, decimals=1, unit="%")} · {len(failed_times):,} failures'
                   + (f" · {n_gaps} gap{'s' if n_gaps != 1 else ''} in the stream" if n_gaps else "") + "</div>")
        return Rendered({"data": data, "layout": layout}, {"summary": summary}, values)

    @staticmethod
    def _gaps(frames: Frames, now: pd.Timestamp | None,
              start_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Grey bands where the stream had no data (an open gap runs to ``now``)."""
        gaps = frames.gaps
        if gaps.empty:
            return [], [], 0
        begin = pd.to_datetime(gaps["start"], utc=True, errors="coerce")
        finish = pd.to_datetime(gaps["end"], utc=True, errors="coerce")
        if now is not None:
            finish = finish.fillna(now)
        table = pd.DataFrame({"start": begin, "end": finish, "reason": gaps["reason"]}).dropna(subset=["start", "end"])
        table = table.sort_values("start").tail(_MAX_GAPS)
        shapes, annotations = [], []
        for gap in table.itertuples(index=False):
            x0, x1 = to_naive_utc(gap.start), to_naive_utc(gap.end)
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
                           "fillcolor": "rgba(139, 148, 158, 0.25)", "line": {"width": 0}, "layer": "below"})
            reason = str(gap.reason) if isinstance(gap.reason, str) and gap.reason else "no data"
            annotations.append({"x": x0, "xref": "x", "y": 1, "yref": "paper", "xanchor": "left", "yanchor": "top",
                                "text": f"gap: {esc(reason[:40])}", "showarrow": False,
                                "font": {"size": 10, "color": PALETTE["slate"]}})
        return shapes, annotations, len(table)
