"""Backtests: the live engine's code path on a simulated clock, from every kind of source."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aios_notebook.exceptions import ConfigurationError, RuleError
from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingWriter
from aios_notebook.rules import Insight, RuleEngine, backtest, library, load_rules, rule
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore

HOURS = 4.5  # the first anomaly window opens at 3 h


@functools.cache
def events(scenario: str = "failure_burst", seed: int = 5) -> tuple[tuple[float, str, dict[str, Any]], ...]:
    return tuple(generate(seed=seed, scenario=scenario, hours=HOURS))


@rule(every="5m", window="30m", cooldown="30m")
def failed_jobs_now(jobs: pd.DataFrame) -> Insight | None:
    """A rule over a latest-state table: jobs whose latest status is failed, updated in the window."""
    failed = jobs[jobs["status"] == "failed"]
    if len(failed) >= 5:
        return Insight("Many failed jobs", f"{len(failed)} jobs are failed", evidence={"failed": len(failed)})
    return None


def fast_rules() -> list[Any]:
    return [library.failure_burst(), library.stuck_jobs(), library.agent_offline(), library.knowledge_stall()]


def signature(firings: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(zip(firings["time"], firings["rule"], firings["key"], firings["fingerprint"], strict=True))


def test_backtest_fires_what_the_live_engine_fires() -> None:
    rules = [*fast_rules(), failed_jobs_now, library.dag_step_failures()]
    history = events()
    replayed = backtest(rules, history)
    assert set(replayed["rule"]) >= {"failure_burst", "failed_jobs_now"}

    # live: a store fed minute by minute, the engine run at each minute on the stream's clock
    store = EventStore()
    engine = RuleEngine(store, rules, enforce_timeouts=False)
    start = pd.Timestamp(history[0][0], unit="s", tz="UTC")
    engine.schedule_from(start)
    position = 0
    minute = start.ceil("min")
    end = pd.Timestamp(history[-1][0], unit="s", tz="UTC")
    while minute <= end:
        stop = position
        while stop < len(history) and history[stop][0] <= minute.timestamp():
            stop += 1
        store.ingest({"event": e, "data": d} for _, e, d in history[position:stop])
        position = stop
        engine.run_due(minute)
        minute += pd.Timedelta(minutes=1)
    assert signature(engine.firings) == signature(replayed)
    assert replayed.attrs["evaluations"] == engine.evaluations


def test_every_kind_of_source_gives_the_same_firings(tmp_path: Path) -> None:
    history = events()
    expected = signature(backtest(fast_rules(), history))
    assert expected
    frames = [encode(e, d) for _, e, d in history]
    dicts = [{"event": e, "data": d} for _, e, d in history]
    store = EventStore()
    store.ingest(frames)
    recording = tmp_path / "stream.jsonl"
    with RecordingWriter(recording, flush_interval=None) as writer:
        for t, frame in zip((t for t, _, _ in history), frames, strict=True):
            writer.write(frame, t)
    for source in (frames, dicts, store, str(recording), recording):
        assert signature(backtest(fast_rules(), source)) == expected, type(source).__name__


def test_events_out_of_order_are_put_in_time_order() -> None:
    history = list(events())
    shuffled = history[:]
    random.Random(3).shuffle(shuffled)
    rules = [*fast_rules(), failed_jobs_now]
    assert signature(backtest(rules, shuffled)) == signature(backtest(rules, history))


def test_start_and_end_bound_the_evaluations() -> None:
    history = events()
    everything = backtest(fast_rules(), history)
    window = backtest(fast_rules(), history, start="2026-01-05T03:00:00Z", end="2026-01-05T03:30:00Z")
    assert window.attrs["start"] == pd.Timestamp("2026-01-05T03:00:00Z")
    assert window.attrs["end"] == pd.Timestamp("2026-01-05T03:30:00Z")
    assert len(window) and window["time"].between(window.attrs["start"], window.attrs["end"]).all()
    inside = everything[everything["time"].between(window.attrs["start"], window.attrs["end"])]
    # history before the start still fills the windows: the same firings in the span
    assert signature(window) == signature(inside)


def test_an_empty_source_gives_no_firings() -> None:
    firings = backtest(library.builtins(), [])
    assert firings.empty and list(firings.columns)[:3] == ["time", "rule", "key"]
    assert firings.attrs["events"] == 0 and firings.attrs["start"] is None
    assert set(firings.attrs["rules"]) == {r.name for r in library.builtins()}
    assert backtest(library.builtins(), EventStore()).empty


def test_a_store_with_a_gap_is_no_data_there() -> None:
    history = events()
    store = EventStore()
    store.ingest({"event": e, "data": d} for _, e, d in history)
    everything = backtest([library.failure_burst()], store)
    assert len(everything)
    first = everything["time"].min()
    store.add_gap(first - pd.Timedelta(minutes=30), first + pd.Timedelta(minutes=30), "lost connection")
    gapped = backtest([library.failure_burst()], store)
    assert first not in set(gapped["time"])
    # the slow path rebuilds the store from its frames and keeps the gap too
    slow = backtest([library.failure_burst(), failed_jobs_now], store)
    assert first not in set(slow.loc[slow["rule"] == "failure_burst", "time"])


def test_bad_sources_and_rules_are_named() -> None:
    with pytest.raises(ConfigurationError, match="backtest source must be"):
        backtest(library.builtins(), 42)
    with pytest.raises(RuleError, match="item 1 of the rules is a str"):
        backtest([library.stuck_jobs(), "stuck_jobs"], [])
    with pytest.raises(RuleError, match="share the name"):
        backtest([library.stuck_jobs(), library.stuck_jobs()], [])
    # frames that are not events do not stop the backtest: the store records them
    firings = backtest([library.failure_burst()], ["not json", b"\x00binary", {"event": "nonsense"}])
    assert firings.empty and firings.attrs["events"] == 3


def test_load_rules_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "my_rules.py"
    path.write_text(
        "from aios_notebook.rules import rule, Insight, library\n"
        "@rule(every='5m', window='1h', detects=('failure_burst',))\n"
        "def failing(job_events):\n"
        "    return None\n"
        "burst = library.failure_burst(name='burst')\n",
        encoding="utf-8",
    )
    assert [r.name for r in load_rules(path)] == ["failing", "burst"]
    path.write_text("from aios_notebook.rules import library\nRULES = [library.stuck_jobs()]\n", encoding="utf-8")
    assert [r.name for r in load_rules(path)] == ["stuck_jobs"]
    assert len(load_rules("builtins")) == 9
    path.write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(RuleError, match="defines no rule"):
        load_rules(path)
    path.write_text("raise RuntimeError('typo')\n", encoding="utf-8")
    with pytest.raises(RuleError, match=r"my_rules\.py failed to load: RuntimeError: typo"):
        load_rules(path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_rules(tmp_path / "missing.py")


def test_the_backtest_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aios_notebook.cli import main
    from aios_notebook.server.scenarios import labels_document
    from aios_notebook.server.workload import DEFAULT_START

    history = events()
    recording = tmp_path / "burst.jsonl.gz"
    with RecordingWriter(recording, flush_interval=None) as writer:
        for t, e, d in history:
            writer.write(encode(e, d), t)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(labels_document("failure_burst", 5, DEFAULT_START, DEFAULT_START + HOURS * 3600)))
    rules = tmp_path / "rules.py"
    rules.write_text("from aios_notebook.rules import library\nRULES = [library.failure_burst(), library.stuck_jobs()]\n")
    output = tmp_path / "firings.csv"
    code = main(["backtest", str(rules), "--log", str(recording), "--labels", str(labels), "-o", str(output)])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"{len(history):,} events" in printed and "2 rules" in printed
    assert "scores against" in printed and "failure_burst" in printed
    written = pd.read_csv(output)
    assert len(written) and set(written["rule"]) <= {"failure_burst", "stuck_jobs"}
    assert json.loads(written.loc[0, "evidence"])["window_end"].endswith("Z")
    # a missing recording is an error naming the file, not a traceback
    assert main(["backtest", str(rules), "--log", str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl" in capsys.readouterr().err
