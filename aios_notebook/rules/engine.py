"""The rule engine: schedules, states per (rule, key), isolation of failing rules.

One engine evaluates rules live and in a backtest, through the same :meth:`RuleEngine.run_due`:
every rule falls due on multiples of its ``every`` (event time), and each due instant ``t`` is
evaluated over the window ``(t - window, t]`` of the store's tables. Live, a background thread calls
``run_due`` as the stream's clock (``store.now``, or a clock given) moves; a backtest calls it on a
simulated clock that jumps from one evaluation to the next.

On the stream's clock, a rule's schedule starts where the stream's time is when it is first looked
at. Before the first event the store's ``now`` is its wall clock, not stream time, so the engine
waits: a rule that found the store empty is scheduled from the stream's first event (the earliest
row of the rules' tables), as a backtest of the same stream is, and so fires as that backtest does.

States per (rule, key)::

    Normal --condition--> Pending --held for `pending`, cooldown over--> Firing
    Firing --condition clears--> Resolved --> Normal
    Pending --condition clears--> Normal

A key fires at most once per ``cooldown``. A rule whose window reaches before the data begins
(``full_window``) or overlaps a gap of the stream (``store.gaps``) is NoData: it is not evaluated
and its keys keep their states. A rule that raises, returns something other than insights or runs
longer than its ``timeout`` is recorded in the store's errors (kind ``rule_error``, naming the rule
and the window) and skipped; after ``max_failures`` failures in a row it is disabled. The stream
and the other rules go on.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..clock import Clock, WallClock
from ..exceptions import RuleError
from ..storelike import StoreLike
from .api import Rule
from .evaluation import RuleRunner, State, as_ns, frame_of, iso
from .windows import Snapshot

__all__ = ["RuleEngine", "State"]


_FIRING_COLUMNS = [
    "time", "rule", "key", "title", "description", "type", "confidence", "window_start",
    "window_end", "resolved_at", "fingerprint", "insight_id", "evidence", "metadata",
]
_TIME_COLUMNS = ("time", "window_start", "window_end", "resolved_at")


class RuleEngine:
    """Runs rules over a store, live (``start()``) or step by step (``run_due(now)``).

    Args:
        store: the EventStore the rules read, and where their insights and errors go.
        rules: rules to run (more with :meth:`add`).
        clock: where "now" comes from (``clock.time()``), and what times evaluations against rules'
            timeouts (``clock.monotonic()``); default ``store.now`` (the stream's event time), and
            the wall clock for timeouts.
        poll: seconds between two looks at the clock when running live.
        enforce_timeouts: run each evaluation in a helper thread and give up on it after the
            rule's ``timeout`` (live default). Without it an overrun is measured and reported
            after the fact (backtests, where a thread per evaluation would cost too much).
        publish: write firings to ``store.add_insights`` and failures to ``store.add_error``.
    """

    def __init__(
        self,
        store: StoreLike,
        rules: Rule | Iterable[Rule] = (),
        *,
        clock: Clock | None = None,
        poll: float = 0.5,
        enforce_timeouts: bool = True,
        publish: bool = True,
    ) -> None:
        if not isinstance(poll, (int, float)) or not poll > 0:
            raise RuleError(f"poll must be a positive number of seconds, not {poll!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise RuleError(f"clock must have time() and monotonic() (a Clock), not {type(clock).__name__}")
        self.store = store
        self.clock = clock
        self._timer: Clock = clock if clock is not None else WallClock()
        self.poll = float(poll)
        self.enforce_timeouts = enforce_timeouts
        self.publish = publish
        self._runners: dict[str, RuleRunner] = {}
        self._lock = threading.RLock()
        self._firings: list[dict[str, Any]] = []
        # bounded: a flapping rule must not grow memory without end on a long live run
        self._transitions: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._errors: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._subscription: Any = None
        self.evaluations = 0
        for item in [rules] if isinstance(rules, Rule) else rules:
            self.add(item)

    # -- rules --------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        """Start running ``rule`` (replacing a rule of the same name, whose states are dropped)."""
        if not isinstance(rule, Rule):
            raise RuleError(f"{rule!r} is not a rule: declare it with @rule(...)")
        with self._lock:
            self._runners[rule.name] = RuleRunner(rule, self)
        return rule

    def remove(self, name: str) -> None:
        """Stop running the rule called ``name``."""
        with self._lock:
            if self._runners.pop(name, None) is None:
                raise RuleError(f"no rule called {name!r} (rules: {', '.join(self._runners) or 'none'})")

    @property
    def rules(self) -> list[Rule]:
        return [runner.rule for runner in self._runners.values()]

    def schedule_from(self, moment: Any) -> None:
        """Make every rule's first evaluation the first multiple of its ``every`` at or after ``moment``."""
        t = as_ns(moment)
        if t is None:
            raise RuleError(f"schedule_from needs a time, not {moment!r}")
        with self._lock:
            for runner in self._runners.values():
                runner.next_due = -(-t // runner.rule.every_ns) * runner.rule.every_ns

    # -- evaluation -----------------------------------------------------------------------------
    def monotonic(self) -> float:
        """Seconds that never go backwards (the clock's), for timing evaluations."""
        return self._timer.monotonic()

    def now_ns(self) -> int | None:
        """The engine's "now": the clock when one was given, else ``store.now``."""
        if self.clock is not None:
            return as_ns(self.clock.time())
        return as_ns(self.store.now)

    def run_due(
        self,
        now: Any = None,
        *,
        rules: Iterable[str] | None = None,
        snapshot: Snapshot | None = None,
    ) -> list[dict[str, Any]]:
        """Evaluate every due instant up to ``now`` (default :meth:`now_ns`), oldest first.

        Args:
            now: the time to catch up to.
            rules: names of the rules to consider (default all).
            snapshot: tables already read (a backtest reads its event tables once); by default
                each call reads the tables the due rules need from the store once.

        Returns:
            The firings of this call (also kept in :attr:`firings`).
        """
        with self._lock:
            t_now = as_ns(now) if now is not None else self.now_ns()
            if t_now is None:
                return []
            names = set(rules) if rules is not None else None
            wanted = [runner for runner in self._runners.values()
                      if not runner.disabled and (names is None or runner.rule.name in names)]
            unscheduled = [runner for runner in wanted if runner.next_due is None]
            if unscheduled:
                stream = now is None and self.clock is None
                self._anchor(unscheduled, t_now, stream)
                if stream:  # read after the tables: the stream's time once they hold an event
                    t_now = self.now_ns() or t_now
            due = [runner for runner in wanted if runner.next_due is not None and runner.next_due <= t_now]
            if not due:
                return []
            if snapshot is None:
                tables = [table for runner in due for table in runner.rule.tables]
                snapshot = Snapshot(self.store, tables)
            gaps = self._gaps()
            fired: list[dict[str, Any]] = []
            for runner in due:
                every = runner.rule.every_ns
                while runner.next_due is not None and runner.next_due <= t_now and not runner.disabled:
                    t = runner.next_due
                    runner.next_due = t + every
                    self.evaluations += 1
                    fired.extend(runner.evaluate(t, snapshot, gaps))
            self._firings.extend(fired)
            if self.publish and fired:
                self._publish(fired)
            return fired

    def _anchor(self, runners: list[RuleRunner], t_now: int, stream: bool) -> None:
        """Start the schedule of ``runners`` (rules not yet scheduled) at ``t_now``, or on the
        stream's clock at its first event when they found the store empty."""
        if not runners:
            return
        start = t_now
        if stream:
            tables = [table for runner in runners for table in runner.rule.tables]
            first = Snapshot(self.store, tables).first_ns(tables)
            if first is None:  # no event yet: store.now is the wall clock, not the stream's time
                for runner in runners:
                    runner.waited = True
                return
            start = self.now_ns() or t_now  # read after the tables, so it is the stream's time
            waited = [runner for runner in runners if runner.waited]
            if waited:  # the stream began after they were started: from its first event on
                for runner in waited:
                    runner.next_due = -(-first // runner.rule.every_ns) * runner.rule.every_ns
                runners = [runner for runner in runners if not runner.waited]
        for runner in runners:
            every = runner.rule.every_ns
            runner.next_due = -(-start // every) * every

    def _gaps(self) -> tuple[np.ndarray, np.ndarray]:
        gaps = self.store.gaps
        if len(gaps) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        starts = np.array([as_ns(v) for v in gaps["start"]], dtype=object)
        ends = np.array([as_ns(v) for v in gaps["end"]], dtype=object)
        known = np.array([s is not None for s in starts])
        # a gap still open (no end yet) reaches to the end of time
        ends = np.array([np.iinfo(np.int64).max if e is None else e for e in ends], dtype=object)
        return starts[known].astype(np.int64), ends[known].astype(np.int64)

    def _publish(self, fired: list[dict[str, Any]]) -> None:
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for firing in fired:
            record = {
                "insight_id": firing["insight_id"],
                "title": firing["title"],
                "description": firing["description"],
                "type": firing["type"],
                "confidence": firing["confidence"],
                "metadata": dict(firing["metadata"]),
                "created_at": iso(firing["time"]),
                "timestamp": iso(firing["time"]),
                "rule": firing["rule"],
                "key": firing["key"],
                "fingerprint": firing["fingerprint"],
                "evidence": dict(firing["evidence"]),
            }
            by_rule.setdefault(firing["rule"], []).append(record)
        for name, records in by_rule.items():
            try:
                self.store.add_insights(records, source=f"rule:{name}")
            except Exception as exc:  # the store refusing insights must not stop the rules
                self.record_error(name, None, None, f"store.add_insights failed: {exc!r}", type(exc).__name__)

    # -- bookkeeping used by the runners ----------------------------------------------------------
    def record_transition(self, t: int, rule: str, key: str | None, old: str, new: str) -> None:
        self._transitions.append({"time": t, "rule": rule, "key": key, "from": old, "to": new})

    def record_error(
        self,
        rule: str,
        start: int | None,
        end: int | None,
        message: str,
        error_type: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Keep a rule failure and write it to the store's errors (kind ``rule_error``)."""
        row = {"rule": rule, "window_start": start, "window_end": end, "error": error_type, "message": message}
        self._errors.append(row)
        if not self.publish:
            return
        with contextlib.suppress(Exception):
            self.store.add_error(
                "rule_error",
                message,
                code=error_type,
                start=None if start is None else pd.Timestamp(start, unit="ns", tz="UTC"),
                end=None if end is None else pd.Timestamp(end, unit="ns", tz="UTC"),
                details={"rule": rule, **(details or {})},
            )

    # -- results as DataFrames ---------------------------------------------------------------------
    @property
    def firings(self) -> pd.DataFrame:
        """Every firing so far: time (event time), rule, key, insight fields, window, resolution."""
        with self._lock:
            return firings_frame(self._firings)

    @property
    def transitions(self) -> pd.DataFrame:
        """Every state change: time, rule, key (None: the rule itself), from, to."""
        with self._lock:
            return frame_of(list(self._transitions), ["time", "rule", "key", "from", "to"], ["time"])

    @property
    def errors(self) -> pd.DataFrame:
        """Rule failures: rule, window_start, window_end, error (its class), message."""
        with self._lock:
            return frame_of(
                list(self._errors),
                ["rule", "window_start", "window_end", "error", "message"],
                ["window_start", "window_end"],
            )

    @property
    def status(self) -> pd.DataFrame:
        """The current state of every rule and key: rule, key, state, since, last_fired, failures."""
        rows = []
        with self._lock:
            for runner in self._runners.values():
                rows.extend(runner.status_rows())
        return frame_of(rows, ["rule", "key", "state", "since", "last_fired", "failures"], ["since", "last_fired"])

    # -- running live -------------------------------------------------------------------------
    def start(self) -> RuleEngine:
        """Run the rules in a background thread as the stream's clock moves (``stop()`` ends it)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            # a change batch wakes the loop early; the poll interval bounds the wait anyway
            self._subscription = self.store.subscribe(lambda _batch: self._wake.set())
            self._thread = threading.Thread(target=self._loop, name="aios-rule-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread (evaluations in progress finish first)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        if self._subscription is not None:
            close = getattr(self._subscription, "close", None)
            if close is not None:
                close()
            self._subscription = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception as exc:  # reading the store failed: report it and keep going
                self.record_error("*", None, None, f"rule engine pass failed: {exc!r}", type(exc).__name__)
            self._wake.wait(self.poll)
            self._wake.clear()

    def __enter__(self) -> RuleEngine:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RuleEngine {state}: {len(self._runners)} rules, {len(self._firings)} firings>"


def firings_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Firing records (times as int ns) -> the firings DataFrame, in time order."""
    frame = frame_of(records, _FIRING_COLUMNS, _TIME_COLUMNS)
    if len(frame):
        frame = frame.sort_values(["time", "rule", "key"], kind="stable").reset_index(drop=True)
    return frame
