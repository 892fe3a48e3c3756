"""The rule engine over a real EventStore: states, cooldown, NoData, isolation, live running."""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd
import pytest

from aios_notebook.clock import ManualClock
from aios_notebook.exceptions import RuleError
from aios_notebook.rules import IncrementalRule, Insight, RuleEngine, rule
from aios_notebook.rules.windows import Rows
from aios_notebook.store import EventStore

T0 = pd.Timestamp("2026-01-05T00:00:00Z")


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def iso(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def failed(minutes: float, job: str = "job-1", job_type: str = "pdf") -> dict[str, Any]:
    return {"event": "processing_job_failed", "data": {
        "job_id": job, "run_id": f"run-{job}", "type": job_type, "status": "failed",
        "error": "boom", "retry_count": 0, "can_retry": True, "timestamp": iso(at(minutes))}}


def completed(minutes: float, job: str = "job-9", job_type: str = "pdf") -> dict[str, Any]:
    return {"event": "processing_job_completed", "data": {
        "job_id": job, "run_id": f"run-{job}", "type": job_type, "status": "completed", "progress": 100,
        "timestamp": iso(at(minutes))}}


@rule(every="1m", window="5m", pending="2m", cooldown="10m", full_window=False)
def two_failures(job_events: pd.DataFrame) -> Insight | None:
    """Fires when at least two jobs failed in the window."""
    failures = job_events[job_events["event"] == "processing_job_failed"]
    if len(failures) >= 2:
        return Insight("Failures", f"{len(failures)} failures", key="all", evidence={"failures": len(failures)})
    return None


def store_with(*events: dict[str, Any]) -> EventStore:
    store = EventStore()
    store.ingest(list(events))
    return store


def transitions(engine: RuleEngine, key: str | None = "all") -> list[tuple[float, str, str]]:
    frame = engine.transitions
    frame = frame[frame["key"].isna()] if key is None else frame[frame["key"] == key]
    return [((t - T0) / pd.Timedelta(minutes=1), a, b) for t, a, b in zip(frame["time"], frame["from"], frame["to"], strict=True)]


def test_pending_then_firing_then_resolved_then_cooldown() -> None:
    store = store_with(failed(0.5, "a"), failed(0.6, "b"))
    engine = RuleEngine(store, [two_failures])
    engine.schedule_from(at(1))
    engine.run_due(at(7))
    # pending from 1m, fires at 3m (held 2m), the failures leave the window after 5.6m
    assert transitions(engine) == [(1, "Normal", "Pending"), (3, "Pending", "Firing"),
                                   (6, "Firing", "Resolved"), (7, "Resolved", "Normal")]
    firings = engine.firings
    assert list(firings["time"]) == [at(3)]
    assert firings.loc[0, "resolved_at"] == at(6)
    assert firings.loc[0, "window_start"] == at(-2) and firings.loc[0, "window_end"] == at(3)
    assert firings.loc[0, "evidence"]["failures"] == 2
    assert firings.loc[0, "evidence"]["pending_since"] == "2026-01-05T00:01:00Z"
    # the condition comes back at 9m (two failures) and holds: pending is over at 11m, the
    # cooldown only at 13m
    store.ingest([failed(7.5 + i, f"c{i}") for i in range(8)])
    engine.run_due(at(15))
    assert list(engine.firings["time"]) == [at(3), at(13)]
    assert transitions(engine)[-2:] == [(9, "Normal", "Pending"), (13, "Pending", "Firing")]


def test_insights_reach_the_store_with_source_fingerprint_and_evidence() -> None:
    store = store_with(failed(0.5, "a"), failed(0.6, "b"))
    engine = RuleEngine(store, [two_failures.with_options(pending=0)])
    engine.schedule_from(at(1))
    engine.run_due(at(2))
    insights = store.insights
    assert len(insights) == 1
    row = insights.iloc[0]
    assert row["source"] == "rule:two_failures" and row["rule"] == "two_failures" and row["key"] == "all"
    assert row["fingerprint"] == engine.firings.loc[0, "fingerprint"] and len(row["fingerprint"]) == 16
    assert row["evidence"]["window_end"] == "2026-01-05T00:01:00Z" and row["evidence"]["failures"] == 2
    assert row["timestamp"] == at(1)
    # the same rule, key and window give the same fingerprint in another engine (de-duplication)
    again = RuleEngine(store_with(failed(0.5, "a"), failed(0.6, "b")), [two_failures.with_options(pending=0)])
    again.schedule_from(at(1))
    again.run_due(at(1))
    assert again.firings.loc[0, "fingerprint"] == row["fingerprint"]


def test_keys_have_their_own_states() -> None:
    @rule(every="1m", window="10m", cooldown="1h", full_window=False)
    def by_type(job_events: pd.DataFrame) -> list[Insight]:
        failures = job_events[job_events["event"] == "processing_job_failed"]
        return [Insight(f"{t} failing", key=t) for t, n in failures["type"].value_counts().items() if n >= 2]

    store = store_with(failed(0.1, "a", "pdf"), failed(0.2, "b", "pdf"), failed(2.5, "c", "url"), failed(2.6, "d", "url"))
    engine = RuleEngine(store, [by_type])
    engine.schedule_from(at(1))
    engine.run_due(at(4))
    firings = engine.firings
    assert list(zip(firings["time"], firings["key"], strict=True)) == [(at(1), "pdf"), (at(3), "url")]
    status = engine.status.set_index("key")
    assert status.loc["pdf", "state"] == "Firing" and status.loc["url", "state"] == "Firing"


def test_no_data_before_the_window_is_covered_and_over_gaps() -> None:
    calls: list[pd.Timestamp] = []

    @rule(every="1m", window="3m", cooldown=0)
    def count(job_events: pd.DataFrame, ctx: Any) -> Insight:
        calls.append(ctx.now)
        return Insight("seen", evidence={"rows": len(job_events)})

    events = [completed(m, f"j{m}") for m in range(0, 20)]
    store = store_with(*events)
    store.add_gap(iso(at(8.5)), iso(at(9.5)), "reconnect lost events")
    engine = RuleEngine(store, [count])
    engine.schedule_from(at(0))
    engine.run_due(at(16))
    minutes = [(t - T0) / pd.Timedelta(minutes=1) for t in calls]
    # the data begins at 0m: the first window fully covered is (0m, 3m]; windows touching the
    # gap (8.5m .. 9.5m) are NoData: those ending at 9m .. 12m
    assert minutes == [3, 4, 5, 6, 7, 8, 13, 14, 15, 16]
    assert transitions(engine, key=None) == [(0, "Normal", "NoData"), (3, "NoData", "Normal"),
                                             (9, "Normal", "NoData"), (13, "NoData", "Normal")]


def test_an_empty_store_is_no_data_and_fires_nothing() -> None:
    engine = RuleEngine(EventStore(), [two_failures.with_options(full_window=True)])
    engine.schedule_from(at(0))
    assert engine.run_due(at(30)) == []
    assert engine.evaluations == 31
    assert engine.status.iloc[0]["state"] == "NoData"


def test_a_failing_rule_is_recorded_isolated_and_disabled() -> None:
    @rule(every="1m", window="5m", max_failures=3, full_window=False)
    def broken(job_events: pd.DataFrame) -> None:
        raise ValueError("no such column")

    store = store_with(failed(0.5, "a"), failed(0.6, "b"))
    engine = RuleEngine(store, [broken, two_failures.with_options(pending=0)])
    engine.schedule_from(at(1))
    engine.run_due(at(6))
    errors = store.errors
    mine = errors[errors["kind"] == "rule_error"]
    assert len(mine) == 4  # three failures, then the notice that it is disabled
    first = mine.iloc[0]
    assert "broken" in first["message"] and "ValueError: no such column" in first["message"]
    assert "(2026-01-04T23:56:00Z .. 2026-01-05T00:01:00Z]" in first["message"]
    assert first["start"] == at(-4) and first["end"] == at(1)
    assert first["details"]["rule"] == "broken" and "ValueError" in first["details"]["traceback"]
    assert "disabled after 3 failure(s)" in mine.iloc[3]["message"]
    assert list(engine.errors["error"]) == ["ValueError"] * 3 + ["RuleDisabled"]
    # the other rule went on
    assert list(engine.firings["rule"]) == ["two_failures"]
    assert engine.status.set_index("rule").loc["broken", "state"] == "Disabled"


def test_a_wrong_return_type_is_reported_with_rule_and_window() -> None:
    @rule(every="1m", window="5m", full_window=False)
    def wrong(job_events: pd.DataFrame) -> Any:
        return {"title": "not an insight"}

    @rule(every="1m", window="5m", full_window=False)
    def mixed(job_events: pd.DataFrame) -> Any:
        yield Insight("fine")
        yield "oops"

    store = store_with(failed(0.5))
    engine = RuleEngine(store, [wrong, mixed])
    engine.schedule_from(at(1))
    engine.run_due(at(1))
    messages = list(engine.errors["message"])
    assert any("rule 'wrong' returned a dict on window (2026-01-04T23:56:00Z .. 2026-01-05T00:01:00Z]" in m
               for m in messages)
    assert any("rule 'mixed' returned a str among its insights" in m for m in messages)
    assert set(engine.errors["error"]) == {"RuleResultError"}
    assert engine.firings.empty


def test_a_rule_that_runs_too_long_is_cut_off_live() -> None:
    release = threading.Event()

    @rule(every="1m", window="5m", timeout=0.2, full_window=False)
    def stuck(job_events: pd.DataFrame) -> None:
        release.wait(5)  # longer than its timeout; released at the end of the test

    store = store_with(failed(0.5))
    engine = RuleEngine(store, [stuck, two_failures], enforce_timeouts=True)
    engine.schedule_from(at(1))
    try:
        began = time.monotonic()
        engine.run_due(at(3))
        assert time.monotonic() - began < 4  # the engine did not wait for the stuck rule
        assert list(engine.errors["error"]) == ["RuleTimeout", "RuleDisabled"]
        assert "ran longer than its timeout of 0.2 s on window (2026-01-04T23:56:00Z" in engine.errors.loc[0, "message"]
        assert engine.status.set_index("rule").loc["stuck", "state"] == "Disabled"
    finally:
        release.set()


def test_an_overrun_measured_after_the_fact_drops_the_result() -> None:
    @rule(every="1m", window="5m", timeout=0.01, pending=0, full_window=False)
    def slow(job_events: pd.DataFrame) -> Insight:
        time.sleep(0.05)
        return Insight("late")

    engine = RuleEngine(store_with(failed(0.5)), [slow], enforce_timeouts=False)
    engine.schedule_from(at(1))
    engine.run_due(at(1))
    assert engine.firings.empty
    assert "longer than its timeout of 0.01 s; its result is dropped" in engine.errors.loc[0, "message"]


class FailureCounter(IncrementalRule):
    """Failures per job type, kept up to date from the rows entering and leaving the window."""

    tables = ("job_events",)

    def __init__(self, seen: list[tuple[int, dict[str, int]]]) -> None:
        self.seen = seen
        self.counts: dict[str, int] = {}

    def reset(self) -> None:
        self.counts = {}

    def _update(self, rows: Rows, sign: int) -> None:
        mask = rows.isin("event", {"processing_job_failed"})
        for job_type in rows.values("type", mask):
            self.counts[job_type] = self.counts.get(job_type, 0) + sign

    def on_new(self, rows: Rows) -> None:
        self._update(rows, 1)

    def on_old(self, rows: Rows) -> None:
        self._update(rows, -1)

    def evaluate(self, ctx: Any) -> None:
        self.seen.append((ctx.now_ns, {k: v for k, v in self.counts.items() if v}))


def test_incremental_rule_matches_recomputation_with_late_events() -> None:
    from aios_notebook.rules import Rule

    incremental: list[tuple[int, dict[str, int]]] = []
    recomputed: list[tuple[int, dict[str, int]]] = []

    @rule(every="1m", window="7m", full_window=False)
    def plain(job_events: pd.DataFrame, ctx: Any) -> None:
        failures = job_events[job_events["event"] == "processing_job_failed"]
        recomputed.append((ctx.now_ns, {str(k): int(v) for k, v in failures["type"].value_counts().items() if v}))

    counter = Rule(lambda: FailureCounter(incremental), name="counter", every="1m", window="7m",
                   full_window=False, incremental=True, tables=("job_events",))
    store = EventStore()
    clock = ManualClock(at(0).timestamp())
    engine = RuleEngine(store, [counter, plain], clock=clock)
    engine.schedule_from(at(0))
    types = ["pdf", "url", "audio"]
    for minute in range(40):
        batch = [failed(minute + 0.1 * i, f"j{minute}-{i}", types[(minute + i) % 3]) for i in range(minute % 4)]
        if minute % 5 == 3:  # a late event: it belongs to a window already evaluated
            batch.append(failed(minute - 2.5, f"late{minute}", "pdf"))
        store.ingest(batch)
        clock.set(at(minute).timestamp())
        engine.run_due()
    assert len(incremental) == len(recomputed) == 40
    assert incremental == recomputed


def test_running_live_in_a_thread_follows_the_clock_and_stops() -> None:
    store = EventStore()
    clock = ManualClock(at(0).timestamp())
    engine = RuleEngine(store, [two_failures.with_options(pending=0)], clock=clock, poll=0.01)
    engine.schedule_from(at(1))  # else the first evaluation is wherever the clock is when the thread looks
    with engine:
        assert engine.running
        store.ingest([failed(0.2, "a"), failed(0.3, "b")])
        clock.set(at(2).timestamp())
        deadline = time.monotonic() + 10
        while engine.firings.empty and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(engine.firings["time"]) == [at(1)]
    assert not engine.running


def test_declaration_errors_name_the_problem() -> None:
    with pytest.raises(RuleError, match="parameter 'threshold' is neither a table"):
        rule(lambda job_events, threshold: None)
    with pytest.raises(RuleError, match="unknown table"):
        rule(tables=("jobz",))(lambda ctx: None)
    with pytest.raises(RuleError, match="reads no table"):
        rule(lambda ctx: None)
    with pytest.raises(RuleError, match="every 'soon' is not a duration"):
        rule(every="soon")(lambda job_events: None)
    with pytest.raises(RuleError, match="not a rule"):
        RuleEngine(EventStore(), [lambda job_events: None])  # type: ignore[list-item]
