"""DagProgressView: a run picker, stacked progress bars per run, and a Gantt that works mid-run.

Airflow's Gantt breaks on runs still in progress (running tasks have no end date). Here a running
step's bar ends at the store's ``now`` (the latest event time), so it grows as events arrive, and
pending steps are listed with a marker so the whole DAG is visible from the first event.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames
from .markup import empty, esc, pill, stacked_bar, table, text_of
from .theme import (
    BUCKET_ORDER,
    PALETTE,
    axis,
    base_layout,
    empty_figure,
    format_duration,
    status_buckets,
    status_color,
    to_naive_utc,
)

__all__ = ["AUTO", "DagProgressView", "step_bars"]

#: the picker's "follow the newest run" choice
AUTO = "__latest__"
_MAX_RUNS_LISTED = 8
_MAX_RUNS_PICKABLE = 60
_STEP_ORDER = ("success", "running", "up_for_retry", "failed", "upstream_failed", "skipped", "queued", "pending")


def _runs(frames: Frames) -> pd.DataFrame:
    """Runs newest first, with completed/running/failed/pending counts (from the steps if missing)."""
    runs = frames["dag_runs"]
    steps = frames["dag_steps"]
    if runs.empty and not steps.empty:  # step events seen before any run event
        runs = steps.groupby("run_id", as_index=False).agg(dag_id=("dag_id", "first"))
        runs = runs.assign(status=pd.NA, started_at=pd.NaT, updated_at=pd.NaT)
        for name in ("total_steps", "completed_steps", "running_steps", "failed_steps", "pending_steps"):
            runs[name] = pd.NA
    if runs.empty:
        return runs
    runs = runs.assign(
        started=pd.to_datetime(runs["started_at"], utc=True, errors="coerce"),
        updated=pd.to_datetime(runs["updated_at"], utc=True, errors="coerce"),
    )
    # counts from the steps, for runs whose dag_run_progress has not arrived (one table, no row loop)
    run_ids = runs["run_id"].astype("string")
    counted = (pd.DataFrame({"run_id": steps["run_id"].astype("string"),
                             "bucket": status_buckets(steps["status"])})
               .groupby(["run_id", "bucket"]).size().unstack(fill_value=0)
               .reindex(index=run_ids, columns=list(BUCKET_ORDER), fill_value=0))
    # the steps' own events are newer than the run's last progress event (a step that has just
    # completed, drawn in the Gantt, before the dag_run_progress that counts it): count them
    latest = (pd.DataFrame({"run_id": steps["run_id"].astype("string"),
                            "updated": pd.to_datetime(steps["updated_at"], utc=True, errors="coerce")})
              .groupby("run_id")["updated"].max().reindex(run_ids))
    newer = (latest.reset_index(drop=True) > runs["updated"].reset_index(drop=True)).to_numpy()
    for bucket, column in zip(BUCKET_ORDER, ("completed_steps", "running_steps", "failed_steps", "pending_steps"),
                              strict=True):
        reported = pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        steps_say = counted[bucket].to_numpy()
        if bucket == "completed":  # a completed step stays so: never fewer than the run reported
            steps_say = np.maximum(steps_say, np.nan_to_num(reported))
        runs[bucket] = np.where(np.isnan(reported) | newer, steps_say, reported).astype(int)
    total = pd.to_numeric(runs["total_steps"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    started = runs["completed"] + runs["running"] + runs["failed"]
    # steps not mentioned yet are pending (a step's first event comes when it starts)
    runs["pending"] = np.where(newer & ~np.isnan(total), np.maximum(0, np.nan_to_num(total) - started),
                               runs["pending"]).astype(int)
    order = runs["started"].fillna(runs["updated"])
    return runs.assign(order=order).sort_values("order", ascending=False, na_position="last")


def step_bars(steps: pd.DataFrame, now: pd.Timestamp | None) -> pd.DataFrame:
    """One row per step of a run: step_id, status, start, end (running steps end at ``now``), drawn.

    ``drawn`` is False for steps that never started (they get a marker, not a bar).
    """
    start = pd.to_datetime(steps["start_time"], utc=True, errors="coerce")
    end = pd.to_datetime(steps["end_time"], utc=True, errors="coerce")
    status = steps["status"].astype("string").fillna("pending").str.lower()
    running = end.isna() & start.notna()
    if now is not None:
        # the step is still going: its bar reaches the latest event time (never before its start)
        end = end.mask(running, start.where(start > now, now))
    bars = pd.DataFrame({"step_id": steps["step_id"].astype("string"), "status": status, "start": start,
                         "end": end, "running": running.to_numpy(), "error": steps["error"]})
    bars["drawn"] = bars["start"].notna() & bars["end"].notna()
    return bars.sort_values(["start", "step_id"], na_position="last").reset_index(drop=True)


class DagProgressView(View):
    """A run picker; per run a stacked progress bar (completed / running / failed / pending); a Gantt
    of the picked run's steps coloured by status, correct while the run is still going.

    Args:
        store: the EventStore (or a client).
        run_id: the run to show; ``None`` follows the newest run (running ones first).
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "DAG runs"
    tables: ClassVar[tuple[str, ...]] = ("dag_runs", "dag_steps")
    slots: ClassVar[tuple[str, ...]] = ("summary", "runs", "figure")

    def __init__(self, store: StoreSource, run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self._run_lock = threading.Lock()
        self._run_id = run_id or AUTO
        self._picker: widgets.Dropdown | None = None
        self._syncing = False

    @property
    def run_id(self) -> str | None:
        """The picked run (None: following the newest run)."""
        with self._run_lock:
            return None if self._run_id == AUTO else self._run_id

    @run_id.setter
    def run_id(self, run_id: str | None) -> None:
        with self._run_lock:
            self._run_id = run_id or AUTO
        self._changed()

    def _controls(self) -> list[widgets.Widget]:
        self._picker = widgets.Dropdown(options=[("newest run (follows)", AUTO)], value=AUTO, description="run",
                                        layout=widgets.Layout(width="560px"))
        self._picker.observe(self._on_pick, names="value")
        return [self._picker]

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        with self._run_lock:
            self._run_id = change["new"] or AUTO
        self._changed()

    def _sync_picker(self, runs: pd.DataFrame, wanted: str) -> None:
        if self._picker is None:
            return
        options = [("newest run (follows)", AUTO)]
        for run in runs.head(_MAX_RUNS_PICKABLE).itertuples(index=False):
            options.append((f"{text_of(run.dag_id)} · {text_of(run.run_id)} · {text_of(run.status) or '?'}",
                            text_of(run.run_id)))
        if wanted not in [value for _, value in options]:
            options.append((wanted, wanted))
        self._syncing = True
        try:
            if list(self._picker.options) != options:
                self._picker.options = options
            if self._picker.value != wanted:
                self._picker.value = wanted
        finally:
            self._syncing = False

    def _pick(self, runs: pd.DataFrame, wanted: str) -> pd.Series | None:
        if runs.empty:
            return None
        if wanted != AUTO:
            match = runs[(runs["run_id"].astype("string") == wanted).fillna(False).to_numpy()]
            return None if match.empty else match.iloc[0]
        running = runs[(status_buckets(runs["status"]) == "running").to_numpy()]
        return (running if not running.empty else runs).iloc[0]

    def _render(self, frames: Frames) -> Rendered:
        with self._run_lock:
            wanted = self._run_id
        runs = _runs(frames)
        self._sync_picker(runs, wanted)
        run = self._pick(runs, wanted)
        values: dict[str, Any] = {"runs": len(runs), "run_id": None, "counts": {}, "bars": []}
        if run is None:
            message = "waiting for DAG runs..." if wanted == AUTO else f"run {wanted} has no events yet"
            return Rendered(empty_figure(message, height=260, uirevision="dag"),
                            {"summary": "", "runs": empty(message)}, values)
        run_id = text_of(run["run_id"])
        steps = frames["dag_steps"]
        steps = steps[(steps["run_id"].astype("string") == run_id).fillna(False).to_numpy()]
        bars = step_bars(steps, frames.now)
        counts = {bucket: int(run[bucket]) for bucket in BUCKET_ORDER}
        total = pd.to_numeric(run["total_steps"], errors="coerce")
        total = int(total) if total == total else max(sum(counts.values()), len(bars))
        values.update(run_id=run_id, counts=counts, total_steps=total, bars=bars[["step_id", "status", "start", "end"]]
                      .assign(start=bars["start"].astype("string"), end=bars["end"].astype("string"))
                      .to_dict("records"))
        done = counts["completed"]
        summary = (f'<div class="aios-summary">{len(runs):,} runs seen · showing <b>{esc(run_id)}</b> '
                   f'({esc(run["dag_id"])}, {esc(text_of(run["status"]) or "status unknown")}): '
                   f"{done} of {total} steps done</div>")
        panels = {"summary": summary, "runs": self._runs_table(runs, run_id)}
        # steps the server has not mentioned yet (step_status comes when a step starts)
        unseen = max(0, counts["pending"] - int((~bars["drawn"]).sum()))
        return Rendered(self._gantt(bars, run_id, frames.now, text_of(run["dag_id"]), unseen), panels, values)

    @staticmethod
    def _runs_table(runs: pd.DataFrame, picked: str) -> str:
        shown = runs.head(_MAX_RUNS_LISTED)
        if picked not in set(shown["run_id"].astype("string")):
            shown = pd.concat([runs[(runs["run_id"].astype("string") == picked).to_numpy()], shown.head(_MAX_RUNS_LISTED - 1)])
        rows = []
        for run in shown.itertuples(index=False):
            counts = {bucket: getattr(run, bucket) for bucket in BUCKET_ORDER}
            total = pd.to_numeric(run.total_steps, errors="coerce")
            total = int(total) if total == total else sum(counts.values())
            name = f"<b>{esc(run.run_id)}</b>" if text_of(run.run_id) == picked else esc(run.run_id)
            rows.append((
                esc(run.dag_id), name, pill(text_of(run.status) or "?", status_color(run.status)),
                stacked_bar(counts, title=text_of(run.run_id)),
                f"{counts['completed']}/{total} done"
                + "".join(f" · {counts[b]} {b}" for b in ("running", "failed", "pending") if counts[b]),
            ))
        return table(("DAG", "run", "status", "progress", "steps"), rows)

    @staticmethod
    def _gantt(bars: pd.DataFrame, run_id: str, now: pd.Timestamp | None, dag_id: str,
               unseen: int = 0) -> dict[str, Any]:
        """Horizontal bars from each step's start to its end (now, for running steps), by status."""
        if bars.empty:
            return empty_figure(f"run {run_id}: no step events yet", height=260, uirevision="dag")
        drawn = bars[bars["drawn"]]
        data: list[dict[str, Any]] = []
        present = list(drawn["status"].unique())
        for status in [s for s in _STEP_ORDER if s in present] + sorted(set(present) - set(_STEP_ORDER)):
            part = drawn[(drawn["status"] == status).to_numpy()]
            duration_ms = ((part["end"] - part["start"]).dt.total_seconds() * 1000).clip(lower=0)
            labels = [format_duration(ms / 1000) + (" so far" if running else "")
                      for ms, running in zip(duration_ms, part["running"], strict=True)]
            data.append({
                "type": "bar", "orientation": "h", "name": status, "y": part["step_id"].tolist(),
                "base": to_naive_utc(part["start"]), "x": duration_ms.tolist(),
                "marker": {"color": status_color(status)}, "customdata": labels,
                "hovertemplate": "%{y}: " + status + "<br>%{base|%H:%M:%S} UTC, %{customdata}<extra></extra>",
            })
        waiting = bars[~bars["drawn"]]
        if not waiting.empty:
            anchor = now if now is not None else drawn["end"].max()
            if anchor is not None and not pd.isna(anchor):
                data.append({
                    "type": "scatter", "mode": "markers", "name": "pending", "y": waiting["step_id"].tolist(),
                    "x": [to_naive_utc(anchor)] * len(waiting),
                    "marker": {"symbol": "circle-open", "size": 10, "color": PALETTE["grey"], "line": {"width": 2}},
                    "hovertemplate": "%{y}: not started<extra></extra>",
                })
        layout = base_layout(height=max(240, 90 + 34 * len(bars)), uirevision=f"dag:{run_id}", barmode="overlay",
                             title={"text": f"{esc(dag_id)} · {esc(run_id)}", "font": {"size": 13}, "x": 0.01})
        layout["margin"] = {"l": 60, "r": 20, "t": 60, "b": 48}
        layout["xaxis"] = axis("time (UTC)", type="date")
        layout["yaxis"] = axis("step", autorange="reversed", categoryorder="array",
                               categoryarray=bars["step_id"].tolist())
        annotations = []
        if now is not None and bars["running"].any():
            layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": to_naive_utc(now),
                                 "x1": to_naive_utc(now), "y0": 0, "y1": 1,
                                 "line": {"color": PALETTE["blue"], "width": 1, "dash": "dot"}}]
            annotations.append({"x": to_naive_utc(now), "xref": "x", "y": 1, "yref": "paper", "text": "now",
                                "showarrow": False, "yanchor": "bottom", "font": {"size": 10}})
        if unseen:
            annotations.append({"x": 1, "xref": "paper", "y": 1, "yref": "paper", "xanchor": "right",
                                "yanchor": "bottom", "yshift": 18, "showarrow": False, "font": {"size": 11},
                                "text": f"+ {unseen} step{'s' if unseen != 1 else ''} not started yet"})
        layout["annotations"] = annotations
        return {"data": data, "layout": layout}
