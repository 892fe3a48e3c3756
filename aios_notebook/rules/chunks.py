"""Backtests of an archive in chunks on Dask workers, with exactly the in-memory firings.

The archive's time range is cut into chunks. Each chunk is a task: it loads its window from the
archive (an ``EventStore`` of ``Archive.store``) and runs the in-memory backtest over it, starting
its evaluations a *warm-up* earlier: the rules' longest window + pending + cooldown + every,
before which no evaluation inside the chunk looks, so that the rules' states (pending, firing,
cooldown) at the chunk's start are rebuilt from history. Only the chunk's own evaluations count.

Exactness is checked, not assumed: each task reports every rule's state (per key: state,
pending since, last firing while its cooldown still runs) where its warm-up ends, and where it
ends; they must equal the previous chunk's at the same moment. When they do not (a condition held
longer than the warm-up, a cooldown chained over it), that chunk runs again with a warm-up twice
as long, down to the start of the history, where it is the in-memory run itself. A firing still
open at a chunk's end takes its ``resolved_at`` from the chunk after it. ``full_window`` is
decided against the first rows of the whole archive, as the in-memory run decides it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..history import Archive
from ..history.cluster import dask_client, run_tasks
from ..store.archive import ARCHIVE_TABLES
from ..store.retention import parse_duration
from .api import Rule
from .engine import firings_frame
from .evaluation import as_ns
from .parts import Part
from .replay import run_backtest
from .windows import EVENT_TABLES

__all__ = ["Part", "backtest_on_dask", "warmup_ns"]  # Part is defined in .parts

_MINUTE = 60_000_000_000


def warmup_ns(rules: list[Rule]) -> int:
    """How far before a chunk its evaluations start: the longest window + pending + cooldown
    + every of the rules."""
    return max(r.window_ns + r.pending_ns + r.cooldown_ns + r.every_ns for r in rules)


def _chunk_task(rules: list[Rule], root: str, load_from: int, load_to: int, part: Part, tables: list[str],
                gaps: list[tuple[Any, Any, str]], publish: bool) -> Part:
    """On a worker: load the chunk's window, run the in-memory backtest over it."""
    archive = Archive(root)
    store = archive.store(pd.Timestamp(load_from, tz="UTC"), pd.Timestamp(load_to, tz="UTC"), tables=tables)
    for start, end, reason in gaps:  # every gap of the history: evaluations near one are NoData
        store.add_gap(start, end, reason)
    run_backtest(rules, store, publish=publish, part=part)
    return part


def backtest_on_dask(rules: list[Rule], archive: Archive, *, start: Any = None, end: Any = None, publish: bool = True,
                     client: Any = None, workers: int | None = None, chunk: Any = None,
                     progress: bool = False) -> pd.DataFrame:
    """``backtest(rules, archive, engine="dask")`` (see :func:`.backtest.backtest`)."""

    entries = list(archive.manifest["files"].values())
    firsts: dict[str, int] = {}
    lasts: list[int] = []
    for entry in entries:
        span = entry.get("time")
        if span:
            name = entry["table"]
            firsts[name] = min(firsts.get(name, span[0]), span[0])
            if name != "errors":
                lasts.append(span[1])
    slow = [r for r in rules if not set(r.tables) <= EVENT_TABLES]
    read = {t for r in rules for t in r.tables}
    tables = sorted((read & set(ARCHIVE_TABLES)) | ({"raw"} if slow else set()))
    anchored = {t: firsts[t] for t in read if t in firsts}
    starts = [anchored[t] for t in read if t in anchored] + ([firsts["raw"]] if slow and "raw" in firsts else [])
    if not starts or not lasts:
        return run_backtest(rules, archive.store(), start=start, end=end, publish=publish)
    begin, finish = min(starts), max(lasts)
    lo, hi = as_ns(start), as_ns(end)
    begin = begin if lo is None else max(lo, begin)
    finish = finish if hi is None else min(hi, finish)
    if finish < begin:
        return run_backtest(rules, archive.store(), start=start, end=end, publish=publish)
    warm = warmup_ns(rules)
    longest = max(r.window_ns + r.every_ns for r in rules)
    gap_rows = archive.table("errors", filter={"kind": "gap"}, columns=["start", "end", "message"])
    gaps = [(g.start, g.end, g.message) for g in gap_rows.itertuples(index=False)]
    root = str(Path(archive.path).resolve())

    with dask_client(client, workers=workers) as dask:
        count = max(1, len(dask.scheduler_info().get("workers", {})))
        if chunk is not None:
            length = parse_duration(chunk, "chunk")
        else:  # a few tasks per worker, each several warm-ups long (the warm-up is overhead)
            length = max(8 * warm, math.ceil((finish - begin + 1) / (4 * count)))
        length = -(-length // _MINUTE) * _MINUTE
        bounds = [*range(begin, finish + 1, length), finish + 1]

        def task(k: int, lookback: int) -> tuple[Any, ...]:
            checkpoint = bounds[k]
            first = max(begin, checkpoint - lookback) if k else begin
            part = Part(begin=first, finish=bounds[k + 1] - 1, checkpoint=checkpoint, firsts=anchored)
            return (rules, root, first - longest, bounds[k + 1], part, tables, gaps, publish)

        parts: list[Part] = run_tasks(dask, _chunk_task, [task(k, warm) for k in range(len(bounds) - 1)],
                                      progress=progress, desc="backtest", unit="chunk")
        reruns = 0
        for k in range(1, len(parts)):
            lookback = warm
            while parts[k].states != parts[k - 1].end_states:
                reruns += 1
                if parts[k].begin <= begin:
                    raise RuntimeError(  # the same history from its start must give the same states
                        f"backtest chunk {k} disagrees with chunk {k - 1} though both start at the history's start")
                lookback *= 2
                parts[k] = run_tasks(dask, _chunk_task, [task(k, lookback)])[0]

    # resolutions: a firing open at a chunk's end resolves in a later chunk
    following: dict[tuple[str, str], Any] = {}
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for part in reversed(parts):
        still_open = set(part.open_at_end)
        for firing in part.firings:
            if firing["resolved_at"] is None and (firing["rule"], firing["key"]) in still_open:
                firing["resolved_at"] = following.get((firing["rule"], firing["key"]))
        following = {
            k: (v["resolved_at"] if v["resolved_at"] is not None else following.get(k) if k in still_open else None)
            for k, v in part.opened.items()
        }
        records = part.firings + records
        errors = part.errors + errors
    firings = firings_frame(records)
    firings.attrs.update({
        "start": pd.Timestamp(begin, unit="ns", tz="UTC"),
        "end": pd.Timestamp(finish, unit="ns", tz="UTC"),
        "rules": {r.name: {"detects": list(r.detects), "every": r.every_ns / 1e9, "window": r.window_ns / 1e9}
                  for r in rules},
        "evaluations": sum(p.evaluations for p in parts),
        "errors": errors,
        "events": int(archive.rows.get("raw", 0)),
        "chunks": len(parts),
        "reruns": reruns,
    })
    return firings
