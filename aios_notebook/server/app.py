"""The aiohttp application: the WebSocket at ``/ws`` and the REST API on the same port.

One aiohttp server carries both because a real AIOS v2 deployment does (``ws://HOST:PORT/ws``
beside ``/api/...``), and aiohttp is a well-kept library that speaks WebSocket, HTTP/1.1 and
streamed multipart on one asyncio loop without hand-parsed HTTP; the simulation, the sockets and
the REST handlers then share one thread and one state without locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..protocol.models import MAX_FRAME_BYTES
from ..protocol.session import ServerSession
from .connection import CLOSE_TIMEOUT, Connection
from .rest import SIMULATOR, error_middleware, rest_routes

if TYPE_CHECKING:
    from .simulator import Simulator

__all__ = ["build_app"]


async def websocket(request: web.Request) -> web.StreamResponse:
    """``/ws``: one AIOS v2 client, served by a :class:`ServerSession` until either side closes."""
    simulator = request.app[SIMULATOR]
    ws = web.WebSocketResponse(
        # aiohttp closes larger frames with 1009 itself; it refuses payloads >= its limit, hence + 1
        max_msg_size=MAX_FRAME_BYTES + 1,
        timeout=CLOSE_TIMEOUT,
        autoping=True,
        compress=False,  # per-message deflate would cost more CPU than loopback bandwidth saves
    )
    await ws.prepare(request)
    session = ServerSession(
        client_id=simulator.next_client_id(),
        token_check=simulator.check_token,
        heartbeat=simulator.heartbeat,
        auth_timeout=simulator.auth_timeout,
        clock=simulator.clock,  # connection-scoped times are simulated time too
        stream_id=simulator.hub.stream_id,
    )
    connection = Connection(simulator, ws, request, session, simulator.send_queue_limit)
    simulator.connections.add(connection)
    try:
        connection.start()
        async for message in ws:
            connection.receive(message)
    finally:
        simulator.connections.discard(connection)
        connection.detach()
        # its close (if under way) is awaited here, bounded: so that no task of it is still pending
        # when the server's loop closes ("Task was destroyed but it is pending!" on stderr, in reports)
        await connection.closed(timeout=2 * CLOSE_TIMEOUT)
    return ws


async def index(request: web.Request) -> web.Response:
    """``/``: what this server is (no token needed, nothing secret)."""
    return web.json_response({
        "service": "aios-notebook reference server",
        "protocol": "aios-v2",
        "websocket": "/ws",
        "rest": "/api/",
        "scenario": request.app[SIMULATOR].scenario,
    })


def build_app(simulator: Simulator) -> web.Application:
    """The application serving ``simulator`` (its workload, hub and connections)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[SIMULATOR] = simulator
    app.add_routes([web.get("/ws", websocket), web.get("/", index), *rest_routes()])
    return app
