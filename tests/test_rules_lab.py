"""The detector lab: sensitivity tables and curves over magnitudes and seeds, for a built-in, a
hand-written rule and a river detector, equal to backtesting and scoring each run by hand."""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd
import pytest
from river import anomaly

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.rules import (
    Insight,
    backtest,
    from_river,
    lab,
    library,
    rule,
    score,
    sensitivity,
    series,
)
from aios_notebook.server.scenarios import labels_document
from aios_notebook.server.workload import DEFAULT_START, generate

pytestmark = pytest.mark.timeout(300)

HOURS = 10.0  # windows at 03:00 and 09:00


@rule(every="5m", window="10m", detects=("failure_burst",))
def many_failures(job_events: pd.DataFrame) -> Insight | None:
    """Hand-written: five failed jobs in ten minutes."""
    failed = int((job_events["event"] == "processing_job_failed").sum())
    return Insight("failures", f"{failed} jobs failed") if failed >= 5 else None


def rules() -> list[Any]:
    river_rule = from_river(anomaly.GaussianScorer(window_size=72, grace_period=12),
                            series=series.failure_rate(every="5m"), threshold=0.999, detects=("failure_burst",),
                            name="river_failure_rate")
    return [library.failure_burst(), many_failures, river_rule]


@functools.cache
def table() -> lab.SensitivityTable:
    return sensitivity(rules(), "failure_burst", magnitudes=[0.0, 0.25, 1.0], seeds=[11], hours=HOURS)


def test_the_table_has_a_row_per_rule_magnitude_and_seed() -> None:
    result = table()
    assert list(result.columns) == lab.LAB_COLUMNS and result.scenario == "failure_burst"
    assert len(result) == 3 * 3
    assert set(result["rule"]) == {"failure_burst", "many_failures", "river_failure_rate"}
    assert (result["labels"] == 2).all()
    at = result.set_index(["rule", "magnitude"])
    for name in ("failure_burst", "many_failures", "river_failure_rate"):
        assert at.loc[(name, 1.0), "recall"] == 1.0, name
    # no anomaly: the built-in finds nothing (a chance firing in a window would still count)
    assert at.loc[("failure_burst", 0.0), "recall"] == 0.0
    assert at.loc[("failure_burst", 1.0), "time_to_detect_intervals"] <= 2
    assert at.loc[("failure_burst", 1.0), "time_to_detect"] <= pd.Timedelta("10m")
    assert at.loc[("failure_burst", 0.0), "false_alarms_per_day"] == at.loc[("failure_burst", 0.0), "firings"] / (HOURS / 24)
    assert result["time_to_detect"].dtype == "timedelta64[ns]"


def test_a_row_is_what_backtest_and_score_give_for_that_run() -> None:
    events = list(generate(seed=11, scenario="failure_burst", hours=HOURS, scenario_params={"magnitude": 0.25}))
    labels = labels_document("failure_burst", 11, DEFAULT_START, DEFAULT_START + HOURS * 3600, {"magnitude": 0.25})
    assert {label["magnitude"] for label in labels["labels"]} == {0.25}
    firings = backtest(rules(), events)
    period = (pd.Timestamp(DEFAULT_START, unit="s", tz="UTC"), pd.Timestamp(DEFAULT_START + HOURS * 3600, unit="s", tz="UTC"))
    by_hand = score(firings, labels, period=period).set_index("rule")
    row = table().set_index(["rule", "magnitude"])
    for name in by_hand.index:
        for column in ("precision", "recall", "f1", "false_alarms_per_day", "firings", "detected"):
            expected, got = by_hand.loc[name, column], row.loc[(name, 0.25), column]
            assert (expected != expected and got != got) or expected == pytest.approx(got), (name, column)


def test_the_figure_draws_recall_and_time_to_detect_against_magnitude() -> None:
    result = table()
    figure = result.figure()
    recall = {trace.name: list(trace.y) for trace in figure.data if trace.xaxis == "x"}
    delay = {trace.legendgroup: list(trace.y) for trace in figure.data if trace.xaxis == "x2"}
    assert set(recall) == set(delay) == {"failure_burst", "many_failures", "river_failure_rate"}
    summary = result.summary()
    for name, values in recall.items():
        mine = summary[summary["rule"] == name].sort_values("magnitude")
        assert values == mine["recall"].tolist()
        assert next(x for x in figure.data if x.name == name).x.tolist() == [0.0, 0.25, 1.0]
    assert "failure_burst" in figure.layout.title.text


def test_smallest_magnitude_detected() -> None:
    smallest = lab.smallest_detected(table())
    assert smallest["failure_burst"] in (0.25, 1.0)
    assert not math.isnan(smallest["many_failures"])
    strict = lab.smallest_detected(table(), recall=1.01)
    assert strict.isna().all()


def test_bad_lab_arguments_are_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown scenario 'meteor'"):
        sensitivity(rules(), "meteor")
    with pytest.raises(ConfigurationError, match="magnitudes must be numbers >= 0, not -1"):
        sensitivity(rules(), "failure_burst", magnitudes=[-1])
    with pytest.raises(ConfigurationError, match="hours must be a positive number"):
        sensitivity(rules(), "failure_burst", hours=0)
    with pytest.raises(ConfigurationError, match="seeds must be integers"):
        sensitivity(rules(), "failure_burst", seeds=["one"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="give magnitudes="):
        sensitivity(rules(), "failure_burst", scenario_params={"magnitude": 2})
    with pytest.raises(ConfigurationError, match="unknown parameter 'size'"):
        sensitivity(rules(), "failure_burst", magnitudes=[1], seeds=[1], hours=1, scenario_params={"size": 2})
