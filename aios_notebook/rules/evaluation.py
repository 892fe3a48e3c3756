"""One rule's life in the engine: NoData checks, the incremental feed, isolation, the state machine.

:class:`RuleRunner` is internal to :class:`~aios_notebook.rules.engine.RuleEngine`; it evaluates
its rule at one instant and turns the insights into state changes and firings. Times are integer
nanoseconds since the epoch throughout (fast, exact); they become Timestamps only in the
DataFrames the engine hands out.
"""

from __future__ import annotations

import hashlib
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import RuleError, RuleResultError, RuleTimeout
from .api import Insight, Rule, RuleContext
from .windows import Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .engine import RuleEngine

__all__ = ["KeyState", "RuleRunner", "State", "as_ns", "frame_of", "iso", "iso_many", "ns_to_datetime"]

_NAT = np.iinfo(np.int64).min


class State:
    """Names of the states (strings, so that DataFrames of them read well)."""

    NORMAL = "Normal"
    PENDING = "Pending"
    FIRING = "Firing"
    RESOLVED = "Resolved"
    NODATA = "NoData"
    DISABLED = "Disabled"


NORMAL, PENDING, FIRING, RESOLVED, NODATA, DISABLED = (
    State.NORMAL, State.PENDING, State.FIRING, State.RESOLVED, State.NODATA, State.DISABLED,
)


def as_ns(value: Any) -> int | None:
    """A moment -> int nanoseconds since the epoch (numbers are epoch seconds); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RuleError(f"{value!r} is not a moment in time")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if value != value:  # NaN
            return None
        return round(float(value) * 1_000_000_000)
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise RuleError(f"{value!r} is not a moment in time") from None
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.as_unit("ns").value)


def iso(t: int) -> str:
    """Int nanoseconds -> ISO 8601 UTC with a trailing Z (the protocol's form)."""
    return pd.Timestamp(t, unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def iso_many(times: Iterable[int]) -> list[str]:
    """:func:`iso` of many int-nanosecond times at once (an evidence series' times)."""
    stamps = np.fromiter(times, dtype=np.int64).view("datetime64[ns]")
    return [text.replace(".000000", "") + "Z" for text in np.datetime_as_string(stamps, unit="us").tolist()]


def ns_to_datetime(values: Iterable[int | None]) -> pd.DatetimeIndex:
    """Int nanoseconds (None: missing) -> a UTC DatetimeIndex, without a lossy float round trip."""
    array = np.fromiter((_NAT if v is None else int(v) for v in values), dtype=np.int64)
    return pd.DatetimeIndex(array.view("datetime64[ns]")).tz_localize("UTC")


def frame_of(records: list[dict[str, Any]], columns: list[str], times: Iterable[str]) -> pd.DataFrame:
    """Records -> DataFrame with the given columns; ``times`` columns from int ns to datetimes."""
    data: dict[str, Any] = {c: [r.get(c) for r in records] for c in columns}
    for column in times:
        data[column] = ns_to_datetime(data[column])
    return pd.DataFrame(data, columns=columns)


def _plain(value: Any) -> Any:
    """Evidence and metadata made JSON-friendly (numpy scalars, Timestamps, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, datetime)):
        return iso(as_ns(value) or 0)
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    return value


class KeyState:
    """The state of one key of one rule."""

    __slots__ = ("firing", "last_fired", "pending_since", "since", "state")

    def __init__(self, t: int) -> None:
        self.state = NORMAL
        self.since = t
        self.pending_since: int | None = None
        self.last_fired: int | None = None
        self.firing: dict[str, Any] | None = None


class _Failure(Exception):
    """An evaluation that failed (already reported)."""


class RuleRunner:
    """Evaluates one rule for the engine and keeps its states."""

    def __init__(self, rule: Rule, engine: RuleEngine) -> None:
        self.rule = rule
        self.engine = engine
        self.impl = rule.new_state()
        self.keys: dict[str, KeyState] = {}
        self.next_due: int | None = None
        self.waited = False  # looked at before the stream had an event (see RuleEngine._anchor)
        self.failures = 0
        self.disabled = False
        self.nodata = False
        self.scratch: dict[str, Any] = {}
        self._fed: tuple[int, int] | None = None
        self._counts: dict[str, int] = {}

    # -- one evaluation ---------------------------------------------------------------------------
    def evaluate(self, t: int, snapshot: Snapshot, gaps: tuple[np.ndarray, np.ndarray]) -> list[dict[str, Any]]:
        """Evaluate at ``t``; the firings it causes."""
        rule = self.rule
        start = t - rule.window_ns
        if self._no_data(t, start, snapshot, gaps):
            if not self.nodata:
                self.nodata = True
                self._fed = None  # what was fed may be missing rows: start again after the gap
                self.engine.record_transition(t, rule.name, None, NORMAL, NODATA)
            return []
        if self.nodata:
            self.nodata = False
            self.engine.record_transition(t, rule.name, None, NODATA, NORMAL)
        try:
            insights = self._run(t, start, snapshot)
        except _Failure:
            return []
        self.failures = 0
        return self._apply(t, start, insights)

    def _no_data(self, t: int, start: int, snapshot: Snapshot, gaps: tuple[np.ndarray, np.ndarray]) -> bool:
        if self.rule.full_window:
            first = snapshot.first_ns(self.rule.tables)
            if first is None or start < first:
                return True
        starts, ends = gaps
        return bool(len(starts)) and bool(((starts < t) & (ends > start)).any())

    def _run(self, t: int, start: int, snapshot: Snapshot) -> list[Insight]:
        rule = self.rule
        ctx = RuleContext(rule, t, snapshot, self.scratch)
        began = self.engine.monotonic()
        try:
            if self.engine.enforce_timeouts:
                insights = _bounded(lambda: self._compute(ctx, snapshot, start, t), rule.timeout)
            else:
                insights = self._compute(ctx, snapshot, start, t)
        except _Overrun:
            self._fed = None
            self._fail(start, t, RuleTimeout(
                f"rule {rule.name!r} ran longer than its timeout of {rule.timeout:g} s on window "
                f"({iso(start)} .. {iso(t)}]; disabled, since a running evaluation cannot be stopped"
            ), disable=True)
            raise _Failure from None
        except Exception as exc:
            self._fed = None  # the incremental state may be half-updated: rebuild it next time
            self._fail(start, t, exc)
            raise _Failure from None
        elapsed = self.engine.monotonic() - began
        if elapsed > rule.timeout:
            self._fed = None
            self._fail(start, t, RuleTimeout(
                f"rule {rule.name!r} ran {elapsed:.3g} s on window ({iso(start)} .. {iso(t)}], "
                f"longer than its timeout of {rule.timeout:g} s; its result is dropped"
            ))
            raise _Failure
        return insights

    def _compute(self, ctx: RuleContext, snapshot: Snapshot, start: int, t: int) -> list[Insight]:
        if self.impl is not None:
            self._feed(snapshot, start, t)
            result = self.impl.evaluate(ctx)
        else:
            result = self.rule.call(ctx)
        return _insights(result, self.rule.name, start, t)

    def _feed(self, snapshot: Snapshot, start: int, t: int) -> None:
        """Bring the incremental state from the last window to ``(start, t]``."""
        impl = self.impl
        assert impl is not None
        tables = self.rule.tables
        fed, self._fed = self._fed, None
        if fed is not None:
            old_start, old_end = fed
            if old_end <= t and old_start <= start < old_end and all(
                _count(snapshot, name, old_start, old_end) == self._counts.get(name) for name in tables
            ):
                for name in tables:
                    table = snapshot.table(name)
                    if start > old_start:
                        rows = table.rows(old_start, start)
                        if len(rows):
                            impl.on_old(rows)
                    if t > old_end:
                        rows = table.rows(old_end, t)
                        if len(rows):
                            impl.on_new(rows)
                    self._counts[name] = _count(snapshot, name, start, t)
                self._fed = (start, t)
                return
        # first window, a window that does not follow the last one, or rows that arrived late
        # (or were dropped) inside the last window: start from an empty state
        impl.reset()
        for name in tables:
            rows = snapshot.table(name).rows(start, t)
            if len(rows):
                impl.on_new(rows)
            self._counts[name] = len(rows)
        self._fed = (start, t)

    def _fail(self, start: int, t: int, exc: BaseException, disable: bool = False) -> None:
        rule = self.rule
        self.failures += 1
        window = f"({iso(start)} .. {iso(t)}]"
        if isinstance(exc, (RuleTimeout, RuleResultError)):
            message = str(exc)
        else:
            message = f"rule {rule.name!r} raised on window {window}: {type(exc).__name__}: {exc}"
        details = {"window": window, "failures": self.failures}
        if not isinstance(exc, RuleError):
            details["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        self.engine.record_error(rule.name, start, t, message, type(exc).__name__, details)
        if disable or self.failures >= rule.max_failures:
            self.disabled = True
            self.engine.record_transition(t, rule.name, None, NORMAL, DISABLED)
            self.engine.record_error(
                rule.name, start, t,
                f"rule {rule.name!r} disabled after {self.failures} failure(s) in a row "
                f"(last on window {window})",
                "RuleDisabled",
            )

    # -- states ---------------------------------------------------------------------------------
    def _apply(self, t: int, start: int, insights: list[Insight]) -> list[dict[str, Any]]:
        rule = self.rule
        record = self.engine.record_transition
        active: dict[str, Insight] = {}
        for insight in insights:
            active.setdefault(insight.key, insight)  # one state per key: the first insight wins
        fired: list[dict[str, Any]] = []
        for key, insight in active.items():
            state = self.keys.get(key)
            if state is None:
                state = self.keys[key] = KeyState(t)
            if state.state == FIRING:
                continue
            if state.state != PENDING:
                state.pending_since = t
            assert state.pending_since is not None
            cooled = state.last_fired is None or t - state.last_fired >= rule.cooldown_ns
            if t - state.pending_since >= rule.pending_ns and cooled:
                record(t, rule.name, key, state.state, FIRING)
                state.state, state.since, state.last_fired = FIRING, t, t
                state.firing = self._firing(t, start, key, insight, state.pending_since)
                fired.append(state.firing)
            elif state.state != PENDING:
                record(t, rule.name, key, state.state, PENDING)
                state.state, state.since = PENDING, t
        for key in [k for k in self.keys if k not in active]:
            state = self.keys[key]
            if state.state == FIRING:
                record(t, rule.name, key, FIRING, RESOLVED)
                state.state, state.since = RESOLVED, t
                if state.firing is not None:
                    state.firing["resolved_at"] = t
                    state.firing = None
            elif state.state in (PENDING, RESOLVED):
                record(t, rule.name, key, state.state, NORMAL)
                state.state, state.since = NORMAL, t
            if state.state == NORMAL and (
                state.last_fired is None or t - state.last_fired >= rule.cooldown_ns
            ):
                del self.keys[key]  # nothing left to remember about it
        return fired

    def _firing(self, t: int, start: int, key: str, insight: Insight, pending_since: int) -> dict[str, Any]:
        name = self.rule.name
        fingerprint = hashlib.sha1(f"{name}\x1f{key}\x1f{start}\x1f{t}".encode()).hexdigest()[:16]
        evidence = {"window_start": iso(start), "window_end": iso(t), **_plain(insight.evidence)}
        if pending_since != t:
            evidence.setdefault("pending_since", iso(pending_since))
        return {
            "time": t,
            "rule": name,
            "key": key,
            "title": insight.title,
            "description": insight.description,
            "type": insight.type,
            "confidence": insight.confidence,
            "window_start": start,
            "window_end": t,
            "resolved_at": None,
            "fingerprint": fingerprint,
            "insight_id": f"rule-{fingerprint}",
            "evidence": evidence,
            "metadata": _plain(insight.metadata),
        }

    def status_rows(self) -> list[dict[str, Any]]:
        name = self.rule.name
        if self.disabled or self.nodata:
            overall = DISABLED if self.disabled else NODATA
            rows = [{"rule": name, "key": None, "state": overall, "since": None, "last_fired": None,
                     "failures": self.failures}]
            return rows + [
                {"rule": name, "key": key, "state": overall, "since": s.since, "last_fired": s.last_fired,
                 "failures": self.failures}
                for key, s in self.keys.items()
            ]
        return [
            {"rule": name, "key": key, "state": s.state, "since": s.since, "last_fired": s.last_fired,
             "failures": self.failures}
            for key, s in self.keys.items()
        ]


def _count(snapshot: Snapshot, table: str, start: int, end: int) -> int:
    lo, hi = snapshot.table(table).span(start, end)
    return hi - lo


def _insights(result: Any, name: str, start: int, t: int) -> list[Insight]:
    """A rule's return value -> a list of insights, or RuleResultError naming rule and window."""
    if result is None:
        return []
    if isinstance(result, Insight):
        return [result]
    if isinstance(result, (str, bytes, Mapping)) or not isinstance(result, Iterable):
        raise RuleResultError(
            f"rule {name!r} returned a {type(result).__name__} on window ({iso(start)} .. {iso(t)}]; "
            "return None, an Insight or an iterable of Insights"
        )
    items = list(result)
    for item in items:
        if not isinstance(item, Insight):
            raise RuleResultError(
                f"rule {name!r} returned a {type(item).__name__} among its insights on window "
                f"({iso(start)} .. {iso(t)}]; every item must be an Insight"
            )
    return items


class _Overrun(Exception):
    """An evaluation still running after its timeout."""


def _bounded(fn: Any, timeout: float) -> Any:
    """``fn()`` in a daemon thread; its result, its exception, or _Overrun after ``timeout`` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="aios-rule-evaluation", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _Overrun
    if "error" in box:
        raise box["error"]
    return box["value"]
