"""A live RuleEngine on the stream's clock: started before the first event it waits for the stream's
time (the store's ``now`` is the wall clock until then) and fires what a backtest of the same
stream fires; a clock given is the engine's only clock."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from aios_notebook import AIOSClient
from aios_notebook.clock import ManualClock
from aios_notebook.exceptions import RuleError
from aios_notebook.rules import Insight, RuleEngine, backtest, library, rule
from aios_notebook.server import Simulator
from aios_notebook.server.workload import DEFAULT_START
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(180)

START = pd.Timestamp(DEFAULT_START, unit="s", tz="UTC")  # months before the wall clock
SHAPE = {"first": "1h", "length": "30m", "period": "1h"}


@rule(every="5m", window="10m", cooldown="20m", full_window=False)
def pdf_failures(job_events: pd.DataFrame) -> Insight | None:
    failed = job_events[(job_events["event"] == "processing_job_failed") & (job_events["type"] == "pdf")]
    if len(failed) >= 2:
        return Insight("PDF failures", f"{len(failed)} pdf jobs failed", key="pdf", evidence={"failed": len(failed)})
    return None


def signature(firings: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(zip(firings["time"], firings["rule"], firings["key"], firings["fingerprint"], strict=True))


def test_an_engine_started_before_the_first_event_fires_what_backtest_fires() -> None:
    rules = [library.failure_burst(baseline="40m"), library.success_rate_drop(baseline="40m"), pdf_failures]
    sim = Simulator(seed=5, speed=3600, heartbeat=1.0, start=START.isoformat(), scenario="failure_burst",
                    scenario_params=SHAPE).start_in_thread()
    client = AIOSClient(sim.url, sim.token, snapshots=False)
    try:
        # what a user writes right after connecting: the engine runs before any event arrived
        engine = RuleEngine(client.store, rules, poll=0.05).start()
        assert sum(client.store.counts[t] for t in ("job_events", "agent_events")) == 0
        assert client.store.now > START + pd.Timedelta(days=30)  # before an event, now is the wall clock
        try:
            client.start()
            # an event first: until one is in, now is the wall clock, long past the mark
            client.wait_for(lambda s: s.counts["job_events"] and s.now >= START + pd.Timedelta(hours=3.2),
                            timeout=120)
            client.stop()
            live = engine.firings  # what the thread found while the stream ran
        finally:
            engine.stop()
    finally:
        client.stop()
        sim.stop()
    assert engine.errors.empty, engine.errors["message"].tolist()
    assert set(live["rule"]) >= {"failure_burst", "pdf_failures"}
    last_event = client.store.now
    assert START < last_event < START + pd.Timedelta(days=2)
    assert (live["time"] <= last_event).all()  # on the stream's time, not the wall's
    engine.run_due()  # the due instants up to the last event, if the thread had not reached them yet
    replayed = backtest(rules, client.store, publish=False)
    assert len(replayed) >= 3
    assert signature(engine.firings) == signature(replayed)
    assert engine.firings["evidence"].tolist() == replayed["evidence"].tolist()
    # the engine's schedule began at the stream's first event, as the backtest's did
    assert engine.transitions["time"].min() >= START


def at(minutes: float) -> str:
    return (START + pd.Timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def failed(minutes: float, job: str) -> dict[str, Any]:
    return {"event": "processing_job_failed", "data": {
        "job_id": job, "run_id": f"run-{job}", "type": "pdf", "status": "failed", "error": "boom",
        "retry_count": 0, "can_retry": True, "timestamp": at(minutes)}}


def test_an_empty_store_is_waited_for_and_a_rule_added_later_starts_from_now() -> None:
    store = EventStore()
    engine = RuleEngine(store, [pdf_failures], publish=False)
    assert engine.run_due() == [] and engine.evaluations == 0  # nothing to anchor on yet
    store.ingest([failed(1, "a"), failed(2, "b"), failed(31, "c")])
    fired = engine.run_due()  # from the first event (00:01): 00:05, 00:10 .. 00:30, the last before 00:31
    assert [f["time"] for f in fired] == [pd.Timestamp(at(5)).value]
    assert engine.evaluations == 6
    # a rule added to a running stream starts from the stream's time, not from its beginning
    engine.add(pdf_failures.with_options(name="added_later"))
    assert engine.run_due() == [] and engine.evaluations == 6  # scheduled from 00:31: first due 00:35
    store.ingest([failed(36, "d"), failed(41, "e")])
    fired = engine.run_due()
    forty = pd.Timestamp(at(40)).value  # windows (00:30, 00:40]: the failures at 00:31 and 00:36
    assert sorted((f["rule"], f["time"]) for f in fired) == [("added_later", forty), ("pdf_failures", forty)]
    assert engine.evaluations == 6 + 2 + 2  # each at 00:35 and 00:40


def test_the_engine_times_evaluations_on_the_clock_it_is_given() -> None:
    store = EventStore()
    store.ingest([failed(1, "a"), failed(2, "b")])
    clock = ManualClock(pd.Timestamp(at(5)).timestamp())

    @rule(every="5m", window="10m", timeout=2.0, full_window=False)
    def slow_on_the_clock(job_events: pd.DataFrame) -> None:
        clock.advance(3.0)  # three seconds pass on the engine's clock (none on the wall's)

    engine = RuleEngine(store, [slow_on_the_clock], clock=clock, enforce_timeouts=False, publish=False)
    engine.run_due()
    assert engine.evaluations == 1
    assert engine.errors["error"].tolist() == ["RuleTimeout"]
    assert "longer than its timeout of 2 s" in engine.errors["message"].iloc[0]


def test_a_clock_that_is_not_a_clock_is_named() -> None:
    with pytest.raises(RuleError, match=r"clock must have time\(\) and monotonic\(\) \(a Clock\), not str"):
        RuleEngine(EventStore(), [pdf_failures], clock="wall")  # type: ignore[arg-type]
