"""Scoring firings against labels, the timeline figure, and the statistics the built-ins use."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.rules import (
    Insight,
    combine_scores,
    load_labels,
    match_firings,
    rule,
    score,
    timeline,
)
from aios_notebook.rules.aggregates import (
    BinnedCounts,
    BinnedValues,
    LatestByKey,
    binomial_sf,
    poisson_cdf,
    poisson_sf,
)
from aios_notebook.rules.engine import firings_frame

T0 = pd.Timestamp("2026-01-05T00:00:00Z")
NS = 60 * 1_000_000_000


@rule(every="5m", window="30m", detects=("failure_burst",))
def bursts(job_events: pd.DataFrame) -> None:
    return None


@rule(every="10m", window="1h", detects=("agent_errors",))
def errors(agent_events: pd.DataFrame) -> None:
    return None


def firing(minute: float, name: str = "bursts", key: str = "", window_minutes: float = 30) -> dict[str, Any]:
    t = int(T0.value + minute * NS)
    return {"time": t, "rule": name, "key": key, "title": "x", "description": "", "type": "alert",
            "confidence": 0.9, "window_start": t - int(window_minutes * NS), "window_end": t,
            "resolved_at": None, "fingerprint": f"f{minute}", "insight_id": "i", "evidence": {}, "metadata": {}}


def label(ident: str, kind: str, start_min: float, end_min: float, **entities: Any) -> dict[str, Any]:
    return {"id": ident, "kind": kind, "start": (T0 + pd.Timedelta(minutes=start_min)).isoformat(),
            "end": (T0 + pd.Timedelta(minutes=end_min)).isoformat(), "entities": entities, "description": ident}


LABELS = [
    label("b1", "failure_burst", 60, 90),
    label("b2", "failure_burst", 300, 330),
    label("b3", "failure_burst", 600, 630),
    label("e1", "agent_errors", 60, 150, agent_ids=["summary_agent_03"]),
]


def test_precision_recall_time_to_detect_and_false_alarms() -> None:
    records = [
        firing(65), firing(75),  # b1 detected after 5 minutes, then again
        firing(320),  # b2 detected after 20 minutes
        firing(115),  # its window (85 .. 115] still holds the end of b1: it detects b1
        firing(200),  # nothing: a false alarm
        firing(70, "errors", "summary_agent_03", 60),  # e1, after 10 minutes
        firing(80, "errors", "digest_agent_02", 60),  # the wrong agent: a false alarm
    ]
    firings = firings_frame(records)
    table = score(firings, LABELS, rules=[bursts, errors], period=(T0, T0 + pd.Timedelta(days=1))).set_index("rule")
    b = table.loc["bursts"]
    assert (b["firings"], b["true_positives"], b["false_positives"], b["labels"], b["detected"]) == (5, 4, 1, 3, 2)
    assert b["precision"] == pytest.approx(0.8) and b["recall"] == pytest.approx(2 / 3)
    assert b["f1"] == pytest.approx(2 * 0.8 * (2 / 3) / (0.8 + 2 / 3))
    assert b["mean_time_to_detect"] == pd.Timedelta(minutes=12.5)
    assert b["mean_time_to_detect_intervals"] == pytest.approx(2.5)
    assert b["false_alarms_per_day"] == pytest.approx(1.0)
    e = table.loc["errors"]
    assert (e["true_positives"], e["false_positives"], e["detected"]) == (1, 1, 1)
    assert e["mean_time_to_detect"] == pd.Timedelta(minutes=10)
    # without entity matching the wrong agent's firing counts
    loose = score(firings, LABELS, rules=[bursts, errors], match_entities=False).set_index("rule")
    assert loose.loc["errors", "false_positives"] == 0


def test_a_firing_before_the_label_or_long_after_it_detects_nothing() -> None:
    firings = firings_frame([firing(59), firing(125), firing(60)])
    matched = match_firings(firings, LABELS, rules=[bursts])
    # at 59 the anomaly has not begun; at 125 the window (95 .. 125] is past its end (90);
    # at 60, its very start, the window holds the instant it began
    assert list(matched["time"]) == [T0 + pd.Timedelta(minutes=m) for m in (59, 60, 125)]
    assert [None if pd.isna(v) else v for v in matched["label"]] == [None, "b1", None]


def test_no_firings_and_no_labels() -> None:
    empty = firings_frame([])
    table = score(empty, [], rules=[bursts], period=(T0, T0 + pd.Timedelta(hours=12))).iloc[0]
    assert table["firings"] == 0 and math.isnan(table["precision"]) and math.isnan(table["recall"])
    assert table["false_alarms_per_day"] == 0.0
    assert pd.isna(table["mean_time_to_detect"])
    with pytest.raises(ConfigurationError, match="score needs the rules"):
        score(empty, LABELS)


def test_combined_runs_weigh_each_label() -> None:
    one = score(firings_frame([firing(65)]), LABELS[:1], rules=[bursts], period=(T0, T0 + pd.Timedelta(days=1)))
    two = score(firings_frame([firing(330), firing(400)]), LABELS[1:2], rules=[bursts],
                period=(T0, T0 + pd.Timedelta(days=1)))
    both = combine_scores([one, two]).iloc[0]
    assert (both["firings"], both["labels"], both["detected"], both["false_positives"]) == (3, 2, 2, 1)
    assert both["mean_time_to_detect"] == pd.Timedelta(minutes=17.5)
    assert both["false_alarms_per_day"] == pytest.approx(0.5) and both["days"] == pytest.approx(2.0)


def test_labels_from_a_file_a_document_or_a_frame(tmp_path: Path) -> None:
    document = {"scenario": "failure_burst", "seed": 1, "start": T0.isoformat(), "labels": LABELS}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(document))
    for source in (path, str(path), document, LABELS, pd.DataFrame(LABELS)):
        frame = load_labels(source)
        assert list(frame["id"]) == ["b1", "e1", "b2", "b3"]
        assert str(frame["start"].dt.tz) == "UTC"
    with pytest.raises(ConfigurationError, match="cannot read labels file"):
        load_labels(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        load_labels(path)
    with pytest.raises(ConfigurationError, match="missing or reversed"):
        load_labels([label("x", "k", 10, 5)])
    with pytest.raises(ConfigurationError, match="lack column"):
        load_labels([{"kind": "k", "start": T0.isoformat()}])


def test_timeline_draws_labels_and_firings() -> None:
    firings = firings_frame([firing(65), firing(200)])
    figure = timeline(firings, LABELS, rules=[bursts, errors])
    names = [trace.name for trace in figure.data]
    assert "label: failure_burst" in names and "label: agent_errors" in names
    hits = next(t for t in figure.data if t.name == "firing (detects a label)")
    misses = next(t for t in figure.data if t.name == "firing (false alarm)")
    assert len(hits.x) == 1 and len(misses.x) == 1
    assert list(figure.layout.yaxis.categoryarray) == ["errors", "bursts"]


def test_poisson_and_binomial_tails() -> None:
    def exact_cdf(k: int, mean: float) -> float:
        return sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k + 1))

    for k, mean in [(0, 3.0), (3, 3.0), (10, 3.0), (27, 11.0), (3, 16.0), (120, 100.0)]:
        assert poisson_cdf(k, mean) == pytest.approx(exact_cdf(k, mean), rel=1e-9)
        assert poisson_sf(k, mean) == pytest.approx(1 - exact_cdf(k - 1, mean), rel=1e-6, abs=1e-15)
    assert poisson_sf(0, 5) == 1.0 and poisson_sf(3, 0) == 0.0 and 0 <= poisson_sf(400, 2) < 1e-200
    assert binomial_sf(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_sf(1, 10, 0.1) == pytest.approx(1 - 0.9**10)
    assert binomial_sf(0, 5, 0.2) == 1.0 and binomial_sf(6, 5, 0.2) == 0.0


def test_running_aggregates_add_and_remove() -> None:
    width = 5 * NS
    counts = BinnedCounts(width)
    times = [T0.value + m * NS for m in (1, 2, 5, 6, 11)]
    counts.add(np.array(times), ["a", "b", "a", "a", "b"])
    start = T0.value
    # bins are (0, 5], (5, 10], (10, 15] minutes
    assert counts.totals(start, start + 5 * NS) == {"a": 2, "b": 1}
    assert counts.totals(start + 5 * NS, start + 15 * NS) == {"a": 1, "b": 1}
    counts.remove(np.array(times[:2]), ["a", "b"])
    assert counts.totals(start, start + 15 * NS) == {"a": 2, "b": 1}
    assert counts.keys() == {"a", "b"}
    values = BinnedValues(width)
    values.add(np.array(times), ["x"] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
    values.remove(np.array(times[:1]), ["x"], [1.0])
    assert list(values.values(start, start + 15 * NS)["x"]) == [2.0, 3.0, 4.0, 5.0]
    latest = LatestByKey()
    latest.add(np.array(times), ["j1", "j2", "j1", "j2", "j1"], ["s1", "s2", "s3", "s4", "s5"])
    assert latest.latest["j1"] == (times[4], "s5")
    latest.remove(np.array(times[:4]), ["j1", "j2", "j1", "j2"])  # j2's latest row left; j1's did not
    assert set(latest.latest) == {"j1"}


def test_insight_fields_are_checked() -> None:
    from aios_notebook.exceptions import RuleResultError

    assert Insight("t", key=7).key == "7"  # numbers from a groupby become text
    with pytest.raises(RuleResultError, match="title"):
        Insight("")
    with pytest.raises(RuleResultError, match=r"confidence must be within 0\.\.1"):
        Insight("t", confidence=1.5)
    with pytest.raises(RuleResultError, match="confidence must be a number"):
        Insight("t", confidence="high")  # type: ignore[arg-type]
    with pytest.raises(RuleResultError, match="metadata must be a mapping"):
        Insight("t", metadata=["x"])  # type: ignore[arg-type]
    with pytest.raises(RuleResultError, match="key must be a string"):
        Insight("t", key=None)  # type: ignore[arg-type]
