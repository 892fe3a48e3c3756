"""What a rule author writes: the ``@rule`` decorator, ``Insight``, ``RuleContext``, ``IncrementalRule``.

A rule is a plain function over the store's tables, each restricted to the rule's window
``(now - window, now]`` of event time. Parameters named after tables receive that table's rows of
the window as a DataFrame; a parameter named ``ctx`` receives the :class:`RuleContext`::

    @rule(every="1m", window="30m", cooldown="30m", detects=("failure_burst",))
    def pdf_failures(job_events, ctx):
        failed = job_events[job_events["event"] == "processing_job_failed"]
        if len(failed) >= 10:
            return Insight("PDF failures", f"{len(failed)} failed jobs in {ctx.window}", key="pdf")

It returns ``None``, one :class:`Insight` or an iterable of them; each insight's ``key`` says what
it fires about (a job type, an agent), and the engine keeps a state per (rule, key).

Rules over long windows can be written incrementally, as streamz does for rolling aggregates: a
subclass of :class:`IncrementalRule` receives the rows entering the window (``on_new``) and the
rows leaving it (``on_old``) and answers ``evaluate(ctx)`` from its running state. The engine
calls the same methods live and in a backtest.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..exceptions import RuleError, RuleResultError
from .windows import TABLES, Rows

if TYPE_CHECKING:  # pragma: no cover
    from .windows import Snapshot

__all__ = [
    "IncrementalRule",
    "Insight",
    "Rule",
    "RuleContext",
    "format_duration",
    "parse_duration",
    "rule",
]

_NS = 1_000_000_000
_UNITS = {"ms": _NS // 1000, "s": _NS, "m": 60 * _NS, "h": 3600 * _NS, "d": 86400 * _NS, "w": 7 * 86400 * _NS}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: str | float | int | timedelta | pd.Timedelta, what: str = "duration") -> int:
    """``"90s"``, ``"1h30m"``, ``"2d"``, seconds as a number, or a timedelta -> nanoseconds.

    Raises:
        RuleError: the value is not a duration (the message names ``what`` and the value).
    """
    if isinstance(value, bool):
        raise RuleError(f"{what} must be a duration like '5m', not {value!r}")
    if isinstance(value, pd.Timedelta):
        ns = int(value.value)
    elif isinstance(value, timedelta):
        ns = round(value.total_seconds() * _NS)
    elif isinstance(value, (int, float)):
        ns = round(float(value) * _NS)
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, ns = 0, 0
        for match in _DURATION.finditer(text):
            if match.start() != pos and text[pos:match.start()].strip():
                break
            ns += round(float(match.group(1)) * _UNITS[match.group(2)])
            pos = match.end()
        if pos == 0 or text[pos:].strip():
            raise RuleError(
                f"{what} {value!r} is not a duration: write e.g. '30s', '5m', '1h30m', '2d'"
            )
    else:
        raise RuleError(f"{what} must be a duration like '5m', not {type(value).__name__}")
    if ns < 0:
        raise RuleError(f"{what} must not be negative ({value!r})")
    return ns


def format_duration(ns: int) -> str:
    """Nanoseconds -> how people write it: ``"10m"``, ``"2h"``, ``"1h30m"``."""
    seconds = int(ns) // _NS
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


@dataclass(frozen=True)
class Insight:
    """What a rule reports: the fields of ``insight_generated`` plus the key it is about.

    Attributes:
        title: short headline, e.g. "Processing Volume Increase Detected".
        description: one or two sentences with the numbers.
        type: ``trend``, ``anomaly``, ``alert``, ... (free text, as in the protocol).
        confidence: 0..1.
        metadata: free-form details (the protocol's ``metadata``), e.g. ``{"change": "+45%"}``.
        key: what the insight is about (a job type, an agent id); ``""`` for the rule as a whole.
            The engine keeps one state (pending, firing, cooldown) per rule and key.
        evidence: the values that triggered it; the engine adds the window.
    """

    title: str
    description: str = ""
    type: str = "anomaly"
    confidence: float = 1.0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title:
            raise RuleResultError(f"Insight.title must be a non-empty string, not {self.title!r}")
        for name in ("description", "type"):
            if not isinstance(getattr(self, name), str):
                raise RuleResultError(f"Insight.{name} must be a string, not {getattr(self, name)!r}")
        try:
            confidence = float(self.confidence)
        except (TypeError, ValueError):
            raise RuleResultError(f"Insight.confidence must be a number, not {self.confidence!r}") from None
        if not 0.0 <= confidence <= 1.0:
            raise RuleResultError(f"Insight.confidence must be within 0..1, not {confidence}")
        object.__setattr__(self, "confidence", confidence)
        if not isinstance(self.key, str):
            # a key from a groupby is often a numpy scalar or an int: its text is the key
            if isinstance(self.key, (Mapping, list, set)) or self.key is None:
                raise RuleResultError(f"Insight.key must be a string, not {self.key!r}")
            object.__setattr__(self, "key", str(self.key))
        for name in ("metadata", "evidence"):
            if not isinstance(getattr(self, name), Mapping):
                raise RuleResultError(f"Insight.{name} must be a mapping, not {getattr(self, name)!r}")


class RuleContext:
    """What a rule sees at one evaluation: the window, its tables, and a scratch dict.

    Attributes:
        rule: the rule's name.
        now: the evaluation time (event time, UTC), also the window's end.
        start: the window's start (excluded: the window is ``(start, now]``).
        window, every: the rule's window and interval as Timedeltas.
        state: a dict the rule may keep things in between evaluations (lost on a reset).
    """

    __slots__ = ("_now_ns", "_snapshot", "_start_ns", "_tables", "every", "rule", "state", "window")

    def __init__(self, rule: Rule, now_ns: int, snapshot: Snapshot, state: dict[str, Any]) -> None:
        self.rule = rule.name
        self._now_ns = now_ns
        self._start_ns = now_ns - rule.window_ns
        self._snapshot = snapshot
        self._tables = rule.tables
        self.state = state
        self.window = pd.Timedelta(rule.window_ns, unit="ns")
        self.every = pd.Timedelta(rule.every_ns, unit="ns")

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self._now_ns, unit="ns", tz="UTC")

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self._start_ns, unit="ns", tz="UTC")

    @property
    def now_ns(self) -> int:
        """``now`` as integer nanoseconds since the epoch (for fast arithmetic)."""
        return self._now_ns

    def rows(self, table: str, start: Any = None, end: Any = None) -> Rows:
        """The rows of a declared ``table`` in ``(start, end]`` (default: the rule's window).

        ``start`` and ``end`` are Timestamps (or int nanoseconds, like ``now_ns``); ``end`` is
        never later than ``now``.
        """
        self._check(table)
        lo = self._start_ns if start is None else _to_ns(start)
        hi = self._now_ns if end is None else min(_to_ns(end), self._now_ns)
        return self._snapshot.table(table).rows(lo, hi)

    def table(self, table: str) -> pd.DataFrame:
        """The window's rows of a declared ``table`` as a DataFrame."""
        return self.rows(table).frame

    def _check(self, table: str) -> None:
        if table not in self._tables:
            raise RuleError(
                f"rule {self.rule!r} reads table {table!r} without declaring it: name it as a "
                f"parameter or in @rule(tables=...) (declared: {', '.join(self._tables) or 'none'})"
            )

    def __repr__(self) -> str:
        return f"RuleContext(rule={self.rule!r}, window=({self.start} .. {self.now}])"


def _to_ns(value: Any) -> int:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return value
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.as_unit("ns").value)


class IncrementalRule:
    """Base class of rules that keep running aggregates instead of re-reading their window.

    Subclasses set ``tables`` and implement ``on_new`` / ``on_old`` / ``evaluate``; ``reset``
    must bring the state back to "empty window". The engine guarantees that, between two resets,
    every row of the window was passed once to ``on_new`` and rows that left it once to
    ``on_old``; when it cannot (first run, after NoData, late events), it resets and passes the
    whole window to ``on_new``.
    """

    tables: tuple[str, ...] = ()

    def reset(self) -> None:
        """Forget everything (the window is empty)."""

    def on_new(self, rows: Rows) -> None:
        """Rows of ``rows.table`` that entered the window."""

    def on_old(self, rows: Rows) -> None:
        """Rows of ``rows.table`` that left the window."""

    def evaluate(self, ctx: RuleContext) -> Insight | Iterable[Insight] | None:
        """The insights of the current window."""
        raise NotImplementedError


class Rule:
    """A declared rule: what to run, on which tables, how often, and how its states behave.

    Build one with :func:`rule` (or a factory of :mod:`aios_notebook.rules.library`); calling it
    calls the wrapped function (handy for trying it on a DataFrame by hand).
    """

    def __init__(
        self,
        target: Callable[..., Any] | type[IncrementalRule] | Callable[[], IncrementalRule],
        *,
        name: str,
        every: Any = "1m",
        window: Any = "1h",
        pending: Any = 0,
        cooldown: Any = "15m",
        detects: Iterable[str] = (),
        tables: Iterable[str] | None = None,
        timeout: float = 10.0,
        max_failures: int = 3,
        full_window: bool = True,
        description: str | None = None,
        params: Mapping[str, Any] | None = None,
        incremental: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.\-]*", name):
            raise RuleError(f"rule name {name!r} must be an identifier-like string")
        self.name = name
        self.every_ns = parse_duration(every, f"rule {name!r}: every")
        self.window_ns = parse_duration(window, f"rule {name!r}: window")
        self.pending_ns = parse_duration(pending, f"rule {name!r}: pending")
        self.cooldown_ns = parse_duration(cooldown, f"rule {name!r}: cooldown")
        if self.every_ns <= 0 or self.window_ns <= 0:
            raise RuleError(f"rule {name!r}: every and window must be longer than zero")
        if isinstance(detects, str):
            detects = (detects,)
        self.detects = tuple(detects)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise RuleError(f"rule {name!r}: timeout must be a positive number of seconds")
        self.timeout = float(timeout)
        if not isinstance(max_failures, int) or max_failures < 1:
            raise RuleError(f"rule {name!r}: max_failures must be a positive integer")
        self.max_failures = max_failures
        self.full_window = bool(full_window)
        self.params = dict(params or {})
        self._target = target
        if incremental is None:
            incremental = isinstance(target, type) and issubclass(target, IncrementalRule)
        self.incremental = incremental
        if incremental:
            declared = tables if tables is not None else getattr(target, "tables", ())
            self._arguments: tuple[str, ...] = ()
        else:
            declared, self._arguments = _signature_tables(target, name, tables)
        self.tables = _check_tables(name, declared)
        doc = description if description is not None else inspect.getdoc(target) or ""
        self.description = doc.strip()

    # -- running ---------------------------------------------------------------------------
    def new_state(self) -> IncrementalRule | None:
        """A fresh incremental state (None for a plain function rule)."""
        if not self.incremental:
            return None
        state = self._target()
        if not isinstance(state, IncrementalRule):
            raise RuleError(f"rule {self.name!r}: its factory made {state!r}, not an IncrementalRule")
        return state

    def call(self, ctx: RuleContext) -> Any:
        """Run a plain function rule on the window of ``ctx`` (the engine's entry point)."""
        kwargs: dict[str, Any] = {}
        for argument in self._arguments:
            kwargs[argument] = ctx if argument == "ctx" else ctx.table(argument)
        return self._target(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.incremental:
            raise RuleError(f"rule {self.name!r} is incremental: run it with RuleEngine or backtest")
        return self._target(*args, **kwargs)

    def with_options(self, **changes: Any) -> Rule:
        """A copy with some declaration options changed, e.g. ``r.with_options(every="5m")``."""
        options: dict[str, Any] = {
            "name": self.name,
            "every": self.every_ns / _NS,
            "window": self.window_ns / _NS,
            "pending": self.pending_ns / _NS,
            "cooldown": self.cooldown_ns / _NS,
            "detects": self.detects,
            "tables": self.tables,
            "timeout": self.timeout,
            "max_failures": self.max_failures,
            "full_window": self.full_window,
            "description": self.description,
            "params": self.params,
            "incremental": self.incremental,
        }
        unknown = set(changes) - set(options)
        if unknown:
            raise RuleError(f"unknown rule option(s): {', '.join(sorted(unknown))}")
        options.update(changes)
        return Rule(self._target, **options)

    @property
    def every(self) -> pd.Timedelta:
        return pd.Timedelta(self.every_ns, unit="ns")

    @property
    def window(self) -> pd.Timedelta:
        return pd.Timedelta(self.window_ns, unit="ns")

    @property
    def pending(self) -> pd.Timedelta:
        return pd.Timedelta(self.pending_ns, unit="ns")

    @property
    def cooldown(self) -> pd.Timedelta:
        return pd.Timedelta(self.cooldown_ns, unit="ns")

    def __repr__(self) -> str:
        return (
            f"Rule({self.name!r}, every={self.every}, window={self.window}, pending={self.pending}, "
            f"cooldown={self.cooldown}, tables={self.tables}, detects={self.detects})"
        )


def _signature_tables(
    fn: Callable[..., Any], name: str, tables: Iterable[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(declared tables, the parameters the engine fills) of a plain function rule."""
    if not callable(fn):
        raise RuleError(f"rule {name!r}: {fn!r} is not a function")
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise RuleError(f"rule {name!r}: cannot read the parameters of {fn!r}") from None
    arguments, named = [], []
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in TABLES:
            named.append(p.name)
            arguments.append(p.name)
        elif p.name == "ctx":
            arguments.append(p.name)
        elif p.default is p.empty:
            raise RuleError(
                f"rule {name!r}: parameter {p.name!r} is neither a table ({', '.join(TABLES)}) "
                "nor 'ctx', and has no default"
            )
    declared = list(named)
    for table in tables or ():
        if table not in declared:
            declared.append(table)
    return tuple(declared), tuple(arguments)


def _check_tables(name: str, tables: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tables, str):
        tables = (tables,)
    out = tuple(tables)
    unknown = [t for t in out if t not in TABLES]
    if unknown:
        raise RuleError(f"rule {name!r}: unknown table(s) {unknown}; tables are {', '.join(TABLES)}")
    if not out:
        raise RuleError(f"rule {name!r} reads no table: name one as a parameter or in tables=")
    return out


def _default_name(fn: Any) -> str:
    # a lambda's "<lambda>" is no name: keep the word characters
    return re.sub(r"\W+", "_", getattr(fn, "__name__", "")).strip("_") or "rule"


def rule(
    target: Callable[..., Any] | type[IncrementalRule] | None = None,
    /,
    *,
    every: Any = "1m",
    window: Any = "1h",
    pending: Any = 0,
    cooldown: Any = "15m",
    name: str | None = None,
    detects: Iterable[str] = (),
    tables: Iterable[str] | None = None,
    timeout: float = 10.0,
    max_failures: int = 3,
    full_window: bool = True,
    description: str | None = None,
) -> Any:
    """Declare a rule (decorator, with or without arguments).

    Args:
        every: evaluation interval (event time), e.g. ``"1m"``; evaluations fall on multiples of it.
        window: how much history the rule sees: ``(now - window, now]``.
        pending: how long the condition must hold before the key fires (0: at once).
        cooldown: after a key fired, how long before it may fire again.
        name: defaults to the function's (or class's) name.
        detects: label kinds the rule is meant to find (used by :func:`score`).
        tables: extra tables for ``ctx.table(...)`` (tables named as parameters are declared).
        timeout: seconds an evaluation may take; longer runs are reported as failures.
        max_failures: consecutive failures after which the engine disables the rule.
        full_window: evaluate only once the data covers the whole window (NoData before).
        description: defaults to the docstring.

    Returns:
        A :class:`Rule` (or a decorator making one).
    """

    def make(fn: Callable[..., Any] | type[IncrementalRule]) -> Rule:
        return Rule(
            fn,
            name=name or _default_name(fn),
            every=every,
            window=window,
            pending=pending,
            cooldown=cooldown,
            detects=detects,
            tables=tables,
            timeout=timeout,
            max_failures=max_failures,
            full_window=full_window,
            description=description,
        )

    if target is not None:
        return make(target)
    return make
