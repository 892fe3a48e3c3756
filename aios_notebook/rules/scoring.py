"""Scoring firings against ground-truth labels, and a timeline of both.

A firing of rule R *detects* a label when the label's ``kind`` is one of R's ``detects`` and the
firing's window ``(time - window, time]`` overlaps the labelled window ``[start, end]``: it came
at or after the start, and its window began before the end (so a firing caused by anomalous
data still in the window after the anomaly ended counts, and one before it began does not). With ``match_entities`` a firing about a key
(a job type, an agent) must also name one of the label's entities, when both have one.

Per rule: precision (firings that detect some label / all firings), recall (labels detected /
labels), F1, mean time to detect (first detecting firing - label start), and false alarms per
simulated day (firings that detect nothing / days of the scored period).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import ConfigurationError
from .api import Rule

__all__ = ["SCORE_COLUMNS", "combine_scores", "load_labels", "match_firings", "score", "timeline"]

SCORE_COLUMNS = [
    "rule", "detects", "firings", "labels", "detected", "true_positives", "false_positives",
    "precision", "recall", "f1", "mean_time_to_detect", "mean_time_to_detect_intervals",
    "false_alarms_per_day", "days", "every",
]
_LABEL_COLUMNS = ["id", "kind", "start", "end", "entities", "description"]


def load_labels(labels: Any) -> pd.DataFrame:
    """Labels in any accepted form -> DataFrame (id, kind, start, end, entities, description).

    Accepts a list of label dicts, a labels document (``{"labels": [...], ...}``), a path to its
    JSON file, or a DataFrame with at least ``kind``, ``start`` and ``end``.
    """
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        try:
            labels = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"labels file {path} is not JSON: {exc}") from None
    if isinstance(labels, Mapping):
        if "labels" not in labels:
            raise ConfigurationError("a labels document needs a 'labels' list")
        labels = labels["labels"]
    if isinstance(labels, pd.DataFrame):
        frame = labels.copy()
    elif labels is None:
        frame = pd.DataFrame(columns=_LABEL_COLUMNS)
    else:
        records = list(labels)
        for i, item in enumerate(records):
            if not isinstance(item, Mapping):
                raise ConfigurationError(f"label {i} is a {type(item).__name__}, not a dict")
        frame = pd.DataFrame(records)
    missing = [c for c in ("kind", "start", "end") if c not in frame.columns]
    if missing and len(frame):
        raise ConfigurationError(f"labels lack column(s) {', '.join(missing)}")
    for column in _LABEL_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["id"] = [str(v) if v is not None else f"label-{i + 1}" for i, v in enumerate(frame["id"])]
    frame["entities"] = [v if isinstance(v, Mapping) else {} for v in frame["entities"]]
    for column in ("start", "end"):
        try:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"labels: bad {column} time: {exc}") from None
    bad = frame["start"].isna() | frame["end"].isna() | (frame["end"] < frame["start"])
    if bad.any():
        raise ConfigurationError(f"labels {list(frame.loc[bad, 'id'])} have a missing or reversed window")
    return frame[_LABEL_COLUMNS].sort_values("start", kind="stable").reset_index(drop=True)


def _rule_info(firings: pd.DataFrame, rules: Iterable[Rule] | None) -> dict[str, dict[str, Any]]:
    """name -> {detects, every (s), window (s)} from the rules given or the firings' attrs."""
    if rules is not None:
        return {
            r.name: {"detects": list(r.detects), "every": r.every_ns / 1e9, "window": r.window_ns / 1e9}
            for r in ([rules] if isinstance(rules, Rule) else rules)
        }
    info = firings.attrs.get("rules")
    if isinstance(info, Mapping) and info:
        return {str(k): dict(v) for k, v in info.items()}
    raise ConfigurationError(
        "score needs the rules (their `detects` and windows): pass rules=..., or firings from backtest()"
    )


def _entity_values(entities: Mapping[str, Any]) -> set[str]:
    values: set[str] = set()
    for value in entities.values():
        if isinstance(value, (list, tuple, set)):
            values.update(str(v) for v in value)
        elif value is not None:
            values.add(str(value))
    return values


def match_firings(
    firings: pd.DataFrame,
    labels: Any,
    *,
    rules: Iterable[Rule] | None = None,
    match_entities: bool = True,
) -> pd.DataFrame:
    """The firings with a ``label`` column: the id of the first label each detects (missing: none)."""
    info = _rule_info(firings, rules)
    frame = load_labels(labels)
    out = firings.copy()
    matched: list[str | None] = []
    for time, rule, key, window_start in zip(
        out["time"], out["rule"], out["key"], out["window_start"], strict=True
    ):
        found = None
        detects = set(info.get(rule, {}).get("detects", ()))
        for label in frame.itertuples(index=False):
            if label.kind not in detects or not (time >= label.start and window_start < label.end):
                continue
            values = _entity_values(label.entities)
            if match_entities and key and values and str(key) not in values:
                continue
            found = label.id
            break
        matched.append(found)
    out["label"] = matched
    return out


def score(
    firings: pd.DataFrame,
    labels: Any,
    *,
    rules: Iterable[Rule] | None = None,
    period: tuple[Any, Any] | None = None,
    match_entities: bool = True,
) -> pd.DataFrame:
    """Precision, recall, F1, mean time to detect and false alarms per day, one row per rule.

    Args:
        firings: from :func:`backtest` (or ``RuleEngine.firings``).
        labels: list of label dicts, a labels document, its JSON path, or a DataFrame.
        rules: the rules (default: those recorded in ``firings.attrs`` by backtest).
        period: (start, end) of the scored time; default ``firings.attrs`` start/end. Labels
            starting outside it are not counted; false alarms are per day of it.
        match_entities: a firing's key must name one of the label's entities (when both have one).
    """
    info = _rule_info(firings, rules)
    frame = load_labels(labels)
    start, end = period if period is not None else (firings.attrs.get("start"), firings.attrs.get("end"))
    start, end = _utc(start), _utc(end)
    if start is not None:
        frame = frame[frame["start"] >= start]
    if end is not None:
        frame = frame[frame["start"] < end]
    days = (end - start) / pd.Timedelta(days=1) if start is not None and end is not None else math.nan
    matched = match_firings(firings, frame, rules=rules, match_entities=match_entities)
    rows = []
    for name, meta in info.items():
        detects = list(meta.get("detects", ()))
        mine = matched[matched["rule"] == name]
        relevant = frame[frame["kind"].isin(detects)]
        tp = int(mine["label"].notna().sum())
        fp = len(mine) - tp
        first = mine.dropna(subset=["label"]).groupby("label")["time"].min()
        delays = [first[label.id] - label.start for label in relevant.itertuples() if label.id in first.index]
        precision = tp / len(mine) if len(mine) else math.nan
        recall = len(delays) / len(relevant) if len(relevant) else math.nan
        f1 = (2 * precision * recall / (precision + recall)
              if precision == precision and recall == recall and precision + recall > 0 else math.nan)
        mean_delay = pd.Series(delays, dtype="timedelta64[ns]").mean() if delays else pd.NaT
        every = float(meta.get("every") or math.nan)
        rows.append({
            "rule": name,
            "detects": ", ".join(detects),
            "firings": len(mine),
            "labels": len(relevant),
            "detected": len(delays),
            "true_positives": tp,
            "false_positives": fp,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mean_time_to_detect": mean_delay,
            "mean_time_to_detect_intervals": (
                mean_delay.total_seconds() / every if delays and every == every else math.nan
            ),
            "false_alarms_per_day": fp / days if days == days and days > 0 else math.nan,
            "days": days,
            "every": pd.Timedelta(seconds=every) if every == every else pd.NaT,
        })
    return _typed(pd.DataFrame(rows, columns=SCORE_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    # all-missing durations would otherwise be read as datetimes
    for column in ("mean_time_to_detect", "every"):
        frame[column] = pd.Series([v if isinstance(v, pd.Timedelta) and v is not pd.NaT else pd.NaT
                                   for v in frame[column]], index=frame.index, dtype="timedelta64[ns]")
    return frame


def combine_scores(scores: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Scores of several runs (seeds, recordings) -> one row per rule over all of them.

    Counts add up; precision, recall and F1 are recomputed from them, the mean time to detect
    is weighted by the labels each run detected, false alarms are per day of all runs.
    """
    frames = [frame for frame in scores if len(frame)]
    if not frames:
        return _typed(pd.DataFrame(columns=SCORE_COLUMNS))
    rows = []
    for name, part in pd.concat(frames, ignore_index=True).groupby("rule", sort=False):
        firings, tp, fp = int(part["firings"].sum()), int(part["true_positives"].sum()), int(part["false_positives"].sum())
        labels, detected = int(part["labels"].sum()), int(part["detected"].sum())
        precision = tp / firings if firings else math.nan
        recall = detected / labels if labels else math.nan
        f1 = (2 * precision * recall / (precision + recall)
              if precision == precision and recall == recall and precision + recall > 0 else math.nan)
        weights = part["detected"].where(part["mean_time_to_detect"].notna(), 0)
        total = (part["mean_time_to_detect"].fillna(pd.Timedelta(0)) * weights).sum()
        mean_delay = total / int(weights.sum()) if int(weights.sum()) else pd.NaT
        every = part["every"].dropna()
        days = float(part["days"].sum())
        rows.append({
            "rule": name, "detects": part["detects"].iloc[0], "firings": firings, "labels": labels,
            "detected": detected, "true_positives": tp, "false_positives": fp, "precision": precision,
            "recall": recall, "f1": f1, "mean_time_to_detect": mean_delay,
            "mean_time_to_detect_intervals": (mean_delay / every.iloc[0]
                                              if mean_delay is not pd.NaT and len(every) else math.nan),
            "false_alarms_per_day": fp / days if days > 0 else math.nan,
            "days": days, "every": every.iloc[0] if len(every) else pd.NaT,
        })
    return _typed(pd.DataFrame(rows, columns=SCORE_COLUMNS))


def timeline(
    firings: pd.DataFrame,
    labels: Any = None,
    *,
    rules: Iterable[Rule] | None = None,
    match_entities: bool = True,
    title: str = "Labelled windows and firings",
) -> Any:
    """A Plotly figure: per rule, the labelled windows it should find (bars) and its firings
    (markers: green when they detect a label, red when they do not)."""
    import plotly.graph_objects as go

    info = _rule_info(firings, rules)
    frame = load_labels(labels)
    matched = match_firings(firings, frame, rules=rules, match_entities=match_entities)
    names = list(info)
    figure = go.Figure()
    shown_kinds: set[str] = set()
    for name in names:
        detects = set(info[name].get("detects", ()))
        for label in frame[frame["kind"].isin(detects)].itertuples():
            figure.add_trace(go.Bar(
                y=[name], x=[(label.end - label.start) / pd.Timedelta(milliseconds=1)],
                base=[label.start.isoformat()], orientation="h", opacity=0.35,
                marker_color="#888", name=f"label: {label.kind}",
                legendgroup=f"label-{label.kind}", showlegend=label.kind not in shown_kinds,
                hovertext=f"{label.id}: {label.description or label.kind}", hoverinfo="text",
            ))
            shown_kinds.add(label.kind)
    for hit, color, legend in ((True, "#2ca02c", "firing (detects a label)"), (False, "#d62728", "firing (false alarm)")):
        part = matched[matched["label"].notna() == hit]
        if not len(part):
            continue
        figure.add_trace(go.Scatter(
            x=part["time"], y=part["rule"], mode="markers", name=legend,
            marker={"color": color, "size": 10, "symbol": "diamond", "line": {"width": 1, "color": "#333"}},
            hovertext=[f"{r}[{k}] {t}" for r, k, t in zip(part["rule"], part["key"], part["title"], strict=True)],
            hoverinfo="text+x",
        ))
    figure.update_layout(
        title=title, barmode="overlay", xaxis={"type": "date", "title": "event time (UTC)"},
        yaxis={"categoryorder": "array", "categoryarray": names[::-1], "type": "category"},
        height=max(250, 60 * len(names) + 120), legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
