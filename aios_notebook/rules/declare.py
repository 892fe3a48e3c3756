"""How the built-in detectors declare themselves: one Rule constructor, one two-span schedule.

Most built-ins compare a recent ``period`` with the ``baseline`` span before it; their window is
both spans, and their incremental aggregates bin time at the largest width that divides the period,
the baseline and the evaluation interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .api import Rule, parse_duration

__all__ = ["NS", "declare", "two_spans"]

NS = 1_000_000_000


def declare(target: Callable[..., Any], name: str, tables: tuple[str, ...], schedule: dict[str, Any],
            params: dict[str, Any], detects: tuple[str, ...], doc: str | None, incremental: bool = True) -> Rule:
    """A built-in rule: its evaluator (or incremental factory), schedule, parameters and label kinds."""
    return Rule(target, name=name, tables=tables, detects=detects, params=params, description=doc,
                incremental=incremental, **schedule)


def two_spans(period: Any, baseline: Any, every: Any, pending: Any, cooldown: Any) -> tuple[int, int, int, dict[str, Any]]:
    """``(period_ns, baseline_ns, bin_width_ns, schedule)`` of a rule comparing period with baseline."""
    p, b, e = parse_duration(period, "period"), parse_duration(baseline, "baseline"), parse_duration(every, "every")
    schedule = {"every": every, "window": (p + b) / NS, "pending": pending, "cooldown": cooldown}
    return p, b, math.gcd(p, b, e), schedule
