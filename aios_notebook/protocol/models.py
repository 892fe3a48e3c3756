"""The messages of the AIOS v2 WebSocket protocol: one source of truth.

Names, fields and subscription types of every message in ``websocket-events.md`` and in
``PROTOCOL_NOTES.md`` (the kit's extensions: seq, resync, authenticated, pong ...). The client,
the store and the reference server all read from here, so they cannot drift apart.

Field kinds (``FieldKind``) are deliberately few; the store maps them to pandas dtypes:

- ``str``: a string; ``id``: a string identifier; ``category``: a string from a small set
- ``int``, ``float`` (any JSON number is accepted for float), ``bool``
- ``timestamp``: ISO 8601 (``Z``, ``+00:00`` or naive = UTC) or epoch seconds
- ``str_list``: a list of strings; ``object``: a JSON object; ``any``: anything
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

__all__ = [
    "CLIENT_EVENTS",
    "CLOSE_AUTH_FAILED",
    "CLOSE_AUTH_TIMEOUT",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TOO_BIG",
    "CONNECTION_SCOPED",
    "DEFAULT_HEARTBEAT",
    "ERROR_CODES",
    "EVENTS_BY_TYPE",
    "MAX_FRAME_BYTES",
    "PROTOCOL_NAME",
    "SERVER_CAPABILITIES",
    "SERVER_EVENTS",
    "STREAM_EVENTS",
    "SUBSCRIPTION_TYPES",
    "TYPE_OF_EVENT",
    "ErrorCode",
    "EventSpec",
    "FieldKind",
]

FieldKind = Literal[
    "str", "id", "category", "int", "float", "bool", "timestamp", "str_list", "object", "any"
]

PROTOCOL_NAME = "aios-v2"
SERVER_CAPABILITIES = ("seq", "resync", "pong")
DEFAULT_HEARTBEAT = 30.0
MAX_FRAME_BYTES = 1 << 20  # 1 MiB: larger frames are closed with 1009

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_POLICY_VIOLATION = 1008  # slow reader whose send queue filled
CLOSE_TOO_BIG = 1009
CLOSE_AUTH_FAILED = 4401
CLOSE_AUTH_TIMEOUT = 4408

ErrorCode = Literal[
    "not_authenticated",
    "auth_failed",
    "auth_timeout",
    "invalid_message",
    "invalid_subscription",
    "not_found",
    "processing_error",
    "server_shutdown",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


@dataclass(frozen=True)
class EventSpec:
    """One message of the protocol.

    Attributes:
        name: the ``event`` string.
        subscription: the subscription type that delivers it, or None when it reaches every client.
        fields: field name -> kind, for the fields the published document shows.
        required: the fields a valid message must carry.
        nested: for object fields with a known shape (``result``, ``performance``), their fields.
        scoped: True for connection-scoped replies, which carry no ``seq``.
    """

    name: str
    subscription: str | None
    fields: MappingProxyType[str, FieldKind]
    required: frozenset[str] = frozenset()
    nested: MappingProxyType[str, MappingProxyType[str, FieldKind]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    scoped: bool = False


def _spec(
    name: str,
    subscription: str | None,
    fields: dict[str, FieldKind],
    required: tuple[str, ...] = (),
    nested: dict[str, dict[str, FieldKind]] | None = None,
    scoped: bool = False,
) -> EventSpec:
    return EventSpec(
        name=name,
        subscription=subscription,
        fields=MappingProxyType(fields),
        required=frozenset(required),
        nested=MappingProxyType({k: MappingProxyType(v) for k, v in (nested or {}).items()}),
        scoped=scoped,
    )


_JOB_COMMON: dict[str, FieldKind] = {
    "job_id": "id",
    "run_id": "id",
    "type": "category",
    "status": "category",
    "timestamp": "timestamp",
}

_SERVER_SPECS = [
    # connection events (connection-scoped: no seq)
    _spec(
        "connected",
        None,
        {
            "client_id": "id",
            "server_time": "timestamp",
            "protocol": "str",
            "capabilities": "str_list",
            "heartbeat_interval": "float",
        },
        ("client_id",),
        scoped=True,
    ),
    _spec(
        "authenticated",
        None,
        {"client_id": "id", "timestamp": "timestamp"},
        scoped=True,
    ),
    _spec("ping", None, {"timestamp": "timestamp"}, scoped=True),
    _spec(
        "resync_complete",
        None,
        {"from_seq": "int", "to_seq": "int", "replayed": "int", "complete": "bool"},
        ("from_seq", "to_seq", "replayed", "complete"),
        scoped=True,
    ),
    # file processing
    _spec(
        "processing_job_status",
        "processing_jobs",
        {
            **_JOB_COMMON,
            "progress": "float",
            "filename": "str",
            "started_at": "timestamp",
            "estimated_completion": "timestamp",
            "current_step": "category",
        },
        ("job_id", "status"),
    ),
    _spec(
        "processing_job_completed",
        "processing_jobs",
        {**_JOB_COMMON, "progress": "float", "completed_at": "timestamp", "result": "object"},
        ("job_id",),
        nested={
            "result": {
                "extracted_text": "str",
                "summary": "str",
                "entities": "str_list",
                "insights": "str_list",
            }
        },
    ),
    _spec(
        "processing_job_failed",
        "processing_jobs",
        {
            **_JOB_COMMON,
            "error": "str",
            "failed_at": "timestamp",
            "retry_count": "int",
            "can_retry": "bool",
        },
        ("job_id",),
    ),
    # agents
    _spec(
        "agent_status_update",
        "agents",
        {
            "agent_id": "id",
            "name": "str",
            "type": "category",
            "status": "category",
            "current_task": "str",
            "progress": "float",
            "performance": "object",
            "timestamp": "timestamp",
        },
        ("agent_id", "status"),
        nested={
            "performance": {
                "tasks_completed": "int",
                "average_processing_time": "float",
                "success_rate": "float",
            }
        },
    ),
    _spec(
        "agent_task_completed",
        "agents",
        {
            "agent_id": "id",
            "task_id": "id",
            "job_id": "id",
            "task_type": "category",
            "duration": "float",
            "result": "object",
            "timestamp": "timestamp",
        },
        ("agent_id",),
        nested={"result": {"summary": "str", "confidence": "float"}},
    ),
    _spec(
        "agent_error",
        "agents",
        {
            "agent_id": "id",
            "error": "str",
            "severity": "category",
            "can_retry": "bool",
            "affected_jobs": "str_list",
            "timestamp": "timestamp",
        },
        ("agent_id",),
    ),
    # knowledge
    _spec(
        "knowledge_item_created",
        "knowledge",
        {
            "item_id": "id",
            "title": "str",
            "type": "category",
            "source_job": "id",
            "tags": "str_list",
            "created_at": "timestamp",
            "timestamp": "timestamp",
        },
        ("item_id",),
    ),
    _spec(
        "knowledge_item_updated",
        "knowledge",
        {
            "item_id": "id",
            "updated_fields": "str_list",
            "updated_at": "timestamp",
            "timestamp": "timestamp",
        },
        ("item_id",),
    ),
    # analytics
    _spec(
        "insight_generated",
        "insights",
        {
            "insight_id": "id",
            "title": "str",
            "description": "str",
            "type": "category",
            "confidence": "float",
            "metadata": "object",
            "created_at": "timestamp",
            "timestamp": "timestamp",
        },
        ("insight_id",),
    ),
    _spec(
        "dashboard_metrics_update",
        "insights",
        {
            "total_processed": "int",
            "processing_time": "float",
            "success_rate": "float",
            "active_agents": "int",
            "knowledge_items": "int",
            "changes": "object",
            "timestamp": "timestamp",
        },
    ),
    # DAGs
    _spec(
        "dag_run_status",
        "dags",
        {
            "dag_id": "id",
            "run_id": "id",
            "status": "category",
            "started_at": "timestamp",
            "timestamp": "timestamp",
        },
        ("run_id", "status"),
    ),
    _spec(
        "step_status",
        "dags",
        {
            "dag_id": "id",
            "run_id": "id",
            "step_id": "id",
            "status": "category",
            "start_time": "timestamp",
            "end_time": "timestamp",
            "duration": "float",
            "retry_count": "int",
            "error": "str",
            "timestamp": "timestamp",
        },
        ("run_id", "step_id", "status"),
    ),
    _spec(
        "dag_run_progress",
        "dags",
        {
            "dag_id": "id",
            "run_id": "id",
            "total_steps": "int",
            "completed_steps": "int",
            "running_steps": "int",
            "failed_steps": "int",
            "pending_steps": "int",
            "completion_percentage": "float",
            "timestamp": "timestamp",
        },
        ("run_id",),
    ),
    # errors
    _spec(
        "error",
        None,
        {"code": "category", "message": "str", "details": "object", "timestamp": "timestamp"},
        ("code",),
        scoped=True,
    ),
    _spec(
        "connection_error",
        None,
        {"code": "category", "message": "str", "timestamp": "timestamp"},
        ("code",),
        scoped=True,
    ),
]

#: every message the server may send, by event name
SERVER_EVENTS: MappingProxyType[str, EventSpec] = MappingProxyType(
    {spec.name: spec for spec in _SERVER_SPECS}
)

#: the 17 server events of the published document (authenticated and resync_complete are ours)
PUBLISHED_SERVER_EVENTS: tuple[str, ...] = tuple(
    name for name in SERVER_EVENTS if name not in ("authenticated", "resync_complete")
)
__all__ += ["PUBLISHED_SERVER_EVENTS"]

#: subscription type -> the events it delivers
SUBSCRIPTION_TYPES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "processing_jobs": (
            "processing_job_status",
            "processing_job_completed",
            "processing_job_failed",
        ),
        "agents": ("agent_status_update", "agent_task_completed", "agent_error"),
        "knowledge": ("knowledge_item_created", "knowledge_item_updated"),
        "insights": ("insight_generated", "dashboard_metrics_update"),
        "dags": ("dag_run_status", "step_status", "dag_run_progress"),
    }
)
EVENTS_BY_TYPE = SUBSCRIPTION_TYPES

#: event name -> its subscription type (only for events that belong to one)
TYPE_OF_EVENT: MappingProxyType[str, str] = MappingProxyType(
    {event: kind for kind, events in SUBSCRIPTION_TYPES.items() for event in events}
)

#: events that every client receives whatever it subscribed to
CONNECTION_SCOPED: frozenset[str] = frozenset(
    {"connected", "authenticated", "ping", "error", "connection_error", "resync_complete"}
)

#: events of the shared stream: they carry a global ``seq``. The ``error`` event with code
#: processing_error is part of the stream too (the server sends it to every client with a seq).
STREAM_EVENTS: frozenset[str] = frozenset(TYPE_OF_EVENT) | {"error"}

#: messages a client may send, with their data fields
CLIENT_EVENTS: MappingProxyType[str, MappingProxyType[str, FieldKind]] = MappingProxyType(
    {
        "auth": MappingProxyType({"token": "str"}),
        "subscribe": MappingProxyType({"types": "str_list", "filters": "object"}),
        "unsubscribe": MappingProxyType({"types": "str_list"}),
        "subscribe_dag_run": MappingProxyType({"run_id": "id"}),
        "pong": MappingProxyType({"timestamp": "timestamp"}),
        "resync": MappingProxyType({"since_seq": "int"}),
    }
)

#: filter name -> the data field it looks at
FILTER_FIELDS: MappingProxyType[str, str] = MappingProxyType(
    {"run_id": "run_id", "agent_ids": "agent_id"}
)
__all__ += ["FILTER_FIELDS"]
