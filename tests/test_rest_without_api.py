"""A server without the REST API: noted once in errors, and the client carries on with WebSocket alone."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from aios_notebook.client import AIOSClient
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(60)

TOKEN = "ws-only-token"


class WebSocketOnly:
    """A tiny AIOS-like server: WebSocket only, no REST. Each connection gets a few agent events
    and is then closed, so the client has to reconnect."""

    def __init__(self, events_per_connection: int = 3) -> None:
        self.events_per_connection = events_per_connection
        self.connections = 0
        self.port = 0
        self.sent = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(json.dumps({"event": "connected", "data": {"client_id": f"c{self.connections}",
                                                                 "server_time": "2026-01-05T10:00:00Z"}}))
        auth = json.loads(await ws.recv())
        assert auth["event"] == "auth"
        for _ in range(self.events_per_connection):
            self.sent += 1
            await ws.send(json.dumps({"event": "agent_status_update", "data": {
                "agent_id": f"agent_{self.sent}", "name": "Agent", "type": "analysis", "status": "working",
                "current_task": "x", "progress": 10, "timestamp": f"2026-01-05T10:00:{self.sent:02d}Z"}}))
        await ws.close(1001, "going away")


@pytest.fixture
async def ws_only() -> AsyncIterator[WebSocketOnly]:
    server = WebSocketOnly()
    async with serve(server.handler, "127.0.0.1", 0) as running:
        server.port = running.sockets[0].getsockname()[1]
        yield server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def snapshot_rows(store: EventStore) -> list[str]:
    errors = store.errors
    return list(errors[errors["kind"] == "snapshot"]["message"])


async def run_client(url: str, **options: Any) -> tuple[AIOSClient, EventStore]:
    store = EventStore()
    client = AIOSClient(url, TOKEN, store=store, reconnect_delay=0.05, max_reconnect_delay=0.1,
                        healthy_after=60, **options)
    client.start()
    try:
        await asyncio.to_thread(client.wait_for, lambda s: snapshot_rows(s), 30)
        # two more connections after the note, each one a chance to try REST (and note it) again
        seen = len(store.agents)
        await asyncio.to_thread(client.wait_for, lambda s: len(s.agents) >= seen + 6, 30)
    finally:
        await asyncio.to_thread(client.stop)
    return client, store


async def test_websocket_only_server_on_the_same_port(ws_only: WebSocketOnly) -> None:
    client, store = await run_client(f"ws://127.0.0.1:{ws_only.port}/ws")
    assert client.stats.reconnects >= 2
    assert len(store.agents) >= 9  # the stream went on
    rows = snapshot_rows(store)
    assert len(rows) == 1, rows
    assert f"no REST API at http://127.0.0.1:{ws_only.port}" in rows[0]
    assert "426" in rows[0] and "carrying on with the WebSocket alone" in rows[0]
    assert TOKEN not in rows[0]
    assert client.last_snapshot is None


async def test_rest_url_where_nothing_listens(ws_only: WebSocketOnly) -> None:
    port = free_port()
    client, store = await run_client(f"ws://127.0.0.1:{ws_only.port}/ws", rest_url=f"http://127.0.0.1:{port}")
    assert client.rest_url == f"http://127.0.0.1:{port}"
    assert client.stats.reconnects >= 2 and len(store.agents) >= 9
    rows = snapshot_rows(store)
    assert len(rows) == 1, rows
    assert "no REST API" in rows[0] and "cannot connect" in rows[0]
