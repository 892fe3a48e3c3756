"""Public helpers for testing code built on the kit: no socket, no sleeps.

- ``PUBLISHED_EXAMPLES``: the data of every server event exactly as websocket-events.md shows it.
- ``sample_frame(event, seq=None, **overrides)``: one of those as a wire frame.
- ``session_pair(token)``: a client and a server session wired in memory, and ``exchange`` to pump frames.
- ``ManualClock``: a clock tests advance by hand (from :mod:`aios_notebook.clock`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .clock import Clock, ManualClock, as_clock
from .protocol.codec import encode
from .protocol.session import ClientSession, ServerSession, constant_time_equal

__all__ = ["PUBLISHED_EXAMPLES", "ManualClock", "exchange", "sample_frame", "session_pair"]

# the published examples of websocket-events.md, verbatim
PUBLISHED_EXAMPLES: dict[str, dict[str, Any]] = {
    "processing_job_status": {"job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "processing", "progress": 45, "filename": "document.pdf", "started_at": "2023-01-01T00:00:00Z", "estimated_completion": "2023-01-01T00:05:00Z", "current_step": "text_extraction", "timestamp": "2023-01-01T00:02:30Z"},
    "processing_job_completed": {"job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "completed", "progress": 100, "completed_at": "2023-01-01T00:05:00Z", "result": {"extracted_text": "Document content...", "summary": "Brief summary...", "entities": ["entity1", "entity2"], "insights": ["insight1", "insight2"]}, "timestamp": "2023-01-01T00:05:00Z"},
    "processing_job_failed": {"job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "failed", "error": "Failed to extract text: Invalid PDF format", "failed_at": "2023-01-01T00:03:00Z", "retry_count": 2, "can_retry": True, "timestamp": "2023-01-01T00:03:00Z"},
    "agent_status_update": {"agent_id": "content_mind_01", "name": "Content Mind", "type": "analysis", "status": "working", "current_task": "Analyzing PDF document for key insights", "progress": 75, "performance": {"tasks_completed": 145, "average_processing_time": 2.3, "success_rate": 98.5}, "timestamp": "2023-01-01T00:00:00Z"},
    "agent_task_completed": {"agent_id": "digest_agent_02", "task_id": "task-789", "job_id": "job-12345", "task_type": "text_summarization", "duration": 45.2, "result": {"summary": "Generated summary...", "confidence": 0.94}, "timestamp": "2023-01-01T00:02:45Z"},
    "agent_error": {"agent_id": "summary_agent_03", "error": "Connection timeout to language model", "severity": "warning", "can_retry": True, "affected_jobs": ["job-12345", "job-12346"], "timestamp": "2023-01-01T00:01:30Z"},
    "knowledge_item_created": {"item_id": "kb-item-456", "title": "Q4 Financial Analysis Report", "type": "analysis", "source_job": "job-12345", "tags": ["finance", "quarterly", "analysis"], "created_at": "2023-01-01T00:05:00Z", "timestamp": "2023-01-01T00:05:00Z"},
    "knowledge_item_updated": {"item_id": "kb-item-456", "updated_fields": ["content", "tags"], "updated_at": "2023-01-01T00:06:00Z", "timestamp": "2023-01-01T00:06:00Z"},
    "insight_generated": {"insight_id": "insight-789", "title": "Processing Volume Increase Detected", "description": "Document processing volume has increased by 45% this week", "type": "trend", "confidence": 0.92, "metadata": {"metric": "volume", "change": "+45%", "period": "week", "affected_categories": ["pdf", "audio"]}, "created_at": "2023-01-01T00:07:00Z", "timestamp": "2023-01-01T00:07:00Z"},
    "dashboard_metrics_update": {"total_processed": 1247, "processing_time": 2.8, "success_rate": 97.3, "active_agents": 3, "knowledge_items": 892, "changes": {"total_processed": "+5", "success_rate": "+0.2"}, "timestamp": "2023-01-01T00:08:00Z"},
    "dag_run_status": {"dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "status": "running", "started_at": "2023-01-01T00:00:00Z", "timestamp": "2023-01-01T00:00:00Z"},
    "step_status": {"dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "step_id": "extract_data", "status": "success", "start_time": "2023-01-01T00:00:00Z", "end_time": "2023-01-01T00:05:00Z", "duration": 300000, "retry_count": 0, "error": None, "timestamp": "2023-01-01T00:05:00Z"},
    "dag_run_progress": {"dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "total_steps": 4, "completed_steps": 2, "running_steps": 1, "failed_steps": 0, "pending_steps": 1, "completion_percentage": 50.0, "timestamp": "2023-01-01T00:05:00Z"},
    "connected": {"client_id": "client-123", "server_time": "2023-01-01T00:00:00Z"},
    "ping": {"timestamp": "2023-01-01T00:00:00Z"},
    "error": {"code": "processing_error", "message": "Failed to process document", "details": {"job_id": "job-12345", "error_type": "validation_error", "retry_available": True}, "timestamp": "2023-01-01T00:02:00Z"},
    "connection_error": {"code": "websocket_error", "message": "Connection unstable, reconnecting...", "timestamp": "2023-01-01T00:01:00Z"},
}


def sample_frame(event: str, seq: int | None = None, **overrides: Any) -> str:
    """A published example as a frame, with some fields replaced."""
    data = copy.deepcopy(PUBLISHED_EXAMPLES[event])
    data.update(overrides)
    return encode(event, data, seq)


def session_pair(token: str = "secret", *, client_token: str | None = None,
                 clock: Clock | Callable[[], float] | None = None) -> tuple[ClientSession, ServerSession]:
    """A client session and a server session, opened on each other (call ``exchange`` to talk).

    ``clock``: one :class:`Clock` for both (e.g. ``ManualClock()``, moved by hand); the wall clock
    by default."""
    clock = as_clock(clock)
    server = ServerSession(client_id="client-1", token_check=constant_time_equal(token), clock=clock)
    server.opened()
    client = ClientSession(clock=clock)
    client.connection_opened(token if client_token is None else client_token)
    return client, server


def exchange(client: ClientSession, server: ServerSession, rounds: int = 10) -> tuple[list[Any], list[Any]]:
    """Deliver queued frames both ways until both sides are quiet: (client events, server requests)."""
    events: list[Any] = []
    requests: list[Any] = []
    for _ in range(rounds):
        to_client, to_server = server.data_to_send(), client.data_to_send()
        if not to_client and not to_server:
            break
        for frame in to_client:
            events.extend(client.receive(frame))
        for frame in to_server:
            requests.extend(server.receive(frame))
    return events, requests
