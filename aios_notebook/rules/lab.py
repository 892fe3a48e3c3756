"""The detector lab: how small an anomaly each rule catches, how fast, at what false-alarm cost.

::

    from aios_notebook.rules import lab, library

    table = lab.sensitivity([library.failure_burst(), my_rule, river_rule], "failure_burst",
                            magnitudes=[0.25, 0.5, 0.75, 1.0], seeds=[1, 2, 3], hours=24)
    table.figure()          # recall and time to detect against magnitude, one line per rule
    table.summary()         # per rule and magnitude: the seeds pooled

For every magnitude and seed the scenario is generated offline with ``scenario_params={"magnitude":
m}`` (``server.workload.generate``), every rule is backtested on it (the live engine's code path,
each rule learning from scratch) and scored against the run's labels (``score``: a firing counts
when it falls in a labelled window of a kind the rule ``detects``). Magnitude 0 is the scenario
without its anomaly: only false alarms are possible there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..exceptions import ConfigurationError
from .backtest import backtest, collect_rules
from .scoring import score

__all__ = ["LAB_COLUMNS", "SensitivityTable", "compare", "figure", "sensitivity", "smallest_detected", "summarize"]

LAB_COLUMNS = [
    "rule", "magnitude", "seed", "precision", "recall", "f1", "time_to_detect", "time_to_detect_intervals",
    "false_alarms_per_day", "firings", "labels", "detected",
]


class SensitivityTable(pd.DataFrame):
    """The lab's result: one row per (rule, magnitude, seed), with :meth:`figure` and :meth:`summary`."""

    _metadata = ["scenario"]  # noqa: RUF012 - pandas reads this class attribute by name

    @property
    def _constructor(self) -> type[SensitivityTable]:
        return SensitivityTable

    def summary(self) -> pd.DataFrame:
        """Per rule and magnitude, over the seeds: mean precision, recall, F1, time to detect
        (intervals and a Timedelta) and false alarms per day."""
        return summarize(self)

    def figure(self, title: str | None = None) -> Any:
        """Recall and time to detect (in evaluation intervals) against magnitude, one line per rule."""
        return figure(self, title=title)


def sensitivity(
    rules: Any,
    scenario: str,
    magnitudes: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    seeds: Sequence[int] = (1, 2, 3),
    hours: float = 24.0,
    *,
    scenario_params: Mapping[str, Any] | None = None,
    match_entities: bool = True,
) -> SensitivityTable:
    """Backtest and score ``rules`` on ``scenario`` at each magnitude and seed.

    Args:
        rules: a Rule, an iterable of rules or a module (as for ``backtest``).
        scenario: a scenario name (``server.scenarios.SCENARIOS``).
        magnitudes: anomaly strengths (1.0 the scenario as described, 0 none).
        seeds: workload seeds (each a different run of the same scenario).
        hours: simulated hours per run.
        scenario_params: other reshaping (window times, target) applied to every run.
        match_entities: as for ``score``.

    Returns:
        A :class:`SensitivityTable` with the columns of :data:`LAB_COLUMNS`: precision, recall,
        F1, time to detect (mean over the detected windows; also in the rule's intervals) and
        false alarms per simulated day.
    """
    from ..server.scenarios import get_scenario, labels_document
    from ..server.workload import DEFAULT_START, generate

    rule_list = collect_rules(rules)
    if not rule_list:
        raise ConfigurationError("sensitivity needs at least one rule")
    base = get_scenario(scenario)
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours <= 0:
        raise ConfigurationError(f"hours must be a positive number, not {hours!r}")
    checked_magnitudes = [_magnitude(m) for m in magnitudes]
    checked_seeds = list(seeds)
    if not checked_magnitudes or not checked_seeds:
        raise ConfigurationError("sensitivity needs at least one magnitude and one seed")
    for seed in checked_seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigurationError(f"seeds must be integers, not {seed!r}")
    extra = dict(scenario_params or {})
    if "magnitude" in extra:
        raise ConfigurationError("give magnitudes=..., not scenario_params={'magnitude': ...}")
    rows: list[dict[str, Any]] = []
    for magnitude in checked_magnitudes:
        params = {**extra, "magnitude": magnitude} if base.has_windows else None
        shaped = base.reshape(params)
        for seed in checked_seeds:
            events = list(generate(seed=seed, scenario=scenario, hours=hours, scenario_params=params))
            labels = labels_document(shaped, seed, DEFAULT_START, DEFAULT_START + hours * 3600)
            firings = backtest(rule_list, events, publish=False)
            period = (pd.Timestamp(DEFAULT_START, unit="s", tz="UTC"),
                      pd.Timestamp(DEFAULT_START + hours * 3600, unit="s", tz="UTC"))
            scores = score(firings, labels, rules=rule_list, period=period, match_entities=match_entities)
            for s in scores.itertuples(index=False):
                rows.append({
                    "rule": s.rule, "magnitude": magnitude, "seed": seed, "precision": s.precision,
                    "recall": s.recall, "f1": s.f1, "time_to_detect": s.mean_time_to_detect,
                    "time_to_detect_intervals": s.mean_time_to_detect_intervals,
                    "false_alarms_per_day": s.false_alarms_per_day, "firings": s.firings, "labels": s.labels,
                    "detected": s.detected,
                })
    table = SensitivityTable(pd.DataFrame(rows, columns=LAB_COLUMNS))
    # all-missing times to detect (nothing detected) would otherwise be read as datetimes
    table["time_to_detect"] = pd.Series(
        [v if isinstance(v, pd.Timedelta) and v is not pd.NaT else pd.NaT for v in table["time_to_detect"]],
        index=table.index, dtype="timedelta64[ns]")
    table.scenario = scenario
    return table


def _magnitude(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"magnitudes must be numbers >= 0, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"magnitudes must be numbers >= 0, not {value!r}")
    return number


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per rule and magnitude over the seeds: pooled counts, recomputed precision / recall / F1,
    mean time to detect (over detected windows) and false alarms per day."""
    out = []
    for (rule, magnitude), part in table.groupby(["rule", "magnitude"], sort=False):
        firings, labels, detected = int(part["firings"].sum()), int(part["labels"].sum()), int(part["detected"].sum())
        tp = float((part["precision"].fillna(0) * part["firings"]).sum())
        precision = tp / firings if firings else math.nan
        recall = detected / labels if labels else math.nan
        f1 = (2 * precision * recall / (precision + recall)
              if precision == precision and recall == recall and precision + recall > 0 else 0.0 if labels else math.nan)
        weights = part["detected"].where(part["time_to_detect_intervals"].notna(), 0)
        ttd = (float((part["time_to_detect_intervals"].fillna(0) * weights).sum() / weights.sum())
               if weights.sum() else math.nan)
        out.append({"rule": rule, "magnitude": magnitude, "precision": precision, "recall": recall, "f1": f1,
                    "time_to_detect_intervals": ttd, "false_alarms_per_day": float(part["false_alarms_per_day"].mean()),
                    "firings": firings, "labels": labels, "detected": detected, "seeds": len(part)})
    return pd.DataFrame(out)


def smallest_detected(table: pd.DataFrame, *, recall: float = 0.9, false_alarms: float = 1.0) -> pd.Series:
    """Per rule: the smallest magnitude it detects with recall >= ``recall`` and at most
    ``false_alarms`` a day (over the seeds); NaN when no magnitude does."""
    summary = summarize(table)
    found = {}
    for rule, part in summary.groupby("rule", sort=False):
        good = part[(part["recall"] >= recall) & (part["false_alarms_per_day"] <= false_alarms) & (part["magnitude"] > 0)]
        found[rule] = float(good["magnitude"].min()) if len(good) else math.nan
    return pd.Series(found, name="smallest_magnitude", dtype=float)


def figure(table: pd.DataFrame, title: str | None = None) -> Any:
    """Two panels against magnitude: recall (left) and time to detect in intervals (right)."""
    from plotly.subplots import make_subplots

    summary = summarize(table)
    scenario = getattr(table, "scenario", None)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("recall", "time to detect (evaluation intervals)"),
                        horizontal_spacing=0.12)
    palette = ["#1f77b4", "#9467bd", "#2ca02c", "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, (rule, part) in enumerate(summary.groupby("rule", sort=False)):
        part = part.sort_values("magnitude")
        color = palette[i % len(palette)]
        hover = [f"{rule}<br>magnitude {m:g}: recall {r:.2f}, precision {p:.2f}, {fa:.1f} false alarms/day"
                 for m, r, p, fa in zip(part["magnitude"], part["recall"], part["precision"].fillna(0),
                                        part["false_alarms_per_day"], strict=True)]
        fig.add_scatter(x=part["magnitude"], y=part["recall"], mode="lines+markers", name=str(rule),
                        legendgroup=str(rule), line={"color": color}, hovertext=hover, hoverinfo="text",
                        row=1, col=1)
        fig.add_scatter(x=part["magnitude"], y=part["time_to_detect_intervals"], mode="lines+markers",
                        name=str(rule), legendgroup=str(rule), showlegend=False, line={"color": color},
                        row=1, col=2)
    fig.update_xaxes(title_text="magnitude (1.0 = the scenario as described)")
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title or f"Detector lab{': ' + scenario if scenario else ''}", height=380,
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 60, "b": 40})
    return fig


def compare(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Several lab runs (scenarios) as one summary, with a ``scenario`` column."""
    parts = []
    for table in tables:
        summary = summarize(table)
        summary.insert(0, "scenario", getattr(table, "scenario", None))
        parts.append(summary)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

