"""Per event, worked out once from the schema and the protocol's event specs: which data paths
to check (as which column kind), which fields are required, and where each column of each table
the event feeds comes from. Every engine reads these plans; none writes its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...protocol.models import SERVER_EVENTS
from ..schema import EVENT_ROUTES, TABLES

__all__ = ["ERROR_EVENTS", "EVENT_PLANS", "SPEC_KINDS", "EventPlan", "counted_tables"]

#: events that become rows of the errors table
ERROR_EVENTS = frozenset({"error", "connection_error"})
#: the column kind a value of each spec kind (protocol.models) takes
SPEC_KINDS = {
    "str": "text", "id": "cat", "category": "cat", "int": "int64", "float": "f64", "bool": "bool",
    "timestamp": "ts", "str_list": "obj", "object": "obj", "any": "obj",
}


@dataclass(frozen=True)
class EventPlan:
    """For one event: the data paths to check (with the column kind their values take, the
    spec's kind for the message), the required fields, and each route's columns."""

    checks: tuple[tuple[str, str, str | None], ...]  # (path, column kind, spec kind or None)
    required: tuple[str, ...]
    routes: tuple[tuple[str, tuple[tuple[str, tuple[str, ...], Any], ...]], ...]
    counted: tuple[str, ...]


def _plan(event: str) -> EventPlan:
    spec = SERVER_EVENTS.get(event)
    checks: dict[str, tuple[str, str | None]] = {}
    if spec is not None:
        for name, kind in spec.fields.items():
            if kind == "object" and name in spec.nested:
                for sub, sub_kind in spec.nested[name].items():
                    checks[f"{name}.{sub}"] = (SPEC_KINDS[sub_kind], sub_kind)
            checks[name] = (SPEC_KINDS[kind], kind)
    routes = []
    counted = []
    for route in EVENT_ROUTES.get(event, ()):
        table = TABLES[route.table]
        columns = []
        for column, source in route.fields.items():
            paths = (source,) if isinstance(source, str) else tuple(source)
            for path in paths:  # a path the spec does not name is checked as its column's kind
                checks.setdefault(path, (table.kind(column), None))
            columns.append((column, paths, route.defaults.get(column)))
        columns += [(c, (), d) for c, d in route.defaults.items() if c not in route.fields]
        routes.append((route.table, tuple(columns)))
        if route.counts:
            counted.append(route.table)
    # a path is checked against the narrowest column it feeds: an int the spec allows that an
    # int32 column cannot hold is a wrong value there, not a silent missing one
    wider = {"int32": "int64", "f32": "f64"}
    for table_name, routed in routes:
        for column, paths, _ in routed:
            narrow = TABLES[table_name].kind(column)
            for path in paths:
                checked, spec_kind = checks[path]
                if narrow in wider and checked == wider[narrow]:
                    checks[path] = (narrow, spec_kind)
    return EventPlan(
        tuple((path, kind, spec_kind) for path, (kind, spec_kind) in checks.items()),
        tuple(sorted(spec.required)) if spec is not None else (),
        tuple(routes),
        tuple(counted),
    )


EVENT_PLANS = {event: _plan(event) for event in {*SERVER_EVENTS, *EVENT_ROUTES}}


def counted_tables(event: str) -> tuple[str, ...]:
    """The tables whose counter column counts ``event``."""
    plan = EVENT_PLANS.get(event)
    return plan.counted if plan is not None else ()
