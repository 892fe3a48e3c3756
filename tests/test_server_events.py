"""A live server delivers all 17 published server events, each shaped like the published example."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from server_wire import WireClient, close_code

from aios_notebook.protocol.codec import decode, parse_timestamp
from aios_notebook.protocol.models import PUBLISHED_SERVER_EVENTS, SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator
from aios_notebook.server.workload import DEFAULT_START

pytestmark = pytest.mark.timeout(90)

# The examples of websocket-events.md, as published (their data only).
PUBLISHED: dict[str, dict[str, Any]] = {
    "connected": {"client_id": "client-123", "server_time": "2023-01-01T00:00:00Z"},
    "ping": {"timestamp": "2023-01-01T00:00:00Z"},
    "processing_job_status": {
        "job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "processing", "progress": 45,
        "filename": "document.pdf", "started_at": "2023-01-01T00:00:00Z",
        "estimated_completion": "2023-01-01T00:05:00Z", "current_step": "text_extraction",
        "timestamp": "2023-01-01T00:02:30Z",
    },
    "processing_job_completed": {
        "job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "completed", "progress": 100,
        "completed_at": "2023-01-01T00:05:00Z",
        "result": {"extracted_text": "Document content...", "summary": "Brief summary...",
                   "entities": ["entity1", "entity2"], "insights": ["insight1", "insight2"]},
        "timestamp": "2023-01-01T00:05:00Z",
    },
    "processing_job_failed": {
        "job_id": "job-12345", "run_id": "run-67890", "type": "pdf", "status": "failed",
        "error": "Failed to extract text: Invalid PDF format", "failed_at": "2023-01-01T00:03:00Z",
        "retry_count": 2, "can_retry": True, "timestamp": "2023-01-01T00:03:00Z",
    },
    "agent_status_update": {
        "agent_id": "content_mind_01", "name": "Content Mind", "type": "analysis", "status": "working",
        "current_task": "Analyzing PDF document for key insights", "progress": 75,
        "performance": {"tasks_completed": 145, "average_processing_time": 2.3, "success_rate": 98.5},
        "timestamp": "2023-01-01T00:00:00Z",
    },
    "agent_task_completed": {
        "agent_id": "digest_agent_02", "task_id": "task-789", "job_id": "job-12345",
        "task_type": "text_summarization", "duration": 45.2,
        "result": {"summary": "Generated summary...", "confidence": 0.94}, "timestamp": "2023-01-01T00:02:45Z",
    },
    "agent_error": {
        "agent_id": "summary_agent_03", "error": "Connection timeout to language model", "severity": "warning",
        "can_retry": True, "affected_jobs": ["job-12345", "job-12346"], "timestamp": "2023-01-01T00:01:30Z",
    },
    "knowledge_item_created": {
        "item_id": "kb-item-456", "title": "Q4 Financial Analysis Report", "type": "analysis",
        "source_job": "job-12345", "tags": ["finance", "quarterly", "analysis"],
        "created_at": "2023-01-01T00:05:00Z", "timestamp": "2023-01-01T00:05:00Z",
    },
    "knowledge_item_updated": {
        "item_id": "kb-item-456", "updated_fields": ["content", "tags"], "updated_at": "2023-01-01T00:06:00Z",
        "timestamp": "2023-01-01T00:06:00Z",
    },
    "insight_generated": {
        "insight_id": "insight-789", "title": "Processing Volume Increase Detected",
        "description": "Document processing volume has increased by 45% this week", "type": "trend",
        "confidence": 0.92,
        "metadata": {"metric": "volume", "change": "+45%", "period": "week", "affected_categories": ["pdf", "audio"]},
        "created_at": "2023-01-01T00:07:00Z", "timestamp": "2023-01-01T00:07:00Z",
    },
    "dashboard_metrics_update": {
        "total_processed": 1247, "processing_time": 2.8, "success_rate": 97.3, "active_agents": 3,
        "knowledge_items": 892, "changes": {"total_processed": "+5", "success_rate": "+0.2"},
        "timestamp": "2023-01-01T00:08:00Z",
    },
    "dag_run_status": {
        "dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "status": "running",
        "started_at": "2023-01-01T00:00:00Z", "timestamp": "2023-01-01T00:00:00Z",
    },
    "step_status": {
        "dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "step_id": "extract_data",
        "status": "success", "start_time": "2023-01-01T00:00:00Z", "end_time": "2023-01-01T00:05:00Z",
        "duration": 300000, "retry_count": 0, "error": None, "timestamp": "2023-01-01T00:05:00Z",
    },
    "dag_run_progress": {
        "dag_id": "example_dag", "run_id": "manual__2023-01-01T00:00:00+00:00", "total_steps": 4,
        "completed_steps": 2, "running_steps": 1, "failed_steps": 0, "pending_steps": 1,
        "completion_percentage": 50.0, "timestamp": "2023-01-01T00:05:00Z",
    },
    "error": {
        "code": "processing_error", "message": "Failed to process document",
        "details": {"job_id": "job-12345", "error_type": "validation_error", "retry_available": True},
        "timestamp": "2023-01-01T00:02:00Z",
    },
    "connection_error": {
        "code": "websocket_error", "message": "Connection unstable, reconnecting...",
        "timestamp": "2023-01-01T00:01:00Z",
    },
}


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "timestamp" if parse_timestamp(value) is not None and value[:4].isdigit() else "str"
    return type(value).__name__


def assert_shaped_like(event: str, example: dict[str, Any], data: dict[str, Any], where: str = "") -> None:
    for key, sample in example.items():
        assert key in data, f"{event}{where}: missing {key!r}"
        value = data[key]
        if sample is None or value is None:
            continue  # null in the example (error of a successful step) or no value in this state
        assert kind_of(value) == kind_of(sample), f"{event}{where}.{key}: {value!r} is not like {sample!r}"
        if isinstance(sample, dict) and event != "dashboard_metrics_update":
            assert_shaped_like(event, sample, value, f"{where}.{key}")
        if isinstance(sample, list):
            assert all(isinstance(v, str) for v in value), f"{event}{where}.{key}: not a list of strings"


def test_the_examples_cover_the_17_published_server_events() -> None:
    assert set(PUBLISHED) == set(PUBLISHED_SERVER_EVENTS) and len(PUBLISHED) == 17


async def test_a_live_server_sends_all_17_event_types_shaped_like_the_examples() -> None:
    seen: dict[str, dict[str, Any]] = {}
    sim = Simulator(seed=5, speed=3600, start=DEFAULT_START, heartbeat=0.5)
    await sim.start()
    try:
        client = await WireClient.open(sim)
        await client.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        wanted = set(PUBLISHED) - {"connection_error"}

        def collect(frame: dict[str, Any]) -> bool:
            seen.setdefault(frame["event"], frame)
            return wanted <= set(seen)

        seen["connected"] = client.connected
        await client.until(collect, timeout=60)
    finally:
        closing = asyncio.create_task(close_code(client))
        await sim.close()
    assert await closing == 1001
    seen["connection_error"] = client.frames[-1]
    assert set(seen) >= set(PUBLISHED)
    for event, example in PUBLISHED.items():
        frame = seen[event]
        assert_shaped_like(event, example, frame["data"])
        decoded = decode(json.dumps(frame))
        assert decoded.ok, (event, decoded.describe())
        if event in ("connected", "ping", "connection_error"):
            assert "seq" not in frame
        elif event != "error":
            assert isinstance(frame["seq"], int)
