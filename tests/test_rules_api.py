"""Declaring rules: durations, parameters, tables, options."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from aios_notebook.exceptions import RuleError
from aios_notebook.rules import IncrementalRule, Insight, Rule, RuleEngine, parse_duration, rule
from aios_notebook.rules.api import format_duration
from aios_notebook.store import EventStore

S = 1_000_000_000


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("250ms", 0.25),
    (" 1h 5m ", 3900), (90, 90), (1.5, 1.5), (timedelta(minutes=2), 120), (pd.Timedelta("3h"), 10800),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == int(seconds * S)


@pytest.mark.parametrize("bad", ["", "soon", "5 minutes", "m5", "-5m", True, None, [5]])
def test_bad_durations_are_named(bad: object) -> None:
    with pytest.raises(RuleError, match="window"):
        parse_duration(bad, "window")  # type: ignore[arg-type]


def test_format_duration() -> None:
    assert [format_duration(n * S) for n in (0, 45, 600, 5400, 90000)] == ["0s", "45s", "10m", "1h30m", "1d1h"]


def test_a_rule_reads_the_tables_it_names() -> None:
    @rule(every="2m", window="30m", pending="1m", cooldown="1h", detects="failure_burst", timeout=3)
    def watcher(job_events, agents, ctx, threshold=3):  # type: ignore[no-untyped-def]
        """Watches jobs and agents."""
        return None

    assert isinstance(watcher, Rule)
    assert watcher.name == "watcher" and watcher.tables == ("job_events", "agents")
    assert (watcher.every, watcher.window, watcher.pending, watcher.cooldown) == (
        pd.Timedelta("2m"), pd.Timedelta("30m"), pd.Timedelta("1m"), pd.Timedelta("1h"))
    assert watcher.detects == ("failure_burst",) and watcher.timeout == 3.0
    assert watcher.description == "Watches jobs and agents."
    # still a function: try it on DataFrames by hand
    assert watcher(pd.DataFrame(), pd.DataFrame(), None) is None
    changed = watcher.with_options(every="10m", name="slower")
    assert (changed.name, changed.every, changed.tables) == ("slower", pd.Timedelta("10m"), watcher.tables)
    with pytest.raises(RuleError, match="unknown rule option"):
        watcher.with_options(evry="1m")


def test_a_rule_may_only_read_tables_it_declared() -> None:
    seen: list[str] = []

    @rule(every="1m", window="1h", full_window=False, tables=("metrics",))
    def sneaky(ctx):  # type: ignore[no-untyped-def]
        seen.append(repr(ctx))
        ctx.table("metrics")
        ctx.table("jobs")

    engine = RuleEngine(EventStore(), [sneaky])
    engine.run_due(pd.Timestamp("2026-01-05T01:00:00Z"))
    assert seen and "sneaky" in seen[0]
    assert "reads table 'jobs' without declaring it" in engine.errors.loc[0, "message"]


def test_incremental_rules_are_classes_with_tables() -> None:
    @rule(every="1m", window="10m")
    class Quiet(IncrementalRule):
        """Never fires."""

        tables = ("agent_events",)

        def evaluate(self, ctx):  # type: ignore[no-untyped-def]
            return None

    assert Quiet.incremental and Quiet.tables == ("agent_events",) and Quiet.description == "Never fires."
    assert isinstance(Quiet.new_state(), IncrementalRule)
    with pytest.raises(RuleError, match="is incremental"):
        Quiet()
    with pytest.raises(RuleError, match="reads no table"):
        rule(type("Bare", (IncrementalRule,), {}))
    with pytest.raises(RuleError, match="not an IncrementalRule"):
        Rule(lambda: object(), name="odd", tables=("metrics",), incremental=True).new_state()


def test_bad_options_are_named() -> None:
    def fn(metrics):  # type: ignore[no-untyped-def]
        return Insight("x")

    with pytest.raises(RuleError, match="every and window must be longer than zero"):
        rule(every=0)(fn)
    with pytest.raises(RuleError, match="timeout must be a positive"):
        rule(timeout=0)(fn)
    with pytest.raises(RuleError, match="max_failures"):
        rule(max_failures=0)(fn)
    with pytest.raises(RuleError, match="identifier-like"):
        rule(name="two words")(fn)
    assert rule(lambda metrics: None).name == "lambda"
