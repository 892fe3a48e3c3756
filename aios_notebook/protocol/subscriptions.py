"""Which events a connection receives: subscription types, filters and legacy DAG-run subscriptions.

Rules (PROTOCOL_NOTES.md, Subscriptions):
- ``subscribe`` adds types; the filters given with it replace the filters of the types it names
  (a subscribe without filters leaves those types unfiltered). ``unsubscribe`` removes types.
- ``run_id`` passes events that carry ``data.run_id`` only when equal; ``agent_ids`` passes events
  that carry ``data.agent_id`` only when listed. A filter never drops an event that lacks its field.
- ``subscribe_dag_run`` adds the dag events of one run on top of everything else.
- Connection-scoped events and the stream's ``error`` events reach every connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import CONNECTION_SCOPED, SUBSCRIPTION_TYPES, TYPE_OF_EVENT

__all__ = ["Filters", "Subscriptions"]


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters of one subscription type. ``None`` means no filter on that field."""

    run_id: str | None = None
    agent_ids: frozenset[str] | None = None

    @classmethod
    def parse(cls, raw: Any) -> tuple[Filters, list[str]]:
        """Read a ``filters`` object leniently: returns the filters and the problems found."""
        problems: list[str] = []
        if raw is None:
            return cls(), problems
        if not isinstance(raw, Mapping):
            return cls(), [f"filters must be an object, got {type(raw).__name__}"]
        run_id = raw.get("run_id")
        if run_id is not None and not isinstance(run_id, str):
            problems.append(f"filters.run_id must be a string, got {type(run_id).__name__}")
            run_id = None
        agents = raw.get("agent_ids")
        agent_ids: frozenset[str] | None = None
        if agents is not None:
            if isinstance(agents, str):
                agents = [agents]
            if isinstance(agents, list) and all(isinstance(a, str) for a in agents):
                agent_ids = frozenset(agents)
            else:
                problems.append("filters.agent_ids must be a list of strings")
        unknown = sorted(set(raw) - {"run_id", "agent_ids"})
        if unknown:
            problems.append(f"unknown filters {unknown}")
        return cls(run_id or None, agent_ids), problems

    def passes(self, data: Mapping[str, Any]) -> bool:
        if self.run_id is not None:
            value = data.get("run_id")
            if value is not None and value != self.run_id:
                return False
        if self.agent_ids is not None:
            value = data.get("agent_id")
            if value is not None and value not in self.agent_ids:
                return False
        return True

    def to_wire(self) -> dict[str, Any] | None:
        wire: dict[str, Any] = {}
        if self.run_id is not None:
            wire["run_id"] = self.run_id
        if self.agent_ids is not None:
            wire["agent_ids"] = sorted(self.agent_ids)
        return wire or None

    @property
    def empty(self) -> bool:
        return self.run_id is None and self.agent_ids is None


_NO_FILTERS = Filters()


class Subscriptions:
    """The subscriptions of one connection (used by the server to route, by the client to restore)."""

    __slots__ = ("_dag_runs", "_signature", "_types")

    def __init__(self) -> None:
        self._types: dict[str, Filters] = {}
        self._dag_runs: set[str] = set()
        self._signature: tuple[Any, ...] | None = None

    # -- changes ---------------------------------------------------------------------------
    def subscribe(self, types: Iterable[str], filters: Filters | None = None) -> list[str]:
        """Add ``types`` with ``filters``; returns the unknown type names (the others still apply)."""
        unknown = []
        for kind in types:
            if kind in SUBSCRIPTION_TYPES:
                self._types[kind] = filters or _NO_FILTERS
            else:
                unknown.append(kind)
        self._signature = None
        return unknown

    def unsubscribe(self, types: Iterable[str]) -> list[str]:
        """Remove ``types``; returns the unknown type names."""
        unknown = []
        for kind in types:
            if kind in SUBSCRIPTION_TYPES:
                self._types.pop(kind, None)
            else:
                unknown.append(kind)
        self._signature = None
        return unknown

    def add_dag_run(self, run_id: str) -> None:
        self._dag_runs.add(run_id)
        self._signature = None

    def remove_dag_run(self, run_id: str) -> None:
        self._dag_runs.discard(run_id)
        self._signature = None

    def clear(self) -> None:
        self._types.clear()
        self._dag_runs.clear()
        self._signature = None

    # -- queries ---------------------------------------------------------------------------
    @property
    def types(self) -> dict[str, Filters]:
        return dict(self._types)

    @property
    def dag_runs(self) -> frozenset[str]:
        return frozenset(self._dag_runs)

    def matches(self, event: str, data: Mapping[str, Any]) -> bool:
        """Does this connection receive ``event`` with ``data``?"""
        kind = TYPE_OF_EVENT.get(event)
        if kind is None:
            return event in CONNECTION_SCOPED
        filters = self._types.get(kind)
        if filters is not None and (filters is _NO_FILTERS or filters.passes(data)):
            return True
        return kind == "dags" and bool(self._dag_runs) and data.get("run_id") in self._dag_runs

    def signature(self) -> tuple[Any, ...]:
        """Hashable and equal for connections that receive exactly the same events."""
        if self._signature is None:
            self._signature = (
                tuple(sorted((k, f.run_id, f.agent_ids) for k, f in self._types.items()), ),
                frozenset(self._dag_runs),
            )
        return self._signature

    def to_messages(self) -> list[tuple[str, dict[str, Any]]]:
        """The client messages that rebuild these subscriptions on a fresh connection, in order."""
        groups: dict[Filters, list[str]] = {}
        for kind, filters in self._types.items():
            groups.setdefault(filters, []).append(kind)
        messages: list[tuple[str, dict[str, Any]]] = []
        for filters, kinds in groups.items():
            data: dict[str, Any] = {"types": kinds}
            wire = filters.to_wire()
            if wire:
                data["filters"] = wire
            messages.append(("subscribe", data))
        messages.extend(("subscribe_dag_run", {"run_id": run_id}) for run_id in sorted(self._dag_runs))
        return messages

    def copy(self) -> Subscriptions:
        other = Subscriptions()
        other._types = dict(self._types)
        other._dag_runs = set(self._dag_runs)
        return other

    def __repr__(self) -> str:
        return f"Subscriptions(types={sorted(self._types)}, dag_runs={sorted(self._dag_runs)})"
