"""One chunk's run of a Dask backtest (:mod:`.chunks`), as the in-memory backtest
(:mod:`.replay`) sees it and reports it back: both use it, so it sits below both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .engine import RuleEngine
from .evaluation import FIRING, NORMAL, PENDING

__all__ = ["Part", "rule_state"]


@dataclass
class Part:
    """One chunk's run, as the in-memory backtest sees it, and what it reports back.

    Attributes:
        begin: the first moment evaluated (the warm-up's start, or the history's).
        finish: the last moment evaluated (the chunk's end).
        checkpoint: where the chunk's own evaluations start (its warm-up ends).
        firsts: table -> the first row time of the whole archive.
    """

    begin: int
    finish: int
    checkpoint: int
    firsts: dict[str, int]
    states: dict[str, Any] | None = None
    end_states: dict[str, Any] = field(default_factory=dict)
    opened: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    open_at_end: list[tuple[str, str]] = field(default_factory=list)
    firings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    evaluations: int = 0

    def mark(self, engine: RuleEngine, names: list[str], at: int) -> None:
        """Take the states of ``names`` where the warm-up ends (before evaluating ``at``)."""
        states = self.states if self.states is not None else {}
        for name in names:
            runner = engine._runners[name]
            states[name] = rule_state(runner, at)
            for key, state in runner.keys.items():
                if state.state == FIRING and state.firing is not None:
                    self.opened[(name, key)] = state.firing  # its resolution is read at the end
        self.states = states

    def close(self, engine: RuleEngine) -> None:
        """Collect the chunk's own results once every evaluation ran."""
        at = self.finish + 1
        warm = sum(_due_count(r.rule.every_ns, self.begin, self.checkpoint - 1) for r in engine._runners.values())
        self.evaluations = engine.evaluations - warm
        self.firings = [dict(f) for f in engine._firings if f["time"] >= self.checkpoint]
        self.errors = [e["message"] for e in engine._errors
                       if e["window_end"] is None or e["window_end"] >= self.checkpoint]
        for name, runner in engine._runners.items():
            self.end_states[name] = rule_state(runner, at)
            self.open_at_end += [(name, key) for key, s in runner.keys.items() if s.state == FIRING]
        # the firings open where the warm-up ended: only when they resolved matters
        self.opened = {k: {"resolved_at": f["resolved_at"]} for k, f in self.opened.items()}


def _due_count(every: int, begin: int, last: int) -> int:
    if last < begin:
        return 0
    first = -(-begin // every) * every
    return 0 if first > last else (last - first) // every + 1


def rule_state(runner: Any, at: int) -> tuple[Any, ...]:
    """What decides a rule's firings from ``at`` on: per key its state, since when pending,
    and its last firing while the cooldown still runs; keys with nothing to remember left out."""
    cooldown = runner.rule.cooldown_ns
    keys = []
    for key, state in runner.keys.items():
        last = state.last_fired if state.last_fired is not None and at - state.last_fired < cooldown else None
        pending = state.pending_since if state.state == PENDING else None
        if state.state == NORMAL and last is None:
            continue
        keys.append((str(key), state.state, pending, last))
    return (runner.disabled, runner.nodata, runner.failures, tuple(sorted(keys)))
