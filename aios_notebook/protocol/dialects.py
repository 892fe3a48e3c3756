"""Dialects: how servers that do not speak the published protocol map onto it, as data.

The published AIOS v2 protocol (``websocket-events.md``) is one dialect, ``"aios-v2"``, the
default. The public AIOS v2 backend (the bluelabel-autopilot project) speaks two others
(``../shared/spec/servers-in-the-wild.md``): ``"autopilot"`` on ``/ws`` of its main app and
``"autopilot-dag-updates"`` on ``/ws/dag-updates``. A :class:`Dialect` says, for one server:

- how to recognise its greeting (and so pick the dialect from the first frame, ``dialect="auto"``);
- where the payload and the event time sit in its frames, and whether its numbers are epochs;
- for each of its event names, which published event(s) it becomes (:class:`EventMap`: field
  renames, fixed values, status words, converters, a run's ``steps`` spread into ``step_status``
  and ``dag_run_progress`` events);
- how to subscribe to one DAG run, its keepalive, whether it authenticates, filters or resyncs;
- its REST routes (:class:`Routes`), read by the ``rest`` layer.

Standard library only, like the rest of ``protocol/``. Translation never raises: a frame it
cannot map is described (once per event name, by the session), never a reason to stop.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .codec import Message, Problem, finite_number, format_timestamp, parse_timestamp
from .models import PROTOCOL_NAME, SERVER_EVENTS

__all__ = [
    "AUTO",
    "DIALECTS",
    "Dialect",
    "EventMap",
    "Keepalive",
    "Routes",
    "Translated",
    "detect_dialect",
    "dialect_of_events",
    "fraction_percent",
    "get_dialect",
    "register_dialect",
]

AUTO = "auto"

#: the earliest moment a number is taken for an epoch (2001-09-09): the dag-updates app sends its
#: asyncio loop clock (seconds since some boot, thousands to millions), which is no date at all
_EPOCH_FLOOR = 1e9


# ----------------------------------------------------------------------------------------------
# the parts of a dialect
@dataclass(frozen=True, slots=True)
class EventMap:
    """How one foreign event becomes published events.

    Attributes:
        event: the published event it becomes (``None``: only what ``steps`` makes).
        rename: published field <- foreign payload key; payload keys named like a field of the
            published event are copied as they are.
        values: published fields with fixed values (``{"type": "email"}``).
        status: the server's status words -> published ones (others pass unchanged).
        convert: published field -> a function of its value (``fraction_percent`` ...).
        steps: the payload key holding the run's steps (a list, or a dict keyed by step id): each
            becomes a ``step_status``, and the run gets a ``dag_run_progress`` counted from them.
        job_id: for job events, the payload key the job id comes from (``run_id`` for email runs).
        event_by_status: the payload's status word -> another published event (an email run
            "completed" with status ``failed`` is a ``processing_job_failed``).

    ``rename`` keys may be dotted (``"result.summary"``) to fill a published object field.
    ``stamp`` names fields that take the event time when the frame has no value for them
    (``started_at``); ``completed_at`` / ``failed_at`` of the job events always do.
    """

    event: str | None
    event_by_status: Mapping[str, str] = field(default_factory=dict)
    stamp: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, str] = field(default_factory=dict)
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    steps: str | None = None
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class Keepalive:
    """What keeps a quiet connection known to be alive.

    Attributes:
        send: a text frame the client sends every ``every`` seconds (``"ping"`` for autopilot);
            None: the WebSocket protocol's own ping frames are enough.
        reply: the server's text answer to it (``"pong"``): proof of life, not an event.
        server_ping: the event name of the server's own keepalive (``"ping"``): proof of life.
        every: seconds between the client's keepalives.
    """

    send: str | None = None
    reply: str | None = None
    server_ping: str | None = None
    every: float = 20.0


@dataclass(frozen=True, slots=True)
class Routes:
    """The REST routes a server has, by what the kit uses them for (None: the server lacks it).

    Paths are relative to the REST base URL; ``{run_id}``, ``{agent_id}``, ``{item_id}`` are
    filled in. ``snapshots`` lists what is fetched on connect, by the store's snapshot kind.
    """

    dag_runs: str | None = "/api/workflows/dag-runs"
    dag_run: str | None = "/api/workflows/dag-runs/{run_id}"
    upload_pdf: str | None = "/api/workflows/upload-pdf"
    upload_audio: str | None = "/api/workflows/upload-audio"
    submit_url: str | None = "/api/workflows/from-url"
    agents: str | None = "/api/agents"
    agent: str | None = "/api/agents/{agent_id}"
    knowledge_search: str | None = "/api/knowledge/search"
    knowledge_item: str | None = "/api/knowledge/{item_id}"
    dashboard: str | None = "/api/analytics/dashboard"
    insights: str | None = "/api/analytics/insights"
    process_email: str | None = None
    email_status: str | None = None
    health: str | None = None
    metrics: str | None = None
    #: the run list answers ``{"items": [...], "total": N}`` (published) or a bare list (None)
    list_key: str | None = "items"
    #: the largest ``limit`` the run list takes (autopilot's ``GET /api/dag-runs``: 100); None: any
    list_limit: int | None = None

    def path(self, name: str, **values: str) -> str | None:
        route = getattr(self, name)
        if route is None:
            return None
        return str(route).format(**values)


@dataclass(frozen=True, slots=True)
class Translated:
    """One frame of a foreign dialect and what it means in the published protocol.

    The store keeps ``text`` in ``raw`` under the server's own event name and feeds its typed
    tables from ``messages``; ``problems`` become errors rows.

    Attributes:
        text: the frame as received (a binary frame's bytes decoded with replacement).
        event: the server's own event name, None when the frame has none.
        role: ``"event"`` (maps to published events), ``"greeting"``, ``"keepalive"``,
            ``"reply"`` (a connection-scoped answer), ``"unmapped"`` or ``"unreadable"``.
        messages: the published events it maps to that the client keeps (its subscriptions).
        problems: what to describe in the errors table (none for a mapped frame).
        when: its event time (aware UTC), None when the frame has no usable one.
    """

    text: str
    event: str | None
    role: str
    messages: tuple[Message, ...] = ()
    problems: tuple[Problem, ...] = ()
    when: datetime | None = None


@dataclass(frozen=True)
class Dialect:
    """One server's way of speaking, mapped onto the published protocol (see the module doc).

    Attributes:
        name: what ``dialect=`` takes and ``client.server_info.protocol`` shows.
        description: one line for listings and the dashboard badge's tooltip.
        greeting: the event name of the server's greeting.
        greeting_has_data: True/False when the greeting tells dialects apart by having a ``data``
            object or not; None: either.
        events: the server's event names -> :class:`EventMap`.
        payload: the top-level key holding the payload.
        lift: top-level keys folded into the payload (``run_id`` beside ``data``).
        timestamp: the top-level key of the event time (else the payload's ``timestamp``).
        epoch_numbers: numbers in ``timestamp`` are epoch seconds (False: a server clock).
        auth: the server takes the published ``auth`` message.
        server_filters: the server applies subscriptions (False: the client filters itself).
        resync: the server can replay what a client missed (the published ``resync`` extension).
        subscribe_run: the text frame subscribing to one DAG run (``{run_id}`` filled in, JSON);
            None: the published ``subscribe_dag_run``.
        replies: event names that answer the client (connection-scoped, not events).
        keepalive: see :class:`Keepalive`.
        routes: see :class:`Routes`.
        greeting_frame: the server's greeting as it sends it (a replay of a recording that began
            after the greeting sends this one).
    """

    name: str
    description: str = ""
    greeting: str | None = "connected"
    greeting_has_data: bool | None = None
    events: Mapping[str, EventMap] = field(default_factory=dict)
    payload: str = "data"
    lift: tuple[str, ...] = ()
    timestamp: str | None = None
    epoch_numbers: bool = True
    auth: bool = True
    server_filters: bool = True
    resync: bool = True
    subscribe_run: str | None = None
    replies: frozenset[str] = frozenset()
    keepalive: Keepalive = field(default_factory=Keepalive)
    routes: Routes = field(default_factory=Routes)
    greeting_frame: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name == AUTO:
            raise ValueError(f"a dialect needs a name other than {AUTO!r}, got {self.name!r}")
        for foreign, mapping in self.events.items():
            if mapping.event is not None and mapping.event not in SERVER_EVENTS:
                raise ValueError(f"dialect {self.name!r}: {foreign!r} maps to {mapping.event!r}, "
                                 f"which is no published event")

    @property
    def native(self) -> bool:
        """True for the published protocol itself (no translation)."""
        return self.name == PROTOCOL_NAME

    def greets(self, obj: Mapping[str, Any]) -> bool:
        """Whether a decoded frame is this dialect's greeting."""
        if self.greeting is None or obj.get("event") != self.greeting:
            return False
        if self.greeting_has_data is None:
            return True
        return isinstance(obj.get(self.payload), dict) == self.greeting_has_data

    def subscribe_run_frame(self, run_id: str) -> str | None:
        if self.subscribe_run is None:
            return None
        return self.subscribe_run.replace("{run_id}", json.dumps(run_id)[1:-1])

    # -- translation ----------------------------------------------------------------------
    def translate(self, frame: str | bytes, received_at: float | None = None) -> Translated:
        """One frame as published events. Never raises.

        ``received_at`` (epoch seconds) stands in for an event time the frame lacks or that is
        no date (a server's monotonic clock): then a ``field_type`` problem names the field.
        """
        if isinstance(frame, (bytes, bytearray, memoryview)):
            raw = bytes(frame)
            text = raw.decode("utf-8", "replace")
            return Translated(text, None, "unreadable",
                              problems=(Problem("binary_frame", f"binary frame of {len(raw)} bytes"),))
        text = frame
        if self.keepalive.reply is not None and text == self.keepalive.reply:
            return Translated(text, None, "keepalive")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            snippet = text if len(text) <= 80 else text[:80] + "..."
            return Translated(text, None, "unreadable",
                              problems=(Problem("not_json", f"not JSON ({exc.__class__.__name__}): {snippet!r}"),))
        if not isinstance(obj, dict):
            return Translated(text, None, "unreadable",
                              problems=(Problem("not_object", f"JSON {type(obj).__name__}, not an object"),))
        event = obj.get("event")
        if not isinstance(event, str) or not event:
            return Translated(text, None, "unreadable",
                              problems=(Problem("missing_event", "no 'event' name in the frame", "event"),))
        if self.greets(obj):
            return Translated(text, event, "greeting")
        if event == self.keepalive.server_ping:
            return Translated(text, event, "keepalive")
        if event in self.replies:
            return Translated(text, event, "reply")
        mapping = self.events.get(event)
        if mapping is None:
            return Translated(text, event, "unmapped", problems=(
                Problem("unknown_event", f"{self.name}: no mapping for event {event!r} "
                                         f"(kept in raw; described once per event name)", "event"),))
        payload = obj.get(self.payload)
        problems: list[Problem] = []
        if not isinstance(payload, dict):
            problems.append(Problem("bad_data", f"{event}: {self.payload!r} is "
                                    f"{'missing' if payload is None else type(payload).__name__}, not an object",
                                    self.payload))
            return Translated(text, event, "unreadable", problems=tuple(problems))
        payload = {**{k: obj[k] for k in self.lift if k in obj and k not in payload}, **payload}
        when, stamp_problem = self._when(obj, payload, received_at)
        if stamp_problem is not None:
            problems.append(stamp_problem)
        stamp = format_timestamp(when, microseconds=True) if when is not None else None
        messages = tuple(_apply(mapping, payload, stamp))
        return Translated(text, event, "event", messages, tuple(problems), when)

    def _when(self, obj: Mapping[str, Any], payload: Mapping[str, Any],
              received_at: float | None) -> tuple[datetime | None, Problem | None]:
        key = self.timestamp
        value = obj.get(key) if key is not None else None
        where = key if key is not None and value is not None else "timestamp"
        if value is None:
            value = payload.get("timestamp")
            where = f"{self.payload}.timestamp"
        fallback = parse_timestamp(received_at) if received_at is not None else None
        if value is None:
            return fallback, None
        number = finite_number(value)
        if number is not None and (not self.epoch_numbers or abs(number) < _EPOCH_FLOOR):
            return fallback, Problem("field_type", f"{obj.get('event')}.{where}: {value!r} is no epoch "
                                     f"(a server clock); the receive time stands in", where)
        when = parse_timestamp(value)
        if when is None:
            return fallback, Problem("field_type", f"{obj.get('event')}.{where}: {_short(value)} is no "
                                     f"timestamp; the receive time stands in", where)
        return when, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


# ----------------------------------------------------------------------------------------------
# applying an EventMap
_STEP_FIELDS = {  # step_status field <- the keys servers use for it, first present wins
    "step_id": ("step_id", "id", "task_id", "name"),
    "status": ("status", "state"),
    "start_time": ("start_time", "started_at", "start_date"),
    "end_time": ("end_time", "completed_at", "finished_at", "end_date"),
    "duration": ("duration", "duration_ms"),
    "retry_count": ("retry_count", "retries", "try_number"),
    "error": ("error", "error_message"),
}
_STEP_BUCKETS = {
    "completed": ("success", "completed", "succeeded", "done", "skipped"),
    "running": ("running", "processing", "in_progress", "up_for_retry", "retrying", "retry"),
    "failed": ("failed", "error", "upstream_failed", "cancelled"),
}


def _apply(mapping: EventMap, payload: Mapping[str, Any], stamp: str | None) -> Iterable[Message]:
    event = mapping.event
    status = payload.get("status")
    if isinstance(status, str) and status in mapping.event_by_status:
        event = mapping.event_by_status[status]
    if event is not None:
        yield Message(event, _fields(mapping, event, payload, stamp))
    if mapping.steps is not None:
        yield from _steps(mapping, payload, stamp)


def _fields(mapping: EventMap, event: str, payload: Mapping[str, Any], stamp: str | None) -> dict[str, Any]:
    declared = SERVER_EVENTS[event].fields
    data: dict[str, Any] = {k: payload[k] for k in declared if k in payload}
    for published, foreign in mapping.rename.items():
        if foreign in payload:
            if "." in published:
                outer, inner = published.split(".", 1)
                nested = data.get(outer)
                data[outer] = {**(nested if isinstance(nested, dict) else {}), inner: payload[foreign]}
            else:
                data[published] = payload[foreign]
    if mapping.job_id is not None and mapping.job_id in payload:
        data["job_id"] = payload[mapping.job_id]
    data.update(mapping.values)
    status = data.get("status")
    if isinstance(status, str) and status in mapping.status:
        data["status"] = mapping.status[status]
    for name, convert in mapping.convert.items():
        if name in data:
            # on failure the value is left as sent: the store's field checks describe it
            with contextlib.suppress(TypeError, ValueError, ArithmeticError):
                data[name] = convert(data[name])
    if stamp is not None:
        data["timestamp"] = stamp
        for name in (*mapping.stamp, *_EVENT_TIME.get(event, ())):
            if data.get(name) is None:
                data[name] = stamp
    else:
        data.pop("timestamp", None)
    return data


#: the fields of a published event that are its own event time
_EVENT_TIME = {"processing_job_completed": ("completed_at",), "processing_job_failed": ("failed_at",)}


def _steps(mapping: EventMap, payload: Mapping[str, Any], stamp: str | None) -> Iterable[Message]:
    steps = payload.get(mapping.steps or "")
    if isinstance(steps, dict):
        items = [({"step_id": key, **value} if isinstance(value, dict) else {"step_id": key, "status": value})
                 for key, value in steps.items()]
    elif isinstance(steps, list):
        items = [step for step in steps if isinstance(step, dict)]
    else:
        return
    run_id = payload.get("run_id")
    dag_id = payload.get("dag_id", payload.get("workflow_name"))
    counts = dict.fromkeys(_STEP_BUCKETS, 0)
    for step in items:
        data: dict[str, Any] = {"run_id": run_id}
        if dag_id is not None:
            data["dag_id"] = dag_id
        for name, keys in _STEP_FIELDS.items():
            for key in keys:
                if step.get(key) is not None:
                    data[name] = step[key]
                    break
        if data.get("duration") is None and finite_number(step.get("duration_seconds")) is not None:
            data["duration"] = step["duration_seconds"] * 1000.0  # the published duration is in ms
        if data.get("step_id") is None or data.get("status") is None:
            continue
        if not isinstance(data["step_id"], str):
            data["step_id"] = str(data["step_id"])
        status = data["status"]
        if isinstance(status, str):
            status = data["status"] = mapping.status.get(status, status)
            for bucket, words in _STEP_BUCKETS.items():
                if status in words:
                    counts[bucket] += 1
        if stamp is not None:
            data["timestamp"] = stamp
        yield Message("step_status", data)
    total = len(items)
    progress: dict[str, Any] = {
        "run_id": run_id,
        "total_steps": total,
        "completed_steps": counts["completed"],
        "running_steps": counts["running"],
        "failed_steps": counts["failed"],
        "pending_steps": total - sum(counts.values()),
        "completion_percentage": round(100.0 * counts["completed"] / total, 1) if total else 0.0,
    }
    if dag_id is not None:
        progress["dag_id"] = dag_id
    if stamp is not None:
        progress["timestamp"] = stamp
    yield Message("dag_run_progress", progress)


_FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")


def fraction_percent(value: Any) -> Any:
    """``"2/5 steps"`` -> 40.0 (a percentage, as the published ``progress``); numbers pass."""
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            done, total = float(match.group(1)), float(match.group(2))
            return round(100.0 * done / total, 1) if total else None
    return value


# ----------------------------------------------------------------------------------------------
# the built-in dialects
_AIOS_V2 = Dialect(
    name=PROTOCOL_NAME,
    description="the published AIOS v2 protocol (the kit's reference server)",
    greeting="connected",
    greeting_has_data=True,
)

#: autopilot's run and step words that the published vocabulary (Airflow's) spells otherwise
_RUN_STATUS = MappingProxyType({"created": "queued", "retry": "up_for_retry"})
#: an email run's workflow status while it runs, and when it ends
_EMAIL_RUNNING = MappingProxyType({"success": "processing", "running": "processing", "pending": "queued"})
_EMAIL_DONE = MappingProxyType({"success": "completed"})
_AUTOPILOT_ROUTES = Routes(
    dag_runs="/api/dag-runs",
    dag_run="/api/dag-runs/{run_id}",
    upload_pdf="/api/workflows/upload-pdf",
    upload_audio=None,
    submit_url=None,
    agents=None,
    agent=None,
    knowledge_search=None,
    knowledge_item=None,
    dashboard=None,
    insights=None,
    process_email="/api/process-email",
    email_status="/api/email-status/{run_id}",
    health="/health",
    metrics="/metrics",
    list_key="items",
    list_limit=100,
)
_EMAIL = MappingProxyType({"type": "email"})

_AUTOPILOT = Dialect(
    name="autopilot",
    description="the AIOS v2 backend's main app (bluelabel-autopilot apps.api.main, /ws)",
    greeting="connection.established",
    greeting_frame='{"event":"connection.established","data":{"message":"Connected to DAG updates"}}',
    events=MappingProxyType({
        "dag.run.created": EventMap("dag_run_status", rename={"dag_id": "workflow_name"}, status=_RUN_STATUS,
                                    stamp=("started_at",)),
        "dag.run.status.updated": EventMap("dag_run_status", rename={"dag_id": "workflow_name"}, status=_RUN_STATUS),
        "dag.step.status.updated": EventMap("dag_run_status", rename={"dag_id": "workflow_name"},
                                            status=_RUN_STATUS, steps="steps"),
        "dag.run.completed": EventMap("dag_run_status", rename={"dag_id": "workflow_name"}, status=_RUN_STATUS),
        "email.processing.started": EventMap(
            "processing_job_status", job_id="run_id", rename={"filename": "pdf_name"},
            values={**_EMAIL, "status": "processing", "progress": 0.0}, stamp=("started_at",)),
        "email.processing.progress": EventMap(
            "processing_job_status", job_id="run_id", values=_EMAIL, status=_EMAIL_RUNNING,
            convert={"progress": fraction_percent}),
        # .completed carries the workflow's own status, "failed" too
        "email.processing.completed": EventMap(
            "processing_job_completed", event_by_status={"failed": "processing_job_failed", "cancelled": "processing_job_failed"},
            job_id="run_id", rename={"result.summary": "summary"}, values={**_EMAIL, "progress": 100.0},
            status=_EMAIL_DONE),
        "email.processing.error": EventMap(
            "processing_job_failed", job_id="run_id", values={**_EMAIL, "status": "failed"}),
    }),
    timestamp="timestamp",
    auth=False,
    server_filters=False,
    resync=False,
    keepalive=Keepalive(send="ping", reply="pong", every=20.0),
    routes=_AUTOPILOT_ROUTES,
)

_DAG_UPDATES = Dialect(
    name="autopilot-dag-updates",
    description="the AIOS v2 backend's DAG app (bluelabel-autopilot apps/api/api.py, /ws/dag-updates)",
    greeting="connected",
    greeting_has_data=False,
    greeting_frame='{"event":"connected","message":"WebSocket connected"}',
    events=MappingProxyType({
        # workflow_name: the name in its REST run list (GET /api/workflows/dag-runs), never in events
        "dag_run_status": EventMap("dag_run_status", rename={"started_at": "start_time", "dag_id": "workflow_name"},
                                   status=_RUN_STATUS, steps="steps"),
    }),
    lift=("run_id",),
    timestamp="timestamp",
    epoch_numbers=False,
    auth=False,
    server_filters=False,
    resync=False,
    subscribe_run='{"action": "subscribe", "run_id": "{run_id}"}',
    replies=frozenset({"error"}),
    keepalive=Keepalive(server_ping="ping"),
    routes=Routes(
        dag_runs="/api/workflows/dag-runs", dag_run="/api/workflows/dag-runs/{run_id}",
        upload_pdf="/api/workflows/upload-pdf", upload_audio=None, submit_url=None, agents=None,
        agent=None, knowledge_search=None, knowledge_item=None, dashboard=None, insights=None,
    ),
)

#: every dialect by name: the built-ins, then those ``register_dialect`` added
DIALECTS: dict[str, Dialect] = {d.name: d for d in (_AIOS_V2, _AUTOPILOT, _DAG_UPDATES)}


def register_dialect(dialect: Dialect) -> Dialect:
    """Add (or replace) a dialect, so ``dialect="NAME"`` and ``dialect="auto"`` know it.

    A registered dialect is tried before the built-ins when the greeting picks one.
    """
    if not isinstance(dialect, Dialect):
        raise TypeError(f"register_dialect takes a Dialect, got {type(dialect).__name__}")
    if dialect.name == PROTOCOL_NAME:
        raise ValueError(f"{PROTOCOL_NAME!r} is the published protocol: give your dialect another name")
    DIALECTS.pop(dialect.name, None)
    DIALECTS[dialect.name] = dialect
    return dialect


def get_dialect(name: str | Dialect) -> Dialect:
    """A dialect by name (or the dialect itself); ValueError naming the known ones."""
    if isinstance(name, Dialect):
        return name
    found = DIALECTS.get(name) if isinstance(name, str) else None
    if found is None:
        known = ", ".join(sorted([AUTO, *DIALECTS]))
        raise ValueError(f"dialect must be one of {known}, got {name!r}")
    return found


def detect_dialect(frame: str | bytes) -> Dialect | None:
    """The dialect whose greeting this frame is (registered ones first), or None."""
    if not isinstance(frame, str):
        return None
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    for dialect in reversed(list(DIALECTS.values())):
        if dialect.greets(obj):
            return dialect
    return None


def dialect_of_events(names: Iterable[str]) -> Dialect | None:
    """The foreign dialect whose own event names these are (frames kept without their greeting,
    as a recording that began after it); None when the published protocol's, or no dialect's."""
    wanted = set(names) - set(SERVER_EVENTS)  # a name the published protocol has tells nothing
    for dialect in reversed(list(DIALECTS.values())):
        if not dialect.native and wanted & set(dialect.events):
            return dialect
    return None
