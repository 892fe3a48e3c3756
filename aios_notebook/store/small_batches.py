"""Well-formed frames without Arrow: ``json.loads`` per frame, then checks column by column.

The Arrow path costs a few milliseconds per batch whatever its size, which a trickle of frames
(a live stream read often) cannot repay; decoding frame by frame with every check is the other
extreme. This path sits between: each frame is read with ``json.loads``, frames are grouped by
event, and each field is checked for a whole group at once (``set(map(type, column))`` is
usually all it takes). A frame with anything odd about it (an extra top-level key, a wrong
type, a missing required field, an error event) is left to the per-frame path, which
describes the problem; so the tables are the same whichever path a frame takes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .rows import ERROR_EVENTS, EVENT_PLANS, TIMESTAMP_CACHE, check_value, parse_change
from .schema import METRIC_NAMES, TABLES
from .tables import Batch

__all__ = ["parse_small"]

_NONE = type(None)
_FINE_TYPES = {
    "cat": {str, _NONE},
    "text": {str, _NONE},
    "int32": {int, _NONE},
    "int64": {int, _NONE},
    "bool": {bool, _NONE},
}


def _timestamps(values: list[Any]) -> tuple[list[Any], list[bool] | None]:
    known = TIMESTAMP_CACHE.get
    out = [known(v) if type(v) is str else None for v in values]  # texts seen before
    bad = None
    for i, (value, ns) in enumerate(zip(values, out, strict=True)):
        if value is not None and ns is None:  # new texts, epoch numbers, wrong types
            ok, ns = check_value("ts", "", value)
            out[i] = ns
            if not ok:
                bad = bad or [False] * len(values)
                bad[i] = True
    return out, bad


def _column(kind: str, name: str, values: list[Any]) -> tuple[list[Any], list[bool] | None]:
    """Checked values of one field over a group, and which rows are bad (None: none)."""
    if kind == "ts":
        return _timestamps(values)
    types = set(map(type, values))
    fine = _FINE_TYPES.get(kind)
    if fine is not None and types <= fine:
        return values, None
    if kind in ("f64", "f32") and types <= {float, int, _NONE} and (
        float not in types or all(math.isfinite(v) for v in values if type(v) is float)
    ):
        return values, None
    if types == {_NONE}:
        return values, None
    checked = [(True, None) if v is None else check_value(kind, name, v) for v in values]
    bad = [not ok for ok, _ in checked]
    return [v for _, v in checked], bad if any(bad) else None


def parse_small(texts: list[Any], rows: np.ndarray, received: np.ndarray,
                batches: dict[str, list[Batch]]) -> tuple[list[int], list[str], list[int | None], int | None]:
    """Parse the frames at ``rows`` that are well-formed; adds their table batches.

    Returns:
        (positions handled, their event names, their seqs, the latest event time in ns or None).
        The frames not handled go to the per-frame path.
    """
    loads = json.loads
    groups: dict[str, tuple[list[int], list[dict], list[int | None]]] = {}
    for position in rows.tolist():
        text = texts[position]
        if type(text) is not str:
            continue
        try:
            message = loads(text)
        except (ValueError, RecursionError):
            continue
        if type(message) is not dict:
            continue
        event = message.get("event")
        data = message.get("data")
        seq = message.get("seq")
        size = len(message)
        if (type(data) is not dict or type(event) is not str or event in ERROR_EVENTS
                or event not in EVENT_PLANS or size > 3 or (size == 3 and "seq" not in message)
                or (seq is not None and type(seq) is not int)):
            continue
        group = groups.get(event)
        if group is None:
            group = groups[event] = ([], [], [])
        group[0].append(position)
        group[1].append(data)
        group[2].append(seq)
    handled: list[int] = []
    names: list[str] = []
    seqs: list[int | None] = []
    latest: int | None = None
    for event, (positions, datas, group_seqs) in groups.items():
        plan = EVENT_PLANS[event]
        ok = np.ones(len(datas), bool)
        values: dict[str, list[Any]] = {}
        present = set().union(*datas)  # the keys any frame of the group has
        nones = [None] * len(datas)
        parents: dict[str, list[Any]] = {}
        for path, kind, _ in plan.checks:
            head, _, tail = path.partition(".")
            if head not in present:  # routes name fields other events carry: skip them fast
                values[path] = nones
                continue
            if tail:  # a nested field: its parent objects are collected once
                parent = parents.get(head)
                if parent is None:
                    parent = parents[head] = [d.get(head) for d in datas]
                column = [p.get(tail) if type(p) is dict else None for p in parent]
            else:
                column = [d.get(path) for d in datas]
            values[path], bad = _column(kind, tail or head, column)
            if bad is not None:
                ok &= ~np.array(bad, bool)
        for name in plan.required:
            ok &= np.array([d.get(name) is not None for d in datas], bool)
        if not ok.any():
            continue
        every = bool(ok.all())
        keep = ok.tolist()

        def kept(column: list[Any], keep: list[bool] = keep, every: bool = every) -> list[Any]:
            return column if every else [v for v, k in zip(column, keep, strict=True) if k]

        position_array = np.array(kept(positions), np.int64)
        seq_list = kept(group_seqs)
        count = len(seq_list)
        stamps = [v for v in kept(values.get("timestamp") or values.get("server_time") or []) if v is not None]
        if stamps:
            latest = max(stamps) if latest is None else max(latest, *stamps)
        envelope = {"received_at": received[position_array].tolist(), "seq": seq_list, "event": [event] * count}
        for table, columns in plan.routes:
            spec = TABLES[table]
            out: dict[str, Any] = {k: v for k, v in envelope.items() if k == "seq" or k in spec.kinds}
            for column, paths, default in columns:
                if not paths:
                    merged: list[Any] = [None] * count
                elif len(paths) == 1:
                    merged = kept(values[paths[0]])
                else:  # the first present of several paths
                    parts = [kept(values[p]) for p in paths]
                    merged = [next((v for v in items if v is not None), None) for items in zip(*parts, strict=True)]
                if default is not None:
                    merged = [default if v is None else v for v in merged]
                out[column] = merged
            if table == "metrics":
                for name in METRIC_NAMES:
                    out[f"{name}_change"] = [parse_change((c or {}).get(name)) for c in out["changes"]]
            counted = np.ones(count, bool) if table in plan.counted else None
            batches.setdefault(table, []).append(Batch(position_array, out, counted))
        handled += kept(positions)
        names += [event] * count
        seqs += seq_list
    return handled, names, seqs, latest
