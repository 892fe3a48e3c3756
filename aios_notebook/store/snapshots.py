"""Rows that do not come from frames: REST snapshots (``merge_snapshot``) and local insights.

Both are checked column by column like frames are (:func:`.schema.convert`): a bad value is a
missing value and a described problem, a record without its key is skipped and described.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .schema import DERIVED, TABLES, convert, out_of_range

__all__ = ["INSIGHT_FIELDS", "SNAPSHOT_KINDS", "as_mapping", "insight_rows", "snapshot_rows"]

SNAPSHOT_KINDS = ("agents", "dag_runs", "dag_steps", "metrics", "insights", "knowledge")
INSIGHT_FIELDS = (
    "insight_id", "timestamp", "created_at", "title", "description", "type", "confidence",
    "metadata", "rule", "key", "fingerprint", "evidence",
)
_ORDER_COLUMNS = {"updated_at", "seq", "snapshot"}
# where REST answers nest what the tables hold flat
_NESTED = {"tasks_completed": "performance", "average_processing_time": "performance", "success_rate": "performance"}


def as_mapping(item: Any, fields: Iterable[str]) -> dict[str, Any]:
    """A dict, a dataclass or any object with attributes -> a dict of ``fields`` it has."""
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return {name: getattr(item, name) for name in fields if hasattr(item, name)}


def _row(table: str, record: Mapping[str, Any], problems: list[str], label: str) -> dict[str, Any]:
    spec = TABLES[table]
    row: dict[str, Any] = {}
    for column in spec.columns:
        if column.name in _ORDER_COLUMNS:
            continue
        # only the columns the record has: a REST answer that leaves a field out clears nothing
        if column.name in record:
            value = record[column.name]
        elif column.name in _NESTED and isinstance(record.get(_NESTED[column.name]), Mapping) \
                and column.name in record[_NESTED[column.name]]:
            value = record[_NESTED[column.name]][column.name]
        else:
            continue
        ok, converted = convert(column.kind, column.name, value)
        if not ok:
            beyond = out_of_range(column.kind, value)
            problems.append(f"{label}: {column.name} {value!r:.40} is {beyond}" if beyond else
                            f"{label}: {column.name} has the wrong type ({type(value).__name__} {value!r:.40})")
        row[column.name] = converted
    return row


def snapshot_rows(kind: str, records: Iterable[Any], at_ns: int) -> tuple[dict[str, list[dict]], list[str]]:
    """Rows by table for a REST snapshot of ``kind`` taken at ``at_ns``, and the problems found."""
    rows: dict[str, list[dict]] = {}
    problems: list[str] = []
    spec = TABLES[kind]
    for number, item in enumerate(records):
        record = as_mapping(item, spec.names)
        label = f"{kind} snapshot record {number}"
        row = _row(kind, record, problems, label)
        missing = [k for k in spec.key if row.get(k) is None]
        if missing:
            problems.append(f"{label}: no {', '.join(missing)}; skipped")
            continue
        if spec.latest:
            row.update(updated_at=at_ns, seq=None)
        elif kind == "metrics":
            changes = record.get("changes")
            if not isinstance(changes, Mapping):
                changes = {}
            row.update(timestamp=row.get("timestamp") or at_ns, snapshot=True, seq=None)
            for derived in DERIVED["metrics"]:
                row[derived.column] = derived.compute([changes])[0]
        elif kind == "insights":
            row.update(source="server", seq=None)
            row["timestamp"] = row.get("timestamp") or row.get("created_at") or at_ns
        rows.setdefault(kind, []).append(row)
        if kind == "dag_runs" and isinstance(record.get("steps"), list):
            for step_number, step in enumerate(record["steps"]):
                if not isinstance(step, Mapping):
                    problems.append(f"{label}: step {step_number} is not an object; skipped")
                    continue
                step = {"run_id": row["run_id"], "dag_id": row.get("dag_id"), **step}
                step_row = _row("dag_steps", step, problems, f"{label} step {step_number}")
                if step_row.get("step_id") is None:
                    problems.append(f"{label} step {step_number}: no step_id; skipped")
                    continue
                step_row.update(updated_at=at_ns, seq=None)
                rows.setdefault("dag_steps", []).append(step_row)
    return rows, problems


def insight_rows(insights: Iterable[Any], source: str | None, now_ns: int | None,
                 start_number: int) -> tuple[list[dict], list[str]]:
    """Rows of the insights table for local insights (rules), and the problems found."""
    rows: list[dict] = []
    problems: list[str] = []
    for number, item in enumerate(insights, start=start_number):
        record = as_mapping(item, INSIGHT_FIELDS)
        label = f"insight {record.get('insight_id') or number}"
        row = _row("insights", record, problems, label)
        rule = row.get("rule")
        row["source"] = source or (f"rule:{rule}" if rule else "local")
        if row.get("insight_id") is None:
            # a stable id where the rule gave one to derive from, else a running number
            tag = row.get("fingerprint") or row.get("key") or str(number)
            row["insight_id"] = f"{row['source']}:{tag}"
        if row.get("timestamp") is None:
            row["timestamp"] = row.get("created_at") or now_ns
        if row.get("created_at") is None:
            row["created_at"] = row["timestamp"]
        row["seq"] = None
        rows.append(row)
    return rows, problems
