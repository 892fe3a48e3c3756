"""Backtests: replay history on a simulated clock through the very engine that runs live.

``backtest(rules, source)`` builds a store from the source, then evaluates each rule exactly when
it would have run live (every multiple of its ``every``), over the same windows, with the same
states, and returns the firings with event-time timestamps.

How history is fed depends on what the rules read:

- Rules over event histories only (job_events, agent_events, dag_step_events, metrics, raw):
  those tables hold, at any time ``t``, exactly their rows up to ``t``. The store ingests
  everything once and the engine evaluates each instant over the rows up to it (binary search on
  time, no re-reads).
- Rules over latest-state tables (jobs, dag_steps, ...) or tables the engine itself writes
  (insights, errors) need the state *as of* ``t``: events are ingested in time order up to each
  evaluation, and those tables are read from the store then, as live. Such tables are given an
  age limit of the longest window reading them, so each read stays small.
"""

from __future__ import annotations

import runpy
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import ConfigurationError, RuleError
from ..history import Archive
from .api import Rule
from .chunks import backtest_on_dask
from .replay import run_backtest

__all__ = ["backtest", "collect_rules", "load_rules", "run_backtest"]

def collect_rules(rules: Any) -> list[Rule]:
    """Rules from a Rule, an iterable of them, a module (its ``RULES`` or every Rule in it)."""
    if isinstance(rules, Rule):
        return [rules]
    if isinstance(rules, types.ModuleType):
        rules = vars(rules)
    if isinstance(rules, Mapping):  # a module's namespace
        if "RULES" in rules:
            return collect_rules(rules["RULES"])
        return [value for value in rules.values() if isinstance(value, Rule)]
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
        raise RuleError(f"expected rules (a Rule or an iterable of them), got {type(rules).__name__}")
    out: list[Rule] = []
    for i, item in enumerate(rules):
        if not isinstance(item, Rule):
            raise RuleError(f"item {i} of the rules is a {type(item).__name__}, not a Rule (use @rule)")
        out.append(item)
    names = [r.name for r in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"two rules share the name(s) {', '.join(duplicates)}: give each its own")
    return out


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of a Python file: its ``RULES`` list, or every Rule defined at its top level.

    ``"builtins"`` gives the built-in library.
    """
    if str(path) == "builtins":
        from .library import builtins

        return builtins()
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"rules file {file} does not exist")
    try:
        namespace = runpy.run_path(str(file), run_name="aios_rules")
    except Exception as exc:
        raise RuleError(f"{file} failed to load: {type(exc).__name__}: {exc}") from exc
    rules = collect_rules(namespace)
    if not rules:
        raise RuleError(f"{file} defines no rule (decorate functions with @rule, or set RULES = [...])")
    return rules


def backtest(
    rules: Any,
    source: Any,
    *,
    start: Any = None,
    end: Any = None,
    publish: bool = True,
    engine: str = "memory",
    client: Any = None,
    workers: int | None = None,
    chunk: Any = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Evaluate rules on history, each exactly when it would have run live.

    Args:
        rules: a Rule, an iterable of rules, or a module holding them.
        source: a recording (path or glob), an EventStore, an ``Archive`` (or an archive's
            folder with ``engine="dask"``), or an iterable of events: ``(time, event, data)``
            tuples (as ``server.workload.generate`` yields), frames, ``{"event", "data"}``
            dicts or messages. Events out of time order are sorted.
        start, end: evaluate only within this span of event time (history before ``start``
            still fills the windows); default the whole source.
        publish: put the rules' insights and errors into the backtest's store.
        engine: ``"memory"`` (one store in this process) or ``"dask"``: the archive's time
            range in chunks on Dask workers (see :mod:`.chunks`), the very same firings.
        client: ``engine="dask"``: a ``distributed.Client`` or a scheduler's address; default
            a ``LocalCluster`` of ``workers`` processes, closed afterwards.
        workers: ``engine="dask"`` without ``client``: worker processes (default every core).
        chunk: ``engine="dask"``: the span of one task (a duration such as ``"1d"``; default
            from the range and the workers).
        progress: ``engine="dask"``: a progress bar (a widget in a notebook, else a line).

    Returns:
        The firings (see ``RuleEngine.firings``), in time order. ``attrs`` holds ``start`` and
        ``end`` (the span evaluated), ``rules`` (name -> detects, every, window: what
        :func:`score` needs), ``evaluations``, ``errors`` (messages) and ``events``.
    """
    rule_list = collect_rules(rules)
    if not rule_list:
        raise RuleError("backtest needs at least one rule")
    if engine not in ("memory", "dask"):
        raise ConfigurationError(f"engine must be 'memory' or 'dask', not {engine!r}")
    if engine == "dask":
        archive = source if isinstance(source, Archive) else _archive_of(source)
        return backtest_on_dask(rule_list, archive, start=start, end=end, publish=publish, client=client,
                                workers=workers, chunk=chunk, progress=progress)
    if client is not None or workers is not None or chunk is not None:
        raise ConfigurationError("client, workers and chunk are options of engine='dask'")
    if isinstance(source, Archive):
        source = source.store()
    return run_backtest(rule_list, source, start=start, end=end, publish=publish)


def _archive_of(source: Any) -> Archive:
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return Archive(source)
    raise ConfigurationError(
        f"engine='dask' reads an Archive (or an archive's folder), not {type(source).__name__} {source!r}"[:300]
    )
